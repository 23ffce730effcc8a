//! Passkeys over the JSON API, answered by a software authenticator
//! (`support::passkey::SoftPasskey`): registration, sign-in alone and as a second factor,
//! listing and removal, a last factor's removal and an administrator's reset, one use per
//! ceremony (also across two replicas), a cloned authenticator's counter, another origin,
//! erasure and the trail. The browser tests (`tests/pages.rs`) run the same ceremonies in
//! Chromium with its virtual authenticator.

use serde_json::{Value, json};

use crate::support::passkey::SoftPasskey;
use crate::support::service::Service;
use crate::support::world::{Account, eventually, join, text};

/// The service's public URL in these tests: its origin is the one passkeys are bound to (the
/// software authenticator claims it, as a browser on that origin would).
const ORIGIN: &str = "http://localhost";
const PASSWORD: &str = "Passkey-Test-Passphrase-2026";

async fn service(dir: &std::path::Path) -> Service {
    let svc = Service::embedded_with_env(dir, &[("IDSTREAM_PUBLIC_URL", ORIGIN)]).await;
    eventually("the service is ready", || async {
        svc.get("/readyz").await.status == 200
    })
    .await;
    svc.create_tenant("acme").await;
    svc
}

/// Registers a passkey named `name` for `account`; returns it and the finish's answer body.
async fn register(svc: &Service, account: &Account, name: &str) -> (SoftPasskey, Value) {
    let start = svc
        .post_as(
            &account.token,
            "/v1/auth/passkeys/registration/start",
            json!({}),
        )
        .await;
    assert_eq!(start.status, 200, "{start:?}");
    let (passkey, credential) = SoftPasskey::register(&start.body["options"], ORIGIN);
    let finish = svc
        .post_as(
            &account.token,
            "/v1/auth/passkeys/registration/finish",
            json!({"ceremony": start.body["ceremony"], "name": name, "credential": credential}),
        )
        .await;
    assert_eq!(finish.status, 201, "{finish:?}");
    assert_eq!(finish.body["credential"], passkey.id());
    (passkey, finish.body)
}

/// Starts a sign-in with a passkey alone: (options, ceremony).
async fn start_sign_in(svc: &Service) -> (Value, Value) {
    let start = svc
        .post_anonymous("/v1/auth/sign-in/passkey/start", json!({}))
        .await;
    assert_eq!(start.status, 200, "{start:?}");
    (
        start.body["options"].clone(),
        start.body["ceremony"].clone(),
    )
}

async fn finish_sign_in(
    svc: &Service,
    ceremony: &Value,
    credential: Value,
) -> crate::support::service::Answer {
    svc.post_anonymous(
        "/v1/auth/sign-in/passkey/finish",
        json!({"ceremony": ceremony, "credential": credential}),
    )
    .await
}

async fn event_types(svc: &Service, user: &str) -> Vec<(String, Value)> {
    svc.events()
        .await
        .into_iter()
        .filter(|e| e.envelope.aggregate.id == user)
        .map(|e| (e.envelope.event_type, e.envelope.data))
        .collect()
}

#[tokio::test]
async fn a_passkey_signs_in_alone_and_as_a_second_factor_and_is_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = service(dir.path()).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;

    let (mut laptop, registered) = register(&svc, &ada, "Laptop").await;
    // The first second factor brings recovery codes, shown once.
    let codes = registered["recovery_codes"].as_array().unwrap().clone();
    assert_eq!(codes.len(), 10, "{registered}");
    let (_, second) = register(&svc, &ada, "YubiKey").await;
    assert_eq!(second["recovery_codes"], json!([]));

    let listed = svc.get_as(&ada.token, "/v1/auth/passkeys").await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let names: Vec<_> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| text(&p["name"]))
        .collect();
    assert_eq!(names, ["Laptop", "YubiKey"]);
    assert!(listed.body["items"][0]["last_used_at"].is_null());

    // Alone, without a user name or password.
    let (options, ceremony) = start_sign_in(&svc).await;
    assert!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );
    let signed_in = finish_sign_in(&svc, &ceremony, laptop.sign(&options, ORIGIN)).await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    assert_eq!(signed_in.body["user"], ada.id.as_str());
    let token = text(&signed_in.body["access_token"]);
    // The access token says how its session began (RFC 9068 allows `amr`).
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["amr"], json!(["pop", "mfa"]), "{claims}");
    let sessions = svc.get_as(&token, "/v1/auth/sessions").await;
    let current = sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(current["method"], "passkey");
    assert_eq!(current["amr"], json!(["pop", "mfa"]));
    let listed = svc.get_as(&token, "/v1/auth/passkeys").await;
    assert!(
        listed.body["items"][0]["last_used_at"].is_string(),
        "{listed:?}"
    );

    // The ceremony was used: answering it again (a replay) is refused.
    let replay = finish_sign_in(&svc, &ceremony, laptop.sign(&options, ORIGIN)).await;
    replay.assert_problem(401, "invalid_credentials");

    // As the second factor after the password.
    let first = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": ada.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(first.body["second_factor_required"], true, "{first:?}");
    let start = svc
        .post_anonymous(
            "/v1/auth/sign-in/second-factor/passkey/start",
            json!({"challenge": first.body["challenge"]}),
        )
        .await;
    assert_eq!(start.status, 200, "{start:?}");
    let allowed = start.body["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(allowed, 2);
    let finish = svc
        .post_anonymous(
            "/v1/auth/sign-in/second-factor/passkey/finish",
            json!({
                "ceremony": start.body["ceremony"],
                "credential": laptop.sign(&start.body["options"], ORIGIN),
            }),
        )
        .await;
    assert_eq!(finish.status, 200, "{finish:?}");
    let second_token = text(&finish.body["access_token"]);
    let sessions = svc.get_as(&second_token, "/v1/auth/sessions").await;
    let current = sessions.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()
        .clone();
    assert_eq!(current["method"], "password_and_passkey");
    assert_eq!(current["amr"], json!(["pwd", "pop", "mfa"]));

    // Recovery codes still stand in for the second factor.
    let first = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": ada.email, "password": PASSWORD}),
        )
        .await;
    let recovered = svc
        .post_anonymous(
            "/v1/auth/sign-in/second-factor",
            json!({"challenge": first.body["challenge"], "recovery_code": codes[0]}),
        )
        .await;
    assert_eq!(recovered.status, 200, "{recovered:?}");

    // Removing one of two is plain; the session is fresh anyway.
    let removed = svc
        .send(svc.request_as(
            &second_token,
            reqwest::Method::DELETE,
            &format!("/v1/auth/passkeys/{}", laptop.id()),
        ))
        .await;
    assert_eq!(removed.status, 200, "{removed:?}");
    let (options, ceremony) = start_sign_in(&svc).await;
    let gone = finish_sign_in(&svc, &ceremony, laptop.sign(&options, ORIGIN)).await;
    gone.assert_problem(401, "invalid_credentials");
    let unknown = svc
        .send(svc.request_as(
            &second_token,
            reqwest::Method::DELETE,
            &format!("/v1/auth/passkeys/{}", laptop.id()),
        ))
        .await;
    unknown.assert_problem(404, "passkey_not_found");

    // Every event of the person's credentials is in the log, the name sealed.
    svc.stop().await;
    let events = event_types(&svc, &ada.id).await;
    let registered = events
        .iter()
        .find(|(t, _)| t == "PasskeyRegistered")
        .unwrap();
    assert!(
        text(&registered.1["name"]).starts_with("pd1."),
        "the name is personal data: {}",
        registered.1
    );
    assert!(registered.1["public_key"].is_string());
    for kind in ["PasskeyUsed", "PasskeyRemoved"] {
        assert!(
            events.iter().any(|(t, _)| t == kind),
            "{kind} in {events:?}"
        );
    }
}

#[tokio::test]
async fn a_cloned_passkey_whose_counter_goes_back_is_refused_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;
    let (mut key, _) = register(&svc, &ada, "Security key").await;
    for _ in 0..3 {
        let (options, ceremony) = start_sign_in(&svc).await;
        let answer = finish_sign_in(&svc, &ceremony, key.sign(&options, ORIGIN)).await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    // A clone made after the first use presents counter 2; the genuine key is at 3.
    let (options, ceremony) = start_sign_in(&svc).await;
    let cloned = finish_sign_in(&svc, &ceremony, key.sign_with_counter(&options, ORIGIN, 2)).await;
    cloned.assert_problem(401, "invalid_credentials");
    // The trail tells an administrator why.
    let position = svc.log_position().await;
    let trail = svc
        .get_at(
            &format!(
                "/v1/audit/events?tenant=_&subject={}&type=PasskeyCounterRegressed",
                ada.id
            ),
            position,
        )
        .await;
    assert_eq!(trail.status, 200, "{trail:?}");
    let summary = text(&trail.body["items"][0]["summary"]);
    assert!(summary.contains("went back from 3 to 2"), "{summary}");

    // The genuine key, ahead of the clone, still signs in.
    let (options, ceremony) = start_sign_in(&svc).await;
    let genuine = finish_sign_in(&svc, &ceremony, key.sign(&options, ORIGIN)).await;
    assert_eq!(genuine.status, 200, "{genuine:?}");

    // The log holds the refusal with both counters.
    let mut svc = svc;
    svc.stop().await;
    let events = event_types(&svc, &ada.id).await;
    let regressed = &events
        .iter()
        .find(|(t, _)| t == "PasskeyCounterRegressed")
        .unwrap()
        .1;
    assert_eq!(
        (regressed["stored"].clone(), regressed["presented"].clone()),
        (json!(3), json!(2))
    );
}

#[tokio::test]
async fn a_passkey_answering_for_another_origin_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;

    // Registering from a look-alike origin is refused…
    let start = svc
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/start",
            json!({}),
        )
        .await;
    let (_, credential) =
        SoftPasskey::register(&start.body["options"], "http://login.localhost.example");
    let refused = svc
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/finish",
            json!({"ceremony": start.body["ceremony"], "name": "Phished", "credential": credential}),
        )
        .await;
    refused.assert_problem(400, "passkey_refused");

    // …and so is signing in through one with a passkey registered here.
    let (mut key, _) = register(&svc, &ada, "Laptop").await;
    let (options, ceremony) = start_sign_in(&svc).await;
    let phished =
        finish_sign_in(&svc, &ceremony, key.sign(&options, "http://localhost:8081")).await;
    phished.assert_problem(401, "invalid_credentials");
    let (options, ceremony) = start_sign_in(&svc).await;
    let here = finish_sign_in(&svc, &ceremony, key.sign(&options, ORIGIN)).await;
    assert_eq!(here.status, 200, "{here:?}");
}

#[tokio::test]
async fn a_fresh_session_removes_the_last_factor_and_an_administrator_resets_factors() {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = service(dir.path()).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;
    let (key, _) = register(&svc, &ada, "Laptop").await;

    // A ceremony is bound to the session that began it, and cannot be forged.
    let start = svc
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/start",
            json!({}),
        )
        .await;
    let (_, credential) = SoftPasskey::register(&start.body["options"], ORIGIN);
    let (options, ceremony) = start_sign_in(&svc).await;
    let other = finish_sign_in(&svc, &ceremony, {
        let mut key = key.clone();
        key.sign(&options, ORIGIN)
    })
    .await;
    assert_eq!(other.status, 200, "{other:?}");
    let elsewhere = svc
        .post_as(
            &text(&other.body["access_token"]),
            "/v1/auth/passkeys/registration/finish",
            json!({"ceremony": start.body["ceremony"], "name": "Phone", "credential": credential}),
        )
        .await;
    elsewhere.assert_problem(401, "invalid_token");
    let forged = svc
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/finish",
            json!({"ceremony": "v1.k1.not-a-ceremony", "name": "x", "credential": {}}),
        )
        .await;
    forged.assert_problem(401, "invalid_token");

    // The session from joining is fresh: the last factor goes.
    let removed = svc
        .send(svc.request_as(
            &ada.token,
            reqwest::Method::DELETE,
            &format!("/v1/auth/passkeys/{}", key.id()),
        ))
        .await;
    assert_eq!(removed.status, 200, "{removed:?}");

    // An administrator resets what is left (nothing here, then a TOTP-less passkey again).
    let (_, _) = register(&svc, &ada, "Phone").await;
    let reset = svc
        .post(&format!("/v1/users/{}/reset-factors", ada.id), json!({}))
        .await;
    assert_eq!(reset.status, 200, "{reset:?}");
    let again = svc
        .post(&format!("/v1/users/{}/reset-factors", ada.id), json!({}))
        .await;
    again.assert_problem(409, "no_second_factor");
    // With no second factor left, the password alone signs in again.
    let signed_in = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": ada.email, "password": PASSWORD}),
        )
        .await;
    assert!(signed_in.body["access_token"].is_string(), "{signed_in:?}");
    svc.stop().await;
    let removals: Vec<_> = svc
        .events()
        .await
        .into_iter()
        .filter(|e| e.envelope.aggregate.id == ada.id && e.envelope.event_type == "PasskeyRemoved")
        .map(|e| e.envelope.actor.kind)
        .collect();
    assert_eq!(removals.len(), 2, "{removals:?}");
    assert_ne!(
        removals[0], removals[1],
        "the owner removed one, the operator reset the other"
    );
}

/// A passkey's name is personal data: no file of the service holds it in the clear, before or
/// after its person is erased; after the erasure the person's credentials are gone with them.
#[tokio::test]
async fn a_passkey_name_never_lies_on_disk_in_the_clear_and_goes_with_an_erasure() {
    const CANARY: &str = "Zoë's kq9canary key";
    let dir = tempfile::tempdir().unwrap();
    let mut svc = service(dir.path()).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;
    let (mut key, _) = register(&svc, &ada, CANARY).await;
    let listed = svc.get_as(&ada.token, "/v1/auth/passkeys").await;
    assert_eq!(listed.body["items"][0]["name"], CANARY, "{listed:?}");
    let stored = || idstream_projection_runtime::personal::files_holding(dir.path(), &[CANARY]);
    assert_eq!(stored(), vec![], "the name is sealed wherever it is kept");

    let erased = svc
        .post(&format!("/v1/users/{}/erase", ada.id), json!({}))
        .await;
    assert_eq!(erased.status, 200, "{erased:?}");
    // The erased person's passkey signs nobody in.
    let (options, ceremony) = start_sign_in(&svc).await;
    let refused = finish_sign_in(&svc, &ceremony, key.sign(&options, ORIGIN)).await;
    refused.assert_problem(401, "invalid_credentials");
    svc.stop().await;
    assert_eq!(stored(), vec![]);
    // The log keeps the event's structure; its name no longer opens.
    let registered = event_types(&svc, &ada.id)
        .await
        .into_iter()
        .find(|(t, _)| t == "PasskeyRegistered")
        .unwrap()
        .1;
    assert!(
        text(&registered["name"]).starts_with("pd1."),
        "{registered}"
    );
}

/// Two replicas behind one public URL (a load balancer), on one JetStream stream: every
/// ceremony begun on one is finished on the other, because its state travels sealed with the
/// client, not in a replica's memory; a ceremony finished on one cannot be finished again on the
/// other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_begun_on_one_replica_finishes_on_the_other_once() {
    let nats = crate::support::nats::NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let env = [("IDSTREAM_PUBLIC_URL", ORIGIN)];
    let a = Service::jetstream_with_env(dir_a.path(), &nats.url(), &env).await;
    let b = Service::jetstream_with_env(dir_b.path(), &nats.url(), &env).await;
    a.create_tenant("acme").await;
    let ada = join(&a, "ada@example.com", "acme", &["user"], PASSWORD).await;

    // Registration: begun on A, finished on B (which waits for the session A knows).
    let start = a
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/start",
            json!({}),
        )
        .await;
    assert_eq!(start.status, 200, "{start:?}");
    let (mut key, credential) = SoftPasskey::register(&start.body["options"], ORIGIN);
    let finish = b
        .post_as(
            &ada.token,
            "/v1/auth/passkeys/registration/finish",
            json!({"ceremony": start.body["ceremony"], "name": "Laptop", "credential": credential}),
        )
        .await;
    assert_eq!(finish.status, 201, "{finish:?}");

    // Sign-in: begun on B, finished on A (at B's position: the passkey is in A's read model).
    let start = b
        .post_anonymous("/v1/auth/sign-in/passkey/start", json!({}))
        .await;
    assert_eq!(start.status, 200, "{start:?}");
    let answer = key.sign(&start.body["options"], ORIGIN);
    let body = json!({"ceremony": start.body["ceremony"], "credential": answer});
    let signed_in = a
        .send(
            a.anonymous(reqwest::Method::POST, "/v1/auth/sign-in/passkey/finish")
                .header("x-idstream-min-position", finish.position().to_string())
                .json(&body),
        )
        .await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    // The same answer, replayed on the other replica, is refused.
    let replayed = b
        .send(
            b.anonymous(reqwest::Method::POST, "/v1/auth/sign-in/passkey/finish")
                .header("x-idstream-min-position", signed_in.position().to_string())
                .json(&body),
        )
        .await;
    replayed.assert_problem(401, "invalid_credentials");
}

/// The administration console resets a person's second factors (the person's page offers it to
/// those who may update people): their passkey no longer signs in and their password alone does.
#[tokio::test]
async fn the_console_resets_a_persons_second_factors() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let admin = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let ada = join(&svc, "ada@example.com", "acme", &["user"], PASSWORD).await;
    let (mut key, _) = register(&svc, &ada, "Laptop").await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookies = format!(
        "ids_access={}; ids_session={}; ids_csrf=console-csrf",
        admin.token, admin.refresh
    );
    let person = format!("/admin/users/{}", ada.id);
    let page = client
        .get(svc.url(&person))
        .header("cookie", &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("Reset their second factors")
    );
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", "console-csrf")
        .append_pair("action", "reset_factors")
        .finish();
    let reset = client
        .post(svc.url(&format!("{person}/status")))
        .header("cookie", &cookies)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 303);

    let (options, ceremony) = start_sign_in(&svc).await;
    let refused = finish_sign_in(&svc, &ceremony, key.sign(&options, ORIGIN)).await;
    refused.assert_problem(401, "invalid_credentials");
    let signed_in = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": ada.email, "password": PASSWORD}),
        )
        .await;
    assert!(signed_in.body["access_token"].is_string(), "{signed_in:?}");
}

/// A tenant can require its owners and administrators to sign in with a passkey
/// (`phishing_resistant_admins`): an administrator's session begun with a password may then only
/// add a passkey, read `me` and sign out, until they sign in with the passkey; other members are
/// not affected; turning the setting off lifts the restriction.
#[tokio::test]
async fn a_tenant_can_require_administrators_to_sign_in_with_a_passkey() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(dir.path()).await;
    let boss = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let member = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    let settings = |on: bool| {
        let svc = &svc;
        async move {
            let mut body = svc.get("/v1/tenants/acme/settings").await.body;
            body["phishing_resistant_admins"] = json!(on);
            let saved = svc.put("/v1/tenants/acme/settings", body).await;
            assert_eq!(saved.status, 200, "{saved:?}");
            svc.get_at("/v1/tenants/acme/settings", saved.position())
                .await
        }
    };
    let listed = settings(true).await;
    assert_eq!(listed.body["phishing_resistant_admins"], true, "{listed:?}");

    let refused = svc.get_as(&boss.token, "/v1/tenants/acme/users").await;
    refused.assert_problem(403, "second_factor_enrollment_required");
    assert_eq!(svc.get_as(&boss.token, "/v1/auth/me").await.status, 200);
    assert_eq!(
        svc.get_as(&member.token, "/v1/tenants/acme").await.status,
        200
    );

    // The restricted session may still add the passkey, and a sign-in with it is free.
    let (mut laptop, _) = register(&svc, &boss, "Laptop").await;
    let (options, ceremony) = start_sign_in(&svc).await;
    let signed_in = finish_sign_in(&svc, &ceremony, laptop.sign(&options, ORIGIN)).await;
    assert_eq!(signed_in.status, 200, "{signed_in:?}");
    let token = text(&signed_in.body["access_token"]);
    assert_eq!(
        svc.get_as(&token, "/v1/tenants/acme/users").await.status,
        200
    );
    // With a passkey, a password alone no longer signs the administrator in: it asks for the
    // passkey (or a recovery code) as the second step.
    let first = svc
        .post_anonymous(
            "/v1/auth/sign-in",
            json!({"email": "boss@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(first.body["second_factor_required"], true, "{first:?}");

    settings(false).await;
    assert_eq!(
        svc.get_as(&boss.token, "/v1/tenants/acme/users")
            .await
            .status,
        200
    );
}
