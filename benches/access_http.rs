//! HTTP single-check throughput and latency under concurrent load, from a real load generator in
//! another process (`wrk`), against a minimal axum handler measured in the same run.
//!
//! ```text
//! cargo bench --bench access_http
//! ACCESS_HTTP_SECONDS=20 ACCESS_HTTP_CONNECTIONS=64 cargo bench --bench access_http
//! ACCESS_HTTP_BIN=/tmp/older/idstream cargo bench --bench access_http   # another build
//! ```
//!
//! It starts the release `idstream` binary on the embedded log in a temporary directory, fills it
//! over HTTP (a tenant, members, an RLS entity, record grants), then points `wrk` at
//! `POST /v1/tenants/{t}/access/check` with a rotating mix of granted and denied requests. The
//! baseline is an axum server in this process with one handler that authenticates the same
//! bearer token (constant-time), parses the same JSON body and answers a decision of the same
//! shape: everything but the check itself. Both run on the same cores as `wrk`.
//!
//! Needs `wrk` (Debian package `wrk`; installed if missing and apt is usable). Targets: idstream
//! ≥ 0.8× the baseline's throughput, p99 < 1 ms. idstream is measured twice: with the configured
//! operator token, and with the access token (EdDSA JWT) of a tenant administrator signed in with
//! a password (created by `idstream bootstrap`), the way an application calls it. Every request
//! authenticates: a token's signature is checked once and remembered in a bounded cache keyed by
//! its SHA-256, while its expiry, its session and its user's status are checked every time (from
//! an in-memory cache of those facts that the first request after any change of the read models
//! reads again). `ACCESS_HTTP_BIN` measures another build of `idstream` (a copy of an older
//! binary, say) in the same harness.

#[path = "support/http.rs"]
mod harness;

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Json;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use harness::{
    ADMIN_EMAIL, ADMIN_PASSWORD, TOKEN, bootstrap, ensure_wrk, knob, print_runs, run_wrk,
    start_idstream,
};

#[derive(Deserialize)]
#[allow(dead_code)]
struct CheckBody {
    subject: Option<String>,
    permission: String,
    record: Option<String>,
}

async fn minimal(
    headers: HeaderMap,
    Json(body): Json<CheckBody>,
) -> Result<Json<Value>, axum::http::StatusCode> {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(axum::http::StatusCode::UNAUTHORIZED)?;
    let digest = idstream_auth::TokenDigest::of(TOKEN);
    if !digest.matches(presented) {
        return Err(axum::http::StatusCode::UNAUTHORIZED);
    }
    Ok(Json(json!({
        "allowed": body.record.is_some(),
        "reason": {"kind": "grant", "access": "read_only"}
    })))
}

/// A wrk script rotating through request bodies, sent with `bearer`.
fn script(
    dir: &std::path::Path,
    name: &str,
    bearer: &str,
    bodies: &[String],
) -> anyhow::Result<String> {
    let mut lua = String::from("wrk.method = \"POST\"\n");
    lua.push_str(&format!(
        "wrk.headers[\"Authorization\"] = \"Bearer {bearer}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    ));
    lua.push_str("local bodies = {\n");
    for body in bodies {
        lua.push_str(&format!("  [[{body}]],\n"));
    }
    lua.push_str("}\nlocal i = 0\nrequest = function()\n  i = (i % #bodies) + 1\n  return wrk.format(nil, nil, nil, bodies[i])\nend\n");
    let path = dir.join(name);
    std::fs::write(&path, lua)?;
    Ok(path.display().to_string())
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .request(method, &url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {value}");
    }
    Ok(value)
}

fn main() -> anyhow::Result<()> {
    ensure_wrk()?;
    let seconds = knob("ACCESS_HTTP_SECONDS", 10);
    let connections = knob("ACCESS_HTTP_CONNECTIONS", 32);
    let users = knob("ACCESS_HTTP_USERS", 50);
    let grants = knob("ACCESS_HTTP_GRANTS", 1000);
    let scratch = tempfile::tempdir()?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    // The baseline: a minimal axum handler with the same authentication and body.
    let baseline = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = axum::Router::new().route("/check", axum::routing::post(minimal));
        tokio::spawn(async move { axum::serve(listener, app).await });
        anyhow::Ok(format!("http://{addr}/check"))
    })?;

    bootstrap(scratch.path())?;
    let service = start_idstream(scratch.path())?;
    println!("filling: {users} members, {grants} record grants …");
    let (bodies, check_url, access) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let base = &service.base;
        call(&client, reqwest::Method::POST, format!("{base}/v1/tenants/acme/entities"),
            json!({"name": "project", "fields": ["title"], "rls": true})).await?;
        let mut ids = Vec::new();
        for n in 0..users {
            let created = call(&client, reqwest::Method::POST, format!("{base}/v1/tenants/acme/users"),
                json!({"email": format!("user{n}@example.com"), "first_name": "U", "last_name": "{n}", "roles": ["user"]})).await?;
            ids.push(created["id"].as_str().unwrap_or_default().to_owned());
        }
        let mut last = 0;
        for g in 0..grants {
            let user = &ids[(g % users) as usize];
            let granted = call(&client, reqwest::Method::PUT,
                format!("{base}/v1/tenants/acme/entities/project/records/R{g}/grants/{user}"),
                json!({"access": "read_only"})).await?;
            last = granted["position"].as_u64().unwrap_or(last);
        }
        // Wait until the read models hold everything.
        call(&client, reqwest::Method::POST, format!("{base}/v1/tenants/acme/access/check?min_position={last}"),
            json!({"subject": "anonymous", "permission": "files:read"})).await?;
        let mut bodies = Vec::new();
        for i in 0..200u64 {
            let user = &ids[(i % users) as usize];
            // Half granted (record R{g} was granted to user g % users), half denied.
            let record = if i % 2 == 0 { i } else { i + 1 };
            bodies.push(json!({"subject": format!("user:{user}"), "permission": "entity.project:read",
                "record": format!("R{record}")}).to_string());
        }
        let signed_in: Value = client
            .post(format!("{base}/v1/auth/sign-in"))
            .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
            .send()
            .await?
            .json()
            .await?;
        let access = signed_in["access_token"]
            .as_str()
            .with_context(|| format!("sign-in answered {signed_in}"))?
            .to_owned();
        anyhow::Ok((bodies, format!("{base}/v1/tenants/acme/access/check"), access))
    })?;

    let lua = script(scratch.path(), "operator.lua", TOKEN, &bodies)?;
    let user_lua = script(scratch.path(), "user.lua", &access, &bodies)?;
    // A short warm-up of each, then the measured runs.
    run_wrk(&baseline, &lua, 2, connections)?;
    run_wrk(&check_url, &lua, 2, connections)?;
    run_wrk(&check_url, &user_lua, 2, connections)?;
    let base = run_wrk(&baseline, &lua, seconds, connections)?;
    let ours = run_wrk(&check_url, &lua, seconds, connections)?;
    let as_user = run_wrk(&check_url, &user_lua, seconds, connections)?;

    print_runs(
        &format!(
            "HTTP single check, wrk -t2 -c{connections} -d{seconds}s, 2 cores shared with wrk"
        ),
        &[
            ("minimal axum handler (baseline)", &base),
            ("idstream …/access/check, operator", &ours),
            ("idstream …/access/check, user JWT", &as_user),
        ],
    );
    for (name, run) in [("operator token", &ours), ("user access token", &as_user)] {
        let ratio = run.requests_per_sec / base.requests_per_sec;
        println!(
            "{name}: throughput ratio {ratio:.2}× (target ≥ 0.80×: {}); p99 {:.0} µs (target < 1000 µs: {})",
            if ratio >= 0.8 { "met" } else { "MISSED" },
            run.p99_us,
            if run.p99_us < 1000.0 { "met" } else { "MISSED" }
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(service);
    Ok(())
}
