//! The hosted pages under concurrent load, from a real load generator in another process (`wrk`),
//! against a minimal axum handler measured in the same run; and each page's weight.
//!
//! ```text
//! cargo bench --bench pages
//! PAGES_SECONDS=20 PAGES_CONNECTIONS=64 cargo bench --bench pages
//! ACCESS_HTTP_BIN=/tmp/older/idstream cargo bench --bench pages   # another build
//! ```
//!
//! It starts the release `idstream` binary on the embedded log in a temporary directory,
//! bootstrapped with a tenant and its administrator, signs the administrator in over the API and
//! then points `wrk` at two pages: `GET /sign-in` (anonymous: a first visit, so a fresh CSRF
//! token and its cookie) and `GET /account` (the browser's cookies carry the access token and the
//! CSRF cookie:
//! every request authenticates it and reads the person's profile, organisation and factors from
//! the read models before rendering). The baseline is an axum server in this process with one
//! handler answering a fixed HTML page of the sign-in page's size with the same headers:
//! everything but the page's own work. Both run on the same cores as `wrk`.
//!
//! Targets (issue 16): each page ≥ 0.5× the baseline's throughput, p99 ≤ 5 ms. The weight of each
//! page is its HTML plus every stylesheet, script and image it links (uncompressed); goal: under
//! 100 KB.

#[path = "support/http.rs"]
mod harness;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use harness::{
    ADMIN_EMAIL, ADMIN_PASSWORD, bootstrap, ensure_wrk, knob, print_runs, run_wrk, start_idstream,
};

/// A wrk script sending GETs with `cookie` (none when empty).
fn script(dir: &std::path::Path, name: &str, cookie: &str) -> anyhow::Result<String> {
    let mut lua = String::from("wrk.method = \"GET\"\nwrk.headers[\"Accept\"] = \"text/html\"\n");
    if !cookie.is_empty() {
        lua.push_str(&format!("wrk.headers[\"Cookie\"] = \"{cookie}\"\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, lua)?;
    Ok(path.display().to_string())
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

/// A page's weight: its HTML and everything it links, in bytes, with the list of what it links.
async fn weight(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    cookie: &str,
) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let response = client
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("GET {path}: {}", response.status());
    }
    let html = response.text().await?;
    let assets = linked(&html);
    let mut linked_bytes = 0;
    for asset in &assets {
        let bytes = client
            .get(format!("{base}{asset}"))
            .send()
            .await?
            .bytes()
            .await?;
        linked_bytes += bytes.len();
    }
    Ok((html.len(), linked_bytes, assets))
}

fn main() -> anyhow::Result<()> {
    ensure_wrk()?;
    let seconds = knob("PAGES_SECONDS", 10);
    let connections = knob("PAGES_CONNECTIONS", 32);
    let scratch = tempfile::tempdir()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    bootstrap(scratch.path())?;
    let service = start_idstream(scratch.path())?;
    let base = service.base.clone();
    let (cookie, sign_in_html, weights) = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let signed_in: Value = client
            .post(format!("{base}/v1/auth/sign-in"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let access = signed_in["access_token"]
            .as_str()
            .with_context(|| format!("sign-in answered {signed_in}"))?;
        let refresh = signed_in["refresh_token"].as_str().unwrap_or_default();
        // A signed-in browser also holds the CSRF cookie the sign-in page set.
        let cookie = format!(
            "ids_access={access}; ids_session={refresh}; ids_csrf=bench-csrf-token-0123456789"
        );
        let sign_in_html = client
            .get(format!("{base}/sign-in"))
            .send()
            .await?
            .text()
            .await?;
        let mut weights = Vec::new();
        for (path, cookie) in [("/sign-in", ""), ("/account", cookie.as_str())] {
            weights.push((path, weight(&client, &base, path, cookie).await?));
        }
        anyhow::Ok((cookie, sign_in_html, weights))
    })?;

    // The baseline: a minimal axum handler answering a fixed page of the same size and headers.
    let baseline = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let page: &'static str = Box::leak(sign_in_html.into_boxed_str());
        let app = axum::Router::new().route(
            "/sign-in",
            axum::routing::get(move || async move {
                (
                    [
                        ("content-type", "text/html; charset=utf-8"),
                        ("cache-control", "no-store"),
                        (
                            "content-security-policy",
                            "default-src 'self'; frame-ancestors 'none'",
                        ),
                    ],
                    page,
                )
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(format!("http://{addr}/sign-in"))
    })?;

    let anonymous = script(scratch.path(), "anonymous.lua", "")?;
    let signed_in = script(scratch.path(), "signed_in.lua", &cookie)?;
    let sign_in_url = format!("{base}/sign-in");
    let account_url = format!("{base}/account");
    // A short warm-up of each, then the measured runs.
    run_wrk(&baseline, &anonymous, 2, connections)?;
    run_wrk(&sign_in_url, &anonymous, 2, connections)?;
    run_wrk(&account_url, &signed_in, 2, connections)?;
    let minimal = run_wrk(&baseline, &anonymous, seconds, connections)?;
    let sign_in = run_wrk(&sign_in_url, &anonymous, seconds, connections)?;
    let account = run_wrk(&account_url, &signed_in, seconds, connections)?;

    print_runs(
        &format!("Hosted pages, wrk -t2 -c{connections} -d{seconds}s, 2 cores shared with wrk"),
        &[
            ("minimal axum handler (baseline)", &minimal),
            ("idstream GET /sign-in", &sign_in),
            ("idstream GET /account (signed in)", &account),
        ],
    );
    for (name, run) in [("/sign-in", &sign_in), ("/account", &account)] {
        let ratio = run.requests_per_sec / minimal.requests_per_sec;
        println!(
            "{name}: throughput ratio {ratio:.2}× (target ≥ 0.50×: {}); p99 {:.0} µs (target ≤ 5000 µs: {})",
            if ratio >= 0.5 { "met" } else { "MISSED" },
            run.p99_us,
            if run.p99_us <= 5000.0 {
                "met"
            } else {
                "MISSED"
            }
        );
    }
    println!("\nPage weight (uncompressed; goal < 100 KB with its CSS and JS)");
    for (path, (html, linked_bytes, assets)) in &weights {
        let total = html + linked_bytes;
        println!(
            "{path}: HTML {html} B + linked {linked_bytes} B ({}) = {total} B ({})",
            assets.join(", "),
            if total < 100 * 1024 { "met" } else { "MISSED" }
        );
    }
    drop(service);
    Ok(())
}
