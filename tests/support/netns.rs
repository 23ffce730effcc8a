//! A three-node nats-server cluster whose nodes each run in a network namespace of their own, so
//! that a test can cut one node off from the other two while its clients stay attached to it.
//!
//! The namespaces hang off one bridge in the test's namespace: node `i` listens on
//! `10.<net>.<i + 11>` (clients on 4222, routes on 6222), the bridge has `10.<net>.1`, so the
//! idstream processes and the test reach every node directly. [`NetnsCluster::cut_off`] adds
//! blackhole routes between the node and the other nodes (in both directions) and leaves the
//! bridge alone, so only the routes break; [`NetnsCluster::heal`] removes them.
//!
//! Needs root and `ip` (iproute2): the tests run as root. Everything is removed on drop.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package installs the server.
const NATS_SERVER_BIN: &str = "/usr/sbin/nats-server";

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Three namespaced nodes on a bridge.
pub struct NetnsCluster {
    /// Unique per process: names of the namespaces, links and bridge, and the subnet.
    tag: String,
    net: String,
    bridge: String,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Option<Child>>,
}

/// Runs `ip` with `args`, panicking with its error output if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl NetnsCluster {
    /// Creates the bridge, three namespaces with a veth pair each, and starts a clustered
    /// nats-server with JetStream in each.
    pub fn spawn() -> NetnsCluster {
        let pid = std::process::id();
        let tag = format!("ids{}", pid % 100_000);
        // A /24 from the pid, inside 10.200.0.0/13 (unlikely to meet a real network).
        let net = format!("10.{}.{}", 200 + (pid / 256) % 8, pid % 256);
        let bridge = format!("{tag}br");
        let mut cluster = NetnsCluster {
            tag,
            net,
            bridge,
            dirs: Vec::new(),
            children: Vec::new(),
        };
        let bridge = cluster.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&[
            "addr",
            "add",
            &format!("{}.1/24", cluster.net),
            "dev",
            &bridge,
        ]);
        ip(&["link", "set", &bridge, "up"]);
        for i in 0..3 {
            let ns = cluster.namespace(i);
            let (host, inner) = (
                format!("{}h{i}", cluster.tag),
                format!("{}n{i}", cluster.tag),
            );
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &host, "master", &bridge]);
            ip(&["link", "set", &host, "up"]);
            let address = format!("{}/24", cluster.address(i));
            ip(&["-n", &ns, "addr", "add", &address, "dev", &inner]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let routes = (0..3)
            .map(|i| format!("\"nats-route://{}:6222\"", cluster.address(i)))
            .collect::<Vec<_>>()
            .join(", ");
        for i in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix("idstream-netns-")
                .tempdir()
                .expect("temporary directory for a node");
            let store = dir.path().join("store");
            std::fs::create_dir(&store).expect("node store");
            let config = format!(
                "server_name: \"n{}\"\nlisten: \"{}:4222\"\nhttp: \"{}:8222\"\njetstream {{\n  store_dir: \"{}\"\n}}\n\
                 cluster {{\n  name: \"idstream-netns\"\n  listen: \"{}:6222\"\n  routes: [{routes}]\n}}\n",
                i + 1,
                cluster.address(i),
                cluster.address(i),
                store.display(),
                cluster.address(i),
            );
            std::fs::write(dir.path().join("nats.conf"), config).expect("write nats.conf");
            cluster.dirs.push(dir);
            cluster.children.push(None);
        }
        for i in 0..3 {
            cluster.start(i);
        }
        cluster
    }

    fn namespace(&self, i: usize) -> String {
        format!("{}ns{i}", self.tag)
    }

    fn address(&self, i: usize) -> String {
        format!("{}.{}", self.net, i + 11)
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://{}:4222", self.address(i))
    }

    /// Node `i`'s server name (`n1`, `n2`, `n3`).
    pub fn name(&self, i: usize) -> String {
        format!("n{}", i + 1)
    }

    /// The index of the node called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        (0..3).find(|i| self.name(*i) == name)
    }

    fn start(&mut self, i: usize) {
        let dir = self.dirs[i].path();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace(i), NATS_SERVER_BIN, "-c"])
            .arg(dir.join("nats.conf"))
            .arg("-l")
            .arg(dir.join("nats.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server in its namespace");
        self.children[i] = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(stream) = TcpStream::connect((self.address(i).as_str(), 4222)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server n{} did not accept clients within {START_TIMEOUT:?}",
                i + 1
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What node `i` itself holds of `stream` (its monitoring endpoint, `/jsz`): messages, bytes,
    /// first and last sequence, and whom it takes for the leader. For diagnosis: replicas that
    /// agree hold the same messages and bytes up to the same last sequence.
    pub async fn local_stream_state(&self, i: usize, stream: &str) -> String {
        let url = format!(
            "http://{}:8222/jsz?accounts=true&streams=true",
            self.address(i)
        );
        let Ok(response) = reqwest::get(&url).await else {
            return "monitoring endpoint unreachable".into();
        };
        let jsz: serde_json::Value = response.json().await.unwrap_or_default();
        let streams = jsz["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten());
        for detail in streams {
            if detail["name"] == stream {
                let state = &detail["state"];
                return format!(
                    "messages {} bytes {} first {} last {} leader {}",
                    state["messages"],
                    state["bytes"],
                    state["first_seq"],
                    state["last_seq"],
                    detail["cluster"]["leader"]
                );
            }
        }
        "no such stream here".into()
    }

    /// Cuts node `i` off from the other nodes (both directions); its clients stay attached.
    pub fn cut_off(&self, i: usize) {
        self.blackholes(i, "add");
    }

    /// Undoes [`NetnsCluster::cut_off`].
    pub fn heal(&self, i: usize) {
        self.blackholes(i, "del");
    }

    fn blackholes(&self, i: usize, action: &str) {
        for other in (0..3).filter(|o| *o != i) {
            let to_other = format!("{}/32", self.address(other));
            ip(&[
                "-n",
                &self.namespace(i),
                "route",
                action,
                "blackhole",
                &to_other,
            ]);
            let to_node = format!("{}/32", self.address(i));
            ip(&[
                "-n",
                &self.namespace(other),
                "route",
                action,
                "blackhole",
                &to_node,
            ]);
        }
    }

    /// A client connected to any node.
    async fn client(&self) -> Option<async_nats::Client> {
        let addrs: Vec<async_nats::ServerAddr> = (0..3)
            .map(|i| self.url(i).parse().expect("a server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(addrs)
            .await
            .ok()
    }

    /// Waits until JetStream answers (it has a meta leader).
    pub async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(client) = self.client().await {
                let js = async_nats::jetstream::new(client);
                if let Err(e) = js.get_stream("NO_SUCH_STREAM").await
                    && let async_nats::jetstream::context::GetStreamErrorKind::JetStream(e) =
                        e.kind()
                    && e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no JetStream meta leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `stream` has a leader and its other replicas are current; returns the
    /// leader's index.
    pub async fn wait_until_stream_is_whole(&self, stream: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(client) = self.client().await {
                let js = async_nats::jetstream::new(client);
                if let Ok(mut handle) = js.get_stream(stream).await
                    && let Ok(info) = handle.info().await
                    && let Some(cluster) = info.cluster.clone()
                    && let Some(leader) = cluster.leader.as_deref().and_then(|l| self.index_of(l))
                    && cluster.replicas.len() + 1 == info.config.num_replicas
                    && cluster.replicas.iter().all(|p| p.current && !p.offline)
                {
                    return leader;
                }
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} did not become whole"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NetnsCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().filter_map(Option::take) {
            let mut child = child;
            let _ = child.kill();
            let _ = child.wait();
        }
        // `ip netns exec` execs the server, so the child was the server itself; deleting the
        // namespaces also removes their veth pairs.
        for i in 0..3 {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.namespace(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}
