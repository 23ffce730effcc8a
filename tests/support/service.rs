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
    nats_url: Option<String>,
    client: reqwest::Client,
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

    async fn start(data_dir: &Path, nats_url: Option<String>) -> Service {
        let mut service = Service {
            child: None,
            base: String::new(),
            data_dir: data_dir.to_owned(),
            nats_url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .unwrap(),
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
        let mut child = command.spawn().expect("spawn idstream");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("idstream listening on ") {
                    return url.to_owned();
                }
            }
            panic!("idstream exited before listening")
        })
        .await
        .expect("idstream did not start listening within 60 s");
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
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
