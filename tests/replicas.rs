//! Two service replicas on one JetStream stream (F-LOG-5, F-LOG-8).

use idstream_domain::envelope::{AggregateType, Metadata};
use idstream_domain::events::EmailClaimed;
use idstream_domain::{Actor, DomainEvent, StreamKey, UserId};
use idstream_eventlog::{EventLog, Expected};
use serde_json::json;
use time::OffsetDateTime;
use ulid::Ulid;

use crate::support::nats::{NatsServer, connect};
use crate::support::service::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_registering_the_same_email_at_once_create_exactly_one_user() {
    let nats = NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Service::jetstream(dir_a.path(), &nats.url()).await;
    let b = Service::jetstream(dir_b.path(), &nats.url()).await;
    a.create_tenant("acme").await;

    let mut newest = 0;
    for i in 0..12 {
        let body = json!({"email": format!("race{i}@example.com"), "roles": ["user"]});
        let (first, second) = tokio::join!(
            a.post("/v1/tenants/acme/users", body.clone()),
            b.post("/v1/tenants/acme/users", body)
        );
        let mut answers = [first, second];
        answers.sort_by_key(|x| x.status);
        assert_eq!(
            answers[0].status, 201,
            "one replica creates the user: {answers:?}"
        );
        answers[1].assert_problem(409, "email_taken");
        newest = newest.max(answers[0].position());
    }

    // Each replica, read at the newest position, sees the same twelve users.
    let on_a = a.get_at("/v1/tenants/acme/users", newest).await;
    let on_b = b.get_at("/v1/tenants/acme/users", newest).await;
    assert_eq!(on_a.body["items"].as_array().unwrap().len(), 12, "{on_a:?}");
    assert_eq!(on_a.body, on_b.body);
    // Both replicas folded the same log into the same bytes.
    assert_eq!(a.read_models().await, b.read_models().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_on_one_replica_is_read_on_the_other_with_its_consistency_token() {
    let nats = NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Service::jetstream(dir_a.path(), &nats.url()).await;
    let b = Service::jetstream(dir_b.path(), &nats.url()).await;
    a.create_tenant("acme").await;
    // Replica B creates a user in the tenant replica A created a moment ago.
    let (ada, _) = b.create_user("acme", "ada@example.com", &[]).await;
    let assigned = a
        .post(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    let roles = b
        .get_at(
            &format!("/v1/tenants/acme/users/{ada}/roles"),
            assigned.position(),
        )
        .await;
    assert_eq!(roles.body["roles"], json!(["admin"]));
    // And replica B's stale cache of the membership does not let it assign twice.
    b.post(
        &format!("/v1/tenants/acme/users/{ada}/roles"),
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(409, "role_already_assigned");
}

/// Appends an email claim whose user was never created, as a crash between the two appends leaves.
async fn orphan_claim(nats: &NatsServer, email: &str, claimed_at: OffsetDateTime) {
    let log = connect(nats).await;
    let key = StreamKey::new(
        None,
        AggregateType::Email,
        idstream_domain::email::claim_id(email),
    );
    let event = DomainEvent::EmailClaimed(EmailClaimed {
        user: UserId::new(Ulid::new()),
        claimed_at,
        request: None,
    });
    let meta = Metadata {
        actor: Actor::system("crashed-replica"),
        occurred_at: claimed_at,
        correlation_id: "crash".into(),
        causation_id: None,
    };
    log.append(
        vec![event.into_envelope(Ulid::new(), &key, &meta)],
        Expected::NoEvents,
        None,
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_orphaned_by_a_crash_does_not_make_the_email_unusable() {
    let nats = NatsServer::spawn();
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::jetstream(dir.path(), &nats.url()).await;
    svc.create_tenant("acme").await;

    // A claim younger than the claim TTL is respected: its writer may still be creating the user.
    orphan_claim(&nats, "fresh@example.com", OffsetDateTime::now_utc()).await;
    svc.post(
        "/v1/tenants/acme/users",
        json!({"email": "fresh@example.com"}),
    )
    .await
    .assert_problem(409, "email_taken");

    // Once older than the TTL with no user behind it, the claim is taken over.
    let stale =
        OffsetDateTime::now_utc() - idstream_domain::email::CLAIM_TTL - time::Duration::seconds(1);
    orphan_claim(&nats, "ghost@example.com", stale).await;
    let (user, position) = svc
        .create_user("acme", "ghost@example.com", &["user"])
        .await;
    let read = svc.get_at(&format!("/v1/users/{user}"), position).await;
    assert_eq!(read.body["email"], "ghost@example.com");
    // And now it is taken for real.
    svc.post(
        "/v1/tenants/acme/users",
        json!({"email": "ghost@example.com"}),
    )
    .await
    .assert_problem(409, "email_taken");
}

/// The last-admin rule across replicas (F-AZ-7): two replicas each taking the admin role from
/// one of the tenant's last two administrators at the same moment never both succeed; the tenant
/// keeps an administrator every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_demoting_the_last_two_admins_at_once_leave_one() {
    const PASSWORD: &str = "correct horse battery staple";
    let nats = NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    Service::bootstrap(
        dir_a.path(),
        Some(&nats.url()),
        "acme",
        "ada@example.com",
        PASSWORD,
    )
    .await;
    let a = Service::jetstream(dir_a.path(), &nats.url()).await;
    let b = Service::jetstream(dir_b.path(), &nats.url()).await;
    let tokens = a.sign_in("ada@example.com", PASSWORD).await;
    let token = tokens["access_token"].as_str().unwrap().to_owned();
    let ada = tokens["user"].as_str().unwrap().to_owned();
    let (bob, _) = a.create_user("acme", "bob@example.com", &["admin"]).await;
    // Bootstrap made Ada owner and admin; as only an admin, the admin role is her standing.
    let roles = a.get(&format!("/v1/tenants/acme/users/{ada}/roles")).await;
    for role in roles.body["roles"].as_array().unwrap() {
        if role != "admin" {
            let taken = a
                .delete(&format!(
                    "/v1/tenants/acme/users/{ada}/roles/{}",
                    role.as_str().unwrap()
                ))
                .await;
            assert_eq!(taken.status, 200, "{taken:?}");
        }
    }

    let mut one_succeeded = 0;
    for round in 0..8 {
        // Ada, an administrator, takes the admin role from herself on A and from Bob on B.
        let (path_a, path_b) = (
            format!("/v1/tenants/acme/users/{ada}/roles/admin"),
            format!("/v1/tenants/acme/users/{bob}/roles/admin"),
        );
        let (first, second) = tokio::join!(
            a.send(a.request_as(&token, reqwest::Method::DELETE, &path_a)),
            b.send(b.request_as(&token, reqwest::Method::DELETE, &path_b)),
        );
        let succeeded = [&first, &second].iter().filter(|x| x.status == 200).count();
        assert!(
            succeeded <= 1,
            "round {round}: both demotions went through: {first:?} {second:?}"
        );
        for refused in [&first, &second].into_iter().filter(|x| x.status != 200) {
            // Refused by the rule, or (once Ada is no longer an administrator) for want of the
            // permission; never by an error.
            let code = refused.body["code"].as_str().unwrap_or_default();
            assert!(
                matches!(code, "last_admin" | "forbidden"),
                "round {round}: {refused:?}"
            );
        }
        one_succeeded += succeeded;

        // Whatever happened, the tenant still has an administrator, on both replicas.
        let newest = a.log_position().await;
        let mut admins = 0;
        for user in [&ada, &bob] {
            let path = format!("/v1/tenants/acme/users/{user}/roles");
            let (on_a, on_b) = (a.get_at(&path, newest).await, b.get_at(&path, newest).await);
            assert_eq!(on_a.body, on_b.body);
            if on_a.body["roles"]
                .as_array()
                .unwrap()
                .contains(&json!("admin"))
            {
                admins += 1;
                continue;
            }
            // Give the role back for the next round (as the platform administrator).
            let assigned = a
                .post(
                    &format!("/v1/tenants/acme/users/{user}/roles"),
                    json!({"role": "admin"}),
                )
                .await;
            assert_eq!(assigned.status, 200, "{assigned:?}");
        }
        assert!(
            admins >= 1,
            "round {round}: the tenant lost every administrator"
        );
    }
    // Not every round was refused outright: the rule lets one of the two through.
    assert!(one_succeeded >= 1, "no demotion ever went through");
}

/// One open invitation per person and tenant across replicas: the same person invited to one
/// tenant on two replicas at the same moment gets one invitation and one email; the other request
/// answers `invitation_pending` and leaves nothing open behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_inviting_one_person_at_once_send_one_invitation() {
    let nats = NatsServer::spawn();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Service::jetstream(dir_a.path(), &nats.url()).await;
    let b = Service::jetstream(dir_b.path(), &nats.url()).await;
    a.create_tenant("acme").await;
    a.create_tenant("globex").await;
    for round in 0..6 {
        // Someone who already exists (in another tenant), so both invitations are about them.
        let email = format!("round{round}@example.com");
        let (user, _) = a.create_user("globex", &email, &["user"]).await;
        let body =
            json!({"email": email, "first_name": "Rita", "last_name": "Round", "roles": ["user"]});
        let path = "/v1/tenants/acme/invitations";
        let (first, second) = tokio::join!(
            a.send(a.request(reqwest::Method::POST, path).json(&body)),
            b.send(b.request(reqwest::Method::POST, path).json(&body)),
        );
        let answers = [&first, &second];
        let sent: Vec<_> = answers.iter().filter(|x| x.status == 201).collect();
        assert_eq!(sent.len(), 1, "round {round}: {first:?} {second:?}");
        for refused in answers.iter().filter(|x| x.status != 201) {
            refused.assert_problem(409, "invitation_pending");
        }

        // Both replicas list exactly one open invitation for them: the one that was answered.
        let newest = a.log_position().await;
        for replica in [&a, &b] {
            let listed = replica.get_at(path, newest).await;
            assert_eq!(listed.status, 200, "{listed:?}");
            let open: Vec<_> = listed.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|item| item["user"] == json!(user) && item["status"] == "sent")
                .collect();
            assert_eq!(open.len(), 1, "round {round}: {listed:?}");
            assert_eq!(open[0]["id"], sent[0].body["id"], "round {round}");
        }
        // One email, from whichever replica answered.
        let mails = [&a, &b]
            .iter()
            .flat_map(|replica| replica.mail())
            .filter(|mail| mail.to == email)
            .count();
        assert_eq!(mails, 1, "round {round}");
    }
}
