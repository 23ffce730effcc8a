//! Runs one-shot `idstream` commands (migrate, log export/import, backup, restore, replay) as an
//! operator would, with a clean environment apart from what the test passes.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// What a command said and how it ended.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    #[track_caller]
    pub fn assert_success(&self) -> &Ran {
        assert_eq!(self.status, 0, "the command failed: {self:#?}");
        self
    }

    /// Fails unless the command failed and said `why` on standard error.
    #[track_caller]
    pub fn assert_refused(&self, why: &str) {
        assert_ne!(self.status, 0, "the command should have failed: {self:#?}");
        assert!(
            self.stderr.contains(why),
            "{why:?} not in what it said: {self:#?}"
        );
    }
}

/// Runs `idstream <args>` on `data_dir` (and JetStream at `nats_url`, if any) with `env`.
pub async fn idstream(
    args: &[&str],
    data_dir: &Path,
    nats_url: Option<&str>,
    env: &[(&str, &str)],
) -> Ran {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
    command
        .args(args)
        .env("IDSTREAM_DATA_DIR", data_dir)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .env_remove("IDSTREAM_BACKUP_PASSPHRASE")
        .envs(env.iter().copied());
    if let Some(url) = nats_url {
        command.env("IDSTREAM_NATS_URL", url);
    }
    let output = tokio::time::timeout(Duration::from_secs(300), command.output())
        .await
        .expect("the command finishes")
        .expect("run idstream");
    Ran {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The `name digest` lines of `idstream replay` (or `replay --as-of P` with `as_of`).
pub async fn replay_digests(
    data_dir: &Path,
    nats_url: Option<&str>,
    as_of: Option<u64>,
) -> std::collections::BTreeMap<String, String> {
    let position = as_of.map(|p| p.to_string());
    let mut args = vec!["replay"];
    if let Some(position) = &position {
        args.extend(["--as-of", position.as_str()]);
    }
    let ran = idstream(&args, data_dir, nats_url, &[]).await;
    ran.assert_success();
    let digests: std::collections::BTreeMap<String, String> = ran
        .stdout
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
        .collect();
    assert!(!digests.is_empty(), "replay printed no digests: {ran:#?}");
    digests
}

/// Every event of a log as stored, from position 1: the embedded log of `data_dir` (its
/// service stopped) or the JetStream stream at `nats_url`.
pub async fn raw_events(
    data_dir: &Path,
    nats_url: Option<&str>,
) -> Vec<idstream_eventlog::RawEvent> {
    let log: idstream_eventlog::SharedLog = match nats_url {
        Some(url) => std::sync::Arc::new(
            idstream_eventlog::jetstream::JetStreamLog::connect(
                idstream_eventlog::jetstream::JetStreamOptions::new(url),
            )
            .await
            .expect("connect to the stream"),
        ),
        None => idstream_eventlog::embedded::EmbeddedLog::open_read_only(&data_dir.join("log"))
            .await
            .expect("open the embedded log"),
    };
    let mut all = Vec::new();
    loop {
        let after = all
            .last()
            .map_or(0, |e: &idstream_eventlog::RawEvent| e.position);
        let page = log.read_raw_after(after, 4096).await.expect("read the log");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}
