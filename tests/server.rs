//! The HTTP API against a real `idstream` process on the embedded log.

use reqwest::Method;
use serde_json::json;

use crate::support::service::Service;

async fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::embedded(dir.path()).await;
    (dir, service)
}

#[tokio::test]
async fn a_created_tenant_can_be_read_back_at_its_position() {
    let (_dir, svc) = service().await;
    let created = svc
        .post("/v1/tenants", json!({"id": "acme", "name": "Acme Inc"}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let position = created.position();
    assert_eq!(
        created.header("x-idstream-position"),
        Some(position.to_string().as_str())
    );
    assert_eq!(created.body["id"], "acme");

    let tenant = svc.get_at("/v1/tenants/acme", position).await;
    assert_eq!(tenant.status, 200, "{tenant:?}");
    assert_eq!(tenant.body["name"], "Acme Inc");
    assert_eq!(tenant.body["position"], position);

    let renamed = svc
        .send(
            svc.request(Method::PATCH, "/v1/tenants/acme")
                .json(&json!({"name": "Acme Ltd"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{renamed:?}");
    let tenant = svc
        .get(&format!(
            "/v1/tenants/acme?min_position={}",
            renamed.position()
        ))
        .await;
    assert_eq!(tenant.body["name"], "Acme Ltd");

    svc.post("/v1/tenants", json!({"id": "acme", "name": "Again"}))
        .await
        .assert_problem(409, "tenant_exists");
    svc.get("/v1/tenants/nope")
        .await
        .assert_problem(404, "tenant_not_found");
    let list = svc.get("/v1/tenants?limit=10").await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1, "{list:?}");
}

#[tokio::test]
async fn a_user_is_created_with_roles_and_listed_as_a_member() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let (user, position) = svc
        .create_user("acme", "Ada@Example.com", &["admin", "user"])
        .await;

    let read = svc.get_at(&format!("/v1/users/{user}"), position).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["email"], "ada@example.com");
    assert_eq!(read.body["status"], "active");
    assert_eq!(read.body["tenants"], json!(["acme"]));

    let roles = svc
        .get_at(&format!("/v1/tenants/acme/users/{user}/roles"), position)
        .await;
    assert_eq!(roles.body["roles"], json!(["admin", "user"]), "{roles:?}");

    let members = svc.get_at("/v1/tenants/acme/users", position).await;
    let items = members.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], user.as_str());
    assert_eq!(items[0]["roles"], json!(["admin", "user"]));

    let invited = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "bob@example.com", "first_name": "Bob", "invite": true}),
        )
        .await;
    assert_eq!(invited.status, 201, "{invited:?}");
    let bob = svc
        .get_at(
            &format!("/v1/users/{}", invited.body["id"].as_str().unwrap()),
            invited.position(),
        )
        .await;
    assert_eq!(bob.body["status"], "invited");
    // Without `roles`, a new user gets the tenant's `user` role and is listed as a member.
    let members = svc
        .get_at("/v1/tenants/acme/users", invited.position())
        .await;
    let bob_roles: Vec<_> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["id"] == invited.body["id"])
        .map(|m| m["roles"].clone())
        .collect();
    assert_eq!(bob_roles, vec![json!(["user"])]);
}

#[tokio::test]
async fn a_second_user_with_the_same_email_in_any_case_is_rejected() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("globex").await;
    svc.create_user("acme", "ada@example.com", &["user"]).await;
    let again = svc
        .post(
            "/v1/tenants/globex/users",
            json!({"email": "  ADA@example.COM ", "first_name": "A"}),
        )
        .await;
    again.assert_problem(409, "email_taken");
}

#[tokio::test]
async fn roles_are_assigned_and_revoked_with_their_rules() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let (user, _) = svc.create_user("acme", "ada@example.com", &[]).await;
    let path = format!("/v1/tenants/acme/users/{user}/roles");

    let assigned = svc.post(&path, json!({"role": "admin"})).await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    svc.post(&path, json!({"role": "admin"}))
        .await
        .assert_problem(409, "role_already_assigned");
    svc.post(&path, json!({"role": "wizard"}))
        .await
        .assert_problem(422, "unknown_role");
    svc.post(&path, json!({"role": "Not A Role"}))
        .await
        .assert_problem(422, "invalid_body");
    svc.post(
        "/v1/tenants/nope/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/roles",
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(404, "tenant_not_found");
    svc.post(
        "/v1/tenants/acme/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/roles",
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(404, "user_not_found");

    let revoked = svc
        .send(svc.request(Method::DELETE, &format!("{path}/admin")))
        .await;
    assert_eq!(revoked.status, 200, "{revoked:?}");
    let again = svc
        .send(svc.request(Method::DELETE, &format!("{path}/admin")))
        .await;
    again.assert_problem(409, "role_not_assigned");
    let roles = svc.get_at(&path, revoked.position()).await;
    assert_eq!(roles.body["roles"], json!([]));
}

#[tokio::test]
async fn a_user_is_suspended_until_a_time_and_reinstated() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let (user, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;

    let suspended = svc
        .post(
            &format!("/v1/users/{user}/suspend"),
            json!({"until": "2999-01-01T00:00:00Z", "reason": "audit"}),
        )
        .await;
    assert_eq!(suspended.status, 200, "{suspended:?}");
    let read = svc
        .get_at(&format!("/v1/users/{user}"), suspended.position())
        .await;
    assert_eq!(read.body["status"], "suspended");
    assert_eq!(read.body["suspended_until"], "2999-01-01T00:00:00Z");
    svc.post(&format!("/v1/users/{user}/suspend"), json!({}))
        .await
        .assert_problem(409, "already_suspended");

    let reinstated = svc
        .post(&format!("/v1/users/{user}/reinstate"), json!(null))
        .await;
    assert_eq!(reinstated.status, 200, "{reinstated:?}");
    let read = svc
        .get_at(&format!("/v1/users/{user}"), reinstated.position())
        .await;
    assert_eq!(read.body["status"], "active");
    svc.post(&format!("/v1/users/{user}/reinstate"), json!(null))
        .await
        .assert_problem(409, "not_suspended");
    svc.post("/v1/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/suspend", json!({}))
        .await
        .assert_problem(404, "user_not_found");
}

#[tokio::test]
async fn a_retried_command_with_the_same_idempotency_key_appends_nothing_and_returns_the_first_result()
 {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let body = json!({"email": "ada@example.com", "first_name": "Ada", "roles": ["user"]});
    let first = svc
        .post_idempotent("/v1/tenants/acme/users", body.clone(), "key-1")
        .await;
    assert_eq!(first.status, 201, "{first:?}");
    let second = svc
        .post_idempotent("/v1/tenants/acme/users", body.clone(), "key-1")
        .await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(second.body["id"], first.body["id"]);
    assert_eq!(second.position(), first.position());
    assert_eq!(second.header("idempotent-replayed"), Some("true"));

    let user = first.body["id"].as_str().unwrap();
    let suspend_path = format!("/v1/users/{user}/suspend");
    let suspend = |key: &'static str| svc.post_idempotent(&suspend_path, json!({}), key);
    let s1 = suspend("key-2").await;
    assert_eq!(s1.status, 200, "{s1:?}");
    let s2 = suspend("key-2").await;
    assert_eq!(s2.status, 200, "{s2:?}");
    assert_eq!(s2.position(), s1.position());
    // A different key is a different request: the user is already suspended.
    suspend("key-3")
        .await
        .assert_problem(409, "already_suspended");

    // Nothing was appended by the retries: the log ends at the first suspension.
    let models = svc.read_models().await;
    assert_eq!(models["directory"]["position"], s1.position());

    let bad = svc
        .send(
            svc.request(Method::POST, "/v1/tenants")
                .header("idempotency-key", "")
                .json(&json!({"id": "x", "name": "x"})),
        )
        .await;
    bad.assert_problem(400, "invalid_idempotency_key");
}

#[tokio::test]
async fn malformed_requests_get_problems_and_change_nothing() {
    let (_dir, svc) = service().await;
    let before = svc.create_tenant("acme").await;
    let post_raw = |path: &str, body: &'static str| {
        svc.send(
            svc.request(Method::POST, path)
                .header("content-type", "application/json")
                .body(body),
        )
    };

    post_raw("/v1/tenants", "{not json")
        .await
        .assert_problem(400, "malformed_json");
    post_raw("/v1/tenants", r#"{"id": "x", "name": "X", "extra": 1}"#)
        .await
        .assert_problem(422, "invalid_body");
    post_raw("/v1/tenants", r#"{"id": "Not Valid", "name": "X"}"#)
        .await
        .assert_problem(422, "invalid_body");
    post_raw("/v1/tenants", r#"{"id": "x"}"#)
        .await
        .assert_problem(422, "invalid_body");
    post_raw("/v1/tenants", r#"{"id": "x", "name": "   "}"#)
        .await
        .assert_problem(422, "invalid_tenant_name");
    post_raw("/v1/tenants/acme/users", r#"{"email": "not-an-email"}"#)
        .await
        .assert_problem(422, "invalid_email");
    let huge = format!(r#"{{"id": "x", "name": "{}"}}"#, "x".repeat(200_000));
    svc.send(
        svc.request(Method::POST, "/v1/tenants")
            .header("content-type", "application/json")
            .body(huge),
    )
    .await
    .assert_problem(413, "payload_too_large");
    svc.send(
        svc.request(Method::POST, "/v1/tenants")
            .body(r#"{"id": "x", "name": "X"}"#),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    svc.get("/v1/users/not-a-ulid")
        .await
        .assert_problem(400, "invalid_path");
    svc.get("/v1/tenants/acme/users?limit=0")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/tenants/acme/users?bogus=1")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/tenants/acme?min_position=abc")
        .await
        .assert_problem(400, "invalid_min_position");
    svc.get("/v1/nothing-here")
        .await
        .assert_problem(404, "not_found");
    svc.send(svc.request(Method::PUT, "/v1/tenants"))
        .await
        .assert_problem(405, "method_not_allowed");

    // No credentials, or wrong ones: 401, and the body says nothing about why.
    let client = reqwest::Client::new();
    let anonymous = svc
        .send(
            client
                .post(svc.url("/v1/tenants"))
                .json(&json!({"id": "y", "name": "Y"})),
        )
        .await;
    anonymous.assert_problem(401, "unauthorized");
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    svc.send(
        client
            .get(svc.url("/v1/tenants/acme"))
            .bearer_auth("wrong-token-wrong-token"),
    )
    .await
    .assert_problem(401, "unauthorized");

    let models = svc.read_models().await;
    assert_eq!(
        models["directory"]["position"], before,
        "nothing was appended"
    );
}

#[tokio::test]
async fn a_consistency_token_beyond_the_end_of_the_log_is_refused() {
    let (_dir, svc) = service().await;
    let position = svc.create_tenant("acme").await;
    svc.get_at("/v1/tenants/acme", position + 1_000)
        .await
        .assert_problem(400, "invalid_min_position");
    svc.get(&format!("/v1/tenants/acme?min_position={}", u64::MAX))
        .await
        .assert_problem(400, "invalid_min_position");
    let current = svc.get_at("/v1/tenants/acme", position).await;
    assert_eq!(current.status, 200, "{current:?}");
}

#[tokio::test]
async fn operational_endpoints_answer() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let client = reqwest::Client::new();
    let health = client.get(svc.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready = svc.send(client.get(svc.url("/readyz"))).await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.body["ready"], true);
    assert_eq!(ready.body["log"], "ok");

    let metrics = client
        .get(svc.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "idstream_command_duration_seconds",
        "idstream_projection_lag_events",
        "idstream_log_position",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }

    let openapi = svc.send(client.get(svc.url("/openapi.json"))).await;
    assert_eq!(openapi.status, 200);
    assert!(openapi.body["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/tenants",
        "/v1/tenants/{tenant}/users",
        "/v1/users/{user}/suspend",
        "/readyz",
    ] {
        assert!(
            openapi.body["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi.body["components"]["schemas"]["Problem"].is_object());

    // Every operation declares exactly the path parameters its template names, and every other
    // parameter lives in the query or the headers (a generated document once put query fields in
    // the path, which validators reject).
    for (path, item) in openapi.body["paths"].as_object().unwrap() {
        let mut in_template: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        in_template.sort();
        for (method, operation) in item.as_object().unwrap() {
            let parameters = operation["parameters"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let mut declared: Vec<&str> = parameters
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            declared.sort();
            assert_eq!(declared, in_template, "{method} {path}: path parameters");
            for p in &parameters {
                assert!(
                    ["path", "query", "header"].contains(&p["in"].as_str().unwrap()),
                    "{method} {path}: {p}"
                );
            }
        }
    }
}

#[tokio::test]
async fn read_models_rebuilt_online_or_offline_have_the_same_digest_as_the_live_ones() {
    let (_dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    let mut last = 0;
    for i in 0..20 {
        let (user, created) = svc
            .create_user("acme", &format!("user{i}@example.com"), &["user"])
            .await;
        last = last.max(created);
        if i % 3 == 0 {
            let suspended = svc
                .post(&format!("/v1/users/{user}/suspend"), json!({}))
                .await
                .position();
            last = last.max(suspended);
        }
    }
    svc.get_at("/v1/tenants/acme", last).await;
    // Every read model at one position (the audit read model is not among those a read waits
    // for, and the chain may append a checkpoint meanwhile).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let live = loop {
        let live = svc.read_models().await;
        let positions: Vec<u64> = live
            .as_object()
            .unwrap()
            .values()
            .map(|m| m["position"].as_u64().unwrap())
            .collect();
        if positions.iter().all(|p| *p >= last && *p == positions[0]) {
            break live;
        }
        assert!(std::time::Instant::now() < deadline, "{live}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };

    let rebuilt = svc.post("/v1/admin/read-models/rebuild", json!(null)).await;
    assert_eq!(rebuilt.status, 200, "{rebuilt:?}");
    assert_eq!(rebuilt.body["read_models"], live, "online rebuild differs");

    svc.stop().await;
    let offline = svc.replay().await;
    assert_eq!(
        offline["directory"],
        live["directory"]["digest"].as_str().unwrap(),
        "offline replay differs"
    );

    // The service resumes on the replayed read models and still answers.
    svc.start_again().await;
    assert_eq!(svc.read_models().await, live);
}

/// `idstream replay` killed with SIGKILL half-way leaves read models that the next start does
/// not trust: they hold keys but no version (an offline rebuild seals each tree only when it is
/// complete), so the service rebuilds them by itself and reaches the digests of a whole replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_killed_half_way_is_redone_by_the_next_start() {
    use idstream_eventlog::EventLog;
    use idstream_eventlog::conformance::{created, fresh_tenant};
    use idstream_eventlog::embedded::{EmbeddedLog, EmbeddedOptions};
    use tokio::io::AsyncBufReadExt;

    let (_dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    svc.stop().await;
    // Events written straight into the embedded log, so that a replay takes a while; should a
    // replay finish before it reports any progress (a fast machine, an optimised build), more
    // events are added and it is tried again.
    let mut last = 0;
    for more in [4_000, 16_000, 64_000] {
        let log = EmbeddedLog::open(&svc.data_dir.join("log"), EmbeddedOptions::default())
            .await
            .unwrap();
        let writers = (0..16).map(|_| {
            let log = log.clone();
            tokio::spawn(async move {
                for n in 0..more / 16 {
                    let event = created(&fresh_tenant(), &format!("Tenant {n}"));
                    log.append(vec![event], idstream_eventlog::Expected::NoEvents, None)
                        .await
                        .unwrap();
                }
            })
        });
        for writer in futures::future::join_all(writers).await {
            writer.unwrap();
        }
        last = log.last_position().await.unwrap();
        drop(log);

        // The replay, killed once it has reported progress but before it is done.
        let mut replay = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
            .arg("replay")
            .env("IDSTREAM_DATA_DIR", &svc.data_dir)
            .env("IDSTREAM_LOG", "warn")
            .env_remove("IDSTREAM_NATS_URL")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(replay.stderr.take().unwrap()).lines();
        let interrupted = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let done = line
                    .strip_prefix("replay: ")
                    .and_then(|rest| rest.split_once('/'))
                    .and_then(|(done, _)| done.parse::<u64>().ok());
                if done.is_some_and(|done| done > 0 && done < last) {
                    return true;
                }
                if line.contains("done in") {
                    return false;
                }
            }
            panic!("the replay ended without finishing or reporting progress");
        })
        .await
        .expect("the replay reports progress");
        replay.start_kill().unwrap();
        replay.wait().await.unwrap();
        if interrupted {
            break;
        }
        assert_ne!(
            more, 64_000,
            "every replay finished before reporting progress"
        );
    }

    // The next start rebuilds what the replay left and catches up with the whole log.
    svc.start_again().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        // Each try waits (bounded) for the position, then answers 503 while catching up.
        let read = svc.get_at("/v1/tenants/acme", last).await;
        if read.status == 200 {
            break;
        }
        read.assert_problem(503, "not_caught_up");
        assert!(std::time::Instant::now() < deadline, "{read:?}");
    }
    let live = svc.read_models().await;
    for (_, model) in live.as_object().unwrap() {
        assert_eq!(model["position"], last, "{live}");
    }
    svc.stop().await;
    let offline = svc.replay().await;
    for (name, model) in live.as_object().unwrap() {
        assert_eq!(
            offline[name],
            model["digest"].as_str().unwrap(),
            "{name} differs from a whole replay"
        );
    }
}

#[tokio::test]
async fn state_survives_a_graceful_restart() {
    let (_dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    let (user, position) = svc.create_user("acme", "ada@example.com", &["admin"]).await;
    svc.restart().await;
    let read = svc.get_at(&format!("/v1/users/{user}"), position).await;
    assert_eq!(read.status, 200, "{read:?}");
    svc.post(
        "/v1/tenants/acme/users",
        json!({"email": "ada@example.com"}),
    )
    .await
    .assert_problem(409, "email_taken");
}

/// An online rebuild builds each read model beside the serving one and switches once it has
/// caught up, so requests of every kind made all through several rebuilds, with a valid token
/// and writes going on, all succeed: signed-in callers (identity read model), reads of users and
/// tenants and directory searches (directory and its search index), access checks (access read
/// model), and reads at the position of a write just made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_made_all_through_online_rebuilds_all_succeed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const EMAIL: &str = "ada.rebuild@example.com";
    const PASSWORD: &str = "Analytical-Engine-1843";
    let dir = tempfile::tempdir().unwrap();
    Service::bootstrap(dir.path(), None, "acme", EMAIL, PASSWORD).await;
    let svc = Arc::new(Service::embedded(dir.path()).await);
    crate::support::world::eventually("the service is ready", || async {
        svc.get("/readyz").await.status == 200
    })
    .await;
    let mut users = Vec::new();
    for batch in 0..20 {
        let created = futures::future::join_all((0..40).map(|i| {
            let svc = svc.clone();
            async move {
                svc.create_user("acme", &format!("member{batch}-{i}@example.com"), &["user"])
                    .await
            }
        }))
        .await;
        users.extend(created.into_iter().map(|(user, _)| user));
    }
    let token = svc.sign_in(EMAIL, PASSWORD).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let stop = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3)
        .map(|reader| {
            let (svc, stop, token, users) =
                (svc.clone(), stop.clone(), token.clone(), users.clone());
            tokio::spawn(async move {
                let (mut answers, mut failures) = (0usize, Vec::new());
                let mut i = reader;
                while !stop.load(Ordering::Relaxed) {
                    let user = &users[i % users.len()];
                    i += 1;
                    let check = svc
                        .send(
                            svc.request_as(&token, Method::POST, "/v1/tenants/acme/access/check")
                                .json(&json!({"subject": format!("user:{user}"), "permission": "users:read"})),
                        )
                        .await;
                    for answer in [
                        svc.get_as(&token, &format!("/v1/users/{user}")).await,
                        svc.get_as(&token, "/v1/tenants/acme/users?q=member1&limit=5").await,
                        svc.get_as(&token, "/v1/tenants/acme").await,
                        svc.get_as(&token, "/v1/auth/me").await,
                        check,
                    ] {
                        answers += 1;
                        if answer.status != 200 {
                            failures.push(format!("{} {}", answer.status, answer.body));
                        }
                    }
                }
                (answers, failures)
            })
        })
        .collect();
    let writer = {
        let (svc, stop) = (svc.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut n, mut failures) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let (user, at) = svc
                    .create_user("acme", &format!("during{n}@example.com"), &["user"])
                    .await;
                n += 1;
                let read = svc.get_at(&format!("/v1/users/{user}"), at).await;
                if read.status != 200 {
                    failures.push(format!("{} {}", read.status, read.body));
                }
            }
            (n, failures)
        })
    };

    for _ in 0..3 {
        let rebuilt = svc.post("/v1/admin/read-models/rebuild", json!(null)).await;
        assert_eq!(rebuilt.status, 200, "{rebuilt:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let (written, write_failures) = writer.await.unwrap();
    assert!(written > 0);
    assert!(write_failures.is_empty(), "{write_failures:?}");
    for reader in readers {
        let (answers, failures) = reader.await.unwrap();
        eprintln!("a reader had {answers} answers through the rebuilds");
        assert!(answers > 0);
        assert!(
            failures.is_empty(),
            "{} of {answers}: {failures:?}",
            failures.len()
        );
    }
}
