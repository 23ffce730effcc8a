//! Temporary access (issue 15, item 5) against the real binary: roles, custom permissions, record
//! grants and local roles given with `expires_at` count until that moment and not after, without
//! waiting for anything; the service then records each lapse in the log with its exact end; the
//! access review, the audit trail and point-in-time replay show it as it was.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::service::{Answer, Service};

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// `t` as a query value (`+` would read as a space).
fn query_time(t: OffsetDateTime) -> String {
    rfc3339(t).replace('+', "%2B")
}

/// Runs a request that must be refused with `code`, appending nothing.
async fn refused(svc: &Service, answer: impl Future<Output = Answer>, status: u16, code: &str) {
    let before = svc.log_position().await;
    answer.await.assert_problem(status, code);
    assert_eq!(svc.log_position().await, before, "{code}: nothing appended");
}

/// Asks the check API at the log's current end.
async fn check(svc: &Service, user: &str, permission: &str, record: Option<&str>) -> Value {
    let mut body = json!({"subject": format!("user:{user}"), "permission": permission});
    if let Some(record) = record {
        body["record"] = record.into();
    }
    let at = svc.log_position().await;
    let answer = svc
        .send(
            svc.request(Method::POST, "/v1/tenants/acme/access/check")
                .header("x-idstream-min-position", at)
                .json(&body),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body
}

/// The trail's events of `event_type` in tenant acme, oldest first.
async fn trail(svc: &Service, event_type: &str) -> Vec<Value> {
    let at = svc.log_position().await;
    let answer = svc
        .send(
            svc.request(
                Method::GET,
                &format!("/v1/audit/events?tenant=acme&type={event_type}&order=oldest"),
            )
            .header("x-idstream-min-position", at),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn temporary_access_ends_by_itself_its_lapse_is_recorded_and_the_past_shows_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant("acme").await;
    let role = json!({"name": "auditor", "description": "Reads users",
                      "permissions": ["users:read"], "global_access": false});
    assert_eq!(svc.post("/v1/tenants/acme/roles", role).await.status, 201);
    let entity = json!({"name": "project", "fields": ["title"], "rls": true});
    assert_eq!(
        svc.post("/v1/tenants/acme/entities", entity).await.status,
        201
    );
    let (ada, _) = svc.create_user("acme", "ada@example.com", &["user"]).await;
    let (bob, _) = svc.create_user("acme", "bob@example.com", &["user"]).await;

    // Refused plainly, appending nothing: an end in the past, too far ahead, or on the roles
    // that carry administrator standing.
    let roles = format!("/v1/tenants/acme/users/{ada}/roles");
    let past = rfc3339(OffsetDateTime::now_utc() - time::Duration::minutes(1));
    let far = rfc3339(OffsetDateTime::now_utc() + time::Duration::days(3660));
    for expires_at in [&past, &far] {
        let body = json!({"role": "auditor", "expires_at": expires_at});
        refused(&svc, svc.post(&roles, body), 422, "invalid_expiry").await;
    }
    let soon = rfc3339(OffsetDateTime::now_utc() + time::Duration::hours(1));
    let body = json!({"role": "admin", "expires_at": soon});
    refused(&svc, svc.post(&roles, body), 422, "permanent_role").await;
    let grant = format!("/v1/tenants/acme/entities/project/records/P1/grants/{ada}");
    refused(
        &svc,
        svc.put(&grant, json!({"access": "read_write", "expires_at": past})),
        422,
        "invalid_expiry",
    )
    .await;
    refused(
        &svc,
        svc.put(
            &grant,
            json!({"access": "read_write", "expires_at": "tomorrow"}),
        ),
        422,
        "invalid_body",
    )
    .await;

    // Everything given for a few seconds; bob's local role for good, to compare.
    let end = OffsetDateTime::now_utc() + time::Duration::seconds(4);
    let end = end.replace_nanosecond(0).unwrap();
    let until = rfc3339(end);
    let assigned = svc
        .post(&roles, json!({"role": "auditor", "expires_at": until}))
        .await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    // Given again with the same end: nothing changes.
    svc.post(&roles, json!({"role": "auditor", "expires_at": until}))
        .await
        .assert_problem(409, "role_already_assigned");
    let permissions = format!("/v1/tenants/acme/users/{ada}/permissions");
    let body = json!({"permissions": ["files:delete"], "expires_at": until});
    assert_eq!(svc.post(&permissions, body).await.status, 200);
    let body = json!({"access": "read_write", "expires_at": until});
    assert_eq!(svc.put(&grant, body).await.status, 200);
    let local = format!("/v1/tenants/acme/entities/project/records/P2/local-roles/{ada}/user");
    let body = json!({"expires_at": until});
    assert_eq!(svc.put(&local, body).await.status, 200);
    // A local role without a body is for good.
    let bobs = format!("/v1/tenants/acme/entities/project/records/P2/local-roles/{bob}/auditor");
    let answer = svc
        .send(
            svc.request(Method::PUT, &bobs)
                .header("content-length", "0"),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");

    assert_eq!(check(&svc, &ada, "users:read", None).await["allowed"], true);
    assert_eq!(
        check(&svc, &ada, "files:delete", None).await["allowed"],
        true
    );
    let on_p1 = check(&svc, &ada, "entity.project:update", Some("P1")).await;
    assert_eq!(on_p1["allowed"], true, "{on_p1}");

    // The review says when each ends.
    let at = svc.log_position().await;
    let review = svc
        .get_at(
            &format!("/v1/audit/access-review?tenant=acme&user={ada}"),
            at,
        )
        .await;
    assert_eq!(review.status, 200, "{review:?}");
    let member = &review.body["members"][0];
    let auditor = member["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "auditor")
        .expect("auditor held");
    assert_eq!(auditor["expires_at"], until.as_str(), "{member}");
    assert_eq!(
        member["custom_permissions"][0]["expires_at"],
        until.as_str()
    );

    // From the end on, nothing of it counts, at once.
    let wait = end - OffsetDateTime::now_utc() + time::Duration::milliseconds(50);
    tokio::time::sleep(Duration::try_from(wait).unwrap_or_default()).await;
    for (permission, record) in [
        ("users:read", None),
        ("files:delete", None),
        ("entity.project:update", Some("P1")),
        ("entity.project:read", Some("P2")),
    ] {
        let decision = check(&svc, &ada, permission, record).await;
        assert_eq!(decision["allowed"], false, "{permission}: {decision}");
    }
    assert_eq!(check(&svc, &ada, "files:read", None).await["allowed"], true);
    assert_eq!(
        check(&svc, &bob, "entity.project:read", Some("P2")).await["allowed"],
        false,
        "an auditor role does not read projects"
    );

    // The service records each lapse with its exact end, by its own upkeep.
    let lapses = [
        "RoleLapsed",
        "PermissionsLapsed",
        "RecordGrantLapsed",
        "LocalRoleLapsed",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = Vec::new();
        for event_type in lapses {
            seen.extend(trail(&svc, event_type).await);
        }
        if seen.len() == lapses.len() {
            for event in &seen {
                let summary = event["summary"].as_str().unwrap();
                assert!(summary.contains(&format!("ended at {until}")), "{event}");
                assert_eq!(event["actor"]["id"], "access-lapse", "{event}");
            }
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "lapses recorded: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let given = trail(&svc, "RoleAssigned").await;
    let summary = given.last().unwrap()["summary"].as_str().unwrap();
    assert!(summary.contains(&format!("until {until}")), "{summary}");
    let at = svc.log_position().await;
    let review = svc
        .get_at(
            &format!("/v1/audit/access-review?tenant=acme&user={ada}"),
            at,
        )
        .await;
    let member = &review.body["members"][0];
    assert_eq!(member["roles"].as_array().unwrap().len(), 1, "{member}");
    assert!(member["records"].as_array().unwrap().is_empty(), "{member}");

    // The past, exactly: a second before the end the role counted, at the end it did not,
    // although no event happened in between.
    let explain = |at: OffsetDateTime| {
        let svc = &svc;
        let ada = ada.clone();
        async move {
            let answer = svc
                .get(&format!(
                    "/v1/audit/as-of/explain?tenant=acme&user={ada}&permission=users:read&at={}",
                    query_time(at)
                ))
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.body
        }
    };
    let before = explain(end - time::Duration::seconds(1)).await;
    assert_eq!(before["allowed"], true, "{before}");
    let fact = before["sources"][0]["fact"].as_str().unwrap();
    assert_eq!(fact, format!("role auditor held by the user until {until}"));
    assert_eq!(
        before["as_of"]["decided_at"],
        rfc3339(end - time::Duration::seconds(1))
    );
    let after = explain(end).await;
    assert_eq!(after["allowed"], false, "{after}");
    let review = svc
        .get(&format!(
            "/v1/audit/access-review?tenant=acme&user={ada}&at={}",
            query_time(end - time::Duration::seconds(1))
        ))
        .await;
    assert_eq!(review.status, 200, "{review:?}");
    let member = &review.body["members"][0];
    assert_eq!(member["roles"].as_array().unwrap().len(), 2, "{member}");
    assert_eq!(member["records"].as_array().unwrap().len(), 2, "{member}");
}
