//! The user directory over HTTP: searching a tenant's members (text, filters, sorts, pages while
//! users are being added), autocomplete, a role's members and bulk changes, the platform
//! directory, and one person's access; each refused to the wrong callers.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::support::service::{Answer, Service};
use crate::support::world::{Account, created, join, text};

const PASSWORD: &str = "Directory-Test-Passphrase-2026";

async fn service() -> (tempfile::TempDir, Service) {
    let dir = tempfile::tempdir().unwrap();
    let service = Service::embedded(dir.path()).await;
    (dir, service)
}

/// Creates a user in `tenant` with names and roles (as the operator); (id, position).
async fn person(
    svc: &Service,
    tenant: &str,
    email: &str,
    first: &str,
    last: &str,
    roles: &[&str],
) -> (String, u64) {
    let answer = svc
        .post(
            &format!("/v1/tenants/{tenant}/users"),
            json!({"email": email, "first_name": first, "last_name": last, "roles": roles}),
        )
        .await;
    created(&answer, "a user");
    (text(&answer.body["id"]), answer.position())
}

/// The ids of a listing's page.
fn ids(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| text(&row["id"]))
        .collect()
}

/// `text` percent-encoded for a query string.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An RFC 3339 time of a row, as nanoseconds since 1970 (comparable, unlike the text).
fn nanos(value: &Value) -> i128 {
    time::OffsetDateTime::parse(
        value.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp_nanos()
}

/// Every page of `path` (which has a query string) as `bearer` (the operator's when `None`).
async fn all_pages(svc: &Service, bearer: Option<&str>, path: &str) -> Vec<Value> {
    let mut rows: Vec<Value> = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let answer = match bearer {
            Some(token) => svc.get_as(token, &url).await,
            None => svc.get(&url).await,
        };
        assert_eq!(answer.status, 200, "{url}: {answer:?}");
        rows.extend(answer.body["items"].as_array().unwrap().iter().cloned());
        match answer.body["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => return rows,
        }
        assert!(rows.len() < 10_000, "{path} never ends");
    }
}

#[tokio::test]
async fn search_finds_people_by_any_part_of_their_email_or_name_ignoring_case_accents_and_width_or_by_id()
 {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let (jose, _) = person(
        &svc,
        "acme",
        "jose.alvarez@example.com",
        "José",
        "Álvarez",
        &["user"],
    )
    .await;
    let (ada, _) = person(
        &svc,
        "acme",
        "ADA@Example.com",
        "Ada",
        "Lovelace",
        &["admin"],
    )
    .await;
    let (ivan, _) = person(&svc, "acme", "ivan@example.ru", "Иван", "Петров", &["user"]).await;
    let (taro, _) = person(&svc, "acme", "taro@example.jp", "太郎", "山田", &["user"]).await;
    let (_outsider, position) = person(
        &svc,
        "beta",
        "jose.other@example.com",
        "José",
        "Other",
        &["user"],
    )
    .await;

    let svc_ref = &svc;
    let find = |q: &str| {
        let path = format!("/v1/tenants/acme/users?q={}", encoded(q));
        async move {
            let answer = svc_ref.get_at(&path, position).await;
            (ids(&answer), answer)
        }
    };
    for q in [
        "jose",
        "JOSÉ",
        "ｊｏｓｅ",
        "Álv",
        "alvarez@",
        "josé álvarez",
        "e.alv",
    ] {
        let (found, answer) = find(q).await;
        assert_eq!(found, vec![jose.clone()], "{q}: {answer:?}");
        assert_eq!(answer.body["total"], 1, "{q}");
        assert_eq!(answer.body["total_exact"], true, "{q}");
    }
    assert_eq!(find("ada@example.com").await.0, vec![ada.clone()]);
    assert_eq!(find("ADA@EXAMPLE.COM").await.0, vec![ada.clone()]);
    assert_eq!(find("петр").await.0, vec![ivan.clone()]);
    assert_eq!(find("山田").await.0, vec![taro.clone()]);
    assert_eq!(find(&ada.to_lowercase()).await.0, vec![ada.clone()]);
    assert!(find("nobody-has-this").await.0.is_empty());
    // Another tenant's member is not among acme's, not even by id.
    assert_eq!(find("other").await.0, Vec::<String>::new());
    assert_eq!(find(&_outsider).await.0, Vec::<String>::new());
    // Everyone, by email order, with what a row shows.
    let (all, answer) = find(" ").await;
    assert_eq!(all.len(), 4, "{answer:?}");
    let row = &answer.body["items"][0];
    assert_eq!(row["email"], "ada@example.com", "{answer:?}");
    assert_eq!(row["first_name"], "Ada");
    assert_eq!(row["last_name"], "Lovelace");
    assert_eq!(row["status"], "active");
    assert_eq!(row["roles"], json!(["admin"]));
    assert_eq!(row["tenants"], json!(["acme"]));
    assert_eq!(row["email_verified"], false);
    assert_eq!(row["two_factor"], false);
    assert_eq!(row["last_sign_in"], Value::Null);
    assert!(row["created_at"].as_str().unwrap().ends_with('Z'));

    // Erased, Ada is found by her id only, never by her former name or address.
    let erased = svc.post(&format!("/v1/users/{ada}/erase"), json!({})).await;
    assert_eq!(erased.status, 200, "{erased:?}");
    let position = erased.position();
    for q in ["ada", "lovelace", "ada@example.com", "love"] {
        let answer = svc
            .get_at(&format!("/v1/tenants/acme/users?q={q}"), position)
            .await;
        assert!(ids(&answer).is_empty(), "{q}: {answer:?}");
    }
    let by_id = svc
        .get_at(&format!("/v1/tenants/acme/users?q={ada}"), position)
        .await;
    assert_eq!(ids(&by_id), vec![ada.clone()]);
    assert_eq!(by_id.body["items"][0]["status"], "erased");
    assert_eq!(by_id.body["items"][0]["email"], "");
    assert_eq!(by_id.body["items"][0]["first_name"], "");
    let everyone = svc.get_at("/v1/users?q=lovelace", position).await;
    assert!(ids(&everyone).is_empty(), "{everyone:?}");
}

/// A row's key under a sort, as the API shows it (times as RFC 3339 text in UTC sort as
/// times do; a missing sign-in first).
fn sort_key(row: &Value, column: &str) -> (String, String) {
    let key = match column {
        "status" => match row["status"].as_str().unwrap() {
            "invited" => "0",
            "active" => "1",
            "suspended" => "2",
            "inactive" => "3",
            _ => "4",
        }
        .to_owned(),
        "last_sign_in" if row["last_sign_in"].is_null() => String::new(),
        "last_sign_in" | "created_at" => format!("1{:030}", nanos(&row[column])),
        other => row[other].as_str().unwrap().to_lowercase(),
    };
    (key, text(&row["id"]))
}

#[tokio::test]
async fn filters_hold_and_every_sort_pages_without_skipping_or_repeating_while_users_are_added() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let firsts = [
        "Zoe", "adam", "Émile", "bea", "Chloé", "dave", "Öko", "Yann",
    ];
    let lasts = ["Young", "archer", "Ångström", "baker", "Cruz", "Diaz"];
    let mut everyone = Vec::new();
    for i in 0..24 {
        let roles: &[&str] = if i % 5 == 0 { &["admin"] } else { &["user"] };
        let (id, _) = person(
            &svc,
            "acme",
            &format!("p{:02}.{}@example.com", (i * 7) % 24, i),
            firsts[i % firsts.len()],
            lasts[i % lasts.len()],
            roles,
        )
        .await;
        everyone.push(id);
    }
    // Statuses: two suspended, one deactivated, one invited; one who signed in.
    for user in &everyone[1..3] {
        let answer = svc
            .post(&format!("/v1/users/{user}/suspend"), json!({}))
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }
    let answer = svc
        .post(&format!("/v1/users/{}/deactivate", everyone[3]), json!({}))
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let invited = svc
        .post(
            "/v1/tenants/acme/users",
            json!({"email": "invited@example.com", "first_name": "Ivy", "invite": true}),
        )
        .await;
    created(&invited, "an invited user");
    everyone.push(text(&invited.body["id"]));
    let signed_in: Account = join(&svc, "member@example.com", "acme", &["user"], PASSWORD).await;
    everyone.push(signed_in.id.clone());
    let position = svc.log_position().await;
    let acme = |query: &str| format!("/v1/tenants/acme/users?{query}&min_position={position}");

    // Filters.
    let rows = all_pages(&svc, None, &acme("status=suspended&limit=500")).await;
    let suspended: BTreeSet<String> = rows.iter().map(|r| text(&r["id"])).collect();
    assert_eq!(suspended, everyone[1..3].iter().cloned().collect());
    let rows = all_pages(&svc, None, &acme("status=invited&status=inactive")).await;
    let found: BTreeSet<String> = rows.iter().map(|r| text(&r["id"])).collect();
    assert_eq!(found, [everyone[3].clone(), everyone[24].clone()].into());
    let rows = all_pages(&svc, None, &acme("status=invited,inactive")).await;
    assert_eq!(rows.len(), 2);
    let admins = all_pages(&svc, None, &acme("role=admin")).await;
    assert_eq!(admins.len(), 5, "{admins:?}");
    assert!(admins.iter().all(|r| r["roles"] == json!(["admin"])));
    let verified = all_pages(&svc, None, &acme("verified=true")).await;
    let found: Vec<String> = verified.iter().map(|r| text(&r["id"])).collect();
    assert_eq!(
        found,
        vec![signed_in.id.clone()],
        "the invitation proved the address"
    );
    let unverified = all_pages(&svc, None, &acme("verified=false")).await;
    assert_eq!(unverified.len(), everyone.len() - 1);
    let recent = all_pages(&svc, None, &acme("last_sign_in_from=2000-01-01T00:00:00Z")).await;
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0]["id"], signed_in.id.as_str());
    assert!(recent[0]["last_sign_in"].is_string());
    let all = all_pages(&svc, None, &acme("limit=500")).await;
    let mut created_at: Vec<&Value> = all.iter().map(|r| &r["created_at"]).collect();
    created_at.sort_by_key(|t| nanos(t));
    let middle = created_at[created_at.len() / 2];
    let from = acme(&format!("created_from={}", encoded(&text(middle))));
    let to = acme(&format!("created_to={}", encoded(&text(middle))));
    let later = all_pages(&svc, None, &from).await;
    let earlier = all_pages(&svc, None, &to).await;
    assert_eq!(later.len() + earlier.len(), all.len());
    assert!(later.len() >= all.len() / 2 && !earlier.is_empty());
    assert!(
        later
            .iter()
            .all(|r| nanos(&r["created_at"]) >= nanos(middle))
    );
    assert!(
        earlier
            .iter()
            .all(|r| nanos(&r["created_at"]) < nanos(middle))
    );
    // Filters combine: suspended members holding `user` (everyone[1] and [2] do).
    let both = all_pages(&svc, None, &acme("role=user&status=suspended&q=example")).await;
    assert_eq!(both.len(), 2, "{both:?}");
    let none = all_pages(&svc, None, &acme("role=admin&status=suspended")).await;
    assert!(none.is_empty(), "{none:?}");

    // Every sort, both ways, a page of 4 at a time, while others join between pages: each user
    // there at the start is seen exactly once, and the pages are in order.
    let mut added = 0;
    for column in [
        "email",
        "first_name",
        "last_name",
        "created_at",
        "last_sign_in",
        "status",
    ] {
        for direction in ["asc", "desc"] {
            let at_start: BTreeSet<String> = all_pages(&svc, None, &acme("limit=500"))
                .await
                .iter()
                .map(|r| text(&r["id"]))
                .collect();
            let mut seen: Vec<Value> = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let mut path = format!("/v1/tenants/acme/users?sort={column}:{direction}&limit=4");
                if let Some(cursor) = &next {
                    path.push_str(&format!("&cursor={cursor}"));
                }
                let page = svc.get(&path).await;
                assert_eq!(page.status, 200, "{path}: {page:?}");
                seen.extend(page.body["items"].as_array().unwrap().iter().cloned());
                // Someone joins before the next page: with a name and address that sort
                // anywhere among the others.
                added += 1;
                person(
                    &svc,
                    "acme",
                    &format!("{}{added}@example.com", ["a", "m", "z"][added % 3]),
                    ["Aaron", "Mia", "Zed"][added % 3],
                    ["Abbott", "Moss", "Zane"][(added + 1) % 3],
                    &["user"],
                )
                .await;
                match page.body["next"].as_str() {
                    Some(cursor) => next = Some(cursor.to_owned()),
                    None => break,
                }
            }
            let ids: Vec<String> = seen.iter().map(|r| text(&r["id"])).collect();
            let unique: BTreeSet<String> = ids.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                ids.len(),
                "{column}:{direction} repeated a row"
            );
            assert!(
                at_start.is_subset(&unique),
                "{column}:{direction} skipped {:?}",
                at_start.difference(&unique).collect::<Vec<_>>()
            );
            let keys: Vec<(String, String)> = seen.iter().map(|r| sort_key(r, column)).collect();
            let mut sorted = keys.clone();
            if column != "email" && column != "first_name" && column != "last_name" {
                sorted.sort();
                if direction == "desc" {
                    sorted.reverse();
                }
                assert_eq!(keys, sorted, "{column}:{direction} out of order");
            }
        }
    }
    // A text sort is by the folded text: Émile sorts with the e's, Ångström with the a's.
    let by_first = all_pages(&svc, None, &acme("sort=first_name&q=example&limit=500")).await;
    let firsts: Vec<String> = by_first.iter().map(|r| text(&r["first_name"])).collect();
    let e = firsts.iter().position(|f| f == "Émile").unwrap();
    let d = firsts.iter().rposition(|f| f == "dave").unwrap();
    let y = firsts.iter().position(|f| f == "Yann").unwrap();
    assert!(d < e && e < y, "{firsts:?}");
}

#[tokio::test]
async fn bad_listing_queries_are_refused_with_invalid_query() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let mut position = 0;
    for i in 0..3 {
        let email = format!("u{i}@example.com");
        position = person(&svc, "acme", &email, "U", "Ser", &["user"]).await.1;
    }
    let first = svc
        .get_at("/v1/tenants/acme/users?limit=1&sort=created_at", position)
        .await;
    let cursor = text(&first.body["next"]);
    for bad in [
        "sort=colour".to_owned(),
        "sort=email:sideways".to_owned(),
        "status=sleeping".to_owned(),
        "role=Not%20A%20Role".to_owned(),
        "limit=0".to_owned(),
        "limit=501".to_owned(),
        "created_from=yesterday".to_owned(),
        "verified=maybe".to_owned(),
        "cursor=not-a-cursor".to_owned(),
        format!("cursor={cursor}"),
        format!("sort=created_at:desc&cursor={cursor}"),
        "bogus=1".to_owned(),
        format!("q={}", "x".repeat(201)),
        "q=a%01b".to_owned(),
        "q=a%E2%80%AEb".to_owned(),
    ] {
        svc.get(&format!("/v1/tenants/acme/users?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    let next = svc
        .get(&format!(
            "/v1/tenants/acme/users?limit=1&sort=created_at&cursor={cursor}"
        ))
        .await;
    assert_eq!(next.status, 200, "{next:?}");
    svc.get("/v1/tenants/acme/users/autocomplete?q=u&limit=501")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/tenants/acme/users/autocomplete")
        .await
        .assert_problem(400, "invalid_query");
    svc.get("/v1/users?role=admin")
        .await
        .assert_problem(400, "invalid_query");
}

#[tokio::test]
async fn autocomplete_suggests_word_prefixes_first_then_other_matches_by_name() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let (rosa, _) = person(&svc, "acme", "rp@example.com", "Rosa", "Parks", &["user"]).await;
    let (ann, _) = person(&svc, "acme", "ann@example.com", "Ann", "Rosé", &["user"]).await;
    let (carl, _) = person(
        &svc,
        "acme",
        "carl@example.com",
        "Carl",
        "Barrosa",
        &["user"],
    )
    .await;
    person(&svc, "acme", "dan@example.com", "Dan", "Smith", &["user"]).await;
    let (_, position) = person(&svc, "beta", "ross@example.com", "Ross", "Beta", &["user"]).await;
    let answer = svc
        .get_at("/v1/tenants/acme/users/autocomplete?q=ROS", position)
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let items = answer.body["items"].as_array().unwrap();
    let got: Vec<String> = items.iter().map(|i| text(&i["id"])).collect();
    assert_eq!(
        got,
        vec![ann.clone(), rosa.clone(), carl.clone()],
        "{answer:?}"
    );
    assert_eq!(items[0]["label"], "Ann Rosé <ann@example.com>");
    let two = svc
        .get_at(
            "/v1/tenants/acme/users/autocomplete?q=ros&limit=2",
            position,
        )
        .await;
    assert_eq!(two.body["items"].as_array().unwrap().len(), 2);
    let none = svc
        .get_at("/v1/tenants/acme/users/autocomplete?q=zzz", position)
        .await;
    assert_eq!(none.body["items"], json!([]));

    // A member without users:read, and a member of another tenant, are refused.
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    svc.get_as(&bare.token, "/v1/tenants/acme/users/autocomplete?q=ros")
        .await
        .assert_problem(403, "forbidden");
    let stranger = join(&svc, "stranger@example.com", "beta", &["admin"], PASSWORD).await;
    svc.get_as(&stranger.token, "/v1/tenants/acme/users/autocomplete?q=ros")
        .await
        .assert_problem(404, "tenant_not_found");
    svc.get_as(&stranger.token, "/v1/tenants/acme/users?q=ros")
        .await
        .assert_problem(404, "tenant_not_found");
    svc.get_as(&bare.token, "/v1/tenants/acme/users")
        .await
        .assert_problem(403, "forbidden");
}

/// The results of a bulk change by user: (change, result, problem code).
fn results(answer: &Answer) -> BTreeMap<String, (String, String, Option<String>)> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                text(&r["user"]),
                (
                    text(&r["change"]),
                    text(&r["result"]),
                    r["problem"]["code"].as_str().map(str::to_owned),
                ),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_roles_members_are_listed_and_changed_in_bulk_with_a_result_per_user() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    let admin = join(&svc, "admin@example.com", "acme", &["admin"], PASSWORD).await;
    let mut users = Vec::new();
    for name in ["Ada", "Bob", "Cy", "Di"] {
        let email = format!("{}@example.com", name.to_lowercase());
        users.push(
            person(&svc, "acme", &email, name, "Member", &["user"])
                .await
                .0,
        );
    }
    let nobody = "01J0000000000000000000000Z";
    let changed = svc
        .post_idempotent(
            "/v1/tenants/acme/roles/admin/members",
            json!({"add": [users[0], users[1], nobody, admin.id], "remove": []}),
            "bulk-1",
        )
        .await;
    let got = results(&changed);
    assert_eq!(got[&users[0]], ("add".into(), "added".into(), None));
    assert_eq!(got[&users[1]], ("add".into(), "added".into(), None));
    assert_eq!(got[&admin.id], ("add".into(), "unchanged".into(), None));
    assert_eq!(
        got[nobody],
        (
            "add".into(),
            "refused".into(),
            Some("user_not_found".into())
        )
    );
    let position = changed.body["position"].as_u64().unwrap();
    assert!(position > 0);
    // The same request again, with the same key, changes nothing.
    let before = svc.log_position().await;
    let again = svc
        .post_idempotent(
            "/v1/tenants/acme/roles/admin/members",
            json!({"add": [users[0], users[1], nobody, admin.id], "remove": []}),
            "bulk-1",
        )
        .await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(svc.log_position().await, before, "a retry appended events");

    let members = svc
        .get_at(
            "/v1/tenants/acme/roles/admin/members?sort=first_name",
            position,
        )
        .await;
    let names: Vec<String> = members.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| text(&r["first_name"]))
        .collect();
    assert_eq!(names, vec!["Ada", "Ada", "Bob"], "{members:?}");
    assert_eq!(members.body["total"], 3);
    let searched = svc
        .get_at("/v1/tenants/acme/roles/admin/members?q=bob", position)
        .await;
    assert_eq!(ids(&searched), vec![users[1].clone()]);
    let paged = all_pages(&svc, None, "/v1/tenants/acme/roles/admin/members?limit=1").await;
    assert_eq!(paged.len(), 3);

    // Removing: one holder, one who never held it; the admin cannot take their own away if
    // they were the last (they are not), and taking it from themselves is allowed for admin.
    let removed = svc
        .post(
            "/v1/tenants/acme/roles/admin/members",
            json!({"remove": [users[0], users[2]]}),
        )
        .await;
    let got = results(&removed);
    assert_eq!(got[&users[0]], ("remove".into(), "removed".into(), None));
    assert_eq!(got[&users[2]], ("remove".into(), "unchanged".into(), None));
    let members = svc
        .get_at("/v1/tenants/acme/roles/admin/members", removed.position())
        .await;
    let holders: BTreeSet<String> = ids(&members).into_iter().collect();
    assert_eq!(holders, [admin.id.clone(), users[1].clone()].into());

    // A user both added and removed, or too many users, is refused whole.
    svc.post(
        "/v1/tenants/acme/roles/admin/members",
        json!({"add": [users[3]], "remove": [users[3]]}),
    )
    .await
    .assert_problem(400, "invalid_query");
    let many: Vec<String> = (0..501).map(|_| users[3].clone()).collect();
    svc.post("/v1/tenants/acme/roles/admin/members", json!({"add": many}))
        .await
        .assert_problem(400, "invalid_query");
    svc.post(
        "/v1/tenants/acme/roles/ghost/members",
        json!({"remove": [users[3]]}),
    )
    .await
    .assert_problem(404, "role_not_found");
    svc.get("/v1/tenants/acme/roles/ghost/members")
        .await
        .assert_problem(404, "role_not_found");

    // A member who may not give the role is refused whole, and nothing is appended.
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    let before = svc.log_position().await;
    let refused = svc
        .post_as(
            &bare.token,
            "/v1/tenants/acme/roles/admin/members",
            json!({"add": [users[3]]}),
        )
        .await;
    refused.assert_problem(403, "forbidden");
    svc.get_as(&bare.token, "/v1/tenants/acme/roles/admin/members")
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(svc.log_position().await, before);
    // An admin cannot give the owner role (owners only).
    let owner = svc
        .post_as(
            &admin.token,
            "/v1/tenants/acme/roles/owner/members",
            json!({"add": [users[3]]}),
        )
        .await;
    assert_eq!(owner.status, 403, "{owner:?}");
    assert_eq!(svc.log_position().await, before);
}

#[tokio::test]
async fn the_last_administrator_is_kept_in_a_bulk_removal() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    // The only administrator of acme (the operator, a platform administrator, is not held to
    // the rule; a member is).
    let boss = join(&svc, "boss@example.com", "acme", &["admin"], PASSWORD).await;
    let (other, _) = person(
        &svc,
        "acme",
        "other@example.com",
        "Other",
        "User",
        &["user"],
    )
    .await;
    let before = svc.log_position().await;
    let answer = svc
        .post_as(
            &boss.token,
            "/v1/tenants/acme/roles/admin/members",
            json!({"remove": [boss.id]}),
        )
        .await;
    let got = results(&answer);
    assert_eq!(
        got[&boss.id],
        ("remove".into(), "refused".into(), Some("last_admin".into()))
    );
    assert_eq!(answer.body["position"], 0);
    assert_eq!(
        svc.log_position().await,
        before,
        "a refusal appended events"
    );
    // Adding another administrator first lets the same request take the role away.
    let answer = svc
        .post_as(
            &boss.token,
            "/v1/tenants/acme/roles/admin/members",
            json!({"add": [other], "remove": [boss.id]}),
        )
        .await;
    let got = results(&answer);
    assert_eq!(got[&other].1, "added", "{answer:?}");
    assert_eq!(got[&boss.id].1, "removed", "{answer:?}");
}

#[tokio::test]
async fn the_platform_directory_lists_everyone_with_their_tenants_for_platform_admins_only() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let (both, _) = person(
        &svc,
        "acme",
        "both@example.com",
        "Both",
        "Tenants",
        &["user"],
    )
    .await;
    let added = svc
        .post(
            &format!("/v1/tenants/beta/users/{both}/roles"),
            json!({"role": "user"}),
        )
        .await;
    assert_eq!(added.status, 200, "{added:?}");
    let (solo, position) =
        person(&svc, "beta", "solo@example.com", "Solo", "Beta", &["user"]).await;
    let answer = svc
        .get_at("/v1/users?q=example.com&sort=email:desc", position)
        .await;
    let found = ids(&answer);
    assert_eq!(found, vec![solo.clone(), both.clone()], "{answer:?}");
    assert_eq!(answer.body["items"][1]["tenants"], json!(["acme", "beta"]));
    assert!(answer.body["items"][1].get("roles").is_none());
    let statuses = svc
        .get_at("/v1/users?status=active&limit=1", position)
        .await;
    assert_eq!(statuses.body["items"].as_array().unwrap().len(), 1);
    assert!(statuses.body["next"].is_string());

    let admin = join(&svc, "admin@example.com", "acme", &["admin"], PASSWORD).await;
    svc.get_as(&admin.token, "/v1/users?q=solo")
        .await
        .assert_problem(403, "platform_admin_only");
    svc.send(svc.anonymous(reqwest::Method::GET, "/v1/users"))
        .await
        .assert_problem(401, "unauthorized");
    // An admin of acme sees a member's beta membership only where they may read users.
    let listed = svc
        .get_as(&admin.token, &format!("/v1/tenants/acme/users?q={both}"))
        .await;
    assert_eq!(
        listed.body["items"][0]["tenants"],
        json!(["acme"]),
        "{listed:?}"
    );
}

#[tokio::test]
async fn one_persons_access_shows_each_tenant_to_whoever_may_see_it() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let person_a = join(&svc, "person@example.com", "acme", &["user"], PASSWORD).await;
    let user = person_a.id.clone();
    let assigned = svc
        .post(
            &format!("/v1/tenants/beta/users/{user}/roles"),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(assigned.status, 200, "{assigned:?}");
    let granted = svc
        .post(
            &format!("/v1/tenants/acme/users/{user}/permissions"),
            json!({"permissions": ["files:read"]}),
        )
        .await;
    assert_eq!(granted.status, 200, "{granted:?}");
    let entity = svc
        .post(
            "/v1/tenants/acme/entities",
            json!({"name": "doc", "fields": ["title"], "rls": true}),
        )
        .await;
    created(&entity, "an entity");
    let role = svc
        .post(
            "/v1/tenants/acme/roles",
            json!({"name": "reviewer", "permissions": ["entity.doc:read"]}),
        )
        .await;
    created(&role, "a role");
    let record = "/v1/tenants/acme/entities/doc/records";
    for r in ["r1", "r2"] {
        let grant = svc
            .put(
                &format!("{record}/{r}/grants/{user}"),
                json!({"access": "read_only"}),
            )
            .await;
        assert_eq!(grant.status, 200, "{grant:?}");
    }
    let local = svc
        .put(
            &format!("{record}/r3/local-roles/{user}/reviewer"),
            json!(null),
        )
        .await;
    assert_eq!(local.status, 200, "{local:?}");
    let position = local.position();

    let path = format!("/v1/users/{user}/access");
    let all = svc.get_at(&path, position).await;
    assert_eq!(all.status, 200, "{all:?}");
    let tenants = all.body["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 2, "{all:?}");
    let acme = &tenants[0];
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["roles"], json!(["user"]));
    assert_eq!(acme["custom_permissions"], json!(["files:read"]));
    assert_eq!(acme["record_grants"], 2);
    assert_eq!(acme["local_roles"], 1);
    assert_eq!(acme["entities"][0]["entity"], "doc");
    assert_eq!(
        acme["links"]["access_review"],
        format!("/v1/audit/access-review?tenant=acme&user={user}")
    );
    assert_eq!(tenants[1]["tenant"], "beta");
    assert_eq!(tenants[1]["roles"], json!(["admin"]));
    assert_eq!(tenants[1]["record_grants"], 0);
    // The detail behind the link: only this member's holdings.
    let review = svc
        .get(acme["links"]["access_review"].as_str().unwrap())
        .await;
    assert_eq!(review.status, 200, "{review:?}");
    let members = review.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{review:?}");
    assert_eq!(members[0]["user"], user.as_str());

    // The person themselves sees both; an admin of acme only acme; a member of acme without
    // users:read is refused; a stranger finds no such user.
    let own = svc.get_as(&person_a.token, &path).await;
    assert_eq!(own.body["tenants"].as_array().unwrap().len(), 2, "{own:?}");
    let acme_admin = join(&svc, "acme-admin@example.com", "acme", &["admin"], PASSWORD).await;
    let theirs = svc.get_as(&acme_admin.token, &path).await;
    let seen: Vec<&str> = theirs.body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(seen, vec!["acme"], "{theirs:?}");
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    svc.get_as(&bare.token, &path)
        .await
        .assert_problem(403, "forbidden");
    svc.create_tenant("gamma").await;
    let stranger = join(&svc, "stranger@example.com", "gamma", &["admin"], PASSWORD).await;
    svc.get_as(&stranger.token, &path)
        .await
        .assert_problem(404, "user_not_found");
}

/// Runs `idstream users list` with `args` on the data directory `dir` (embedded log).
async fn users_list(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"))
        .args(["users", "list"])
        .args(args)
        .env("IDSTREAM_DATA_DIR", dir)
        .env("IDSTREAM_LOG", "warn")
        .env_remove("IDSTREAM_NATS_URL")
        .env_remove("IDSTREAM_CONFIG")
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_command_line_lists_a_tenants_members_as_the_api_does() {
    let (dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let (ada, _) = person(
        &svc,
        "acme",
        "ada@example.com",
        "Ada",
        "Lovelace",
        &["admin"],
    )
    .await;
    let (adam, _) = person(&svc, "acme", "adam@example.com", "Adam", "Smith", &["user"]).await;
    person(&svc, "acme", "bob@example.com", "Bob", "Brown", &["user"]).await;
    let (_, position) = person(
        &svc,
        "beta",
        "adele@example.com",
        "Adèle",
        "Beta",
        &["user"],
    )
    .await;
    let http = svc
        .get_at(
            "/v1/tenants/acme/users?q=ADA&sort=first_name:desc",
            position,
        )
        .await;
    assert_eq!(ids(&http), vec![adam.clone(), ada.clone()]);
    svc.stop().await;

    let output = users_list(
        dir.path(),
        &[
            "--tenant",
            "acme",
            "--q",
            "ADA",
            "--sort",
            "first_name:desc",
            "--json",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(page["items"], http.body["items"], "{page}");
    assert_eq!(page["total"], 2);

    let table = users_list(dir.path(), &["--tenant", "acme", "--sort", "email"]).await;
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("EMAIL"), "{text}");
    assert!(lines[1].starts_with("ada@example.com"), "{text}");
    assert!(
        lines[1].contains("Ada Lovelace") && lines[1].contains("admin"),
        "{text}"
    );
    assert_eq!(lines.len(), 4, "{text}");

    // Without --tenant: every user, with their tenants.
    let everyone = users_list(dir.path(), &["--q", "ad", "--json"]).await;
    assert!(everyone.status.success());
    let page: Value = serde_json::from_slice(&everyone.stdout).unwrap();
    let emails: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        vec!["ada@example.com", "adam@example.com", "adele@example.com"]
    );
    assert_eq!(page["items"][2]["tenants"], json!(["beta"]));

    for bad in [
        &["--tenant", "acme", "--sort", "colour"][..],
        &["--tenant", "nowhere"],
        &["--role", "admin"],
        &["--tenant", "acme", "--cursor", "zz"],
    ] {
        let refused = users_list(dir.path(), bad).await;
        assert!(!refused.status.success(), "{bad:?}");
    }
}

#[tokio::test]
async fn bulk_operations_are_each_decided_on_their_own_with_a_result_per_operation() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let admin = join(&svc, "admin@example.com", "acme", &["admin"], PASSWORD).await;
    let (member, _) = person(&svc, "acme", "member@example.com", "Mem", "Ber", &["user"]).await;
    let (worker, _) = person(&svc, "acme", "worker@example.com", "Wor", "Ker", &["user"]).await;
    let (outsider, _) = person(&svc, "beta", "out@example.com", "Out", "Sider", &["user"]).await;
    let nobody = "01J0000000000000000000000Z";
    let operations = json!({"operations": [
        {"op": "create", "email": "new1@example.com", "first_name": "New", "roles": ["user"]},
        {"op": "create", "email": "not an address", "roles": ["user"]},
        {"op": "invite", "email": "invitee@example.com", "roles": ["user"], "delivery": "link"},
        {"op": "assign_role", "user": member, "role": "admin"},
        {"op": "assign_role", "user": member, "role": "admin"},
        {"op": "revoke_role", "user": member, "role": "ghost"},
        {"op": "assign_role", "user": nobody, "role": "user"},
        {"op": "suspend", "user": worker, "reason": "audit"},
        {"op": "reinstate", "user": worker},
        {"op": "reinstate", "user": worker},
        {"op": "deactivate", "user": outsider},
        {"op": "assign_role", "user": member, "role": "owner"},
    ]});
    let send = || {
        svc.send(
            svc.request_as(
                &admin.token,
                reqwest::Method::POST,
                "/v1/tenants/acme/users/bulk",
            )
            .header("idempotency-key", "bulk-1")
            .json(&operations),
        )
    };
    let answer = send().await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let results = answer.body["results"].as_array().unwrap();
    let got: Vec<(&str, Option<&str>)> = results
        .iter()
        .map(|r| (r["result"].as_str().unwrap(), r["problem"]["code"].as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("done", None),
            ("refused", Some("invalid_email")),
            ("done", None),
            ("done", None),
            ("unchanged", None),
            ("unchanged", None),
            ("refused", Some("user_not_found")),
            ("done", None),
            ("done", None),
            ("unchanged", None),
            ("refused", Some("not_a_member")),
            ("refused", Some("owner_only")),
        ],
        "{answer:?}"
    );
    assert!(results[2]["link"].as_str().unwrap().contains("idi_"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    let position = answer.body["position"].as_u64().unwrap();
    let created = results[0]["id"].as_str().unwrap();
    let listed = svc
        .get_at(&format!("/v1/tenants/acme/users?q={created}"), position)
        .await;
    assert_eq!(
        listed.body["items"][0]["roles"],
        json!(["user"]),
        "{listed:?}"
    );
    let roles = svc
        .get_at(&format!("/v1/tenants/acme/users/{member}/roles"), position)
        .await;
    assert_eq!(roles.body["roles"], json!(["admin", "user"]));
    let user = svc.get_at(&format!("/v1/users/{worker}"), position).await;
    assert_eq!(user.body["status"], "active", "suspended, then reinstated");
    let out = svc.get_at(&format!("/v1/users/{outsider}"), position).await;
    assert_eq!(out.body["status"], "active", "not acme's to deactivate");

    // The same request again with its key repeats nothing. (An operation refused or unchanged
    // the first time is decided again, as a single request retried with its key is.)
    let before = svc.log_position().await;
    let again = send().await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(svc.log_position().await, before, "a retry appended events");
    assert_eq!(again.body["results"][0]["id"], results[0]["id"]);

    // Too many operations, or a caller without users:update: refused whole, nothing appended.
    let many: Vec<Value> = (0..1001)
        .map(|_| json!({"op": "reinstate", "user": member}))
        .collect();
    svc.post("/v1/tenants/acme/users/bulk", json!({"operations": many}))
        .await
        .assert_problem(400, "invalid_query");
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    let before = svc.log_position().await;
    svc.post_as(
        &bare.token,
        "/v1/tenants/acme/users/bulk",
        json!({"operations": [{"op": "create", "email": "x@example.com", "roles": ["user"]}]}),
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(svc.log_position().await, before);
    svc.post(
        "/v1/tenants/acme/users/bulk",
        json!({"operations": [{"op": "teleport", "user": member}]}),
    )
    .await
    .assert_problem(422, "invalid_body");
}

#[tokio::test]
async fn right_after_a_restart_a_search_waits_for_the_index_instead_of_answering_empty() {
    let (_dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let email = format!("restart{i:02}@example.com");
        ids.push(
            person(&svc, "acme", &email, "Re", "Start", &["user"])
                .await
                .0,
        );
    }
    let position = svc.log_position().await;
    svc.restart().await;
    let found = svc
        .get_at("/v1/tenants/acme/users?q=restart&limit=500", position)
        .await;
    assert_eq!(found.body["total"], 30, "{found:?}");
    let mut listed = self::ids(&found);
    listed.sort();
    ids.sort();
    assert_eq!(listed, ids);
}

#[tokio::test]
async fn a_csv_import_is_planned_by_a_dry_run_then_carried_out_row_by_row() {
    let (_dir, svc) = service().await;
    svc.create_tenant("acme").await;
    svc.create_tenant("beta").await;
    let admin = join(&svc, "admin@example.com", "acme", &["admin"], PASSWORD).await;
    let (known, _) = person(&svc, "acme", "known@example.com", "Kno", "Wn", &["user"]).await;
    let (elsewhere, _) = person(&svc, "beta", "beta@example.com", "Be", "Ta", &["user"]).await;
    let csv = "email,first_name,last_name,roles\n\
               new@example.com,Nía,Nueva,user;admin\n\
               Known@Example.com,,,user\n\
               known@example.com,,,admin\n\
               beta@example.com,,,user\n\
               not an address,,,user\n\
               ghost@example.com,,,ghost\n\
               owner@example.com,,,owner\n\
               default@example.com,Dee,Fault,\n";
    let before = svc.log_position().await;
    let plan = svc
        .post_as(
            &admin.token,
            "/v1/tenants/acme/users/import",
            json!({"csv": csv, "dry_run": true}),
        )
        .await;
    assert_eq!(plan.status, 200, "{plan:?}");
    assert_eq!(
        svc.log_position().await,
        before,
        "a dry run changed something"
    );
    let actions: Vec<(&str, Option<&str>)> = plan.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["action"].as_str().unwrap(), r["problem"]["code"].as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("create", None),
            ("unchanged", None),
            ("invalid", Some("invalid_query")),
            ("assign_roles", None),
            ("invalid", Some("invalid_email")),
            ("invalid", Some("unknown_role")),
            ("invalid", Some("owner_only")),
            ("create", None),
        ],
        "{plan:?}"
    );
    assert_eq!(plan.body["rows"][3]["user"], elsewhere.as_str());
    assert_eq!(plan.body["rows"][1]["user"], known.as_str());
    assert_eq!(
        plan.body["rows"][7]["roles"],
        json!(["user"]),
        "the default role"
    );

    let done = svc
        .post_as(
            &admin.token,
            "/v1/tenants/acme/users/import",
            json!({"csv": csv}),
        )
        .await;
    assert_eq!(done.status, 200, "{done:?}");
    let rows = done.body["rows"].as_array().unwrap();
    assert_eq!(rows[0]["results"][0]["result"], "done", "{done:?}");
    assert_eq!(rows[3]["results"][0]["result"], "done");
    assert!(rows[4]["results"].is_null() || rows[4]["results"] == json!([]));
    let position = done.body["position"].as_u64().unwrap();
    let created = svc.get_at("/v1/tenants/acme/users?q=nueva", position).await;
    assert_eq!(created.body["items"][0]["first_name"], "Nía", "{created:?}");
    assert_eq!(created.body["items"][0]["roles"], json!(["admin", "user"]));
    let beta_user = svc
        .get_at(&format!("/v1/tenants/acme/users?q={elsewhere}"), position)
        .await;
    assert_eq!(beta_user.body["items"][0]["roles"], json!(["user"]));
    // Importing the same file again: everyone is there.
    let again = svc
        .post_as(
            &admin.token,
            "/v1/tenants/acme/users/import",
            json!({"csv": csv, "dry_run": true}),
        )
        .await;
    assert_eq!(again.body["rows"][0]["action"], "unchanged", "{again:?}");
    assert_eq!(again.body["rows"][3]["action"], "unchanged");

    // Malformed files and unknown columns are refused whole.
    for bad in [
        "name\nx\n",
        "email,department\nx@example.com,Sales\n",
        "email,first_name\n\"unterminated,x\n",
    ] {
        svc.post_as(
            &admin.token,
            "/v1/tenants/acme/users/import",
            json!({"csv": bad}),
        )
        .await
        .assert_problem(400, "invalid_query");
    }
    let bare = join(&svc, "bare@example.com", "acme", &["user"], PASSWORD).await;
    svc.post_as(
        &bare.token,
        "/v1/tenants/acme/users/import",
        json!({"csv": csv, "dry_run": true}),
    )
    .await
    .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn the_command_line_imports_a_csv_file_after_a_dry_run() {
    let (dir, mut svc) = service().await;
    svc.create_tenant("acme").await;
    person(&svc, "acme", "known@example.com", "Kno", "Wn", &["user"]).await;
    svc.stop().await;
    let file = dir.path().join("people.csv");
    std::fs::write(
        &file,
        "email,first_name,last_name,roles\n\
         cli@example.com,Cli,Ent,user\n\
         known@example.com,,,admin\n\
         broken,,,user\n",
    )
    .unwrap();
    let run = |dry: bool| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_idstream"));
        command
            .args(["users", "import", "--tenant", "acme"])
            .arg(&file)
            .env("IDSTREAM_DATA_DIR", dir.path())
            .env("IDSTREAM_LOG", "warn")
            .env_remove("IDSTREAM_NATS_URL")
            .env_remove("IDSTREAM_CONFIG");
        if dry {
            command.arg("--dry-run");
        }
        command.output()
    };
    let planned = run(true).await.unwrap();
    let printed = String::from_utf8_lossy(&planned.stdout).into_owned();
    assert!(
        planned.status.success(),
        "{}",
        String::from_utf8_lossy(&planned.stderr)
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines[0].contains("cli@example.com") && lines[0].contains("create"),
        "{printed}"
    );
    assert!(
        lines[1].contains("assign_roles") && lines[1].contains("admin"),
        "{printed}"
    );
    assert!(lines[2].contains("invalid"), "{printed}");
    assert!(String::from_utf8_lossy(&planned.stderr).contains("nothing changed"));

    let done = run(false).await.unwrap();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("2 changes made"), "{stderr}");

    // The service sees what the command did.
    svc.start_again().await;
    let position = svc.log_position().await;
    let listed = svc
        .get_at("/v1/tenants/acme/users?sort=email", position)
        .await;
    let rows: Vec<(String, Value)> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (text(&r["email"]), r["roles"].clone()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("cli@example.com".to_owned(), json!(["user"])),
            ("known@example.com".to_owned(), json!(["admin", "user"])),
        ],
        "{listed:?}"
    );
}
