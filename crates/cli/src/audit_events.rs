//! `idstream audit events`: the audit trail from the command line, with the filters and paging
//! of `GET /v1/audit/events`.
//!
//! It reads the audit read model in `<data dir>/readmodels`, first bringing it up to the end of
//! the log (only the audit read model; the others are left alone). When a running service holds
//! that store, it folds the log into a temporary store instead, which works while the service
//! runs on JetStream; the embedded log itself allows one process at a time, so with it, stop the
//! service first (or use the HTTP API). Like `replay`, it is an operator's tool: whoever can read
//! the data directory and the key store sees every tenant, so there is no permission check.
//!
//! Prints one line per entry (position, time, tenant, type, summary) and the cursors on standard
//! error, or with `--json` the page exactly as the HTTP API answers it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use idstream_audit::text::{PageView, QueryText};
use idstream_audit::{Audit, AuditProjection, NAME};
use idstream_projection_runtime::{Projection, ReadModels, RuntimeError};

#[derive(Args)]
pub(crate) struct EventsArgs {
    #[command(flatten)]
    common: crate::Common,
    /// A tenant's trail (with the global events that concern it), `_` for the events without a
    /// tenant; every tenant when absent.
    #[arg(long)]
    tenant: Option<String>,
    /// `user:<id>`, `api_key:<id>` or `system:<name>`.
    #[arg(long)]
    actor: Option<String>,
    /// The user the events are about.
    #[arg(long)]
    subject: Option<String>,
    /// `user`, `membership`, `session`, `credentials`, `api_key`, …
    #[arg(long)]
    aggregate_type: Option<String>,
    /// Needs --aggregate-type.
    #[arg(long)]
    aggregate_id: Option<String>,
    /// Event types, comma-separated, e.g. SessionStarted,SignInFailed.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// RFC 3339, inclusive.
    #[arg(long)]
    from: Option<String>,
    /// RFC 3339, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// The `next` or `prev` of an earlier page.
    #[arg(long)]
    cursor: Option<String>,
    /// `newest` (default) or `oldest` first.
    #[arg(long)]
    order: Option<String>,
    /// Entries per page, 1 to 500 [default: 50].
    #[arg(long)]
    limit: Option<usize>,
    /// Print the page as JSON, as `GET /v1/audit/events` answers it.
    #[arg(long)]
    json: bool,
}

/// How long the read model may make no progress at all before the command gives up.
const STALL: Duration = Duration::from_secs(60);

pub(crate) async fn run(args: EventsArgs) -> anyhow::Result<()> {
    let params = QueryText {
        tenant: args.tenant,
        actor: args.actor,
        subject: args.subject,
        aggregate_type: args.aggregate_type,
        aggregate_id: args.aggregate_id,
        event_type: args.event_type,
        from: args.from,
        to: args.to,
        cursor: args.cursor,
        order: args.order,
        limit: args.limit,
    };
    let query = params.parse()?;
    let config = args.common.config()?;
    let (log, _) = open_existing_log(&config).await?;
    let projections = || -> Vec<Arc<dyn Projection>> { vec![Arc::new(AuditProjection)] };

    let store = config.data_dir.join("readmodels");
    let (models, scratch) = match ReadModels::start(&store, log.clone(), projections()).await {
        Ok(models) => (models, None),
        Err(RuntimeError::Locked { .. }) => {
            let scratch = std::env::temp_dir().join(format!(
                "idstream-audit-{}-{}",
                std::process::id(),
                ulid::Ulid::new()
            ));
            eprintln!(
                "audit: the read models in {} are in use (is the service running?); folding the log into {}",
                store.display(),
                scratch.display()
            );
            let models = ReadModels::start(&scratch, log.clone(), projections())
                .await
                .context("starting a temporary audit read model")?;
            (models, Some(scratch))
        }
        Err(e) => return Err(e).context("opening the audit read model"),
    };

    let result = async {
        catch_up(&models, NAME, log.last_position().await?).await?;
        let audit = Audit::new(models.tree(NAME));
        let page = tokio::task::spawn_blocking(move || audit.query(&query))
            .await
            .context("the audit query did not finish")??;
        anyhow::Ok(page)
    }
    .await;
    models.shutdown().await;
    if let Some(scratch) = scratch {
        let _ = std::fs::remove_dir_all(scratch);
    }
    let page = PageView::from(result?);

    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    for item in &page.items {
        println!(
            "{:>8}  {}  {:<16} {:<24} {}",
            item.position,
            item.time,
            item.tenant.as_deref().unwrap_or("_"),
            item.event_type,
            item.summary
        );
    }
    if page.items.is_empty() {
        eprintln!("audit: no matching events");
    }
    if page.partial {
        eprintln!("audit: the page stopped early after examining many events; continue with next");
    }
    if let Some(next) = &page.next {
        eprintln!("next page: --cursor {next}");
    }
    if let Some(prev) = &page.prev {
        eprintln!("previous page: --cursor {prev}");
    }
    Ok(())
}

/// The configured log, which must exist already: opening an embedded log would create one
/// where there is none.
pub(crate) async fn open_existing_log(
    config: &crate::config::Config,
) -> anyhow::Result<(
    idstream_eventlog::SharedLog,
    std::sync::Arc<idstream_keys::PersonalKeys>,
)> {
    if config.nats_url.is_none() {
        let dir = config.data_dir.join("log");
        anyhow::ensure!(
            idstream_eventlog::embedded::EmbeddedLog::exists(&dir),
            "there is no embedded log in {}",
            dir.display()
        );
    }
    crate::startup::open_log(config).await
}

/// Waits until the read model `name` has applied `end`, reporting progress; gives up when it
/// stops moving.
pub(crate) async fn catch_up(models: &ReadModels, name: &str, end: u64) -> anyhow::Result<()> {
    let mut progress = (models.position(name), Instant::now());
    loop {
        match models.wait_for(end, Duration::from_secs(1)).await {
            Ok(()) => return Ok(()),
            Err(stale) => {
                let now = models.position(name);
                eprintln!("{name}: catching up, {now}/{end} events");
                if now > progress.0 {
                    progress = (now, Instant::now());
                } else if progress.1.elapsed() > STALL {
                    anyhow::bail!(
                        "the {name} read model stopped at position {} of {end}; see the messages above",
                        stale.current
                    );
                }
            }
        }
    }
}
