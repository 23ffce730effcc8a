//! The administration console (issue 17): the people list rendered on the server at a large
//! organisation's size, against the API's answer of the same search and a minimal handler, in the
//! same run; and the weight of every console screen.
//!
//! ```text
//! cargo bench --bench console                                     # 10,000 people, a few minutes
//! IDSTREAM_BENCH_CONSOLE_USERS=1000000 cargo bench --bench console
//! IDSTREAM_BENCH_CONSOLE_USERS=1000000 IDSTREAM_BENCH_FILL_SECONDS=900 cargo bench --bench console
//! ```
//!
//! The app runs in process over the embedded log as the service runs it (personal data sealed,
//! read models following the log), behind the service's own router on a local port. The
//! organisation is filled by SCIM bulk requests of 1,000 creations (as `benches/scim.rs`);
//! `IDSTREAM_BENCH_FILL_SECONDS` stops filling sooner, and the figures say at what size they were
//! taken. The bootstrap administrator signs in and the client sends the session cookies a
//! browser would. Requests go one at a time, over one kept-alive connection:
//!
//! - `GET /admin/users` (first page, 50 people by address), a text search, page 10 by its
//!   cursor, and newest first;
//! - baseline: `GET /v1/tenants/acme/users` with the same search and the same 50 rows (the API's
//!   JSON answer of the same operation, `People::search`), and a minimal axum handler answering a
//!   fixed page of the list's size with the same headers (the transport alone).
//!
//! Target: the page's p99 ≤ 50 ms at 1,000,000 members. Then the access review screen, a page
//! of 100 people (the first, and one after someone found by a search), against the API's JSON
//! page of the same people, same target; and the whole review's CSV download once (when its
//! first bytes come, when it ends). Then every console screen's weight: its
//! HTML plus every stylesheet, script and image it links (uncompressed); target under 150 KB.
//! Knobs: `IDSTREAM_BENCH_CONSOLE_USERS` (people, default 10,000), `IDSTREAM_BENCH_FILL_SECONDS`
//! (default: no limit), `IDSTREAM_BENCH_ITERS` (timed requests per shape and side, default 300).

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use idstream_app::identity::{Bootstrap, SignIn};
use idstream_app::scim::Endpoint;
use idstream_app::{Authenticated, Caller, Credential};
use idstream_domain::TenantId;
use serde_json::Value;

const PASSWORD: &str = "Bench-Passphrase-2026";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `text` for a query string.
fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// p50 and p99 of `iters` GETs of `url`, one at a time, after a few unmeasured ones; fails
/// unless every answer is a 200 containing `expect`.
async fn time_gets(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    expect: &str,
    iters: usize,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let mut times = Vec::with_capacity(iters);
    let mut size = 0;
    for i in 0..iters + 5 {
        let mut request = client.get(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let start = Instant::now();
        let answer = request.send().await?;
        let status = answer.status();
        let body = answer.text().await?;
        let took = start.elapsed();
        if !status.is_success() || !body.contains(expect) {
            bail!("GET {url}: {status}, without {expect:?}: {body:.400}");
        }
        size = body.len();
        if i >= 5 {
            times.push(took);
        }
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99), size))
}

/// The addresses of what a page links: stylesheets, scripts and images on the same origin.
fn linked(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let Some(end) = rest.find('"') else { break };
            let target = &rest[..end];
            let asset = target.starts_with("/assets/")
                || [".css", ".js", ".png", ".svg", ".woff2"]
                    .iter()
                    .any(|suffix| target.ends_with(suffix));
            if asset && target.starts_with('/') && !found.iter().any(|f| f == target) {
                found.push(target.to_owned());
            }
        }
    }
    found
}

fn main() -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    let users = knob("IDSTREAM_BENCH_CONSOLE_USERS", 10_000).max(1_000);
    let fill_limit =
        Duration::from_secs(knob("IDSTREAM_BENCH_FILL_SECONDS", usize::MAX / 4) as u64);
    let iters = knob("IDSTREAM_BENCH_ITERS", 300);
    let scratch = tempfile::tempdir()?;
    runtime.block_on(async {
        let app = support::app(scratch.path(), 1).await?;
        let acme: TenantId = "acme".parse().map_err(anyhow::Error::msg)?;
        let (admin, _) = app
            .identity
            .bootstrap(&Caller::system("bootstrap"), Bootstrap {
                tenant: acme.clone(),
                tenant_name: "Acme".into(),
                email: "admin@example.com".into(),
                first_name: "Ada".into(),
                last_name: "Admin".into(),
                password: PASSWORD.into(),
            })
            .await?;
        let key = Caller::user(Authenticated {
            user: admin,
            tenant: acme.clone(),
            via: Credential::ApiKey {
                id: ulid::Ulid::new(),
                restriction: None,
            },
            must_enrol_second_factor: false,
        });
        let endpoint = Endpoint {
            base: "https://id.example.com/scim/v2".into(),
        };
        println!("Console benchmark: {cores} cores, up to {users} people, {iters} requests per shape");

        // --- fill the organisation ---
        let start = Instant::now();
        let next =
            support::fill_by_scim(&app, &key, &endpoint, (0, users), false, fill_limit).await?;
        let members = next + 1;
        println!(
            "filled {next} people in {:.0} s; the organisation has {members} members{}",
            start.elapsed().as_secs_f64(),
            if next < users { " (stopped by IDSTREAM_BENCH_FILL_SECONDS)" } else { "" }
        );

        // --- the service's router, and a browser's cookies ---
        let signed_in = app
            .identity
            .sign_in(
                &Caller::anonymous(),
                "admin@example.com",
                PASSWORD.into(),
                Some(acme.clone()),
                false,
            )
            .await?;
        let SignIn::Complete(tokens) = signed_in else {
            bail!("the administrator's sign-in asked for a second factor");
        };
        let cookie = format!(
            "ids_access={}; ids_session={}; ids_csrf=bench-csrf-token-0123456789",
            tokens.access_token, tokens.refresh_token
        );
        let bearer = format!("Bearer {}", tokens.access_token);
        let state = idstream_server::AppState::new(idstream_server::StateParts {
            app: app.clone(),
            admin_token: None,
            metrics: Arc::new(idstream_server::metrics::Metrics::new()),
            startup_target: 0,
            trusted_proxies: Default::default(),
            cors_origins: Default::default(),
            account_pages: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move {
            idstream_server::serve(listener, state, 65_536, std::future::pending()).await
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;

        // The cursor of page 10, by the API's answers.
        let mut cursor = String::new();
        for _ in 0..9 {
            let mut url = format!("{base}/v1/tenants/acme/users?sort=email:asc&limit=50");
            if !cursor.is_empty() {
                url = format!("{url}&cursor={}", encode(&cursor));
            }
            let page: Value = client.get(url).header("authorization", &bearer).send().await?.json().await?;
            cursor = page["next"].as_str().with_context(|| format!("no next page: {page:.300}"))?.to_owned();
        }
        let cursor = encode(&cursor);
        let shapes: Vec<(&str, String, String)> = vec![
            ("first page, by address", String::new(), "sort=email:asc".into()),
            ("text search \"lovelace\"", "q=lovelace".into(), "q=lovelace&sort=email:asc".into()),
            ("page 10, by its cursor", format!("cursor={cursor}"), format!("sort=email:asc&cursor={cursor}")),
            ("newest first", "sort=created_at:desc".into(), "sort=created_at:desc".into()),
        ];

        // The transport alone: a fixed page of the list's size with the same headers.
        let list_html = client
            .get(format!("{base}/admin/users"))
            .header("cookie", &cookie)
            .send()
            .await?
            .text()
            .await?;
        let page: &'static str = Box::leak(list_html.clone().into_boxed_str());
        let minimal = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                (
                    [
                        ("content-type", "text/html; charset=utf-8"),
                        ("cache-control", "no-store"),
                        ("content-security-policy", "default-src 'self'; frame-ancestors 'none'"),
                    ],
                    page,
                )
            }),
        );
        let minimal_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let minimal_url = format!("http://{}/", minimal_listener.local_addr()?);
        tokio::spawn(async move { axum::serve(minimal_listener, minimal).await });
        let (floor50, floor99, _) = time_gets(&client, &minimal_url, &[], "<table", iters).await?;
        println!(
            "\nPeople list at {members} members, one request at a time ({iters} each), p50 / p99"
        );
        println!(
            "  minimal axum handler, a fixed page of {} B (baseline)   {:>8.2} / {:>8.2} ms",
            list_html.len(),
            ms(floor50),
            ms(floor99)
        );
        for (name, page_query, api_query) in &shapes {
            let page_url = format!("{base}/admin/users?{page_query}");
            let api_url = format!("{base}/v1/tenants/acme/users?limit=50&{api_query}");
            let (api50, api99, _) =
                time_gets(&client, &api_url, &[("authorization", &bearer)], "\"items\"", iters).await?;
            let (page50, page99, size) =
                time_gets(&client, &page_url, &[("cookie", &cookie)], "<table", iters).await?;
            println!(
                "  {name:<28} page {:>8.2} / {:>8.2} ms ({size} B)   API JSON {:>7.2} / {:>7.2} ms   page ÷ API p99 {:.2}×   p99 ≤ 50 ms: {}",
                ms(page50),
                ms(page99),
                ms(api50),
                ms(api99),
                page99.as_secs_f64() / api99.as_secs_f64(),
                if page99 <= Duration::from_millis(50) { "met" } else { "MISSED" }
            );
        }

        // --- the access review, a page at a time ---
        let review_api = format!("{base}/v1/audit/access-review?tenant=acme&limit=100");
        // A page after someone found by a search (ids follow creation: anywhere in the list).
        let found: Value = client
            .get(format!("{base}/v1/tenants/acme/users?limit=1&q=hopper"))
            .header("authorization", &bearer)
            .send()
            .await?
            .json()
            .await?;
        let after = found["items"][0]["id"].as_str().context("a person")?.to_owned();
        println!("\nAccess review at {members} members, a page of 100 people, one request at a time ({iters} each), p50 / p99");
        let review_shapes = [
            ("first page", String::new()),
            ("a page after someone, by its cursor", format!("after={after}")),
        ];
        for (name, query) in &review_shapes {
            let (page50, page99, size) = time_gets(
                &client,
                &format!("{base}/admin/access-review?{query}"),
                &[("cookie", &cookie)],
                "<table",
                iters,
            )
            .await?;
            let (api50, api99, _) = time_gets(
                &client,
                &format!("{review_api}&{query}"),
                &[("authorization", &bearer)],
                "\"members\"",
                iters,
            )
            .await?;
            println!(
                "  {name:<36} page {:>8.2} / {:>8.2} ms ({size} B)   API JSON {:>7.2} / {:>7.2} ms   p99 ≤ 50 ms: {}",
                ms(page50),
                ms(page99),
                ms(api50),
                ms(api99),
                if page99 <= Duration::from_millis(50) { "met" } else { "MISSED" }
            );
        }
        // The whole review's CSV download (everyone), once: when its first bytes come and
        // when it ends.
        let start = Instant::now();
        let mut download = client
            .get(format!("{base}/v1/audit/access-review?tenant=acme&format=csv"))
            .header("authorization", &bearer)
            .send()
            .await?;
        let (mut first_bytes, mut bytes, mut lines) = (None, 0usize, 0usize);
        while let Some(chunk) = download.chunk().await? {
            first_bytes.get_or_insert_with(|| start.elapsed());
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        println!(
            "  the whole review as CSV: first bytes after {:.1} ms, {} rows ({:.1} MB) in {:.1} s",
            ms(first_bytes.unwrap_or_default()),
            lines.saturating_sub(1),
            bytes as f64 / 1e6,
            start.elapsed().as_secs_f64()
        );

        // --- every console screen's weight ---
        let first: Value = client
            .get(format!("{base}/v1/tenants/acme/users?limit=1&q=lovelace"))
            .header("authorization", &bearer)
            .send()
            .await?
            .json()
            .await?;
        let someone = first["items"][0]["id"].as_str().context("a person")?.to_owned();
        let screens = [
            "/admin/users".to_owned(),
            format!("/admin/users/{someone}"),
            format!("/admin/users/{someone}/erase"),
            "/admin/roles".to_owned(),
            "/admin/roles/user".to_owned(),
            "/admin/records".to_owned(),
            "/admin/audit".to_owned(),
            "/admin/access-review".to_owned(),
            "/admin/time-travel".to_owned(),
            "/admin/settings".to_owned(),
            "/admin/platform".to_owned(),
        ];
        println!("\nConsole screens' weight at {members} members (uncompressed; target < 150 KB with CSS and scripts)");
        for path in &screens {
            let start = Instant::now();
            let answer = client
                .get(format!("{base}{path}"))
                .header("cookie", &cookie)
                .send()
                .await?;
            let status = answer.status();
            let html = answer.text().await?;
            let took = start.elapsed();
            if !status.is_success() {
                println!("  {path}: {status} ({:.80})", html);
                continue;
            }
            let assets = linked(&html);
            let mut linked_bytes = 0;
            for asset in &assets {
                linked_bytes += client.get(format!("{base}{asset}")).send().await?.bytes().await?.len();
            }
            let total = html.len() + linked_bytes;
            println!(
                "  {path:<40} HTML {:>8} B + linked {linked_bytes} B ({}) = {:>8} B ({:.1} KB): {}   (one request: {:.1} ms)",
                html.len(),
                assets.join(", "),
                total,
                total as f64 / 1024.0,
                if total < 150 * 1024 { "met" } else { "MISSED" },
                ms(took)
            );
        }
        anyhow::Ok(())
    })?;
    Ok(())
}
