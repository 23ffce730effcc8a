//! The audit trail (`GET /v1/audit/events`, `idstream audit events`) against the real binary:
//! what an auditor of one tenant sees of sign-ins, failures, lock-outs, API-key uses, grants,
//! role, status and settings changes; that nothing of another tenant shows; who is refused;
//! which parameters are refused; that no personal data reaches the answers or the audit store.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::service::{ADMIN_TOKEN, Answer, Service};

const ADMIN_EMAIL: &str = "ada.audit@example.com";
const ADMIN_PASSWORD: &str = "Analytical-Engine-1843";
const AUDITOR_EMAIL: &str = "ida.auditor@example.com";
const BOB_EMAIL: &str = "bob.member@example.com";
const CAROL_EMAIL: &str = "carol.globex@example.com";
const DAVE_EMAIL: &str = "dave.globex@example.com";
const PASSWORD: &str = "Correct-Horse-Battery-9";
/// Personal data handed to the service that must never come back from the trail.
const CANARIES: &[&str] = &[
    "example.com",
    "Lovelace",
    "Canary-Firstname",
    "canary-suspension-reason",
    "canary key label",
];

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Invites `email` to `tenant` with `roles` as the operator, accepts with [`PASSWORD`] and
/// returns (user id, access token).
async fn member(svc: &Service, tenant: &str, email: &str, roles: &[&str]) -> (String, String) {
    let invited = svc
        .post(
            &format!("/v1/tenants/{tenant}/invitations"),
            json!({"email": email, "first_name": "Canary-Firstname", "last_name": "Lovelace", "roles": roles}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let mut token = None;
    eventually("the invitation arrives", || {
        token = svc
            .mail()
            .into_iter()
            .find(|m| m.to == email)
            .and_then(|m| {
                let start = m.text.find("idi_")?;
                Some(
                    m.text[start..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect::<String>(),
                )
            });
        std::future::ready(token.is_some())
    })
    .await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token.unwrap(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    (
        accepted.body["user"].as_str().unwrap().to_owned(),
        accepted.body["access_token"].as_str().unwrap().to_owned(),
    )
}

async fn wrong_password(svc: &Service, email: &str) {
    svc.post_anonymous(
        "/v1/auth/sign-in",
        json!({"email": email, "password": "not-the-password-at-all"}),
    )
    .await
    .assert_problem(401, "invalid_credentials");
}

/// The trail as `bearer` sees it at the log's current end.
async fn trail(svc: &Service, bearer: &str, query: &str) -> Answer {
    let at = svc.log_position().await;
    svc.send(
        svc.request_as(bearer, Method::GET, &format!("/v1/audit/events?{query}"))
            .header("x-idstream-min-position", at),
    )
    .await
}

fn items(answer: &Answer) -> &Vec<Value> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"].as_array().expect("items")
}

fn types(answer: &Answer) -> BTreeSet<String> {
    items(answer)
        .iter()
        .map(|i| i["type"].as_str().unwrap().to_owned())
        .collect()
}

#[track_caller]
fn assert_no_personal_data(text: &str) {
    for canary in CANARIES {
        assert!(!text.contains(canary), "{canary:?} leaked: {text}");
    }
}

/// Every key and value of the audit tree in a stopped service's read models.
fn audit_store(data_dir: &Path) -> Vec<String> {
    let db = sled::open(data_dir.join("readmodels")).expect("open the stopped read models");
    let tree = db.open_tree("audit").unwrap();
    tree.iter()
        .map(|kv| {
            let (k, v) = kv.unwrap();
            format!(
                "{} {}",
                String::from_utf8_lossy(&k),
                String::from_utf8_lossy(&v)
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_auditor_sees_the_trail_of_their_tenant_and_nothing_of_another() {
    let dir = tempfile::tempdir().unwrap();
    Service::bootstrap(dir.path(), None, "acme", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut svc = Service::embedded(dir.path()).await;
    eventually("the service is ready", || async {
        svc.get("/readyz").await.status == 200
    })
    .await;

    // acme: an auditor role and its holder, a member, the administrator signing in.
    svc.create_tenant("globex").await;
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "auditor", "description": "Reads the trail", "permissions": ["audit:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let (_auditor, auditor) = member(&svc, "acme", AUDITOR_EMAIL, &["auditor"]).await;
    let (bob, _) = member(&svc, "acme", BOB_EMAIL, &["user"]).await;
    let ada_tokens = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let ada = ada_tokens["user"].as_str().unwrap().to_owned();
    let ada_token = ada_tokens["access_token"].as_str().unwrap().to_owned();

    // Sign-in failures and a lock-out of bob.
    for _ in 0..5 {
        wrong_password(&svc, BOB_EMAIL).await;
    }
    // An API key of ada's, used once; and one limited to users:read (no audit:read).
    let issued = svc
        .post_as(
            &ada_token,
            "/v1/tenants/acme/api-keys",
            json!({"name": "canary key label"}),
        )
        .await;
    assert_eq!(issued.status, 201, "{issued:?}");
    let key_id = issued.body["id"].as_str().unwrap().to_owned();
    let key = issued.body["key"].as_str().unwrap().to_owned();
    assert_eq!(svc.get_as(&key, "/v1/auth/me").await.status, 200);
    let limited = svc
        .post_as(
            &ada_token,
            "/v1/tenants/acme/api-keys",
            json!({"name": "reader", "permissions": ["users:read"]}),
        )
        .await;
    assert_eq!(limited.status, 201, "{limited:?}");
    let limited = limited.body["key"].as_str().unwrap().to_owned();

    // A record grant, role and status changes, settings.
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "invoice", "fields": ["total"], "rls": true}),
        )
        .await;
    assert_eq!(entity.status, 201, "{entity:?}");
    let granted = svc
        .put(
            &format!("/v1/tenants/acme/entities/invoice/records/R-1/grants/{bob}"),
            json!({"access": "read_only"}),
        )
        .await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let roles = format!("/v1/tenants/acme/users/{bob}/roles");
    assert_eq!(
        svc.post(&roles, json!({"role": "auditor"})).await.status,
        200
    );
    assert_eq!(svc.delete(&format!("{roles}/auditor")).await.status, 200);
    let suspended = svc
        .post(
            &format!("/v1/users/{bob}/suspend"),
            json!({"reason": "canary-suspension-reason"}),
        )
        .await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    assert_eq!(
        svc.post(&format!("/v1/users/{bob}/reinstate"), json!(null))
            .await
            .status,
        200
    );
    let settings = svc.get("/v1/tenants/acme/settings").await;
    let mut changed = settings.body.clone();
    changed["session_idle_minutes"] = json!(45);
    assert_eq!(
        svc.put("/v1/tenants/acme/settings", changed).await.status,
        200
    );

    // globex: a user created there and suspended, a member who signs in and fails, settings.
    let (carol, _) = svc.create_user("globex", CAROL_EMAIL, &["user"]).await;
    svc.post(&format!("/v1/users/{carol}/suspend"), json!({}))
        .await;
    let (dave, _) = member(&svc, "globex", DAVE_EMAIL, &["user"]).await;
    wrong_password(&svc, DAVE_EMAIL).await;
    let globex_settings = svc.get("/v1/tenants/globex/settings").await;
    let mut changed = globex_settings.body.clone();
    changed["session_idle_minutes"] = json!(50);
    assert_eq!(
        svc.put("/v1/tenants/globex/settings", changed).await.status,
        200
    );

    // ---- the auditor of acme
    let acme = trail(&svc, &auditor, "tenant=acme&limit=500").await;
    let seen = types(&acme);
    for wanted in [
        "SessionStarted",
        "SignInFailed",
        "AccountLocked",
        "ApiKeyIssued",
        "ApiKeyUsed",
        "RecordGranted",
        "RoleAssigned",
        "RoleRevoked",
        "UserSuspended",
        "UserReinstated",
        "TenantSettingsChanged",
        "InvitationSent",
    ] {
        assert!(
            seen.contains(wanted),
            "acme's trail lacks {wanted}: {seen:?}"
        );
    }
    assert_no_personal_data(&acme.body.to_string());
    for item in items(&acme) {
        assert!(
            item["tenant"].is_null() || item["tenant"] == "acme",
            "{item}"
        );
        for outsider in [&carol, &dave] {
            assert_ne!(item["subject"], outsider.as_str(), "{item}");
            assert_ne!(item["actor"]["id"], outsider.as_str(), "{item}");
        }
        let summary = item["summary"].as_str().unwrap();
        assert!(!summary.contains("globex"), "{item}");
    }
    // Newest first, with positions and times.
    let positions: Vec<u64> = items(&acme)
        .iter()
        .map(|i| i["position"].as_u64().unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");

    let find = |event_type: &str| -> Vec<Value> {
        items(&acme)
            .iter()
            .filter(|i| i["type"] == event_type)
            .cloned()
            .collect()
    };
    assert_eq!(
        find("RecordGranted")[0]["summary"],
        format!("user {bob} was granted read on record R-1 of entity invoice by the operator")
    );
    assert!(
        find("SessionStarted").iter().any(|i| i["summary"]
            == format!(
                "user {ada} signed in to tenant acme with a password (session {})",
                ada_tokens["session"].as_str().unwrap()
            )),
        "{:?}",
        find("SessionStarted")
    );
    let failures = find("SignInFailed");
    assert_eq!(failures.len(), 5, "{failures:?}");
    assert!(failures.iter().all(|i| i["subject"] == bob.as_str()));
    assert_eq!(find("AccountLocked")[0]["subject"], bob.as_str());
    let used = &find("ApiKeyUsed")[0];
    assert_eq!(
        used["summary"],
        format!("API key {key_id} of user {ada} was used")
    );
    let suspension = find("UserSuspended")[0]["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        suspension.ends_with("by the operator (a reason was given)"),
        "{suspension}"
    );
    assert!(
        find("TenantSettingsChanged")[0]["summary"]
            .as_str()
            .unwrap()
            .contains("session_idle_minutes: 30 → 45")
    );

    // Filters.
    let failures = trail(
        &svc,
        &auditor,
        &format!("tenant=acme&type=SignInFailed,AccountLocked&subject={bob}"),
    )
    .await;
    assert_eq!(
        items(&failures).len(),
        6,
        "five failures and the lock-out: {failures:?}"
    );
    let by_ada = trail(&svc, &auditor, &format!("tenant=acme&actor=user:{ada}")).await;
    assert!(
        items(&by_ada)
            .iter()
            .all(|i| i["actor"]["id"] == ada.as_str())
    );
    assert!(types(&by_ada).contains("ApiKeyIssued"), "{by_ada:?}");
    let record = trail(
        &svc,
        &auditor,
        "tenant=acme&aggregate_type=record&aggregate_id=invoice:R-1",
    )
    .await;
    assert_eq!(types(&record), BTreeSet::from(["RecordGranted".to_owned()]));
    let empty = trail(&svc, &auditor, "tenant=acme&from=2999-01-01T00:00:00Z").await;
    assert!(items(&empty).is_empty());

    // Pages of three, forward to the end and back again.
    let all: Vec<u64> = positions.clone();
    let mut forward = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let query = match &cursor {
            None => "tenant=acme&limit=3".to_owned(),
            Some(c) => format!("tenant=acme&limit=3&cursor={c}"),
        };
        let page = trail(&svc, &auditor, &query).await;
        forward.extend(items(&page).iter().map(|i| i["position"].as_u64().unwrap()));
        pages.push(page.body.clone());
        match page.body["next"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(forward, all);
    assert!(pages[0]["prev"].is_null());
    let mut back = Vec::new();
    let mut prev = pages.last().unwrap()["prev"].as_str().map(str::to_owned);
    while let Some(cursor) = prev {
        let page = trail(
            &svc,
            &auditor,
            &format!("tenant=acme&limit=3&cursor={cursor}"),
        )
        .await;
        back.push(page.body["items"].clone());
        prev = page.body["prev"].as_str().map(str::to_owned);
    }
    assert_eq!(back.len(), pages.len() - 1);
    assert_eq!(back.last().unwrap(), &pages[0]["items"]);

    // Nothing of globex (which answers as if it did not exist), nor everything, nor the global
    // events.
    trail(&svc, &auditor, "tenant=globex")
        .await
        .assert_problem(404, "tenant_not_found");
    trail(&svc, &auditor, "")
        .await
        .assert_problem(403, "platform_admin_only");
    trail(&svc, &auditor, "tenant=_")
        .await
        .assert_problem(403, "platform_admin_only");
    // A caller without audit:read in acme.
    trail(&svc, &limited, "tenant=acme")
        .await
        .assert_problem(403, "forbidden");
    let anonymous = svc
        .send(svc.anonymous(Method::GET, "/v1/audit/events?tenant=acme"))
        .await;
    anonymous.assert_problem(401, "unauthorized");

    // ---- the operator, a platform administrator: every tenant, the global events, globex.
    let everything = trail(&svc, ADMIN_TOKEN, "limit=500").await;
    let tenants: BTreeSet<String> = items(&everything)
        .iter()
        .filter_map(|i| i["tenant"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        tenants,
        BTreeSet::from(["acme".to_owned(), "globex".to_owned()])
    );
    let global = trail(&svc, ADMIN_TOKEN, "tenant=_&limit=500").await;
    assert!(items(&global).iter().all(|i| i["tenant"].is_null()));
    assert!(types(&global).contains("SignInFailed"));
    let globex = trail(&svc, ADMIN_TOKEN, "tenant=globex&limit=500").await;
    assert!(
        items(&globex)
            .iter()
            .any(|i| i["type"] == "UserSuspended" && i["subject"] == carol.as_str())
    );
    assert!(
        items(&globex)
            .iter()
            .any(|i| i["type"] == "SignInFailed" && i["subject"] == dave.as_str()),
        "a member's failures belong to their tenant"
    );
    assert!(
        items(&globex).iter().all(|i| i["subject"] != bob.as_str()),
        "nothing of acme's members"
    );
    trail(&svc, ADMIN_TOKEN, "tenant=nowhere")
        .await
        .assert_problem(404, "tenant_not_found");

    // ---- an erasure renames the user in every entry, old and new, and keeps the structure
    let erased = svc
        .post(&format!("/v1/users/{carol}/erase"), json!(null))
        .await;
    assert_eq!(erased.status, 200, "{erased:?}");
    let of_carol = trail(
        &svc,
        ADMIN_TOKEN,
        &format!("tenant=globex&subject={carol}&order=oldest"),
    )
    .await;
    let of_carol = items(&of_carol);
    assert_eq!(of_carol[0]["type"], "UserRegistered");
    assert!(
        of_carol.iter().any(|i| i["type"] == "UserErased"),
        "{of_carol:?}"
    );
    for item in of_carol {
        let summary = item["summary"].as_str().unwrap();
        assert!(
            summary.contains(&format!("erased user {carol}")),
            "{summary}"
        );
    }

    // ---- bad parameters
    for (query, code) in [
        ("tenant=acme&limit=0", "invalid_query"),
        ("tenant=acme&limit=501", "invalid_query"),
        ("tenant=acme&limit=many", "invalid_query"),
        ("tenant=acme&order=sideways", "invalid_query"),
        ("tenant=acme&cursor=zz", "invalid_query"),
        ("tenant=acme&from=yesterday", "invalid_query"),
        (
            "tenant=acme&from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
            "invalid_query",
        ),
        ("tenant=acme&type=Teleported", "invalid_query"),
        ("tenant=acme&aggregate_id=x", "invalid_query"),
        ("tenant=acme&aggregate_type=spaceship", "invalid_query"),
        ("tenant=acme&actor=robot:1", "invalid_query"),
        ("tenant=acme&subject=not-a-ulid", "invalid_query"),
        ("tenant=Not_A_Tenant", "invalid_query"),
        ("tenant=acme&colour=blue", "invalid_query"),
        ("tenant=acme&min_position=-1", "invalid_min_position"),
    ] {
        svc.get_as(&auditor, &format!("/v1/audit/events?{query}"))
            .await
            .assert_problem(400, code);
    }

    // ---- documented
    let openapi = svc.get("/openapi.json").await;
    let operation = &openapi.body["paths"]["/v1/audit/events"]["get"];
    assert!(operation["responses"]["403"].is_object(), "{operation}");
    assert!(
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "type")
    );

    // ---- the command line, on the stopped service's data directory
    svc.stop().await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args([
            "audit",
            "events",
            "--tenant",
            "acme",
            "--type",
            "SignInFailed",
        ])
        .args(["--order", "oldest", "--json"])
        .env("IDSTREAM_DATA_DIR", dir.path())
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    let subjects: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, vec![bob.as_str(); 5]);
    let text = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args(["audit", "events", "--limit", "500"])
        .env("IDSTREAM_DATA_DIR", dir.path())
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .output()
        .await
        .unwrap();
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("AccountLocked"), "{text}");
    assert_no_personal_data(&text);
    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args(["audit", "events", "--cursor", "zz"])
        .env("IDSTREAM_DATA_DIR", dir.path())
        .env("IDSTREAM_LOG", "off")
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());

    // ---- and the store itself holds no personal data
    let store = audit_store(dir.path());
    assert!(store.len() > 100, "the audit store is filled");
    for line in &store {
        assert_no_personal_data(line);
    }
}

/// On JetStream the command answers while the service runs and holds its read models: it folds
/// the stream into a temporary store, and gives the same entries as the HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_jetstream_the_command_line_reads_the_trail_while_the_service_runs() {
    let nats = crate::support::nats::NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    Service::bootstrap(
        dir.path(),
        Some(&nats.url()),
        "acme",
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    let (bob, _) = svc.create_user("acme", BOB_EMAIL, &["user"]).await;
    svc.post(&format!("/v1/users/{bob}/suspend"), json!({}))
        .await;
    let http = trail(&svc, ADMIN_TOKEN, "tenant=acme&order=oldest&limit=500").await;
    let http_positions: Vec<u64> = items(&http)
        .iter()
        .map(|i| i["position"].as_u64().unwrap())
        .collect();

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args(["audit", "events", "--tenant", "acme", "--order", "oldest"])
        .args(["--limit", "500", "--json"])
        .env("IDSTREAM_DATA_DIR", dir.path())
        .env("IDSTREAM_NATS_URL", nats.url())
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_CONFIG")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("are in use"), "{stderr}");
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    let cli_positions: Vec<u64> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["position"].as_u64().unwrap())
        .collect();
    assert_eq!(cli_positions, http_positions);
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["type"] == "UserSuspended" && i["subject"] == bob.as_str())
    );
    assert_no_personal_data(&page.to_string());
}
