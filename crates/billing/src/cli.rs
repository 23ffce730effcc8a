//! The `idstream-billing` command line.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::consumer::{self, Options, Shared};
use crate::state;

#[derive(Parser)]
#[command(
    name = "idstream-billing",
    version,
    about = "Seats per tenant (active members), from idstream's JetStream event stream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Follow the stream through billing's durable consumer, keep the state file up to date and
    /// serve the counts over HTTP. Stops on SIGINT or SIGTERM.
    Run {
        /// NATS server URL(s), comma separated.
        #[arg(
            long,
            env = "IDSTREAM_NATS_URL",
            default_value = "nats://127.0.0.1:4222"
        )]
        nats_url: String,
        /// The JetStream stream of the events.
        #[arg(long, env = "IDSTREAM_STREAM", default_value = "IDSTREAM")]
        stream: String,
        /// The durable consumer's name (one per billing deployment).
        #[arg(
            long,
            env = "IDSTREAM_BILLING_CONSUMER",
            default_value = "idstream-billing"
        )]
        consumer: String,
        /// The state file (seats and the last applied position).
        #[arg(
            long,
            env = "IDSTREAM_BILLING_STATE",
            default_value = "./billing-state.json"
        )]
        state: PathBuf,
        /// Where the HTTP endpoint listens (port 0: any free port; the address is printed).
        #[arg(
            long,
            env = "IDSTREAM_BILLING_LISTEN",
            default_value = "127.0.0.1:8090"
        )]
        listen: SocketAddr,
    },
    /// Print the seats per tenant from a state file, as of now, as JSON.
    Show {
        #[arg(
            long,
            env = "IDSTREAM_BILLING_STATE",
            default_value = "./billing-state.json"
        )]
        state: PathBuf,
    },
}

/// Runs the command line; the exit code is 0 on success and 1 on any error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("IDSTREAM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Run {
            nats_url,
            stream,
            consumer,
            state,
            listen,
        } => tokio::runtime::Runtime::new()
            .context("starting the async runtime")
            .and_then(|runtime| {
                runtime.block_on(run(
                    Options {
                        nats_url,
                        stream,
                        consumer,
                        state_path: state,
                    },
                    listen,
                ))
            }),
        Command::Show { state } => show(&state),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("idstream-billing: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(options: Options, listen: SocketAddr) -> anyhow::Result<()> {
    let shared = Arc::new(std::sync::RwLock::new(Shared::default()));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    println!("idstream-billing listening on http://{addr}");
    let _ = std::io::stdout().flush();
    let (stop_tx, stop) = watch::channel(false);
    let mut http_stop = stop.clone();
    let server = tokio::spawn(
        axum::serve(listener, crate::http::router(shared.clone()))
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            })
            .into_future(),
    );
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let outcome = consumer::run(&options, shared, stop.clone()).await;
    // Whatever ended the consumer ends the endpoint too.
    if outcome.is_err() {
        server.abort();
    } else {
        let _ = server.await;
    }
    outcome.context("billing stopped")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn show(path: &std::path::Path) -> anyhow::Result<()> {
    let state =
        state::load(path)?.with_context(|| format!("no state file at {}", path.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let body = serde_json::json!({
        "position": state.position,
        "stream": state.stream,
        "consumer": state.consumer,
        "tenants": state.seats.counts(now),
    });
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(&body)?
    )
    .context("writing to standard output")?;
    Ok(())
}
