//! Spawns the real `idstream` binary on port 0 with its own data directory and talks to it over
//! HTTP. The service prints `idstream listening on http://ADDR` on stdout once bound.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// A running idstream process.
pub struct Service {
    child: Option<Child>,
    pub base: String,
    pub data_dir: PathBuf,
    pub nats_url: Option<String>,
    client: reqwest::Client,
    /// Where the process's stdout and stderr go, and at which log level, when captured (see
    /// [`Service::embedded_capturing`]); inherited otherwise.
    capture: Option<(PathBuf, String)>,
    /// Extra environment variables (configuration) of the process.
    env: Vec<(String, String)>,
}

/// An HTTP answer: status, headers and the body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The command's consistency token.
    pub fn position(&self) -> u64 {
        self.body["position"]
            .as_u64()
            .unwrap_or_else(|| panic!("no position in {self:?}"))
    }

    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status, "{self:?}");
        assert!(
            self.body["title"].is_string()
                && self.body["detail"].is_string()
                && self.body["type"].is_string(),
            "{self:?}"
        );
    }
}

impl Service {
    /// Starts a service on the embedded log in `data_dir`.
    pub async fn embedded(data_dir: &Path) -> Service {
        Self::start(data_dir, None).await
    }

    /// Starts a service on the JetStream stream at `nats_url`, with its read models in `data_dir`.
    pub async fn jetstream(data_dir: &Path, nats_url: &str) -> Service {
        Self::start(data_dir, Some(nats_url.to_owned())).await
    }

    /// Starts a service on the JetStream stream at `nats_url` with extra `IDSTREAM_…` settings.
    pub async fn jetstream_with_env(
        data_dir: &Path,
        nats_url: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_with(data_dir, Some(nats_url.to_owned()), None, env).await
    }

    /// Starts a service on the embedded log whose stdout and stderr are appended to `output`,
    /// logging at `level` (an `IDSTREAM_LOG` filter), so that a test can read what it logged.
    pub async fn embedded_capturing(data_dir: &Path, output: &Path, level: &str) -> Service {
        Self::start_with(
            data_dir,
            None,
            Some((output.to_owned(), level.to_owned())),
            Vec::new(),
        )
        .await
    }

    /// Starts a service on the embedded log with extra `IDSTREAM_…` settings.
    pub async fn embedded_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Service {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::start_with(data_dir, None, None, env).await
    }

    async fn start(data_dir: &Path, nats_url: Option<String>) -> Service {
        Self::start_with(data_dir, nats_url, None, Vec::new()).await
    }

    async fn start_with(
        data_dir: &Path,
        nats_url: Option<String>,
        capture: Option<(PathBuf, String)>,
        env: Vec<(String, String)>,
    ) -> Service {
        let mut service = Service {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_owned(),
            nats_url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
            capture,
            env,
        };
        service.spawn().await;
        service
    }

    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
        command
            .arg("serve")
            .env("IDSTREAM_LISTEN", "127.0.0.1:0")
            .env("IDSTREAM_DATA_DIR", &self.data_dir)
            .env("IDSTREAM_ADMIN_TOKEN", ADMIN_TOKEN)
            // No chain checkpoint appears by itself in the middle of a test (one every thousand
            // events or minute by default): tests count events and compare positions. The
            // chain tests (tests/chain.rs) set their own policy.
            .env("IDSTREAM_CHAIN_CHECKPOINT_EVENTS", "1000000000")
            .env("IDSTREAM_CHAIN_CHECKPOINT_SECONDS", "86400")
            // IDSTREAM_TEST_LOG=debug shows the service's logs of a failing test.
            .env(
                "IDSTREAM_LOG",
                std::env::var("IDSTREAM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("IDSTREAM_NATS_URL")
            .env_remove("IDSTREAM_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(url) = &self.nats_url {
            command.env("IDSTREAM_NATS_URL", url);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = self.capture.as_ref().map(|(path, level)| {
            command.env("IDSTREAM_LOG", level);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open the captured output file");
            command.stderr(Stdio::from(file.try_clone().expect("clone a file handle")));
            file
        });
        let mut child = command.spawn().expect("spawn idstream");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut output = output;
        let mut keep = move |line: &str| {
            if let Some(file) = output.as_mut() {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
            }
        };
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                keep(&line);
                if let Some(url) = line.strip_prefix("idstream listening on ") {
                    return url.to_owned();
                }
            }
            panic!("idstream exited before listening")
        })
        .await
        .expect("idstream did not start listening within 60 s");
        // Keep draining stdout so the child never blocks on a full pipe (into the captured
        // output, when there is one).
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&line);
            }
        });
        self.base = base;
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("kill idstream");
        }
    }

    /// SIGTERM and wait for a graceful exit.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().expect("running") as i32;
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .expect("graceful stop")
                .unwrap();
            assert!(status.success(), "idstream exited with {status}");
        }
    }

    /// Starts the process again with the same data directory (and a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        self.spawn().await;
    }

    /// Starts it after a kill.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Self::answer(request.send().await.expect("HTTP request")).await
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    /// GET at least as fresh as `position`.
    pub async fn get_at(&self, path: &str, position: u64) -> Answer {
        self.send(
            self.request(reqwest::Method::GET, path)
                .header("x-idstream-min-position", position),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::POST, path).json(&body))
            .await
    }

    pub async fn post_idempotent(&self, path: &str, body: Value, key: &str) -> Answer {
        self.send(
            self.request(reqwest::Method::POST, path)
                .header("idempotency-key", key)
                .json(&body),
        )
        .await
    }

    /// Creates a tenant and returns its position.
    pub async fn create_tenant(&self, id: &str) -> u64 {
        let answer = self
            .post(
                "/v1/tenants",
                serde_json::json!({"id": id, "name": format!("Tenant {id}")}),
            )
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        answer.position()
    }

    /// Creates a user in a tenant and returns (user id, position).
    pub async fn create_user(&self, tenant: &str, email: &str, roles: &[&str]) -> (String, u64) {
        let body = serde_json::json!({"email": email, "first_name": "Ada", "last_name": "Lovelace", "roles": roles});
        let answer = self
            .post(&format!("/v1/tenants/{tenant}/users"), body)
            .await;
        assert_eq!(answer.status, 201, "{answer:?}");
        (
            answer.body["id"].as_str().unwrap().to_owned(),
            answer.position(),
        )
    }

    /// The read models' (position, digest) map from the admin endpoint.
    pub async fn read_models(&self) -> Value {
        let answer = self.get("/v1/admin/read-models").await;
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.body["read_models"].clone()
    }

    /// Runs `idstream replay` against this service's data directory (the service must be
    /// stopped when the log is embedded) and returns its `name digest` lines as a map.
    pub async fn replay(&self) -> std::collections::BTreeMap<String, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
        command
            .arg("replay")
            .env("IDSTREAM_DATA_DIR", &self.data_dir)
            .env("IDSTREAM_LOG", "warn")
            .env_remove("IDSTREAM_NATS_URL");
        if let Some(url) = &self.nats_url {
            command.env("IDSTREAM_NATS_URL", url);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let output = tokio::time::timeout(Duration::from_secs(120), command.output())
            .await
            .expect("replay finishes")
            .unwrap();
        assert!(
            output.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
            .collect()
    }
}

/// Helpers for the access administration tests.
impl Service {
    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::PUT, path).json(&body))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(reqwest::Method::PATCH, path).json(&body))
            .await
    }

    /// The position of the last event in the log (from `/readyz`): proves that a request
    /// appended nothing when it is the same before and after.
    pub async fn log_position(&self) -> u64 {
        let answer = self.get("/readyz").await;
        answer.body["log_position"]
            .as_u64()
            .unwrap_or_else(|| panic!("no log position in {answer:?}"))
    }
}

/// Helpers for the identity tests: bootstrap, sign-in, other bearers, mail and the raw log.
impl Service {
    /// Runs `idstream bootstrap` on `data_dir` (and the JetStream stream at `nats_url`, if any)
    /// before any service runs there: the first tenant and its administrator with `password`
    /// (given on standard input). Returns what it printed.
    pub async fn bootstrap(
        data_dir: &Path,
        nats_url: Option<&str>,
        tenant: &str,
        email: &str,
        password: &str,
    ) -> String {
        Service::bootstrap_with(data_dir, nats_url, tenant, email, password, &[]).await
    }

    /// [`Service::bootstrap`] with more arguments (`--demo`).
    pub async fn bootstrap_with(
        data_dir: &Path,
        nats_url: Option<&str>,
        tenant: &str,
        email: &str,
        password: &str,
        extra: &[&str],
    ) -> String {
        use tokio::io::AsyncWriteExt;
        let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
        command
            .args(["bootstrap", "--tenant", tenant, "--email", email])
            .args(extra)
            .args([
                "--first-name",
                "Ada",
                "--last-name",
                "Admin",
                "--password-stdin",
            ])
            .env("IDSTREAM_LISTEN", "127.0.0.1:0")
            .env("IDSTREAM_DATA_DIR", data_dir)
            .env("IDSTREAM_LOG", "warn")
            .env_remove("IDSTREAM_NATS_URL")
            .env_remove("IDSTREAM_CONFIG")
            .env_remove("IDSTREAM_BOOTSTRAP_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = nats_url {
            command.env("IDSTREAM_NATS_URL", url);
        }
        let mut child = command.spawn().expect("spawn idstream bootstrap");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{password}\n").as_bytes())
            .await
            .unwrap();
        drop(stdin);
        let output = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .expect("bootstrap finishes")
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "bootstrap failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// A request with no credentials.
    pub fn anonymous(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// A request with `bearer` (an access token or API key) instead of the operator token.
    pub fn request_as(
        &self,
        bearer: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.anonymous(method, path).bearer_auth(bearer)
    }

    /// A client whose connections come from `source` (any 127.0.0.0/8 address on Linux): the
    /// service's rate limits count per source address.
    pub fn client_from(source: std::net::IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .local_address(source)
            .build()
            .unwrap()
    }

    /// POSTs `body` without credentials.
    pub async fn post_anonymous(&self, path: &str, body: Value) -> Answer {
        self.send(self.anonymous(reqwest::Method::POST, path).json(&body))
            .await
    }

    /// GET with `bearer`.
    pub async fn get_as(&self, bearer: &str, path: &str) -> Answer {
        self.send(self.request_as(bearer, reqwest::Method::GET, path))
            .await
    }

    /// POST `body` with `bearer`.
    pub async fn post_as(&self, bearer: &str, path: &str, body: Value) -> Answer {
        self.send(
            self.request_as(bearer, reqwest::Method::POST, path)
                .json(&body),
        )
        .await
    }

    /// Signs in with a password and returns the tokens (panics on anything but tokens).
    pub async fn sign_in(&self, email: &str, password: &str) -> Value {
        let answer = self
            .post_anonymous(
                "/v1/auth/sign-in",
                serde_json::json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body["access_token"].is_string(), "{answer:?}");
        answer.body
    }

    /// The messages the file mailer wrote so far, oldest first.
    pub fn mail(&self) -> Vec<idstream_mailer::ParsedEml> {
        mail(&self.data_dir)
    }

    /// Every event in the log, from the first. With the embedded log the service must be stopped
    /// (the log allows one process at a time).
    pub async fn events(&self) -> Vec<idstream_eventlog::RecordedEvent> {
        use idstream_eventlog::EventLog;
        match &self.nats_url {
            Some(url) => {
                let log = idstream_eventlog::jetstream::JetStreamLog::connect(
                    idstream_eventlog::jetstream::JetStreamOptions::new(url.clone()),
                )
                .await
                .expect("connect to the stream");
                log.read_after(0, usize::MAX).await.expect("read the log")
            }
            None => {
                assert!(
                    self.child.is_none(),
                    "stop the service before reading its log"
                );
                let log = idstream_eventlog::embedded::EmbeddedLog::open(
                    &self.data_dir.join("log"),
                    idstream_eventlog::embedded::EmbeddedOptions::default(),
                )
                .await
                .expect("open the embedded log");
                log.read_after(0, usize::MAX).await.expect("read the log")
            }
        }
    }
}

/// The messages the file mailer wrote into `<data_dir>/mail`, oldest first.
pub fn mail(data_dir: &Path) -> Vec<idstream_mailer::ParsedEml> {
    idstream_mailer::FileMailer::messages(&data_dir.join("mail"))
        .expect("list the mail folder")
        .iter()
        .map(|path| idstream_mailer::read_eml(path).expect("read an .eml"))
        .collect()
}
