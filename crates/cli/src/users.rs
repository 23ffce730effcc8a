//! `idstream users list`: the user directory from the command line, with the search, filters,
//! sorts and paging of `GET /v1/tenants/{tenant}/users` (and, without `--tenant`, of the platform
//! directory `GET /v1/users`).
//!
//! Like `idstream audit events`, it reads the directory read model in `<data dir>/readmodels`,
//! first bringing it up to the end of the log (only the directory; the others are left alone),
//! or folds the log into a temporary store when a running service holds that one (which works
//! while the service runs on JetStream; the embedded log allows one process at a time, so with
//! it, stop the service first or use the HTTP API). It is an operator's tool: whoever can read
//! the data directory and the key store sees every tenant, so there is no permission check.
//!
//! Prints a table (email, name, status, roles or tenants, last sign-in, id) and the cursor of the
//! next page on standard error, or with `--json` the page exactly as the HTTP API answers it.

use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use idstream_directory::search::{PeopleIndex, Scope};
use idstream_directory::{Directory, DirectoryProjection, NAME};
use idstream_domain::TenantId;
use idstream_projection_runtime::{Projection, ReadModels, RuntimeError};
use idstream_server::routes::Limit;
use idstream_server::routes::people::{DirectoryPage, SearchQuery, directory_page};

#[derive(Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    common: crate::Common,
    /// The tenant whose members to list; every user of every tenant when absent.
    #[arg(long)]
    tenant: Option<String>,
    /// Text anywhere in the email or names (case-, accent- and width-insensitive), or a user id.
    #[arg(long)]
    q: Option<String>,
    /// Roles, comma-separated: members holding any of them (needs --tenant).
    #[arg(long)]
    role: Option<String>,
    /// Statuses, comma-separated: invited, active, suspended, inactive, erased.
    #[arg(long)]
    status: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    created_from: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    created_to: Option<String>,
    /// Last signed in at or after (RFC 3339).
    #[arg(long)]
    last_sign_in_from: Option<String>,
    /// Last signed in before (RFC 3339).
    #[arg(long)]
    last_sign_in_to: Option<String>,
    /// Only users whose email address is (true) or is not (false) verified.
    #[arg(long)]
    verified: Option<bool>,
    /// `<column>[:asc|:desc]`: email (default), first_name, last_name, created_at,
    /// last_sign_in, status.
    #[arg(long)]
    sort: Option<String>,
    /// The `next` of an earlier page (of the same sort).
    #[arg(long)]
    cursor: Option<String>,
    /// `<name>:<value>`: holds this value of a searchable attribute of the tenant (repeat for
    /// several, all of which must hold; needs --tenant).
    #[arg(long)]
    attribute: Vec<String>,
    /// Rows per page, 1 to 500 [default: 50].
    #[arg(long)]
    limit: Option<usize>,
    /// Print the page as JSON, as the HTTP API answers it.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn list(args: ListArgs) -> anyhow::Result<()> {
    let limit = args
        .limit
        .map(|n| Limit::try_from(n.to_string()).map_err(anyhow::Error::msg))
        .transpose()
        .context("--limit")?;
    let tenant: Option<TenantId> = args
        .tenant
        .as_deref()
        .map(|t| t.parse().map_err(|e| anyhow::anyhow!("--tenant: {e}")))
        .transpose()?;
    anyhow::ensure!(
        tenant.is_some() || args.role.is_none(),
        "--role filters a tenant's members: give --tenant too"
    );
    let query = SearchQuery {
        q: args.q,
        role: args.role,
        status: args.status,
        created_from: args.created_from,
        created_to: args.created_to,
        last_sign_in_from: args.last_sign_in_from,
        last_sign_in_to: args.last_sign_in_to,
        verified: args.verified,
        attribute: (!args.attribute.is_empty()).then(|| {
            args.attribute
                .join(&idstream_server::routes::people::ATTRIBUTE_SEPARATOR.to_string())
        }),
        sort: args.sort,
        cursor: args.cursor,
        limit,
        min_position: None,
    }
    .to_query()
    .map_err(|e| anyhow::anyhow!(e.problem().detail))?;

    let config = args.common.config()?;
    let (log, keys) = crate::audit_events::open_existing_log(&config).await?;
    let seal = crate::startup::read_model_seal(&config, keys).await?;
    let people = Arc::new(PeopleIndex::new());
    let projections = {
        let people = people.clone();
        let seal = seal.clone();
        move || -> Vec<Arc<dyn Projection>> {
            vec![Arc::new(DirectoryProjection::new(
                people.clone(),
                seal.clone(),
            ))]
        }
    };
    let store = config.data_dir.join("readmodels");
    let (models, scratch) = match ReadModels::start(&store, log.clone(), projections()).await {
        Ok(models) => (models, None),
        Err(RuntimeError::Locked { .. }) => {
            let scratch = std::env::temp_dir().join(format!(
                "idstream-users-{}-{}",
                std::process::id(),
                ulid::Ulid::new()
            ));
            eprintln!(
                "users: the read models in {} are in use (is the service running?); folding the log into {}",
                store.display(),
                scratch.display()
            );
            let models = ReadModels::start(&scratch, log.clone(), projections())
                .await
                .context("starting a temporary directory read model")?;
            (models, Some(scratch))
        }
        Err(e) => return Err(e).context("opening the directory read model"),
    };
    let result = async {
        let end = log.last_position().await?;
        crate::audit_events::catch_up(&models, NAME, end).await?;
        while !people.is_loaded() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let directory = Directory::new(models.tree(NAME), people, seal);
        if let Some(tenant) = &tenant {
            anyhow::ensure!(
                directory.tenant(tenant)?.is_some(),
                "there is no tenant {tenant}"
            );
        }
        let scope = match &tenant {
            Some(tenant) => Scope::Tenant(tenant),
            None => Scope::Everyone,
        };
        let page = idstream_app::search_page(
            &directory,
            scope,
            &query.roles,
            &query,
            None,
            time::OffsetDateTime::now_utc(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::Ok(directory_page(page, tenant.is_some()))
    }
    .await;
    models.shutdown().await;
    if let Some(scratch) = scratch {
        let _ = std::fs::remove_dir_all(scratch);
    }
    let page = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        print_table(&page, tenant.is_some());
    }
    Ok(())
}

/// The page as a table of aligned columns.
fn print_table(page: &DirectoryPage, tenant_listing: bool) {
    let mut lines = vec![[
        "EMAIL".to_owned(),
        "NAME".to_owned(),
        "STATUS".to_owned(),
        if tenant_listing { "ROLES" } else { "TENANTS" }.to_owned(),
        "LAST SIGN-IN".to_owned(),
        "ID".to_owned(),
    ]];
    for row in &page.items {
        let name = format!("{} {}", row.first_name, row.last_name);
        let groups = match &row.roles {
            Some(roles) => roles.join(","),
            None => row.tenants.join(","),
        };
        lines.push([
            row.email.clone(),
            name.trim().to_owned(),
            row.status.clone(),
            groups,
            row.last_sign_in.clone().unwrap_or_else(|| "never".into()),
            row.id.clone(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .map(|(cell, width)| {
                let pad = width - cell.chars().count();
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let total = if page.total_exact {
        format!("{}", page.total)
    } else {
        format!("at least {}", page.total)
    };
    eprintln!("{} shown of {total}", page.items.len());
    if let Some(next) = &page.next {
        eprintln!("next page: --cursor {next}");
    }
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    common: crate::Common,
    /// The tenant to import into.
    #[arg(long)]
    tenant: String,
    /// Plan only: print what each row would do and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The CSV file (`-`: standard input).
    file: std::path::PathBuf,
}

/// `idstream users import`: plans (and unless --dry-run, carries out) a CSV import as the
/// operator, printing one line per row: its number, address, action and each result.
pub(crate) async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let csv = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading the CSV from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let tenant: TenantId = args
        .tenant
        .parse()
        .map_err(|e| anyhow::anyhow!("--tenant: {e}"))?;
    let config = args.common.config()?;
    let (log, keys) = crate::audit_events::open_existing_log(&config).await?;
    let (app, read_models, _) = crate::startup::open_app(&config, log, keys).await?;
    let caller = idstream_app::Caller::system("import");
    let result = app
        .people
        .import(&caller, &tenant, &csv, args.dry_run)
        .await;
    read_models.shutdown().await;
    let rows = result.map_err(|e| anyhow::anyhow!("import refused: {e}"))?;
    let (mut changed, mut refused) = (0, 0);
    for row in &rows {
        let (action, detail) = match &row.plan {
            idstream_app::RowPlan::Create { roles } => (
                "create",
                roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            idstream_app::RowPlan::AssignRoles { roles, .. } => (
                "assign_roles",
                roles
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            idstream_app::RowPlan::Update { roles, .. } => (
                "update",
                roles
                    .iter()
                    .map(ToString::to_string)
                    .chain(
                        row.attributes
                            .keys()
                            .map(|name| format!("attribute {name}")),
                    )
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            idstream_app::RowPlan::Unchanged { .. } => ("unchanged", String::new()),
            idstream_app::RowPlan::Invalid(error) => ("invalid", error.to_string()),
        };
        let results: Vec<String> = row
            .outcomes
            .iter()
            .map(|outcome| match outcome {
                idstream_app::BulkOutcome::Done { .. } => {
                    changed += 1;
                    "done".to_owned()
                }
                idstream_app::BulkOutcome::Unchanged => "unchanged".to_owned(),
                idstream_app::BulkOutcome::Refused(error) => {
                    refused += 1;
                    format!("refused: {error}")
                }
            })
            .collect();
        println!(
            "{:>5}  {:<32} {:<13} {} {}",
            row.row,
            row.email,
            action,
            detail,
            results.join("; ")
        );
    }
    let invalid = rows
        .iter()
        .filter(|r| matches!(r.plan, idstream_app::RowPlan::Invalid(_)))
        .count();
    if args.dry_run {
        eprintln!(
            "dry run: {} rows, {invalid} invalid; nothing changed",
            rows.len()
        );
    } else {
        eprintln!(
            "{} rows: {changed} changes made, {refused} refused, {invalid} invalid",
            rows.len()
        );
    }
    Ok(())
}
