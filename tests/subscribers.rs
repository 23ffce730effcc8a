//! The subscriber contract (F-AU-5): the document in `schemas/README.md` lists every event type,
//! and three subscribers read a real JetStream stream: billing (seats per tenant, its own durable
//! consumer, resumed after a kill), HR sync (an HR feed driving the HTTP API, idempotently), and a
//! Python nats-py client that validates every event against the published JSON Schemas.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use idstream_domain::events::{CATALOGUE, personal_fields, schema_of};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::nats::NatsServer;
use crate::support::service::Service;

/// How long a subscriber may take to catch up with the log.
const PATIENCE: Duration = Duration::from_secs(30);

async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ----- the document ----------------------------------------------------------------------------

const DOC: &str = "schemas/README.md";
const BEGIN: &str = "<!-- catalogue:begin -->\n";
const END: &str = "<!-- catalogue:end -->";

/// The subject of an aggregate type's events, with placeholders.
fn subject_pattern(aggregate: &str) -> Option<&'static str> {
    Some(match aggregate {
        "tenant" => "idstream.events.<tenant>.tenant.<tenant>",
        "user" => "idstream.events._.user.<user id>",
        "membership" => "idstream.events.<tenant>.membership.<user id>",
        "email" => {
            "idstream.events._.email.<claim id: hex of HMAC-SHA-256(service key, address)[..16]>"
        }
        "role" => "idstream.events.<tenant>.role.<role name>",
        "entity" => "idstream.events.<tenant>.entity.<entity>",
        "record" => "idstream.events.<tenant>.record.<entity>:<record id>",
        "credentials" => "idstream.events._.credentials.<user id>",
        "session" => "idstream.events._.session.<session id>",
        "invitation" => "idstream.events.<tenant>.invitation.<invitation id>",
        "api_key" => "idstream.events.<tenant>.api_key.<key id>",
        "chain" => "idstream.events._.chain.log",
        "admin_guard" => "idstream.events.<tenant>.admin_guard.<tenant>",
        "client" => "idstream.events.<tenant>.client.<client id>",
        "consent" => "idstream.events.<tenant>.consent.<client id>_<user id>",
        "identity_provider" => "idstream.events.<tenant>.identity_provider.<provider name>",
        "external_identity" => {
            "idstream.events.<tenant>.external_identity.<blind index of provider and subject>"
        }
        _ => return None,
    })
}

/// The catalogue as the Markdown table the document carries.
fn catalogue_table() -> String {
    let mut table = String::from(
        "| type | version | subject | schema | personal data and secrets | what it records |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for (name, version, aggregate) in CATALOGUE {
        let kind = aggregate.as_str();
        let subject = subject_pattern(kind).unwrap_or_else(|| {
            panic!(
                "aggregate type {kind} has no subject pattern: add it to subject_pattern in \
                 tests/subscribers.rs, then regenerate the table"
            )
        });
        let schema = serde_json::to_value(
            schema_of(name, *version).expect("every catalogued event has a schema"),
        )
        .unwrap();
        let description = schema["description"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            // Intra-doc links read as plain code here.
            .replace("[`", "`")
            .replace("`]", "`")
            .replace('|', "\\|");
        let quoted = |fields: &[String]| {
            fields
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut sealed = Vec::new();
        let mut blind = Vec::new();
        if let Some(properties) = schema["properties"].as_object() {
            for (field, property) in properties {
                let text = property.to_string();
                if text.contains("#/$defs/Sealed") {
                    sealed.push(field.clone());
                }
                if text.contains("#/$defs/BlindIndex") {
                    blind.push(field.clone());
                }
            }
        }
        let personal: Vec<String> = personal_fields(name)
            .iter()
            .map(|f| f.to_string())
            .collect();
        let mut marks = Vec::new();
        if !personal.is_empty() {
            marks.push(format!("personal data: {}", quoted(&personal)));
        }
        if !sealed.is_empty() {
            marks.push(format!("sealed: {}", quoted(&sealed)));
        }
        if !blind.is_empty() {
            marks.push(format!("blind index: {}", quoted(&blind)));
        }
        table.push_str(&format!(
            "| `{name}` | {version} | `{subject}` | [{name}.v{version}.json]({name}.v{version}.json) | {} | {description} |\n",
            marks.join("; ")
        ));
    }
    table
}

#[test]
fn the_subscriber_contract_lists_every_catalogued_event_type() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DOC);
    let doc = std::fs::read_to_string(&path).expect("schemas/README.md exists");
    let start = doc
        .find(BEGIN)
        .expect("the document has the catalogue:begin marker")
        + BEGIN.len();
    let end = doc
        .find(END)
        .expect("the document has the catalogue:end marker");
    let table = catalogue_table();
    if std::env::var_os("UPDATE_SUBSCRIBER_DOC").is_some() {
        std::fs::write(&path, format!("{}{table}{}", &doc[..start], &doc[end..])).unwrap();
        return;
    }
    let written = &doc[start..end];
    let missing: Vec<String> = CATALOGUE
        .iter()
        .filter(|(name, version, _)| {
            !written.contains(&format!("| `{name}` | {version} |"))
                || !written.contains(&format!("({name}.v{version}.json)"))
        })
        .map(|(name, version, _)| format!("{name} v{version}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{DOC} does not list {missing:?}; run `UPDATE_SUBSCRIBER_DOC=1 cargo test --test \
         integration -- subscribers::the_subscriber_contract` and review the diff"
    );
    assert!(
        written == table,
        "the event table in {DOC} differs from the catalogue; run `UPDATE_SUBSCRIBER_DOC=1 cargo \
         test --test integration -- subscribers::the_subscriber_contract` and review the diff"
    );
    // Every schema the table links to is checked in.
    for (name, version, _) in CATALOGUE {
        let file = path.with_file_name(format!("{name}.v{version}.json"));
        assert!(file.exists(), "{} is missing", file.display());
    }
}

// ----- billing ---------------------------------------------------------------------------------

/// A running `idstream-billing`.
struct Billing {
    child: Child,
    base: String,
    client: reqwest::Client,
}

const BILLING_CONSUMER: &str = "billing-test";

impl Billing {
    async fn start(nats_url: &str, state: &Path) -> Billing {
        let mut child = Command::new(env!("CARGO_BIN_EXE_idstream-billing"))
            .arg("run")
            .args(["--nats-url", nats_url, "--stream", "IDSTREAM"])
            .args(["--consumer", BILLING_CONSUMER, "--listen", "127.0.0.1:0"])
            .arg("--state")
            .arg(state)
            .env(
                "IDSTREAM_LOG",
                std::env::var("IDSTREAM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn idstream-billing");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("idstream-billing listening on ") {
                    return url.to_owned();
                }
            }
            panic!("idstream-billing exited before listening")
        })
        .await
        .expect("idstream-billing listens");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Billing {
            child,
            base,
            client: reqwest::Client::new(),
        }
    }

    /// `GET /seats` once billing has folded the log up to `position`.
    async fn seats_at(&mut self, position: u64) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("idstream-billing exited: {status}");
            }
            if let Ok(response) = self.client.get(format!("{}/seats", self.base)).send().await
                && response.status().is_success()
            {
                let seats: Value = response.json().await.unwrap();
                if seats["position"].as_u64().unwrap() >= position {
                    return seats;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "billing did not reach position {position}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: nothing runs on the way out.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// The service's own count: members whose status now is `active`, read at `position`.
async fn service_seats(svc: &Service, tenant: &str, position: u64) -> u64 {
    let mut count = 0;
    let mut after = String::new();
    loop {
        let answer = svc
            .get_at(
                &format!("/v1/tenants/{tenant}/users?limit=500{after}"),
                position,
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
        count += answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["status"] == "active")
            .count() as u64;
        match answer.body["next"].as_str() {
            Some(next) => after = format!("&cursor={next}"),
            None => return count,
        }
    }
}

/// Billing's counts equal the service's for every tenant, at the log's current end.
async fn billing_agrees(svc: &Service, billing: &mut Billing, tenants: &[&str]) -> Value {
    let position = svc.log_position().await;
    let seats = billing.seats_at(position).await;
    for tenant in tenants {
        assert_eq!(
            seats["tenants"][tenant].as_u64(),
            Some(service_seats(svc, tenant, position).await),
            "seats of {tenant} at position {position}: {seats}"
        );
    }
    seats
}

async fn ok(answer: crate::support::service::Answer) -> u64 {
    assert!((200..300).contains(&answer.status), "{answer:?}");
    answer.body["position"].as_u64().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_counts_the_services_active_members_live_and_after_a_restart_from_its_durable_consumer()
 {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(&dir.path().join("service"), &nats.url()).await;
    let state = dir.path().join("billing/state.json");
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    svc.create_tenant("empty").await;
    let user = |email: &'static str, tenant: &'static str, roles: &'static [&'static str]| {
        let svc = &svc;
        async move { svc.create_user(tenant, email, roles).await.0 }
    };
    // Before billing starts: every kind of member.
    let a1 = user("a1@example.com", "acme", &["user"]).await;
    let a2 = user("a2@example.com", "acme", &["user"]).await;
    ok(svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "invited@example.com", "roles": ["user"], "invite": true}),
        )
        .await)
    .await;
    let s1 = user("s1@example.com", "acme", &["user"]).await;
    ok(svc
        .post(&format!("/v1/users/{s1}/suspend"), json!({}))
        .await)
    .await;
    let s2 = user("s2@example.com", "acme", &["user"]).await;
    let in_an_hour = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    ok(svc
        .post(
            &format!("/v1/users/{s2}/suspend"),
            json!({"until": in_an_hour}),
        )
        .await)
    .await;
    let d1 = user("d1@example.com", "acme", &["user"]).await;
    ok(svc
        .post(&format!("/v1/users/{d1}/deactivate"), json!({}))
        .await)
    .await;
    let r1 = user("r1@example.com", "acme", &["user"]).await;
    ok(svc.delete(&format!("/v1/tenants/acme/users/{r1}")).await).await;
    let m1 = user("m1@example.com", "beta", &["user"]).await;
    ok(svc
        .post(
            &format!("/v1/tenants/acme/users/{m1}/roles"),
            json!({"role": "user"}),
        )
        .await)
    .await;
    let p1 = user("p1@example.com", "acme", &[]).await;
    ok(svc
        .post(
            &format!("/v1/tenants/acme/users/{p1}/permissions"),
            json!({"permissions": ["users:read"]}),
        )
        .await)
    .await;
    user("b1@example.com", "beta", &["user"]).await;

    let tenants = ["acme", "beta", "empty"];
    let mut billing = Billing::start(&nats.url(), &state).await;
    let seats = billing_agrees(&svc, &mut billing, &tenants).await;
    // a1, a2, m1 and p1 (custom permissions only); not the invitee, the suspended, the
    // deactivated or the removed.
    assert_eq!(
        seats["tenants"],
        json!({"acme": 4, "beta": 2, "empty": 0}),
        "{seats}"
    );

    // Live: a reinstatement, a suspension and a new member.
    ok(svc
        .post(&format!("/v1/users/{s1}/reinstate"), json!({}))
        .await)
    .await;
    ok(svc
        .post(&format!("/v1/users/{a1}/suspend"), json!({}))
        .await)
    .await;
    user("a3@example.com", "acme", &["user"]).await;
    let seats = billing_agrees(&svc, &mut billing, &tenants).await;
    assert_eq!(seats["tenants"]["acme"], 5, "{seats}");
    let killed_at = seats["position"].as_u64().unwrap();
    billing.kill().await;

    // While billing is down.
    ok(svc
        .post(&format!("/v1/users/{a2}/deactivate"), json!({}))
        .await)
    .await;
    ok(svc.delete(&format!("/v1/tenants/acme/users/{m1}")).await).await;
    ok(svc
        .post(&format!("/v1/users/{d1}/reactivate"), json!({}))
        .await)
    .await;
    ok(svc
        .post(
            &format!("/v1/tenants/acme/users/{p1}/permissions/revoke"),
            json!({"permissions": ["users:read"]}),
        )
        .await)
    .await;
    user("b2@example.com", "beta", &["user"]).await;
    let end = svc.log_position().await;

    let mut billing = Billing::start(&nats.url(), &state).await;
    let seats = billing_agrees(&svc, &mut billing, &tenants).await;
    // acme: s1, a3 and d1; beta: m1, b1 and b2.
    assert_eq!(
        seats["tenants"],
        json!({"acme": 3, "beta": 3, "empty": 0}),
        "{seats}"
    );
    // It resumed from its state file and durable consumer: only the events after the kill were
    // delivered, and the server's consumer has acknowledged everything.
    assert_eq!(seats["started_at"], killed_at, "{seats}");
    assert_eq!(seats["applied"], end - killed_at, "{seats}");
    assert_eq!(seats["position"], end, "{seats}");
    let client = async_nats::connect(nats.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream("IDSTREAM")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let info = stream.consumer_info(BILLING_CONSUMER).await.unwrap();
        if info.ack_floor.stream_sequence == end {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the consumer acknowledged only up to {} of {end}",
            info.ack_floor.stream_sequence
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["position"], end);
    billing.kill().await;
}

// ----- HR sync ---------------------------------------------------------------------------------

const ADMIN_EMAIL: &str = "admin@example.com";
const ADMIN_PASSWORD: &str = "correct horse battery staple 42";
const INVITEE_PASSWORD: &str = "another long pass phrase 42";

/// Runs `idstream-hr-sync --json` against the service; returns its exit code and report.
async fn hr_sync(svc: &Service, token: &str, feed: &Path) -> (i32, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_idstream-hr-sync"))
        .args(["--url", &svc.base, "--tenant", "acme", "--json", "--feed"])
        .arg(feed)
        .env("IDSTREAM_TOKEN", token)
        .env_remove("IDSTREAM_URL")
        .output()
        .await
        .expect("run idstream-hr-sync");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

/// The first `idi_…` invitation token mailed to `to`.
async fn invitation_token(svc: &Service, to: &str) -> String {
    let mut found = None;
    eventually(&format!("an invitation reaches {to}"), || {
        found = svc
            .mail()
            .into_iter()
            .find(|m| m.to == to && m.text.contains("idi_"));
        std::future::ready(found.is_some())
    })
    .await;
    let text = found.unwrap().text;
    let start = text.find("idi_").unwrap();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

async fn accept(svc: &Service, to: &str) {
    let token = invitation_token(svc, to).await;
    let accepted = svc
        .post_anonymous(
            "/v1/invitations/accept",
            json!({"token": token, "password": INVITEE_PASSWORD}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
}

/// Members of acme by email: (id, status, first name, last name, roles).
async fn members(svc: &Service) -> BTreeMap<String, Value> {
    let position = svc.log_position().await;
    let answer = svc
        .get_at("/v1/tenants/acme/users?limit=500", position)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_owned(), m.clone()))
        .collect()
}

/// Runs the sync a second time with the same feed: no change, and the only events appended are
/// the API key's use (recorded at most once a minute).
async fn a_second_run_changes_nothing(svc: &Service, key: &str, feed: &Path) {
    let before = svc.log_position().await;
    let (code, report) = hr_sync(svc, key, feed).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["changes"], 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    let appended: Vec<String> = svc
        .events()
        .await
        .into_iter()
        .filter(|e| e.position > before)
        .map(|e| e.envelope.event_type)
        .filter(|t| t != "ApiKeyUsed")
        .collect();
    assert!(appended.is_empty(), "a second run appended {appended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hr_sync_invites_joiners_renames_and_deactivates_leavers_and_a_second_run_changes_nothing()
{
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    Service::bootstrap(
        &data,
        Some(&nats.url()),
        "acme",
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    let svc = Service::jetstream(&data, &nats.url()).await;
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let issued = svc
        .send(
            svc.request_as(
                admin["access_token"].as_str().unwrap(),
                Method::POST,
                "/v1/tenants/acme/api-keys",
            )
            .json(&json!({"name": "hr-sync"})),
        )
        .await;
    assert_eq!(issued.status, 201, "{issued:?}");
    let key = issued.body["key"].as_str().unwrap().to_owned();
    // Someone added by hand, and someone of another tenant whom the feed will list.
    svc.create_user("acme", "contractor@example.com", &["user"])
        .await;
    svc.create_tenant("beta").await;
    let created = svc
        .post(
            "/v1/tenants/beta/users",
            json!({"email": "mia@example.com", "first_name": "Mia", "last_name": "Hamm"}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let mia = created.body["id"].as_str().unwrap().to_owned();

    let feed = dir.path().join("employees.csv");
    std::fs::write(
        &feed,
        "email,first_name,last_name,roles\n\
         ada@example.com,Ada,Lovelace,user\n\
         Bob@Example.com,Bob,Builder,\n\
         carl@example.com,Carl,Sagan,user\n\
         mia@example.com,Mia,Hamm,user\n\
         admin@example.com,Not,Me,user\n",
    )
    .unwrap();
    let (code, report) = hr_sync(&svc, &key, &feed).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    // The marker role, two new users and one user of another tenant invited.
    assert_eq!(report["defined_roles"], 1, "{report}");
    assert_eq!(report["invited"], 4, "{report}");
    assert_eq!(report["changes"], 5, "{report}");
    assert!(
        report["notes"].to_string().contains(ADMIN_EMAIL),
        "{report}"
    );
    let now = members(&svc).await;
    for email in ["ada@example.com", "bob@example.com", "carl@example.com"] {
        assert_eq!(now[email]["status"], "invited", "{now:?}");
        assert_eq!(
            now[email]["roles"],
            json!(["hr_managed", "user"]),
            "{now:?}"
        );
    }
    assert_eq!(now["ada@example.com"]["first_name"], "Ada");
    assert!(!now.contains_key("mia@example.com"), "{now:?}");
    // The admin running the sync was left alone.
    assert_eq!(now[ADMIN_EMAIL]["first_name"], "Ada");
    accept(&svc, "bob@example.com").await;
    accept(&svc, "mia@example.com").await;

    a_second_run_changes_nothing(&svc, &key, &feed).await;

    // Ada's name changed, Bob, Carl and Mia left, Dan joined.
    let feed = dir.path().join("employees.json");
    std::fs::write(
        &feed,
        json!([
            {"email": "ada@example.com", "first_name": "Ada", "last_name": "King"},
            {"email": "dan@example.com", "first_name": "Dan", "last_name": "Brown", "roles": ["admin"]},
            {"email": "admin@example.com", "first_name": "Not", "last_name": "Me"},
        ])
        .to_string(),
    )
    .unwrap();
    // Ada has a picture: a rename by the sync keeps it.
    let ada_id = now["ada@example.com"]["id"].as_str().unwrap().to_owned();
    let picture = svc
        .send(
            svc.request(reqwest::Method::PUT, &format!("/v1/users/{ada_id}/profile"))
                .json(&json!({"first_name": "Ada", "last_name": "Lovelace",
                              "image_url": "https://example.com/ada.png"})),
        )
        .await;
    assert_eq!(picture.status, 200, "{picture:?}");
    let (code, report) = hr_sync(&svc, &key, &feed).await;
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["invited"], 1, "{report}");
    assert_eq!(report["renamed"], 1, "{report}");
    assert_eq!(report["deactivated"], 2, "{report}");
    assert_eq!(report["removed"], 1, "{report}");
    assert_eq!(report["invitations_revoked"], 1, "{report}");
    assert_eq!(report["changes"], 6, "{report}");
    let now = members(&svc).await;
    assert_eq!(now["ada@example.com"]["last_name"], "King");
    assert_eq!(
        now["ada@example.com"]["image_url"], "https://example.com/ada.png",
        "{now:?}"
    );
    assert_eq!(now["bob@example.com"]["status"], "inactive");
    assert_eq!(now["carl@example.com"]["status"], "inactive");
    assert_eq!(
        now["dan@example.com"]["roles"],
        json!(["admin", "hr_managed"])
    );
    // Mia belongs to beta too: she left acme only.
    assert!(!now.contains_key("mia@example.com"), "{now:?}");
    let position = svc.log_position().await;
    let mia = svc.get_at(&format!("/v1/users/{mia}"), position).await;
    assert_eq!(mia.body["status"], "active", "{mia:?}");
    assert_eq!(mia.body["tenants"], json!(["beta"]), "{mia:?}");
    // Carl's invitation died with his departure.
    let invitations = svc
        .get_at("/v1/tenants/acme/invitations?limit=500", position)
        .await;
    let carl = &now["carl@example.com"]["id"];
    assert!(
        invitations.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["user"] == *carl)
            .all(|i| i["status"] == "revoked"),
        "{invitations:?}"
    );
    // Never touched: the contractor and the administrator.
    assert_eq!(now["contractor@example.com"]["status"], "active");
    assert_eq!(now[ADMIN_EMAIL]["status"], "active");
    assert_eq!(now[ADMIN_EMAIL]["last_name"], "Admin");

    a_second_run_changes_nothing(&svc, &key, &feed).await;
}

// ----- a subscriber in Python ------------------------------------------------------------------

/// The Python of the venv `.ci/test` creates, or a loud failure explaining how to get it.
fn venv_python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python");
    let usable = std::process::Command::new(&python)
        .args(["-c", "import nats, jsonschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        usable,
        "{} with nats-py and jsonschema is missing. `.ci/test` installs it; by hand: \
         `/usr/bin/python3 -m venv target/py-venv && target/py-venv/bin/pip install nats-py \
         jsonschema` (Debian: apt-get install python3-venv python3-pip)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_subscriber_resumes_its_durable_consumer_and_finds_every_event_valid() {
    let python = venv_python();
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("service");
    Service::bootstrap(
        &data,
        Some(&nats.url()),
        "acme",
        ADMIN_EMAIL,
        ADMIN_PASSWORD,
    )
    .await;
    let svc = Service::jetstream(&data, &nats.url()).await;

    // A history touching most kinds of event, keeping every secret it sees.
    let mut secrets = vec![ADMIN_PASSWORD.to_owned(), INVITEE_PASSWORD.to_owned()];
    let wrong = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": ADMIN_EMAIL, "password": "not the password at all"}),
        )
        .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let admin = svc.sign_in(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let access = admin["access_token"].as_str().unwrap().to_owned();
    let refreshed = svc
        .post_anonymous(
            "/v1/auth/refresh",
            json!({"refresh_token": admin["refresh_token"]}),
        )
        .await;
    assert_eq!(refreshed.status, 200, "{refreshed:?}");
    secrets.push(admin["refresh_token"].as_str().unwrap().to_owned());
    secrets.push(refreshed.body["refresh_token"].as_str().unwrap().to_owned());
    let issued = svc
        .send(
            svc.request_as(&access, Method::POST, "/v1/tenants/acme/api-keys")
                .json(&json!({"name": "reports", "permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(issued.status, 201, "{issued:?}");
    let key = issued.body["key"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    assert_eq!(svc.get_as(&key, "/v1/auth/me").await.status, 200);
    ok(svc
        .delete(&format!(
            "/v1/tenants/acme/api-keys/{}",
            issued.body["id"].as_str().unwrap()
        ))
        .await)
    .await;

    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    ok(svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "reviewer", "permissions": ["entity.project:read"]}),
        )
        .await)
    .await;
    ok(svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "reviewer"}),
        )
        .await)
    .await;
    ok(svc
        .delete(&format!("/v1/tenants/acme/users/{ada}/roles/reviewer"))
        .await)
    .await;
    ok(svc
        .post(
            &format!("/v1/tenants/acme/users/{ada}/permissions"),
            json!({"permissions": ["users:read"]}),
        )
        .await)
    .await;
    ok(svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title"], "rls": true}),
        )
        .await)
    .await;
    let record = "/v1/tenants/acme/entities/project/records/P-1";
    ok(svc
        .put(&format!("{record}/owner"), json!({"user": ada}))
        .await)
    .await;
    ok(svc
        .put(
            &format!("{record}/grants/{ada}"),
            json!({"access": "read_only"}),
        )
        .await)
    .await;
    ok(svc
        .post(&format!("/v1/users/{ada}/suspend"), json!({}))
        .await)
    .await;
    ok(svc
        .post(&format!("/v1/users/{ada}/reinstate"), json!({}))
        .await)
    .await;
    ok(svc
        .put(
            &format!("/v1/users/{ada}/profile"),
            json!({"first_name": "Ada", "last_name": "King", "image_url": "https://example.com/ada.png"}),
        )
        .await)
    .await;
    ok(svc
        .post(&format!("/v1/users/{ada}/deactivate"), json!({}))
        .await)
    .await;
    ok(svc
        .post(&format!("/v1/users/{ada}/reactivate"), json!({}))
        .await)
    .await;
    let invited = svc
        .post(
            "/v1/tenants/acme/invitations",
            json!({"email": "grace@example.com", "first_name": "Grace", "last_name": "Hopper"}),
        )
        .await;
    ok(invited).await;
    let token = invitation_token(&svc, "grace@example.com").await;
    secrets.push(token.clone());
    accept(&svc, "grace@example.com").await;
    svc.create_tenant("beta").await;

    // Personal data is in the stream only encrypted per user (`pd1.…`), never in the clear.
    secrets.extend(
        [
            "ada@example.com",
            "grace@example.com",
            "Lovelace",
            "Hopper",
            "example.com/ada.png",
        ]
        .map(String::from),
    );

    let end = svc.log_position().await;
    let mut command = tokio::process::Command::new(&python);
    command
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/validate_events.py"))
        .args(["--nats-url", &nats.url(), "--stream", "IDSTREAM"])
        .arg("--schemas")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas"));
    for secret in &secrets {
        command.args(["--forbid", secret]);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("the Python subscriber finishes")
        .expect("run the Python subscriber");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}): {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{summary}");
    assert_eq!(summary["errors"], json!([]), "{summary}");
    assert_eq!(summary["validated"], end, "{summary}");
    assert_eq!(summary["first"], 1, "{summary}");
    assert_eq!(summary["last"], end, "{summary}");
    assert_eq!(
        summary["resumed_at"],
        summary["acknowledged_before_restart"].as_u64().unwrap() + 1,
        "{summary}"
    );
    let types = summary["types"].as_object().unwrap();
    for expected in [
        "TenantCreated",
        "UserRegistered",
        "UserInvited",
        "PasswordSet",
        "SignInFailed",
        "SessionStarted",
        "SessionRefreshed",
        "ApiKeyIssued",
        "ApiKeyRevoked",
        "RoleDefined",
        "RoleAssigned",
        "RoleRevoked",
        "PermissionsGranted",
        "EntityRegistered",
        "RecordOwnerSet",
        "RecordGranted",
        "UserSuspended",
        "UserReinstated",
        "UserProfileChanged",
        "UserDeactivated",
        "UserReactivated",
        "InvitationSent",
        "InvitationAccepted",
        "UserActivated",
        "EmailClaimed",
    ] {
        assert!(types.contains_key(expected), "no {expected} in {summary}");
    }
}
