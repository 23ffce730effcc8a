//! The `idstream-hr-sync` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::api::Api;
use crate::feed::{self, Format};
use crate::plan::DEFAULT_MARKER;
use crate::sync::{self, Options, Report};

#[derive(Parser)]
#[command(
    name = "idstream-hr-sync",
    version,
    about = "Bring an idstream tenant in line with an HR feed: invite joiners, update names, \
             deactivate leavers. The credential (an API key or access token of a tenant \
             administrator) is read from the IDSTREAM_TOKEN environment variable."
)]
struct Cli {
    /// The service's base URL (plain HTTP: run the sync beside the service).
    #[arg(long, env = "IDSTREAM_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The tenant to synchronise.
    #[arg(long)]
    tenant: String,
    /// The HR feed: a CSV or JSON file of employees.
    #[arg(long)]
    feed: PathBuf,
    /// The feed's format [default: from the file name's extension].
    #[arg(long, value_enum)]
    format: Option<FeedFormat>,
    /// The role that marks the people the sync manages (a custom role without permissions,
    /// defined on the first run).
    #[arg(long, default_value = DEFAULT_MARKER)]
    marker_role: String,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept a feed that lists nobody (every managed member would leave).
    #[arg(long)]
    allow_empty: bool,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum FeedFormat {
    Csv,
    Json,
}

/// Exit codes: 0 when everything needed was done, 1 when some change was refused, 2 when the
/// sync could not run (bad arguments or feed, service unreachable or refusing to be read).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(report) if report.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(message) => {
            eprintln!("idstream-hr-sync: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<Report, String> {
    let token = std::env::var("IDSTREAM_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or("set IDSTREAM_TOKEN to an API key or access token of a tenant administrator")?;
    if !cli.url.starts_with("http://") {
        return Err(format!(
            "{} is not an http:// URL; this tool speaks plain HTTP only (run it beside the service)",
            cli.url
        ));
    }
    let format = cli.format.map(|f| match f {
        FeedFormat::Csv => Format::Csv,
        FeedFormat::Json => Format::Json,
    });
    let employees = feed::read(&cli.feed, format).map_err(|e| e.to_string())?;
    let options = Options {
        tenant: cli.tenant,
        marker: cli.marker_role,
        dry_run: cli.dry_run,
        allow_empty: cli.allow_empty,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut api = Api::new(&cli.url, token.trim());
    let report = runtime
        .block_on(sync::run(&mut api, &employees, &options))
        .map_err(|e| e.to_string())?;
    let text = if cli.json {
        serde_json::to_string(&report).expect("reports serialise")
    } else {
        text_report(&report)
    };
    // A closed standard output (`| head`) is not a reason to fail a run that made its changes.
    let _ = writeln!(std::io::stdout(), "{text}");
    Ok(report)
}

fn text_report(report: &Report) -> String {
    let verb = if report.dry_run { "would make" } else { "made" };
    let mut lines: Vec<String> = report.actions.clone();
    for failure in &report.failures {
        lines.push(format!(
            "FAILED {} {}: {} {} ({})",
            failure.action, failure.email, failure.status, failure.code, failure.detail
        ));
    }
    for note in &report.notes {
        lines.push(format!("note: {note}"));
    }
    lines.push(format!(
        "tenant {}: {} employees, {} members; {verb} {} changes (invited {}, invitations sent {}, \
         adopted {}, renamed {}, invitations revoked {}, deactivated {}, removed {}, roles \
         defined {}); {} failed",
        report.tenant,
        report.employees,
        report.members,
        report.changes,
        report.invited,
        report.invitations_sent,
        report.adopted,
        report.renamed,
        report.invitations_revoked,
        report.deactivated,
        report.removed,
        report.defined_roles,
        report.failed
    ));
    lines.join("\n")
}
