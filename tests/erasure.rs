//! Erasure by crypto-shredding, point-in-time replay and the access review, against the real
//! binary on both log backends: personal data never lies in the log in the clear; after an
//! erasure no answer, read model, replay, review, log line or stored file shows it, while the
//! trail keeps its structure; "who could read record R then, and why" is answered from a replay.

use std::path::Path;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::nats::NatsServer;
use crate::support::service::{Answer, Service};
use crate::support::verify::audit_verify;

/// Appears only in the erased user's email, names and picture, in the user agent of her
/// sign-ins (the other personal data of a sign-in, the address, is 127.0.0.1 for everyone here),
/// and in the mail the service spooled for her.
const CANARY: &str = "zq7canary";
/// Ada's phone number (E.164), a canary too: its digits appear nowhere else.
const PHONE: &str = "+447700900731";

const ADA_PASSWORD: &str = "Canary-Reset-Pass-1";

async fn put(svc: &Service, path: &str, body: Value) -> Answer {
    svc.send(svc.request(Method::PUT, path).json(&body)).await
}

/// Runs `idstream <args>` on the embedded data directory `data`; returns its standard output.
async fn idstream(data: &Path, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args(args)
        .env("IDSTREAM_DATA_DIR", data)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "idstream {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The files under `dir` that hold `needle` in any of the forms a store keeps text in (see
/// `files_holding`).
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    idstream_projection_runtime::personal::files_holding(dir, &[needle])
        .into_iter()
        .map(|(path, _)| path.display().to_string())
        .collect()
}

struct World {
    admin: String,
    ada: String,
    bob: String,
    /// After Ada's grant on P1, before it was revoked.
    granted_at: u64,
    /// After the revocation.
    revoked_at: u64,
}

/// acme with an RLS entity `project`, an admin, Ada (the canary) and Bob; Ada is granted P1,
/// which is later revoked; Bob owns nothing but holds `pm` on P1.
async fn world(svc: &Service) -> World {
    svc.create_tenant("acme").await;
    let (admin, _) = svc
        .create_user("acme", "admin@example.com", &["admin"])
        .await;
    // An attribute of the tenant's own, whose value for Ada is a canary too.
    let nickname = put(
        svc,
        "/v1/tenants/acme/attributes/nickname",
        json!({"label": "Nickname", "type": "text"}),
    )
    .await;
    assert_eq!(nickname.status, 200, "{nickname:?}");
    let created = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": format!("ada.{CANARY}@example.com"), "first_name": format!("Ada{CANARY}"),
                   "last_name": format!("Love{CANARY}"), "roles": ["user"],
                   "attributes": {"nickname": format!("Nick{CANARY}")}}),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let ada = created.body["id"].as_str().unwrap().to_owned();
    let profile = put(
        svc,
        &format!("/v1/users/{ada}/profile"),
        json!({"first_name": format!("Ada{CANARY}"), "last_name": format!("Love{CANARY}"),
               "phone": "+44 7700 900731"}),
    )
    .await;
    assert_eq!(profile.status, 200, "{profile:?}");
    let (bob, _) = svc.create_user("acme", "bob@example.com", &["user"]).await;
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "project", "fields": ["title"], "rls": true}),
        )
        .await;
    assert_eq!(entity.status, 201, "{entity:?}");
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "pm", "description": "Project manager",
                   "permissions": ["entity.project:read"], "global_access": false}),
        )
        .await;
    assert_eq!(role.status, 201, "{role:?}");
    let local = put(
        svc,
        &format!("/v1/tenants/acme/entities/project/records/P1/local-roles/{bob}/pm"),
        json!({}),
    )
    .await;
    assert!(local.status < 300, "{local:?}");
    let granted = put(
        svc,
        &format!("/v1/tenants/acme/entities/project/records/P1/grants/{ada}"),
        json!({"access": "read_only"}),
    )
    .await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let revoked = svc
        .send(svc.request(
            Method::DELETE,
            &format!("/v1/tenants/acme/entities/project/records/P1/grants/{ada}"),
        ))
        .await;
    assert!(revoked.status < 300, "{revoked:?}");
    World {
        admin,
        ada,
        bob,
        granted_at: granted.position(),
        revoked_at: revoked.position(),
    }
}

fn holders(answer: &Answer) -> Vec<String> {
    answer.body["holders"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|h| h["user"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn who_could_read_p1_then_and_why(svc: &Service, w: &World) {
    // While the grant stood: Ada through the grant (with the granting event), Bob through pm,
    // the administrator through global access.
    let then = svc
        .get(&format!(
            "/v1/audit/as-of/holders?tenant=acme&permission=entity.project:read&record=P1&position={}",
            w.granted_at
        ))
        .await;
    assert_eq!(then.status, 200, "{then:?}");
    assert_eq!(then.body["as_of"]["position"], w.granted_at);
    let mut who = holders(&then);
    who.sort();
    let mut expected = vec![w.admin.clone(), w.ada.clone(), w.bob.clone()];
    expected.sort();
    assert_eq!(who, expected, "{then:?}");
    let ada = then.body["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["user"] == w.ada.as_str())
        .unwrap();
    assert_eq!(
        ada["reason"],
        json!({"kind": "grant", "access": "read_only"})
    );
    assert_eq!(ada["sources"][0]["position"], w.granted_at, "{ada}");
    assert_eq!(ada["sources"][0]["event_type"], "RecordGranted");
    let bob = then.body["holders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["user"] == w.bob.as_str())
        .unwrap();
    assert_eq!(bob["reason"]["kind"], "local_role", "{bob}");

    // After the revocation Ada no longer; the same asked by time.
    let now = svc
        .get(&format!(
            "/v1/audit/as-of/holders?tenant=acme&permission=entity.project:read&record=P1&position={}",
            w.revoked_at
        ))
        .await;
    let mut who = holders(&now);
    who.sort();
    let mut expected = vec![w.admin.clone(), w.bob.clone()];
    expected.sort();
    assert_eq!(who, expected, "{now:?}");
    let time = then.body["as_of"]["time"].as_str().unwrap().to_owned();
    let by_time = svc
        .get(&format!(
            "/v1/audit/as-of/explain?tenant=acme&user={}&permission=entity.project:read&record=P1&at={}",
            w.ada,
            time.replace('+', "%2B")
        ))
        .await;
    assert_eq!(by_time.status, 200, "{by_time:?}");
    assert_eq!(by_time.body["allowed"], true, "{by_time:?}");
    assert!(by_time.body["as_of"]["position"].as_u64().unwrap() >= w.granted_at);

    // Bad moments are refused plainly.
    for query in [
        "tenant=acme&permission=entity.project:read&record=P1",
        "tenant=acme&permission=entity.project:read&record=P1&at=yesterday",
        "tenant=acme&permission=entity.project:read&record=P1&at=2026-01-01T00:00:00Z&position=3",
        "tenant=acme&permission=users:read&record=P1&position=3",
    ] {
        let refused = svc.get(&format!("/v1/audit/as-of/holders?{query}")).await;
        assert_eq!(refused.status, 400, "{query}: {refused:?}");
        assert!(refused.body["code"].is_string(), "{refused:?}");
    }

    // A replay to the live read models' position has their digests.
    let live = svc.read_models().await;
    for name in ["directory", "access"] {
        let position = live[name]["position"].as_u64().unwrap();
        let replayed = svc
            .get(&format!(
                "/v1/audit/access-review?tenant=acme&position={position}"
            ))
            .await;
        assert_eq!(replayed.status, 200, "{replayed:?}");
        assert_eq!(replayed.body["as_of"]["position"], position);
        assert_eq!(
            replayed.body["as_of"]["digests"][name], live[name]["digest"],
            "{name}: {replayed:?} vs {live}"
        );
    }
}

/// Waits until the file mailer has written a message to `to`; returns its text.
async fn mail_to(svc: &Service, to: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if let Some(mail) = svc.mail().into_iter().find(|m| m.to == to) {
            return mail.text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mail to {to} arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Ada resets her password by email (so the spool holds mail to her address), mistypes it once
/// and signs in, both from a browser whose user agent carries the canary; her sessions list it.
async fn ada_signs_in_from_a_canary_browser(svc: &Service, w: &World) {
    let email = format!("ada.{CANARY}@example.com");
    let asked = svc
        .post_anonymous("/v1/auth/password/reset-request", json!({ "email": email }))
        .await;
    assert_eq!(asked.status, 202, "{asked:?}");
    let text = mail_to(svc, &email).await;
    let start = text.find("idp_").expect("a reset token in the mail");
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let reset = svc
        .post_anonymous(
            "/v1/auth/password/reset",
            json!({"user": w.ada, "token": token, "password": ADA_PASSWORD}),
        )
        .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    let agent = format!("CanaryBrowser/{CANARY}");
    let sign_in = |password: &str| {
        svc.anonymous(Method::POST, "/v1/auth/sign-in")
            .header("user-agent", &agent)
            .json(&json!({"email": email, "password": password}))
    };
    svc.send(sign_in("wrong password"))
        .await
        .assert_problem(401, "invalid_credentials");
    let tokens = svc.send(sign_in(ADA_PASSWORD)).await;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    let access = tokens.body["access_token"].as_str().unwrap();
    let own = svc
        .send(
            svc.request_as(access, Method::GET, "/v1/auth/sessions")
                .header("X-Idstream-Min-Position", tokens.position()),
        )
        .await;
    assert_eq!(
        own.body["items"][0]["user_agent"],
        agent.as_str(),
        "{own:?}"
    );
    let listed = svc
        .get_at(&format!("/v1/users/{}/sessions", w.ada), tokens.position())
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.body["items"][0]["user_agent"], agent.as_str());
    assert_eq!(listed.body["items"][0]["ip"], "127.0.0.1");
    assert!(
        !files_containing(&svc.data_dir.join("mail"), CANARY).is_empty(),
        "the spool holds mail to Ada"
    );

    // She moves to another canary address, confirmed from the mail sent to it.
    let new_email = format!("ada.new.{CANARY}@example.com");
    let asked = svc
        .send(
            svc.request_as(access, Method::POST, "/v1/auth/email")
                .json(&json!({"new_email": new_email, "password": ADA_PASSWORD})),
        )
        .await;
    assert_eq!(asked.status, 200, "{asked:?}");
    let text = mail_to(svc, &new_email).await;
    let start = text.find("ide_").expect("a confirmation token in the mail");
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let confirmed = svc
        .post_anonymous(
            "/v1/auth/email/confirm",
            json!({"user": w.ada, "token": token}),
        )
        .await;
    assert!(confirmed.status < 300, "{confirmed:?}");
    let moved = svc
        .get_at(&format!("/v1/users/{}", w.ada), confirmed.position())
        .await;
    assert_eq!(moved.body["email"], new_email.as_str(), "{moved:?}");
}

/// Every canary as it could be stored (see `files_holding`): the erased person's addresses,
/// names, attribute value, user agent and phone.
fn canaries() -> Vec<String> {
    vec![CANARY.to_owned(), PHONE[1..].to_owned()]
}

/// Every file under `dirs` holding a canary, in any stored form: there must be none.
fn canaries_in(dirs: &[&Path]) -> Vec<(std::path::PathBuf, String)> {
    let canaries = canaries();
    let texts: Vec<&str> = canaries.iter().map(String::as_str).collect();
    dirs.iter()
        .flat_map(|dir| idstream_projection_runtime::personal::files_holding(dir, &texts))
        .collect()
}

/// After the erasure and a restart, the service still serves, Ada reads as erased, and the
/// tamper-evidence chain verifies.
async fn after_a_restart_it_still_works_and_the_trail_verifies(svc: &mut Service, w: &World) {
    svc.start_again().await;
    let user = svc.get(&format!("/v1/users/{}", w.ada)).await;
    assert_eq!(user.status, 200, "{user:?}");
    assert_eq!(user.body["status"], "erased", "{user:?}");
    let bob = svc.get(&format!("/v1/users/{}", w.bob)).await;
    assert_eq!(bob.body["email"], "bob@example.com", "{bob:?}");
    let (carol, created) = svc
        .create_user("acme", "carol@example.com", &["user"])
        .await;
    let found = svc.get_at("/v1/tenants/acme/users?q=carol", created).await;
    assert!(found.body.to_string().contains(&carol), "{found:?}");
    svc.stop().await;
    let verdict = audit_verify(&svc.data_dir, svc.nats_url.as_deref(), &[], &[]).await;
    assert_eq!(verdict.status, 0, "audit verify: {verdict:?}");
}

async fn erasure_leaves_the_structure_and_nothing_personal(svc: &Service, w: &World) {
    ada_signs_in_from_a_canary_browser(svc, w).await;
    let before = svc.get(&format!("/v1/users/{}", w.ada)).await;
    assert!(before.body.to_string().contains(CANARY), "{before:?}");
    assert_eq!(before.body["phone"], PHONE, "{before:?}");
    let attributes = format!("/v1/tenants/acme/users/{}/attributes", w.ada);
    let before = svc.get(&attributes).await;
    assert_eq!(
        before.body["attributes"]["nickname"],
        format!("Nick{CANARY}"),
        "{before:?}"
    );
    let review = svc
        .get("/v1/audit/access-review?tenant=acme&format=csv")
        .await;
    assert_eq!(review.status, 200);

    let erased = svc
        .post(&format!("/v1/users/{}/erase", w.ada), json!({}))
        .await;
    assert_eq!(erased.status, 200, "{erased:?}");
    let at = erased.position();
    let again = svc
        .post(&format!("/v1/users/{}/erase", w.ada), json!({}))
        .await;
    assert_eq!(again.status, 200, "{again:?}");

    let user = svc.get_at(&format!("/v1/users/{}", w.ada), at).await;
    assert_eq!(user.status, 200, "{user:?}");
    assert_eq!(user.body["status"], "erased", "{user:?}");
    assert!(!user.body.to_string().contains(CANARY), "{user:?}");
    assert!(!user.body.to_string().contains(&PHONE[1..]), "{user:?}");
    let values = svc.get_at(&attributes, at).await;
    assert!(!values.body.to_string().contains(CANARY), "{values:?}");
    let rows = svc
        .get_at(&format!("/v1/tenants/acme/users?q={}", w.ada), at)
        .await;
    assert!(!rows.body.to_string().contains(CANARY), "{rows:?}");
    // Her sessions no longer say where she signed in from, and the mail spooled for her is gone.
    let sessions = svc
        .get_at(&format!("/v1/users/{}/sessions", w.ada), at)
        .await;
    assert!(!sessions.body.to_string().contains(CANARY), "{sessions:?}");
    assert_eq!(
        files_containing(&svc.data_dir.join("mail"), CANARY),
        Vec::<String>::new(),
        "the mail spool"
    );

    // Nothing can be done to an erased user; their address is free again.
    let suspend = svc
        .post(&format!("/v1/users/{}/suspend", w.ada), json!({}))
        .await;
    suspend.assert_problem(409, "user_erased");
    let reused = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": format!("ada.{CANARY}@example.com"), "first_name": "New", "last_name": "Person", "roles": ["user"]}),
        )
        .await;
    assert_eq!(
        reused.status, 201,
        "the erased user's address is released: {reused:?}"
    );
    let newcomer = reused.body["id"].as_str().unwrap().to_owned();
    let erase_newcomer = svc
        .post(&format!("/v1/users/{newcomer}/erase"), json!({}))
        .await;
    assert_eq!(erase_newcomer.status, 200, "{erase_newcomer:?}");
    let at = erase_newcomer.position();

    // The trail keeps its structure: Ada still held the grant back then, by id, with the event
    // that gave it; the review of that moment lists her id and no personal data.
    let then = svc
        .get(&format!(
            "/v1/audit/as-of/holders?tenant=acme&permission=entity.project:read&record=P1&position={}",
            w.granted_at
        ))
        .await;
    assert!(holders(&then).contains(&w.ada), "{then:?}");
    assert!(!then.body.to_string().contains(CANARY), "{then:?}");
    for query in [
        format!("tenant=acme&position={}", w.granted_at),
        format!("tenant=acme&position={at}"),
        "tenant=acme".to_owned(),
    ] {
        for format in ["json", "csv"] {
            let review = svc
                .send(svc.request(
                    Method::GET,
                    &format!("/v1/audit/access-review?{query}&format={format}"),
                ))
                .await;
            assert_eq!(review.status, 200, "{review:?}");
        }
        let review = svc
            .request(
                Method::GET,
                &format!("/v1/audit/access-review?{query}&format=csv"),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(review.contains(&w.ada), "{review}");
        assert!(!review.contains(CANARY), "{review}");
        let json = svc.get(&format!("/v1/audit/access-review?{query}")).await;
        assert!(json.body.to_string().contains(&w.ada), "{json:?}");
        assert!(!json.body.to_string().contains(CANARY), "{json:?}");
    }
}

async fn the_raw_log_never_holds_personal_data_in_the_clear(svc: &Service) {
    let events = svc.events().await;
    assert!(!events.is_empty());
    for event in events {
        let text = serde_json::to_string(&event.envelope).unwrap();
        assert!(!text.contains(CANARY), "{text}");
        assert!(!text.contains(&PHONE[1..]), "{text}");
    }
}

#[tokio::test]
async fn on_the_embedded_log_erasure_shreds_personal_data_and_replays_answer_who_could_read() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("service.log");
    let data = dir.path().join("data");
    let mut svc = Service::embedded_capturing(&data, &output, "debug").await;
    let w = world(&svc).await;
    who_could_read_p1_then_and_why(&svc, &w).await;
    erasure_leaves_the_structure_and_nothing_personal(&svc, &w).await;
    // Not in any file the service keeps (log, keys, read models, replays, mail spool), nor in its
    // output at debug level.
    svc.stop().await;
    assert_eq!(canaries_in(&[dir.path()]), vec![], "after the erasure");
    the_raw_log_never_holds_personal_data_in_the_clear(&svc).await;
    let rebuilt = svc.replay().await;
    assert!(rebuilt.contains_key("directory"));

    // The same questions from the command line.
    let granted_at = w.granted_at.to_string();
    let who = idstream(
        &data,
        &[
            "audit",
            "who-could",
            "--tenant",
            "acme",
            "--permission",
            "entity.project:read",
            "--record",
            "P1",
            "--as-of",
            &granted_at,
        ],
    )
    .await;
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(who["as_of"]["position"], w.granted_at);
    assert!(
        who["holders"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["user"] == w.ada.as_str()),
        "{who}"
    );
    let csv = idstream(
        &data,
        &[
            "audit",
            "export",
            "--tenant",
            "acme",
            "--as-of",
            &granted_at,
        ],
    )
    .await;
    assert!(csv.starts_with("tenant,user,email,status,kind"), "{csv}");
    assert!(
        csv.contains(&format!("acme,{},", w.ada)) && csv.contains(",record_grant,"),
        "{csv}"
    );
    assert!(!csv.contains(CANARY), "{csv}");
    let out = data.join("past");
    let digests = idstream(
        &data,
        &[
            "replay",
            "--as-of",
            &granted_at,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        digests.contains("access ") && digests.contains("directory "),
        "{digests}"
    );
    for kept in ["log", "keys", "replays", "mail"] {
        assert_eq!(
            files_containing(&data.join(kept), CANARY),
            Vec::<String>::new(),
            "{kept}"
        );
    }
    let logged = std::fs::read_to_string(&output).unwrap();
    assert!(!logged.contains(CANARY), "the service logged personal data");
    // The raw-bytes canary: not one file of the whole directory names her, in any form.
    assert_eq!(canaries_in(&[dir.path()]), vec![], "after the replays");
    after_a_restart_it_still_works_and_the_trail_verifies(&mut svc, &w).await;
}

#[tokio::test]
async fn on_jetstream_erasure_shreds_personal_data_and_replays_answer_who_could_read() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Service::jetstream(dir.path(), &nats.url()).await;
    let w = world(&svc).await;
    the_raw_log_never_holds_personal_data_in_the_clear(&svc).await;
    who_could_read_p1_then_and_why(&svc, &w).await;
    erasure_leaves_the_structure_and_nothing_personal(&svc, &w).await;
    svc.stop().await;
    // The raw-bytes canary over the service's directory and the nats-server store.
    assert_eq!(
        canaries_in(&[dir.path(), &nats.store_dir()]),
        vec![],
        "after the erasure"
    );
    after_a_restart_it_still_works_and_the_trail_verifies(&mut svc, &w).await;
    assert_eq!(
        canaries_in(&[dir.path(), &nats.store_dir()]),
        vec![],
        "after the restart"
    );
}

#[tokio::test]
async fn auditing_needs_audit_read_in_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    Service::bootstrap(
        dir.path(),
        None,
        "acme",
        "root@example.com",
        "correct horse battery",
    )
    .await;
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("globex").await;
    let tokens = svc
        .sign_in("root@example.com", "correct horse battery")
        .await;
    let admin = tokens["access_token"].as_str().unwrap().to_owned();
    // acme's administrator, not a platform administrator.
    let flags = put(
        &svc,
        &format!("/v1/users/{}/flags", tokens["user"].as_str().unwrap()),
        json!({"dashboard_access": true, "api_access": true, "platform_admin": false}),
    )
    .await;
    assert_eq!(flags.status, 200, "{flags:?}");
    let at = flags.position();
    let _ = svc.get_at("/v1/tenants/acme", at).await;
    let allowed = svc
        .get_as(&admin, "/v1/audit/access-review?tenant=acme")
        .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    // acme's administrator audits acme, not globex, which answers as if it did not exist.
    svc.get_as(&admin, "/v1/audit/access-review?tenant=globex")
        .await
        .assert_problem(404, "tenant_not_found");
    let anonymous = svc
        .send(svc.anonymous(Method::GET, "/v1/audit/access-review?tenant=acme"))
        .await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
}
