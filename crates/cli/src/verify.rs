//! `idstream audit verify`: recomputes the tamper-evidence chain over the whole log and checks
//! every signed checkpoint (`idstream_chain`).
//!
//! Prints `verified N events, M checkpoints, K events after the last checkpoint not yet covered`
//! and exits 0, or prints `NOT VERIFIED: first mismatch at position P: why` and exits 2. Other
//! failures (the log or the key store cannot be reached) exit 1.
//!
//! The trusted keys are the signing key ring's (current and retired public keys) from the key
//! store the service uses, or the Ed25519 keys of a JWK Set given with `--jwks`, so that an
//! auditor can verify without access to the key store. With the embedded log, stop the service
//! first (or verify a copy of its data directory): the log directory is opened exclusively.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use idstream_chain::{TrustedKeys, VerifyError, verify_log};
use idstream_eventlog::LogError;

#[derive(Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    common: crate::Common,
    /// Trust the Ed25519 keys of this JWK Set (for instance a saved copy of the service's
    /// /.well-known/jwks.json) instead of the signing keys in the key store.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// Also fail when more than this many events at the end of the log are not yet covered by a
    /// checkpoint (a log whose newest checkpoints were cut off looks like that).
    #[arg(long)]
    max_uncovered: Option<u64>,
}

/// A verification that ran and found the log not matching its chain (exit status 2).
#[derive(Debug)]
pub(crate) struct NotVerified(String);

impl std::fmt::Display for NotVerified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the log did not verify: {}", self.0)
    }
}

impl std::error::Error for NotVerified {}

pub(crate) async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let config = args.common.config()?;
    if config.nats_url.is_none() {
        // Opening an embedded log creates one where there is none: refuse to "verify" that.
        let dir = config.data_dir.join("log");
        anyhow::ensure!(
            idstream_eventlog::embedded::EmbeddedLog::exists(&dir),
            "there is no embedded log in {}",
            dir.display()
        );
    }
    let trusted = trusted_keys(&config, args.jwks.as_deref()).await?;
    anyhow::ensure!(
        !trusted.is_empty(),
        "no trusted keys to verify signatures with"
    );

    let log = match crate::startup::open_raw_log(&config).await {
        Ok(log) => log,
        Err(e) => {
            // An embedded log whose acknowledged records are damaged refuses to open.
            if let Some(LogError::Corrupt(why)) = e.chain().find_map(|c| c.downcast_ref()) {
                return not_verified(format!("the log is damaged: {why}"));
            }
            return Err(e);
        }
    };
    let started = std::time::Instant::now();
    let mut last_report = started;
    let result = verify_log(log, trusted, |done, end| {
        if last_report.elapsed().as_millis() >= 500 || done == end {
            last_report = std::time::Instant::now();
            let pct = done as f64 * 100.0 / end.max(1) as f64;
            eprintln!("verify: {done}/{end} events ({pct:.1}%)");
        }
    })
    .await;
    eprintln!("verify: done in {:.1}s", started.elapsed().as_secs_f64());
    match result {
        Ok(summary) => {
            println!(
                "verified {} events, {} checkpoints, {} events after the last checkpoint not yet covered",
                summary.events,
                summary.checkpoints,
                summary.uncovered()
            );
            if let Some(max) = args.max_uncovered
                && summary.uncovered() > max
            {
                return not_verified(format!(
                    "{} events after position {} are covered by no checkpoint (at most {max} allowed)",
                    summary.uncovered(),
                    summary.covered_to
                ));
            }
            Ok(())
        }
        Err(VerifyError::Mismatch(mismatch)) => not_verified(format!(
            "first mismatch at position {}: {}",
            mismatch.position, mismatch.reason
        )),
        Err(VerifyError::Log(LogError::Corrupt(why))) => {
            not_verified(format!("the log is damaged: {why}"))
        }
        Err(VerifyError::Log(e)) => Err(e).context("reading the log"),
    }
}

fn not_verified(finding: String) -> anyhow::Result<()> {
    println!("NOT VERIFIED: {finding}");
    Err(NotVerified(finding).into())
}

async fn trusted_keys(
    config: &crate::config::Config,
    jwks: Option<&std::path::Path>,
) -> anyhow::Result<TrustedKeys> {
    if let Some(path) = jwks {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        return TrustedKeys::from_jwks(&value)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let store = crate::startup::key_store(config).await?;
    let document = store
        .get(idstream_keys::keys::SIGNING_DOCUMENT)
        .await
        .context("reading the signing keys from the key store")?
        .context("the key store holds no signing keys; pass the service's JWK Set with --jwks")?;
    let text = std::str::from_utf8(&document).context("the signing key document is not UTF-8")?;
    let ring = idstream_auth::KeyRing::from_json(text)
        .map_err(|e| anyhow::anyhow!("the signing key document cannot be read: {e}"))?;
    Ok(TrustedKeys::from_ring(&ring))
}
