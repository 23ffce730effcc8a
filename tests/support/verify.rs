//! `idstream audit verify`, run as an operator runs it, and what it said.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

/// What `idstream audit verify` said.
#[derive(Debug)]
pub struct Verdict {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `idstream audit verify` with `args` on the data directory `data_dir`, against the
/// JetStream servers `nats_url` if given (else the embedded log), with the extra environment
/// `env`.
pub async fn audit_verify(
    data_dir: &Path,
    nats_url: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Verdict {
    let mut command = Command::new(env!("CARGO_BIN_EXE_idstream"));
    command
        .args(["audit", "verify"])
        .args(args)
        .env("IDSTREAM_DATA_DIR", data_dir)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .envs(env.iter().copied());
    if let Some(url) = nats_url {
        command.env("IDSTREAM_NATS_URL", url);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("audit verify finishes")
        .unwrap();
    Verdict {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
