//! The `idstream` command line: `serve` runs the service, `replay` rebuilds the read models
//! from the log and prints their digests.
//!
//! Configuration is layered: defaults, then the TOML file given by `--config`/`IDSTREAM_CONFIG`,
//! then environment variables and flags. Secrets (the admin token) are never printed or logged.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, FileConfig};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

mod audit_events;
mod backup;
pub mod config;
mod copy;
mod demo;
mod logfile;
mod migrate;
mod past;
pub mod startup;
mod users;
mod verify;

#[derive(Parser)]
#[command(
    name = "idstream",
    version,
    about = "Event-sourced identity and access service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (embedded log in ./data unless a NATS URL is configured).
    Serve(Common),
    /// Drop the read models and rebuild them from position 0, then print their digests.
    /// Stop the service that uses this data directory first. With --as-of, rebuild them as
    /// they were at a past moment into a store of their own (--out) instead, never touching the
    /// live ones.
    Replay(ReplayArgs),
    /// Create the first tenant and its administrator, then print how to sign in. With the
    /// embedded log, stop the service that uses this data directory first.
    Bootstrap(BootstrapArgs),
    /// Audit the log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The user directory.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The service's keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Copy the embedded log of the data directory and its key store into a new JetStream
    /// stream and key bucket (--to): same events, positions, chain and checkpoints. Stop the
    /// service first. Refuses a stream that holds anything but an interrupted copy of this log,
    /// which it continues.
    Migrate(Box<migrate::MigrateArgs>),
    /// The stored events of the log as a file, and back.
    #[command(subcommand)]
    Log(LogCommand),
    /// Write a consistent copy of the log and of the key store (sealed with a pass phrase from
    /// IDSTREAM_BACKUP_PASSPHRASE or --passphrase-file) into a new directory. Works while the
    /// service runs.
    Backup(Box<backup::BackupArgs>),
    /// Rebuild the log and the key store of an empty data directory or JetStream stream from a
    /// backup, and verify the chain before reporting success.
    Restore(Box<backup::RestoreArgs>),
}

#[derive(Subcommand)]
enum LogCommand {
    /// Write every stored event of the log to a file (docs/log-file.md), for a local copy or an
    /// offline audit. Works while the service runs. Keys are not in it: personal data stays
    /// encrypted.
    Export(Box<migrate::ExportArgs>),
    /// Store the events of an exported file into an empty embedded log (the data directory; stop
    /// its service first) or an empty JetStream stream, at the same positions.
    Import(Box<migrate::ImportArgs>),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Stage the next access-token signing key: published in the JWK Set at once, signing from
    /// signing_key_lead_seconds later (an hour by default) on every replica; the current key
    /// keeps verifying until its last token has expired. Works while the service runs.
    Rotate(Common),
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Search and list a tenant's members (--tenant), or every user: by text, role, status,
    /// times and verification, sorted by any column, a page at a time, as a table or --json.
    /// Reads the directory read model of the data directory (caught up with the log first), or
    /// a temporary one while a service holds it.
    List(Box<users::ListArgs>),
    /// Import users from a CSV file into a tenant (columns email, first_name, last_name, roles
    /// separated by `;`), as `POST /v1/tenants/{tenant}/users/import` does, acting as the
    /// operator: --dry-run prints the plan and changes nothing. With the embedded log, stop the
    /// service first (or use the HTTP API).
    Import(Box<users::ImportArgs>),
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    moment: past::AsOfArgs,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The access review of a tenant (who holds which roles, custom permissions, record grants,
    /// local roles and records, with the events that gave them), now or --as-of a past moment,
    /// as CSV or JSON on standard output.
    Export(past::ExportArgs),
    /// Who could use an entity permission on one record at a past moment (--as-of), and why:
    /// the deciding role, grant, ownership, local role or global access and its event.
    WhoCould(past::WhoCouldArgs),
    /// Recompute the tamper-evidence hash chain over the whole log, check every signed
    /// checkpoint, and name the first position that does not match (exit status 2). With the
    /// embedded log, stop the service first or verify a copy of its data directory.
    Verify(verify::VerifyArgs),
    /// The audit trail: events filtered by tenant, actor, subject user, aggregate, type and time,
    /// a page at a time. Reads the audit read model of the data directory (caught up with the log
    /// first), or a temporary one while a service holds it.
    Events(audit_events::EventsArgs),
}

#[derive(Args)]
struct BootstrapArgs {
    #[command(flatten)]
    common: Common,
    /// The tenant's id (lower-case letters, digits and dashes).
    #[arg(long)]
    tenant: String,
    /// The tenant's display name [default: the id].
    #[arg(long)]
    tenant_name: Option<String>,
    /// The administrator's email address.
    #[arg(long)]
    email: String,
    #[arg(long, default_value = "")]
    first_name: String,
    #[arg(long, default_value = "")]
    last_name: String,
    /// Read the administrator's password from the first line of standard input instead of the
    /// environment variable IDSTREAM_BOOTSTRAP_PASSWORD.
    #[arg(long)]
    password_stdin: bool,
    /// Also create demo data in the tenant: an administrator, an editor (a custom role) and a
    /// user, with generated passwords printed once, and a `project` entity with row-level
    /// security, three records, a grant and a local role.
    #[arg(long)]
    demo: bool,
}

#[derive(Args)]
struct Common {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "IDSTREAM_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Data directory: embedded log, read models, keys, mail [default: ./data].
    #[arg(long, env = "IDSTREAM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// NATS URL; when set, the event log is the JetStream stream there.
    #[arg(long, env = "IDSTREAM_NATS_URL")]
    nats_url: Option<String>,
    /// JetStream stream name [default: IDSTREAM].
    #[arg(long, env = "IDSTREAM_STREAM")]
    stream: Option<String>,
    /// JetStream stream replicas when creating the stream [default: 1; 3 in production].
    #[arg(long, env = "IDSTREAM_STREAM_REPLICAS")]
    stream_replicas: Option<usize>,
    /// TOML configuration file.
    #[arg(long, env = "IDSTREAM_CONFIG")]
    config: Option<PathBuf>,
    /// Operator token for automation (at least 16 characters); none unless set. Prefer the
    /// environment variable.
    #[arg(long, env = "IDSTREAM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// How long a query waits for its minimum position, in milliseconds [default: 2000].
    #[arg(long, env = "IDSTREAM_CONSISTENCY_TIMEOUT_MS")]
    consistency_timeout_ms: Option<u64>,
    /// The service's public base URL: token issuer and base of links in emails
    /// [default: http://<listen>].
    #[arg(long, env = "IDSTREAM_PUBLIC_URL")]
    public_url: Option<String>,
    /// Tamper evidence: write a signed chain checkpoint once this many events follow the last
    /// one [default: 1000].
    #[arg(long, env = "IDSTREAM_CHAIN_CHECKPOINT_EVENTS")]
    chain_checkpoint_events: Option<u64>,
    /// …or once this many seconds have passed since it, if anything was appended [default: 60].
    #[arg(long, env = "IDSTREAM_CHAIN_CHECKPOINT_SECONDS")]
    chain_checkpoint_seconds: Option<u64>,
    /// Proxies whose X-Forwarded-For names the client: addresses or CIDR blocks, comma-separated
    /// [default: none, the socket peer is the client].
    #[arg(long, env = "IDSTREAM_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<idstream_server::client::IpNet>>,
    /// Origins whose pages may call the API from a browser (CORS), comma-separated, such as
    /// https://app.example.com [default: none, no CORS headers].
    #[arg(long, env = "IDSTREAM_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<idstream_server::cors::Origin>>,
}

impl Common {
    fn config(self) -> anyhow::Result<Config> {
        let mut config = Config::default();
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            config = FileConfig::parse(&text)
                .with_context(|| format!("parsing {}", path.display()))?
                .apply(config);
        }
        let flags = FileConfig {
            listen: self.listen,
            data_dir: self.data_dir,
            nats_url: self.nats_url,
            stream: self.stream,
            stream_replicas: self.stream_replicas,
            admin_token: self.admin_token,
            consistency_timeout_ms: self.consistency_timeout_ms,
            max_body_bytes: None,
            public_url: self.public_url,
            access_token_ttl_seconds: None,
            authorization_code_ttl_seconds: None,
            signing_key_rotation_days: None,
            signing_key_lead_seconds: None,
            hash_concurrency: None,
            mail: None,
            chain_checkpoint_events: self.chain_checkpoint_events,
            chain_checkpoint_seconds: self.chain_checkpoint_seconds,
            trusted_proxies: self.trusted_proxies,
            cors_origins: self.cors_origins,
        };
        Ok(flags.apply(config))
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("IDSTREAM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(common) => {
                crate::startup::serve(common.config()?, shutdown_signal()).await
            }
            Command::Replay(args) if args.moment.as_of.is_some() || args.moment.out.is_some() => {
                past::replay_as_of(args.common, args.moment).await
            }
            Command::Replay(args) => replay(args.common.config()?).await,
            Command::Audit(AuditCommand::Export(args)) => past::export(args).await,
            Command::Audit(AuditCommand::WhoCould(args)) => past::who_could(args).await,
            Command::Bootstrap(args) => bootstrap(args).await,
            Command::Audit(AuditCommand::Verify(args)) => verify::run(args).await,
            Command::Audit(AuditCommand::Events(args)) => audit_events::run(args).await,
            Command::Users(UsersCommand::List(args)) => users::list(*args).await,
            Command::Users(UsersCommand::Import(args)) => users::import(*args).await,
            Command::Keys(KeysCommand::Rotate(common)) => rotate_keys(common.config()?).await,
            Command::Migrate(args) => migrate::migrate(*args).await,
            Command::Log(LogCommand::Export(args)) => migrate::export(*args).await,
            Command::Log(LogCommand::Import(args)) => migrate::import(*args).await,
            Command::Backup(args) => backup::backup(*args).await,
            Command::Restore(args) => backup::restore(*args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A verification that found tampering has printed its finding: a status of its own.
        Err(e) if e.is::<verify::NotVerified>() => ExitCode::from(2),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `idstream keys rotate`: stages the next signing key in the key store the service uses.
async fn rotate_keys(config: Config) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let lead = time::Duration::try_from(config.signing_key_lead)
        .context("signing_key_lead_seconds is out of range")?;
    let keys = crate::startup::load_keys(&config).await?;
    let staged = keys
        .stage_signing(now, now + lead)
        .await
        .context("staging the next signing key")?;
    let when = staged
        .signs_from
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting a time")?;
    let current = keys.signing().current().kid().to_owned();
    if staged.new {
        println!(
            "next signing key {} published; it signs from {when}, replacing {current}",
            staged.kid
        );
    } else {
        println!(
            "next signing key {} was already published; it signs from {when}, replacing {current}",
            staged.kid
        );
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM. The SIGTERM handler is installed by this call, before the
/// service starts (not when the future is first polled, which the HTTP server does from a task of
/// its own once it runs): a SIGTERM that comes while the service starts, or just after, asks it
/// to stop gracefully instead of killing it.
fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    async move {
        let terminate = async {
            match terminate {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate => {},
        }
        tracing::info!("shutdown requested");
    }
}

async fn bootstrap(args: BootstrapArgs) -> anyhow::Result<()> {
    let password = if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        std::env::var("IDSTREAM_BOOTSTRAP_PASSWORD").context(
            "set IDSTREAM_BOOTSTRAP_PASSWORD or pass --password-stdin with the administrator's password",
        )?
    };
    let config = args.common.config()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let tenant: idstream_domain::TenantId = args
        .tenant
        .parse()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let (log, keys) = crate::startup::open_log(&config).await?;
    let (app, read_models, _) = crate::startup::open_app(&config, log, keys).await?;
    let bootstrapped = app
        .identity
        .bootstrap(
            &idstream_app::Caller::system("bootstrap"),
            idstream_app::identity::Bootstrap {
                tenant_name: args.tenant_name.unwrap_or_else(|| tenant.to_string()),
                tenant: tenant.clone(),
                email: args.email.clone(),
                first_name: args.first_name,
                last_name: args.last_name,
                password,
            },
        )
        .await;
    let result = match bootstrapped {
        Ok((user, position)) if args.demo => {
            let domain = args
                .email
                .rsplit_once('@')
                .map_or("example.com", |(_, d)| d);
            demo::fill(&app, &tenant, user, domain)
                .await
                .map(|accounts| ((user, position), accounts))
        }
        Ok(done) => Ok((done, Vec::new())),
        Err(e) => Err(anyhow::anyhow!("bootstrap refused: {e}")),
    };
    read_models.shutdown().await;
    let ((user, _), demo_accounts) = result?;
    let url = config.public_url();
    println!(
        "Bootstrapped tenant {tenant} with administrator {} (user {user}).",
        args.email
    );
    println!("Start the service (idstream serve), then sign in:");
    println!(
        "  curl -s -X POST {url}/v1/auth/sign-in -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{}\",\"password\":\"<your password>\"}}'",
        args.email
    );
    if !demo_accounts.is_empty() {
        println!();
        println!("Demo accounts (passwords shown this once):");
        for account in &demo_accounts {
            println!(
                "  {:<28} {:<40} {}  (user {})",
                account.email,
                account.password,
                account.roles.join(","),
                account.id
            );
        }
        println!(
            "and a `project` entity with row-level security: records apollo (owned by you, read-only for {}), gemini (owned by {}) and mercury (owned by {}, where {} holds the local role editor).",
            demo_accounts[2].email,
            demo_accounts[1].email,
            demo_accounts[2].email,
            demo_accounts[1].email
        );
    }
    Ok(())
}

async fn replay(config: Config) -> anyhow::Result<()> {
    let (log, keys) = crate::startup::open_log(&config).await?;
    let seal = crate::startup::read_model_seal(&config, keys).await?;
    let dir = config.data_dir.join("readmodels");
    let started = std::time::Instant::now();
    let mut last_report = std::time::Instant::now();
    let digests = idstream_projection_runtime::rebuild_offline(
        &dir,
        log,
        idstream_app::offline_projections(seal),
        |done, target| {
            if last_report.elapsed().as_millis() >= 500 || done == target {
                last_report = std::time::Instant::now();
                let pct = if target == 0 {
                    100.0
                } else {
                    done as f64 * 100.0 / target as f64
                };
                eprintln!("replay: {done}/{target} events ({pct:.1}%)");
            }
        },
    )
    .await
    .context("rebuilding the read models")?;
    eprintln!("replay: done in {:.1}s", started.elapsed().as_secs_f64());
    for (name, digest) in digests {
        println!("{name} {digest}");
    }
    Ok(())
}
