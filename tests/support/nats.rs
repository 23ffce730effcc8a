//! A real nats-server with JetStream for one test: its own free port and its own temporary store.
//!
//! ```text
//! let mut nats = NatsServer::spawn();
//! let log = JetStreamLog::connect(JetStreamOptions::new(nats.url())).await?;
//! nats.kill();    // SIGKILL, like a crash
//! nats.start();   // same port, same store: clients reconnect by themselves
//! ```
//!
//! The process is killed when the `NatsServer` is dropped, so a failing test leaves nothing
//! behind. Tests never touch the shared nats-server on the default port 4222.
//! Process control is synchronous and bounded (a few seconds at most); calling it from an async
//! test briefly blocks that test's runtime thread, which only delays the client's reconnect.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idstream_eventlog::SharedLog;
use idstream_eventlog::conformance::Backend;
use idstream_eventlog::jetstream::{JetStreamLog, JetStreamOptions};

/// Where Debian's package installs the server.
const NATS_SERVER_BIN: &str = "/usr/sbin/nats-server";

/// How long a starting server may take to accept connections (it recovers its store first).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One nats-server process with JetStream enabled, restartable on the same port and store.
pub struct NatsServer {
    port: u16,
    /// Holds `store/` (the JetStream store directory) and `nats.log`; deleted on drop.
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server on a free port with an empty store and waits until it accepts clients.
    ///
    /// Panics if `/usr/sbin/nats-server` is missing or the server does not come up.
    pub fn spawn() -> NatsServer {
        if !Path::new(NATS_SERVER_BIN).exists() {
            panic!(
                "nats-server not found: run `.ci/test`, which installs it (apt-get install -y nats-server)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("idstream-nats-")
            .tempdir()
            .expect("temporary directory for nats-server");
        std::fs::create_dir(dir.path().join("store")).expect("nats-server store directory");
        let mut server = NatsServer {
            port: free_port(),
            dir,
            child: None,
        };
        server.start();
        server
    }

    /// `nats://127.0.0.1:<port>`: stable across restarts.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory, kept across restarts.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The server's log file (appended to across restarts), for diagnosing a failing test.
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats.log")
    }

    /// Whether the process is running (it may have exited on its own).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child
                .try_wait()
                .expect("query nats-server process")
                .is_none(),
            None => false,
        }
    }

    /// Starts the server again on the same port with the same store, and waits until it accepts
    /// clients. Does nothing if it is running.
    pub fn start(&mut self) {
        if self.is_running() {
            return;
        }
        let child = Command::new(NATS_SERVER_BIN)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store_dir())
            .arg("-l")
            .arg(self.log_file())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// Kills the process with SIGKILL, like a crash or power loss of the process (the OS keeps
    /// what it wrote), and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // It may have exited already; then there is nothing to kill.
            let _ = child.kill();
            child.wait().expect("reap nats-server");
        }
    }

    /// Stops the server gracefully (SIGTERM), killing it if it takes longer than a few seconds.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: `pid` is our own child, not yet reaped, so it cannot name another process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child
                .try_wait()
                .expect("query nats-server process")
                .is_some()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().expect("reap nats-server");
    }

    /// Stops the server gracefully and starts it again with the same port and store.
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Polls until the server answers a client's handshake with JetStream enabled.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("query nats-server process"))
            {
                self.child = None;
                panic!(
                    "nats-server exited during start-up ({status}); port {} may be taken. Log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if self.answers_with_jetstream() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "nats-server did not accept clients within {START_TIMEOUT:?}. Log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Connects and reads the server's INFO line, which a NATS server sends first.
    fn answers_with_jetstream(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok()
            && line.starts_with("INFO")
            && line.contains("\"jetstream\":true")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port that was free a moment ago. Another process could take it before nats-server binds
/// it; `start` then fails loudly rather than talking to the wrong server.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Connects a [`JetStreamLog`] with default options to `server`.
pub async fn connect(server: &NatsServer) -> JetStreamLog {
    JetStreamLog::connect(JetStreamOptions::new(server.url()))
        .await
        .expect("connect to the test nats-server")
}

/// The conformance suite's view of JetStream: a private nats-server; `restart` restarts that
/// process on the same store and connects anew.
pub struct JetStreamBackend {
    server: NatsServer,
}

impl JetStreamBackend {
    pub fn new() -> JetStreamBackend {
        JetStreamBackend {
            server: NatsServer::spawn(),
        }
    }
}

impl Default for JetStreamBackend {
    fn default() -> Self {
        JetStreamBackend::new()
    }
}

// Written out by hand rather than with `#[async_trait]`, which is not a dependency of this
// package: this is exactly what that macro would expand to.
impl Backend for JetStreamBackend {
    fn open<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = SharedLog> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move { Arc::new(connect(&self.server).await) as SharedLog })
    }

    fn restart<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = SharedLog> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.server.restart();
            Arc::new(connect(&self.server).await) as SharedLog
        })
    }
}
