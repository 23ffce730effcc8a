//! The past from the command line: `replay --as-of`, `audit export` and `audit who-could`.
//!
//! Each builds the read models up to the moment into a store of its own (`--out`, or a
//! temporary directory), reading the log as the service does (personal data decrypted where its
//! key still exists), so it works while the service runs on JetStream, and on a stopped
//! service's (or a copied) embedded data directory.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use idstream_app::replay::{AsOf, Replays, holders, review_csv, review_members_json, review_of};
use idstream_domain::TenantId;
use idstream_domain::access::{Permission, RecordId};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::Common;

/// `--as-of`: a log position or an RFC 3339 time.
fn parse_as_of(text: &str) -> anyhow::Result<AsOf> {
    if let Ok(position) = text.parse::<u64>() {
        return Ok(AsOf::Position(position));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(AsOf::Time)
        .map_err(|_| anyhow::anyhow!("--as-of takes a log position or an RFC 3339 time (2026-03-01T12:00:00Z), not {text:?}"))
}

/// A progress bar on standard error (plain lines when it is not a terminal).
struct Progress {
    label: &'static str,
    started: Instant,
    last: Instant,
    terminal: bool,
}

impl Progress {
    fn new(label: &'static str) -> Progress {
        Progress {
            label,
            started: Instant::now(),
            last: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn report(&mut self, done: u64, target: u64) {
        let finished = done == target;
        let every = if self.terminal { 200 } else { 2000 };
        if !finished && self.last.elapsed().as_millis() < every {
            return;
        }
        self.last = Instant::now();
        let share = if target == 0 {
            1.0
        } else {
            done as f64 / target as f64
        };
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let filled = (share * 30.0).round() as usize;
        let bar = format!(
            "[{}{}]",
            "#".repeat(filled),
            ".".repeat(30 - filled.min(30))
        );
        let line = format!(
            "{}: {bar} {done}/{target} events ({:.1}%, {rate:.0}/s)",
            self.label,
            share * 100.0
        );
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(err, "\r{line}");
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

#[derive(Args)]
pub struct AsOfArgs {
    /// The moment: a log position, or an RFC 3339 time (the last event at or before it).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Where to build the replayed read models [default: a temporary directory, removed after].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The replay for `--as-of` (the whole log without it), the moment its checks are decided at
/// (now without `--as-of`), and the temporary directory it lives in, if any.
async fn replay(
    common: Common,
    args: &AsOfArgs,
) -> anyhow::Result<(
    std::sync::Arc<idstream_app::replay::Replay>,
    time::OffsetDateTime,
    Option<tempfile::TempDir>,
)> {
    let config = common.config()?;
    let as_of = match &args.as_of {
        Some(text) => parse_as_of(text)?,
        None => AsOf::Position(u64::MAX),
    };
    let (log, keys) = crate::startup::open_log(&config).await?;
    let seal = crate::startup::read_model_seal(&config, keys).await?;
    let (dir, temporary) = match &args.out {
        Some(dir) => (dir.clone(), None),
        None => {
            let temporary = tempfile::tempdir().context("creating a temporary directory")?;
            (temporary.path().to_owned(), Some(temporary))
        }
    };
    let replays = Replays::new(dir, log, seal);
    let mut progress = Progress::new("replay");
    let replay = replays
        .at(as_of, u64::MAX, |done, target| {
            progress.report(done, target)
        })
        .await
        .map_err(|e| anyhow::anyhow!("replaying the log: {e}"))?;
    let at = match &args.as_of {
        Some(_) => replay.moment(as_of),
        None => time::OffsetDateTime::now_utc(),
    };
    Ok((replay, at, temporary))
}

/// The moment a replayed answer shows, as the HTTP endpoints give it.
fn as_of_json(info: &idstream_app::replay::ReplayInfo) -> serde_json::Value {
    serde_json::json!({
        "position": info.position,
        "time": info.time.and_then(|t| t.format(&Rfc3339).ok()),
        "decided_at": info.decided_at.and_then(|t| t.format(&Rfc3339).ok()),
        "digests": info.digests,
    })
}

fn describe(info: &idstream_app::replay::ReplayInfo) -> String {
    let time = info
        .time
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "(empty log)".into());
    format!("as of position {} ({time})", info.position)
}

/// `idstream replay --as-of …`: the read models at a past moment, into `--out`; prints digests.
pub async fn replay_as_of(common: Common, args: AsOfArgs) -> anyhow::Result<()> {
    let (replay, _, temporary) = replay(common, &args).await?;
    eprintln!("replayed {}", describe(&replay.info));
    for (name, digest) in &replay.info.digests {
        println!("{name} {digest}");
    }
    if let Some(out) = &args.out {
        eprintln!("the replayed read models are in {}", out.display());
    }
    drop(replay);
    drop(temporary);
    Ok(())
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub moment: AsOfArgs,
    /// The tenant to review.
    #[arg(long)]
    pub tenant: String,
    /// `csv` or `json`.
    #[arg(long, default_value = "csv")]
    pub format: String,
}

/// `idstream audit export`: the access review of a tenant (now, or `--as-of`), on stdout.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let tenant: TenantId = args
        .tenant
        .parse()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    anyhow::ensure!(
        matches!(args.format.as_str(), "csv" | "json"),
        "--format is csv or json"
    );
    let (replay, at, temporary) = replay(args.common, &args.moment).await?;
    eprintln!("access review of {tenant} {}", describe(&replay.info));
    let review = review_of(&replay, at, &tenant).map_err(|e| anyhow::anyhow!("{e}"))?;
    if args.format == "csv" {
        print!("{}", review_csv(&review));
    } else {
        let members = review_members_json(&review);
        let body = serde_json::json!({
            "as_of": as_of_json(&replay.info_at(at)),
            "tenant": tenant,
            "members": members,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    drop(replay);
    drop(temporary);
    Ok(())
}

#[derive(Args)]
pub struct WhoCouldArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub moment: AsOfArgs,
    #[arg(long)]
    pub tenant: String,
    /// An entity permission, e.g. entity.invoice:read.
    #[arg(long)]
    pub permission: String,
    /// The record's id.
    #[arg(long)]
    pub record: String,
}

/// `idstream audit who-could`: who could use a permission on a record at a moment, and why.
pub async fn who_could(args: WhoCouldArgs) -> anyhow::Result<()> {
    let tenant: TenantId = args
        .tenant
        .parse()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let permission: Permission = args
        .permission
        .parse()
        .map_err(|e| anyhow::anyhow!("--permission: {e}"))?;
    anyhow::ensure!(
        permission.entity_name().is_some(),
        "--permission must be an entity permission, e.g. entity.invoice:read"
    );
    let record: RecordId = args
        .record
        .parse()
        .map_err(|e| anyhow::anyhow!("--record: {e}"))?;
    let (replay, at, temporary) = replay(args.common, &args.moment).await?;
    let found =
        holders(&replay, at, &tenant, &permission, &record).map_err(|e| anyhow::anyhow!("{e}"))?;
    let body = serde_json::json!({
        "as_of": as_of_json(&replay.info_at(at)),
        "tenant": tenant,
        "permission": permission.to_string(),
        "record": record.to_string(),
        "holders": found,
    });
    println!("{}", serde_json::to_string_pretty(&body)?);
    drop(replay);
    drop(temporary);
    Ok(())
}
