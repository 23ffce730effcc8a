//! A three-node nats-server cluster with JetStream for one test: three real processes on
//! loopback, routed to each other, each with its own free ports and its own temporary store.
//!
//! ```text
//! let mut cluster = NatsCluster::spawn();
//! let url = cluster.urls();            // "nats://127.0.0.1:p1,nats://127.0.0.1:p2,…": every seed
//! let leader = cluster.stream_leader("IDSTREAM").await;   // index of the node leading the stream
//! cluster.kill(leader);                // SIGKILL, like a crash
//! cluster.start(leader);               // same ports, same store: it rejoins and catches up
//! ```
//!
//! Every node is killed when the `NatsCluster` is dropped. Process control is synchronous and
//! bounded, like [`super::nats::NatsServer`]'s.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package installs the server.
const NATS_SERVER_BIN: &str = "/usr/sbin/nats-server";

/// How long a starting node may take to accept clients (it recovers its store first).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long the cluster may take to elect its JetStream meta leader, or a stream its leader.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's name in the route handshake.
const CLUSTER_NAME: &str = "idstream-test";

/// One node: its client and route ports, its directory (`store/`, `nats.conf`, `nats.log`) and
/// its process while it runs.
struct Node {
    name: String,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Three clustered nats-server processes with JetStream.
pub struct NatsCluster {
    nodes: Vec<Node>,
}

/// What the cluster says about one stream's replicas.
#[derive(Debug, Clone)]
pub struct StreamPeers {
    /// The index of the node leading the stream.
    pub leader: usize,
    /// How many copies the stream keeps (the leader's and its other replicas').
    pub replicas: usize,
    /// As many replicas as configured are known, and every other one is online and current.
    pub all_current: bool,
}

impl NatsCluster {
    /// Starts three nodes on free ports with empty stores, routed to each other, and waits until
    /// JetStream has a meta leader (so streams can be created).
    ///
    /// Panics if `/usr/sbin/nats-server` is missing or the cluster does not come up.
    pub fn spawn() -> NatsCluster {
        if !Path::new(NATS_SERVER_BIN).exists() {
            panic!(
                "nats-server not found: run `.ci/test`, which installs it (apt-get install -y nats-server)"
            );
        }
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let mut nodes = Vec::new();
        for (i, route_port) in route_ports.iter().enumerate() {
            let dir = tempfile::Builder::new()
                .prefix("idstream-nats-cluster-")
                .tempdir()
                .expect("temporary directory for a cluster node");
            let store = dir.path().join("store");
            std::fs::create_dir(&store).expect("node store directory");
            let name = format!("n{}", i + 1);
            let port = free_port();
            let config = format!(
                "server_name: \"{name}\"\n\
                 listen: \"127.0.0.1:{port}\"\n\
                 jetstream {{\n  store_dir: \"{store}\"\n}}\n\
                 cluster {{\n  name: \"{CLUSTER_NAME}\"\n  listen: \"127.0.0.1:{route_port}\"\n  \
                 routes: [{routes}]\n}}\n",
                store = store.display(),
            );
            std::fs::write(dir.path().join("nats.conf"), config).expect("write nats.conf");
            nodes.push(Node {
                name,
                port,
                dir,
                child: None,
            });
        }
        let mut cluster = NatsCluster { nodes };
        for i in 0..3 {
            cluster.start(i);
        }
        cluster
    }

    /// Every node's client URL, comma-separated: what a client gets as its seeds.
    pub fn urls(&self) -> String {
        (0..self.nodes.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// Node `i`'s server name (`n1`, `n2`, `n3`).
    pub fn name(&self, i: usize) -> &str {
        &self.nodes[i].name
    }

    /// Starts node `i` on its ports and store, and waits until it accepts clients. Does nothing
    /// if it runs.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(child) = node.child.as_mut()
            && child.try_wait().expect("query nats-server").is_none()
        {
            return;
        }
        let child = Command::new(NATS_SERVER_BIN)
            .arg("-c")
            .arg(node.dir.path().join("nats.conf"))
            .arg("-l")
            .arg(node.log_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        node.child = Some(child);
        node.wait_until_accepting();
    }

    /// Kills node `i` with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            child.wait().expect("reap nats-server");
        }
    }

    /// A client connected to the nodes that run.
    async fn client(&self) -> Option<async_nats::Client> {
        let addrs: Vec<async_nats::ServerAddr> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .map(|i| self.url(i).parse().expect("a server address"))
            .collect();
        async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(2)))
            .connect(addrs)
            .await
            .ok()
    }

    /// Waits until the cluster's JetStream answers account requests, which needs a meta leader.
    pub async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            if let Some(client) = self.client().await {
                // A stream lookup answered "not found" comes from the meta leader. (The account
                // info request would do too, but async-nats 0.51 cannot parse 2.9's answer.)
                let js = async_nats::jetstream::new(client);
                if let Err(e) = js.get_stream("NO_SUCH_STREAM").await
                    && let async_nats::jetstream::context::GetStreamErrorKind::JetStream(e) =
                        e.kind()
                    && e.error_code() == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the cluster elected no JetStream meta leader within {ELECTION_TIMEOUT:?}; node 1 log:\n{}",
                self.nodes[0].log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stream's leader and whether its other replicas are current, if the cluster can say.
    pub async fn stream_peers(&self, stream: &str) -> Option<StreamPeers> {
        let client = self.client().await?;
        let js = async_nats::jetstream::new(client);
        let mut handle = js.get_stream(stream).await.ok()?;
        let info = handle.info().await.ok()?.clone();
        let replicas = info.config.num_replicas;
        let cluster = info.cluster?;
        let leader = cluster.leader?;
        let leader = self.nodes.iter().position(|n| n.name == leader)?;
        let all_current = cluster.replicas.len() + 1 == replicas
            && cluster.replicas.iter().all(|p| p.current && !p.offline);
        Some(StreamPeers {
            leader,
            replicas,
            all_current,
        })
    }

    /// Waits until the stream has a leader and every other replica is online and current, and
    /// returns the leader's index.
    pub async fn wait_until_stream_is_whole(&self, stream: &str) -> usize {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            if let Some(peers) = self.stream_peers(stream).await
                && peers.all_current
            {
                return peers.leader;
            }
            assert!(
                Instant::now() < deadline,
                "stream {stream} did not get a leader and current replicas within {ELECTION_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Node {
    fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Polls until the node answers a client's handshake (JetStream's meta leader may still be
    /// in election: see [`NatsCluster::wait_for_jetstream`]).
    fn wait_until_accepting(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("query nats-server"))
            {
                self.child = None;
                panic!(
                    "nats-server {} exited during start-up ({status}). Log:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("INFO") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not accept clients within {START_TIMEOUT:?}. Log:\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// A port that was free a moment ago (see [`super::nats`]).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
