//! The search index against an oracle: random users and memberships are fed to the index the
//! way the directory's commits feed it (keys and JSON values), and every answer is compared with
//! a plain filter-and-sort over the same views.

use std::collections::{BTreeMap, BTreeSet};

use idstream_domain::{RoleName, TenantId, UserId};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use ulid::Ulid;

use crate::search::{
    Cursor, Field, FieldMatch, FieldOp, PeopleIndex, Scope, Search, SearchError, SearchPage, Sort,
    SortColumn,
};
use crate::text::fold;
use crate::{MembershipView, UserStatus, UserView, keys, seal};

const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

const FIRST: [&str; 12] = [
    "José",
    "Ada",
    "Zoë",
    "Иван",
    "Ｌｉｎ",
    "Grace",
    "Ørjan",
    "김민준",
    "Anna",
    "Ana",
    "Ｊｏｓé",
    "",
];
const LAST: [&str; 10] = [
    "García",
    "Lovelace",
    "Çelik",
    "Петров",
    "Hopper",
    "Straße",
    "Müller",
    "山田",
    "Ng",
    "",
];
const DOMAINS: [&str; 4] = ["example.com", "Example.org", "mail.test", "corp.example"];
const ROLES: [&str; 4] = ["admin", "user", "editor", "viewer"];
const TENANTS: [&str; 2] = ["acme", "beta"];

fn tenant(name: &str) -> TenantId {
    name.parse().unwrap()
}

fn role(name: &str) -> RoleName {
    name.parse().unwrap()
}

/// A world: users and memberships, kept both as views (the oracle's) and in the index.
struct World {
    index: PeopleIndex,
    users: BTreeMap<UserId, UserView>,
    members: BTreeMap<(TenantId, UserId), BTreeSet<RoleName>>,
    counter: u64,
}

impl World {
    fn new() -> World {
        World {
            index: PeopleIndex::new(),
            users: BTreeMap::new(),
            members: BTreeMap::new(),
            counter: 0,
        }
    }

    fn put_user(&mut self, view: UserView) {
        let value = serde_json::to_vec(&view).unwrap();
        let key = keys::user(&view.id);
        self.index.apply(
            &mut std::iter::once((key.as_slice(), Some(value.as_slice()))),
            seal().as_ref(),
        );
        self.users.insert(view.id, view);
    }

    fn put_membership(&mut self, t: &TenantId, user: UserId, roles: BTreeSet<RoleName>) {
        let key = keys::member(t, &user);
        if roles.is_empty() {
            self.index.apply(
                &mut std::iter::once((key.as_slice(), None)),
                seal().as_ref(),
            );
            self.members.remove(&(t.clone(), user));
        } else {
            let view = MembershipView {
                tenant: t.clone(),
                user,
                roles: roles.clone(),
                custom_permissions: BTreeSet::new(),
                position: 1,
            };
            let value = serde_json::to_vec(&view).unwrap();
            self.index.apply(
                &mut std::iter::once((key.as_slice(), Some(value.as_slice()))),
                seal().as_ref(),
            );
            self.members.insert((t.clone(), user), roles);
        }
    }

    fn random_user(&mut self, rng: &mut StdRng) -> UserView {
        self.counter += 1;
        let first = *FIRST.choose(rng).unwrap();
        let last = *LAST.choose(rng).unwrap();
        let local = fold(&format!("{first}.{last}"))
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '.')
            .collect::<String>();
        let status = *[
            UserStatus::Active,
            UserStatus::Active,
            UserStatus::Invited,
            UserStatus::Suspended,
            UserStatus::Inactive,
        ]
        .choose(rng)
        .unwrap();
        UserView {
            id: UserId::new(Ulid::from_parts(
                rng.random_range(1..1_000_000),
                rng.random(),
            )),
            email: format!("{local}{}@{}", self.counter, DOMAINS.choose(rng).unwrap())
                .to_lowercase(),
            email_index: None,
            first_name: first.into(),
            last_name: last.into(),
            image_url: None,
            notifications: Default::default(),
            phone: None,
            language: None,
            attributes: Default::default(),
            external_ids: Default::default(),
            user_names: Default::default(),
            updated_at: None,
            status,
            suspended_until: (status == UserStatus::Suspended && rng.random_bool(0.5))
                .then(|| T0 + Duration::days(rng.random_range(1..60))),
            suspension_reason: None,
            flags: Default::default(),
            email_verified: rng.random_bool(0.5),
            activated: status != UserStatus::Invited,
            created_at: T0 + Duration::hours(rng.random_range(0..2000)),
            last_sign_in: rng
                .random_bool(0.7)
                .then(|| T0 + Duration::hours(rng.random_range(0..3000))),
            two_factor: rng.random_bool(0.3),
            created_in: tenant("acme"),
            position: self.counter,
        }
    }

    /// The oracle: every user in scope matching the search, in its order.
    fn expected(&self, search: &Search<'_>) -> Vec<UserId> {
        let needle = search.text.map(|t| fold(t.trim())).unwrap_or_default();
        let mut rows: Vec<&UserView> = self
            .users
            .values()
            .filter(|u| match search.scope {
                Scope::Everyone => true,
                Scope::Tenant(t) => match self.members.get(&(t.clone(), u.id)) {
                    None => false,
                    Some(roles) => {
                        search.roles.is_empty() || search.roles.iter().any(|r| roles.contains(r))
                    }
                },
            })
            .filter(|u| {
                search.statuses.is_empty() || search.statuses.contains(&u.status_at(search.now))
            })
            .filter(|u| search.verified.is_none_or(|v| u.email_verified == v))
            .filter(|u| within(Some(u.created_at), search.created))
            .filter(|u| {
                search.last_sign_in == (None, None) || within(u.last_sign_in, search.last_sign_in)
            })
            .filter(|u| {
                needle.is_empty()
                    || u.id.to_string() == search.text.unwrap().trim().to_uppercase()
                    || (u.status != UserStatus::Erased
                        && (fold(&u.email).contains(&needle) || full_name(u).contains(&needle)))
            })
            .collect();
        let now = search.now;
        rows.sort_by(|a, b| {
            let order =
                match search.sort.column {
                    SortColumn::Email => {
                        text_key(a, |u| fold(&u.email)).cmp(&text_key(b, |u| fold(&u.email)))
                    }
                    SortColumn::FirstName => text_key(a, |u| fold(&u.first_name))
                        .cmp(&text_key(b, |u| fold(&u.first_name))),
                    SortColumn::LastName => text_key(a, |u| fold(&u.last_name))
                        .cmp(&text_key(b, |u| fold(&u.last_name))),
                    SortColumn::CreatedAt => a.created_at.cmp(&b.created_at),
                    SortColumn::LastSignIn => a.last_sign_in.cmp(&b.last_sign_in),
                    SortColumn::Status => rank(a.status_at(now)).cmp(&rank(b.status_at(now))),
                }
                .then(a.id.cmp(&b.id));
            if search.sort.descending {
                order.reverse()
            } else {
                order
            }
        });
        rows.into_iter().map(|u| u.id).collect()
    }
}

fn text_key(user: &UserView, key: impl Fn(&UserView) -> String) -> String {
    if user.status == UserStatus::Erased {
        String::new()
    } else {
        key(user)
    }
}

fn full_name(user: &UserView) -> String {
    let (first, last) = (fold(&user.first_name), fold(&user.last_name));
    match (first.is_empty(), last.is_empty()) {
        (false, false) => format!("{first} {last}"),
        (false, true) => first,
        (true, _) => last,
    }
}

fn rank(status: UserStatus) -> u8 {
    match status {
        UserStatus::Invited => 0,
        UserStatus::Active => 1,
        UserStatus::Suspended => 2,
        UserStatus::Inactive => 3,
        UserStatus::Erased => 4,
    }
}

fn within(
    value: Option<OffsetDateTime>,
    (from, to): (Option<OffsetDateTime>, Option<OffsetDateTime>),
) -> bool {
    match value {
        None => from.is_none() && to.is_none(),
        Some(v) => from.is_none_or(|f| v >= f) && to.is_none_or(|t| v < t),
    }
}

fn search<'a>(scope: Scope<'a>, sort: Sort, limit: usize) -> Search<'a> {
    Search {
        scope,
        text: None,
        roles: &[],
        statuses: &[],
        created: (None, None),
        last_sign_in: (None, None),
        verified: None,
        attributes: &[],
        field: None,
        sort,
        after: None,
        limit,
        now: T0,
    }
}

/// Every page of `search`, following the cursors.
fn all_pages(index: &PeopleIndex, search: &Search<'_>) -> (Vec<UserId>, SearchPage) {
    let mut seen = Vec::new();
    let first = index.search(search).unwrap();
    seen.extend(first.users.iter().copied());
    let mut next = first.next.clone();
    while let Some(cursor) = next {
        // Every cursor goes through its client token, as over HTTP.
        let cursor = Cursor::decode(&cursor.encode()).unwrap();
        let page = index
            .search(&Search {
                after: Some(&cursor),
                ..search.clone()
            })
            .unwrap();
        assert!(
            !page.users.is_empty(),
            "a cursor was given for an empty page"
        );
        for user in &page.users {
            assert!(
                !seen.contains(user),
                "{user} was on an earlier page already"
            );
        }
        seen.extend(page.users.iter().copied());
        next = page.next;
    }
    (seen, first)
}

fn world(seed: u64, users: usize) -> (World, StdRng) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut world = World::new();
    for _ in 0..users {
        let user = world.random_user(&mut rng);
        let id = user.id;
        world.put_user(user);
        for t in TENANTS {
            if rng.random_bool(0.6) {
                let count = rng.random_range(1..=2);
                let roles = ROLES
                    .choose_multiple(&mut rng, count)
                    .map(|r| role(r))
                    .collect();
                world.put_membership(&tenant(t), id, roles);
            }
        }
    }
    (world, rng)
}

#[test]
fn every_search_equals_a_plain_filter_and_sort_of_the_same_users_page_by_page() {
    let queries = [
        None,
        Some("jo"),
        Some("JOSE"),
        Some("ｊｏｓｅ"),
        Some("a"),
        Some("garcia"),
        Some("ada love"),
        Some("@example"),
        Some("strasse"),
        Some("иван"),
        Some("山田"),
        Some("zz"),
        Some("e.c"),
    ];
    for seed in 1..=4 {
        let (mut world, mut rng) = world(seed, 300);
        // Some users change (renamed, erased, their roles taken) after they were indexed.
        let ids: Vec<UserId> = world.users.keys().copied().collect();
        for id in ids
            .choose_multiple(&mut rng, 40)
            .copied()
            .collect::<Vec<_>>()
        {
            let mut view = world.users[&id].clone();
            if rng.random_bool(0.3) {
                view.status = UserStatus::Erased;
                view.email = String::new();
                view.first_name = String::new();
                view.last_name = String::new();
            } else {
                view.first_name = FIRST.choose(&mut rng).unwrap().to_string();
                view.last_sign_in = Some(T0 + Duration::hours(rng.random_range(0..3000)));
            }
            world.put_user(view);
            world.put_membership(&tenant("acme"), id, BTreeSet::new());
        }
        let acme = tenant("acme");
        let statuses = [UserStatus::Active, UserStatus::Suspended];
        let roles = [role("admin"), role("viewer")];
        for (i, text) in queries.iter().enumerate() {
            for column in SortColumn::ALL {
                for descending in [false, true] {
                    let sort = Sort { column, descending };
                    let scope = if i % 2 == 0 {
                        Scope::Tenant(&acme)
                    } else {
                        Scope::Everyone
                    };
                    let mut s = search(scope, sort, 1 + (i % 3) * 7);
                    s.text = *text;
                    s.now = T0 + Duration::days(20);
                    match (i + column as usize) % 5 {
                        0 => s.statuses = &statuses,
                        1 => s.roles = &roles,
                        2 => s.verified = Some(true),
                        3 => {
                            s.created = (
                                Some(T0 + Duration::hours(500)),
                                Some(T0 + Duration::hours(1500)),
                            )
                        }
                        _ => s.last_sign_in = (Some(T0 + Duration::hours(1000)), None),
                    }
                    let expected = world.expected(&s);
                    let (found, first) = all_pages(&world.index, &s);
                    assert_eq!(found, expected, "seed {seed}, {s:?}");
                    assert_eq!(first.total, expected.len() as u64, "seed {seed}, {s:?}");
                    assert!(first.total_exact);
                }
            }
        }
    }
}

#[test]
fn an_erased_user_is_found_by_id_only() {
    let (mut world, _) = world(7, 50);
    let id = *world.users.keys().next().unwrap();
    let before = world.users[&id].clone();
    world.put_user(UserView {
        status: UserStatus::Erased,
        email: String::new(),
        first_name: String::new(),
        last_name: String::new(),
        ..before.clone()
    });
    for text in [
        before.email.as_str(),
        before.first_name.as_str(),
        before.last_name.as_str(),
    ] {
        if text.is_empty() {
            continue;
        }
        let mut s = search(Scope::Everyone, Sort::default(), 500);
        s.text = Some(text);
        let page = world.index.search(&s).unwrap();
        assert!(
            !page.users.contains(&id),
            "{text:?} still finds the erased user"
        );
    }
    let id_text = id.to_string().to_lowercase();
    let mut s = search(Scope::Everyone, Sort::default(), 10);
    s.text = Some(&id_text);
    assert_eq!(world.index.search(&s).unwrap().users, vec![id]);
}

#[test]
fn rows_added_between_pages_are_neither_skipped_nor_repeated() {
    let (mut world, mut rng) = world(11, 200);
    let acme = tenant("acme");
    for column in SortColumn::ALL {
        for descending in [false, true] {
            let sort = Sort { column, descending };
            let s = search(Scope::Tenant(&acme), sort, 13);
            let before: BTreeSet<UserId> = world.expected(&s).into_iter().collect();
            let mut seen = Vec::new();
            let mut page = world.index.search(&s).unwrap();
            loop {
                seen.extend(page.users.iter().copied());
                // Others join while the client pages.
                for _ in 0..5 {
                    let user = world.random_user(&mut rng);
                    let id = user.id;
                    world.put_user(user);
                    world.put_membership(&acme, id, [role("user")].into());
                }
                let Some(cursor) = page.next.clone() else {
                    break;
                };
                page = world
                    .index
                    .search(&Search {
                        after: Some(&cursor),
                        ..s.clone()
                    })
                    .unwrap();
            }
            let unique: BTreeSet<UserId> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "{sort:?}: a row came twice");
            assert!(unique.is_superset(&before), "{sort:?}: a row was skipped");
        }
    }
}

#[test]
fn a_timed_suspension_that_ended_counts_as_active() {
    let mut world = World::new();
    let mut rng = StdRng::seed_from_u64(3);
    let mut user = world.random_user(&mut rng);
    user.status = UserStatus::Suspended;
    user.suspended_until = Some(T0 + Duration::days(1));
    let id = user.id;
    world.put_user(user);
    let active = [UserStatus::Active];
    let mut s = search(Scope::Everyone, Sort::default(), 10);
    s.statuses = &active;
    assert!(world.index.search(&s).unwrap().users.is_empty());
    s.now = T0 + Duration::days(2);
    assert_eq!(world.index.search(&s).unwrap().users, vec![id]);
}

#[test]
fn a_cursor_of_another_sort_is_refused() {
    let (world, _) = world(5, 30);
    let s = search(Scope::Everyone, Sort::default(), 2);
    let cursor = world.index.search(&s).unwrap().next.unwrap();
    let other = Search {
        sort: Sort {
            column: SortColumn::CreatedAt,
            descending: false,
        },
        after: Some(&cursor),
        ..s
    };
    assert!(world.index.search(&other).is_err());
}

#[test]
fn autocomplete_puts_word_prefixes_before_other_matches_then_orders_by_name() {
    let mut world = World::new();
    let mut rng = StdRng::seed_from_u64(1);
    let acme = tenant("acme");
    let mut add = |world: &mut World, first: &str, last: &str, email: &str| {
        let mut user = world.random_user(&mut rng);
        user.first_name = first.into();
        user.last_name = last.into();
        user.email = email.into();
        let id = user.id;
        world.put_user(user);
        world.put_membership(&acme, id, [role("user")].into());
        id
    };
    let rosa = add(&mut world, "Rosa", "Parks", "rp@example.com");
    let ann = add(&mut world, "Ann", "Rosé", "ann@example.com");
    let barrosa = add(&mut world, "Carl", "Barrosa", "carl@example.com");
    let _other = add(&mut world, "Dan", "Smith", "dan@example.com");
    let rosalind = add(&mut world, "Rosalind", "Franklin", "rf@example.com");
    let answer = world.index.autocomplete(&acme, "ROS", 10);
    assert_eq!(answer, vec![ann, rosa, rosalind, barrosa]);
    assert_eq!(world.index.autocomplete(&acme, "ros", 2), vec![ann, rosa]);
    assert_eq!(world.index.autocomplete(&acme, "rosal", 10), vec![rosalind]);
    assert!(
        world
            .index
            .autocomplete(&tenant("beta"), "ros", 10)
            .is_empty()
    );
}

#[test]
fn a_total_past_the_bound_of_exact_checks_is_a_lower_bound() {
    let mut world = World::new();
    let mut rng = StdRng::seed_from_u64(9);
    let count = crate::search::EXACT_TOTAL_CHECKS as usize + 10;
    for _ in 0..count {
        let mut user = world.random_user(&mut rng);
        user.first_name = "Maria".into();
        world.put_user(user);
    }
    let mut s = search(Scope::Everyone, Sort::default(), 5);
    s.text = Some("maria");
    let page = world.index.search(&s).unwrap();
    assert!(!page.total_exact);
    assert_eq!(page.total, crate::search::EXACT_TOTAL_CHECKS);
    s.text = Some("mar");
    let page = world.index.search(&s).unwrap();
    assert!(page.total_exact);
    assert_eq!(page.total, count as u64);
}

#[test]
fn a_cursor_token_round_trips_and_anything_else_is_malformed() {
    let (world, _) = world(11, 40);
    for column in SortColumn::ALL {
        for descending in [false, true] {
            let s = search(Scope::Everyone, Sort { column, descending }, 3);
            let cursor = world.index.search(&s).unwrap().next.unwrap();
            assert_eq!(Cursor::decode(&cursor.encode()).unwrap(), cursor);
        }
    }
    use base64::Engine;
    let token = |plain: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(plain);
    let user = UserId::new(Ulid::new());
    for bad in [
        String::new(),
        "not base64!".to_owned(),
        token("1|email|a"),
        token(&format!("2|email|a|{user}|tx")),
        token(&format!("1|colour|a|{user}|tx")),
        token(&format!("1|email|up|{user}|tx")),
        token("1|email|a|nobody|tx"),
        token(&format!("1|email|a|{user}|n")),
        token(&format!("1|created_at|a|{user}|n")),
        token(&format!(
            "1|created_at|a|{user}|T99999999999999999999999999999"
        )),
        token(&format!("1|status|a|{user}|s300")),
        token(&format!("1|last_sign_in|a|{user}|tx")),
    ] {
        assert_eq!(
            Cursor::decode(&bad),
            Err(SearchError::MalformedCursor),
            "{bad}"
        );
    }
}

#[test]
fn candidates_gathered_at_one_end_of_the_order_are_paged_as_the_oracle_pages_them() {
    // A fifth of the users match, and all of them sort after everyone else by email: a walk
    // from the start of the order meets none of them within its budget, so the index sorts the
    // candidates instead. By first name they all tie, and the user id decides.
    let mut world = World::new();
    let mut rng = StdRng::seed_from_u64(21);
    let acme = tenant("acme");
    for n in 0..3000 {
        let mut user = world.random_user(&mut rng);
        if n % 5 == 0 {
            user.first_name = "Zed".into();
            user.email = format!("zz{n}@example.com");
        } else {
            user.first_name = "Ada".into();
            user.email = format!("a{n}@example.com");
        }
        let id = user.id;
        world.put_user(user);
        world.put_membership(&acme, id, [role("user")].into());
    }
    for column in [SortColumn::Email, SortColumn::FirstName] {
        for descending in [false, true] {
            let mut s = search(Scope::Tenant(&acme), Sort { column, descending }, 50);
            s.text = Some("zed");
            let expected = world.expected(&s);
            assert_eq!(expected.len(), 600);
            let (found, first) = all_pages(&world.index, &s);
            assert_eq!(found, expected, "{s:?}");
            assert_eq!(first.total, 600);
        }
    }
}

#[test]
fn an_index_is_loaded_once_it_holds_its_tree() {
    let index = PeopleIndex::new();
    assert!(!index.is_loaded());
    let tree = sled::Config::new()
        .temporary(true)
        .open()
        .unwrap()
        .open_tree("directory")
        .unwrap();
    index.load(&tree, seal().as_ref());
    assert!(index.is_loaded());
    let cleared = PeopleIndex::new();
    cleared.clear();
    assert!(
        cleared.is_loaded(),
        "a cleared index holds its emptied tree"
    );
}

/// What SCIM compares for `field` of `user` in `tenant`: the original, lower-cased (the
/// provisioned user name, for the user name of someone who has one), or nothing when empty.
fn scim_field(user: &UserView, tenant: &TenantId, field: Field) -> Option<String> {
    let original = match field {
        Field::Email => &user.email,
        Field::UserName => user.user_names.get(tenant).unwrap_or(&user.email),
        Field::FirstName => &user.first_name,
        Field::LastName => &user.last_name,
    };
    (!original.is_empty()).then(|| original.to_lowercase())
}

fn scim_holds(actual: &str, op: FieldOp, value: &str) -> bool {
    let value = value.to_lowercase();
    match op {
        FieldOp::Equals => actual == value,
        FieldOp::StartsWith => actual.starts_with(&value),
        FieldOp::Contains => actual.contains(&value),
        FieldOp::EndsWith => actual.ends_with(&value),
    }
}

/// Given users with accented, full-width, ligatured and plain names, some holding a provisioned
/// user name, when a field is compared (`eq`, `sw`, `co`, `ew` of each field, values of any
/// case, whole fields and pieces of them), then the candidates are exactly the users whose
/// fields fold to their lower case and match as SCIM compares (lower case against lower case),
/// (and, for the user name, those holding a provisioned one, by it), and those the index leaves
/// undecided (fields that do not fold so) whose folded text contains the value; every user
/// matching as SCIM compares is among them; they
/// come in the search's order, page by page, and `undecided` counts the undecided.
#[test]
fn a_field_match_decides_plain_users_exactly_and_leaves_the_others_to_the_caller() {
    let acme = tenant("acme");
    let ops = [
        FieldOp::Equals,
        FieldOp::StartsWith,
        FieldOp::Contains,
        FieldOp::EndsWith,
    ];
    let fields = [
        Field::Email,
        Field::UserName,
        Field::FirstName,
        Field::LastName,
    ];
    let fixed = [
        "ada",
        "ADA",
        "Lov",
        "LOVELACE",
        "jos",
        "José",
        "JOSE",
        "ｊｏ",
        "a",
        "ss",
        "Straße",
        "@example.com",
        "celik",
        "Çe",
        "山",
        "иван",
        "zz",
        "e",
        "ng",
    ];
    for seed in 1..=3u64 {
        let (mut world, mut rng) = world(100 + seed, 250);
        // Some people of acme have a provisioned user name there; some people are renamed.
        let ids: Vec<UserId> = world.users.keys().copied().collect();
        for id in ids
            .choose_multiple(&mut rng, 60)
            .copied()
            .collect::<Vec<_>>()
        {
            let mut view = world.users[&id].clone();
            if rng.random_bool(0.5) {
                let name = *["JDoe", "ada.L", "Grace", "lovelace-7", "Zoë"]
                    .choose(&mut rng)
                    .unwrap();
                view.user_names
                    .insert(acme.clone(), format!("{name}{}", rng.random_range(0..9)));
            } else {
                view.last_name = LAST.choose(&mut rng).unwrap().to_uppercase();
            }
            world.put_user(view);
        }
        let mut values: Vec<String> = fixed.iter().map(|v| v.to_string()).collect();
        let views: Vec<UserView> = world.users.values().cloned().collect();
        for _ in 0..30 {
            let user = views.choose(&mut rng).unwrap();
            let text = [&user.email, &user.first_name, &user.last_name]
                .choose(&mut rng)
                .unwrap()
                .to_string();
            let chars: Vec<char> = text.chars().collect();
            if chars.is_empty() {
                continue;
            }
            let from = rng.random_range(0..chars.len());
            let to = rng.random_range(from + 1..=chars.len());
            let piece: String = chars[from..to].iter().collect();
            values.push(if rng.random_bool(0.5) {
                piece.to_uppercase()
            } else {
                piece
            });
        }
        let statuses = [
            UserStatus::Active,
            UserStatus::Invited,
            UserStatus::Suspended,
        ];
        for (i, value) in values.iter().enumerate() {
            for field in fields {
                let op = ops[(i + field as usize) % ops.len()];
                let mut s = search(
                    Scope::Tenant(&acme),
                    Sort {
                        column: SortColumn::CreatedAt,
                        descending: i % 2 == 1,
                    },
                    1 + i % 40,
                );
                if i % 3 == 0 {
                    s.statuses = &statuses;
                }
                s.field = Some(FieldMatch {
                    field,
                    op,
                    value: value.as_str(),
                });
                // The oracle: those in scope (no field), then decided and undecided.
                let scoped = world.expected(&Search {
                    field: None,
                    ..s.clone()
                });
                let needle = fold(value.trim());
                let mut undecided = 0;
                let expected: Vec<UserId> = scoped
                    .into_iter()
                    .filter(|id| {
                        let user = &world.users[id];
                        let erased = user.status == UserStatus::Erased;
                        let plain = erased
                            || [&user.email, &user.first_name, &user.last_name]
                                .iter()
                                .all(|t| fold(t) == t.to_lowercase());
                        let named = field == Field::UserName && user.user_names.contains_key(&acme);
                        let truth = !erased
                            && scim_field(user, &acme, field)
                                .is_some_and(|actual| scim_holds(&actual, op, value));
                        let text_has = !erased
                            && (fold(&user.email).contains(&needle)
                                || full_name(user).contains(&needle));
                        if named || plain {
                            // Decided: plainly, or by the provisioned name.
                            truth
                        } else {
                            assert!(
                                text_has || !truth,
                                "{value:?} {op:?} {field:?}: {user:?} would be missed"
                            );
                            undecided += u64::from(text_has);
                            text_has
                        }
                    })
                    .collect();
                let (found, first) = all_pages(&world.index, &s);
                assert_eq!(found, expected, "seed {seed}, {s:?}");
                assert_eq!(first.total, expected.len() as u64, "seed {seed}, {s:?}");
                assert_eq!(first.undecided, undecided, "seed {seed}, {s:?}");
            }
        }
    }
}

/// Given a sort column's range far longer than the tenant, when a field is compared, then the
/// tenant's members are checked one by one instead, with the same answer.
#[test]
fn a_field_match_over_a_small_tenant_of_a_large_index_checks_the_tenant() {
    let mut world = World::new();
    let mut rng = StdRng::seed_from_u64(5);
    let acme = tenant("acme");
    let mut members = Vec::new();
    for n in 0..600 {
        let mut user = world.random_user(&mut rng);
        user.last_name = format!("Lovelace{n}");
        user.first_name = "Ada".into();
        let id = user.id;
        world.put_user(user);
        if n % 50 == 0 {
            world.put_membership(&acme, id, [role("user")].into());
            members.push(id);
        }
    }
    for (op, value, count) in [
        (FieldOp::StartsWith, "LOVELACE", 12),
        (FieldOp::StartsWith, "lovelace1", 2),
        (FieldOp::Equals, "lovelace100", 1),
        (FieldOp::Equals, "lovelace", 0),
    ] {
        let mut s = search(Scope::Tenant(&acme), Sort::default(), 100);
        s.field = Some(FieldMatch {
            field: Field::LastName,
            op,
            value,
        });
        let page = world.index.search(&s).unwrap();
        assert_eq!(page.total, count, "{op:?} {value}");
        assert_eq!(page.undecided, 0);
        assert!(page.users.iter().all(|id| members.contains(id)));
    }
}
