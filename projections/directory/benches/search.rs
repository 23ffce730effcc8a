//! The user directory's search index against PostgreSQL 15 on the same rows.
//!
//! One tenant of N users (1,000,000 by default) with names and addresses in several scripts is
//! written to a directory sled tree and loaded from it the way the service loads it at start
//! (`PeopleIndex::load`); the same rows go to a PostgreSQL table with a trigram GIN index on the
//! searched text and a B-tree per sort column (with the id as tie-breaker). Each query shape is
//! then timed on both, side by side, one query at a time over one connection, and every distinct
//! query's page is compared between the two: a difference fails the run (exit code 1). A missed
//! performance goal (PostgreSQL ÷ idstream ≥ 2× at p50 and p99; autocomplete p99 ≤ 2 ms) is only
//! reported.
//!
//! Both sides search and sort the same text: the email and the full name, each
//! [folded](idstream_directory::text::fold) in Rust, the sort columns holding exactly the folded
//! keys the index sorts by, compared byte-wise (`COLLATE "C"`).
//!
//! `cargo bench -p idstream-directory --bench search`
//!
//! Knobs: `IDSTREAM_BENCH_USERS` (1000000); `IDSTREAM_BENCH_ITERS` (500 timed queries per shape
//! and side); `IDSTREAM_BENCH_SECONDS` (20: a shape stops sooner on a side once this much time
//! is spent); `IDSTREAM_BENCH_PG` (a connection string, by default
//! `host=/var/run/postgresql user=postgres dbname=test`); `IDSTREAM_BENCH_EXPLAIN=1` prints
//! PostgreSQL's plan of each query; `IDSTREAM_BENCH_KEEP_PG=1` keeps the schema
//! `idstream_search_bench` afterwards (it is dropped and made anew at every start).

/// The allocator of the `idstream` binary, so that what runs in process here runs as it does there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::time::{Duration, Instant};

use idstream_directory::search::{Cursor, PeopleIndex, Scope, Search, Sort, SortColumn};
use idstream_directory::text::fold;
use idstream_directory::{MembershipView, NAME, UserStatus, UserView};
use idstream_domain::{RoleName, TenantId, UserId};
use idstream_projection_runtime::PersonalSeal;
use idstream_projection_runtime::personal::seal_text;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use ulid::Ulid;

/// The time every query is asked at (timed suspensions that ended before it count as active).
const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);
/// The first account's creation.
const SINCE: OffsetDateTime = datetime!(2016-01-01 00:00 UTC);
const TENANT: &str = "bench";
const PAGE: usize = 50;
const SCHEMA: &str = "idstream_search_bench";
/// Separates the email from the name in PostgreSQL's searched text, as the index keeps them
/// apart: a query never matches across the two (folding drops control characters).
const SEPARATOR: char = '\u{1}';

// ---------------------------------------------------------------------------------------------
// The people
// ---------------------------------------------------------------------------------------------

/// A name as written, and as its owner spells it in an email address.
type Name = (&'static str, &'static str);

struct Script {
    /// Out of 100.
    weight: u32,
    first: &'static [Name],
    last: &'static [Name],
    domains: &'static [&'static str],
}

const SCRIPTS: [Script; 8] = [
    // Latin, with the accents of a dozen languages.
    Script {
        weight: 55,
        first: &[
            ("José", "jose"),
            ("María", "maria"),
            ("François", "francois"),
            ("Zoë", "zoe"),
            ("Chloé", "chloe"),
            ("Søren", "soren"),
            ("Björn", "bjorn"),
            ("Łukasz", "lukasz"),
            ("Małgorzata", "malgorzata"),
            ("Jürgen", "juergen"),
            ("Çağla", "cagla"),
            ("João", "joao"),
            ("Inês", "ines"),
            ("Ágnes", "agnes"),
            ("Zoltán", "zoltan"),
            ("Léa", "lea"),
            ("Hélène", "helene"),
            ("Andrés", "andres"),
            ("Emma", "emma"),
            ("Olivia", "olivia"),
            ("Liam", "liam"),
            ("Noah", "noah"),
            ("James", "james"),
            ("Mary", "mary"),
            ("Sophie", "sophie"),
            ("Lucas", "lucas"),
            ("Alexander", "alexander"),
            ("Anna", "anna"),
            ("Ana", "ana"),
            ("Mehmet", "mehmet"),
            ("Ayşe", "ayse"),
            ("Minh", "minh"),
            ("Dũng", "dung"),
        ],
        last: &[
            ("García", "garcia"),
            ("Müller", "mueller"),
            ("Schmidt", "schmidt"),
            ("Dubois", "dubois"),
            ("Lefèvre", "lefevre"),
            ("Núñez", "nunez"),
            ("González", "gonzalez"),
            ("Rodríguez", "rodriguez"),
            ("Smith", "smith"),
            ("Johnson", "johnson"),
            ("Brown", "brown"),
            ("Williams", "williams"),
            ("Nowak", "nowak"),
            ("Wiśniewski", "wisniewski"),
            ("Dvořák", "dvorak"),
            ("Horváth", "horvath"),
            ("Nagy", "nagy"),
            ("Yılmaz", "yilmaz"),
            ("Öztürk", "ozturk"),
            ("Jensen", "jensen"),
            ("Håkansson", "hakansson"),
            ("Ørsted", "orsted"),
            ("Rossi", "rossi"),
            ("Esposito", "esposito"),
            ("Silva", "silva"),
            ("Conceição", "conceicao"),
            ("Nguyễn", "nguyen"),
            ("Trần", "tran"),
            ("O'Brien", "obrien"),
            ("Straße", "strasse"),
        ],
        domains: &[
            "gmail.com",
            "outlook.com",
            "yahoo.com",
            "gmx.de",
            "orange.fr",
            "libero.it",
            "wp.pl",
            "seznam.cz",
            "uol.com.br",
        ],
    },
    Script {
        weight: 12,
        first: &[
            ("Иван", "ivan"),
            ("Дмитрий", "dmitry"),
            ("Сергей", "sergey"),
            ("Алексей", "alexey"),
            ("Андрей", "andrey"),
            ("Михаил", "mikhail"),
            ("Мария", "maria"),
            ("Анна", "anna"),
            ("Елена", "elena"),
            ("Ольга", "olga"),
            ("Наталья", "natalya"),
            ("Татьяна", "tatyana"),
            ("Юлия", "yulia"),
            ("Александр", "alexander"),
        ],
        last: &[
            ("Иванов", "ivanov"),
            ("Смирнов", "smirnov"),
            ("Кузнецов", "kuznetsov"),
            ("Попов", "popov"),
            ("Васильев", "vasilyev"),
            ("Петров", "petrov"),
            ("Соколов", "sokolov"),
            ("Михайлов", "mikhailov"),
            ("Новиков", "novikov"),
            ("Фёдоров", "fedorov"),
            ("Шевченко", "shevchenko"),
            ("Коваленко", "kovalenko"),
            ("Ковальчук", "kovalchuk"),
        ],
        domains: &["mail.ru", "yandex.ru", "gmail.com", "inbox.ru", "ukr.net"],
    },
    Script {
        weight: 4,
        first: &[
            ("Γιώργος", "giorgos"),
            ("Δημήτρης", "dimitris"),
            ("Νίκος", "nikos"),
            ("Κώστας", "kostas"),
            ("Μαρία", "maria"),
            ("Ελένη", "eleni"),
            ("Κατερίνα", "katerina"),
            ("Σοφία", "sofia"),
            ("Αλέξανδρος", "alexandros"),
        ],
        last: &[
            ("Παπαδόπουλος", "papadopoulos"),
            ("Παπαδάκης", "papadakis"),
            ("Οικονόμου", "oikonomou"),
            ("Γεωργίου", "georgiou"),
            ("Νικολάου", "nikolaou"),
            ("Αλεξίου", "alexiou"),
            ("Βασιλείου", "vasileiou"),
        ],
        domains: &["gmail.com", "otenet.gr", "yahoo.gr"],
    },
    Script {
        weight: 10,
        first: &[
            ("伟", "wei"),
            ("芳", "fang"),
            ("娜", "na"),
            ("秀英", "xiuying"),
            ("敏", "min"),
            ("静", "jing"),
            ("丽", "li"),
            ("强", "qiang"),
            ("磊", "lei"),
            ("军", "jun"),
            ("洋", "yang"),
            ("婷", "ting"),
        ],
        last: &[
            ("王", "wang"),
            ("李", "li"),
            ("张", "zhang"),
            ("刘", "liu"),
            ("陈", "chen"),
            ("杨", "yang"),
            ("黄", "huang"),
            ("赵", "zhao"),
            ("吴", "wu"),
            ("周", "zhou"),
        ],
        domains: &["qq.com", "163.com", "126.com", "gmail.com"],
    },
    Script {
        weight: 6,
        first: &[
            ("太郎", "taro"),
            ("花子", "hanako"),
            ("翔", "sho"),
            ("陽菜", "hina"),
            ("蓮", "ren"),
            ("さくら", "sakura"),
            ("ゆい", "yui"),
            ("大翔", "hiroto"),
            ("結衣", "yui"),
        ],
        last: &[
            ("佐藤", "sato"),
            ("鈴木", "suzuki"),
            ("高橋", "takahashi"),
            ("田中", "tanaka"),
            ("渡辺", "watanabe"),
            ("山田", "yamada"),
            ("伊藤", "ito"),
            ("中村", "nakamura"),
        ],
        domains: &["yahoo.co.jp", "docomo.ne.jp", "gmail.com"],
    },
    Script {
        weight: 5,
        first: &[
            ("민준", "minjun"),
            ("서연", "seoyeon"),
            ("지훈", "jihun"),
            ("지우", "jiwoo"),
            ("하은", "haeun"),
            ("도윤", "doyun"),
        ],
        last: &[
            ("김", "kim"),
            ("이", "lee"),
            ("박", "park"),
            ("최", "choi"),
            ("정", "jung"),
            ("강", "kang"),
        ],
        domains: &["naver.com", "daum.net", "gmail.com"],
    },
    Script {
        weight: 5,
        first: &[
            ("محمد", "mohamed"),
            ("أحمد", "ahmed"),
            ("علي", "ali"),
            ("فاطمة", "fatima"),
            ("عائشة", "aisha"),
            ("يوسف", "youssef"),
            ("مريم", "maryam"),
            ("عمر", "omar"),
            ("خالد", "khaled"),
        ],
        last: &[
            ("حسن", "hassan"),
            ("عبدالله", "abdullah"),
            ("خليل", "khalil"),
            ("منصور", "mansour"),
            ("إبراهيم", "ibrahim"),
            ("الحسيني", "alhusseini"),
            ("سعيد", "said"),
        ],
        domains: &["gmail.com", "hotmail.com", "yahoo.com"],
    },
    Script {
        weight: 3,
        first: &[
            ("राहुल", "rahul"),
            ("प्रिया", "priya"),
            ("अमित", "amit"),
            ("सुनीता", "sunita"),
            ("अर्जुन", "arjun"),
        ],
        last: &[
            ("शर्मा", "sharma"),
            ("पटेल", "patel"),
            ("सिंह", "singh"),
            ("गुप्ता", "gupta"),
            ("कुमार", "kumar"),
        ],
        domains: &["gmail.com", "rediffmail.com"],
    },
];

/// Work addresses, shared across scripts.
const WORK_DOMAINS: [&str; 3] = ["acme-corp.com", "globex.example", "initech.io"];

/// The tenant's roles and how often each is held (out of 131: most people hold one or two).
const ROLES: [(&str, u32); 8] = [
    ("member", 60),
    ("viewer", 30),
    ("editor", 20),
    ("developer", 10),
    ("support", 5),
    ("billing", 3),
    ("admin", 2),
    ("auditor", 1),
];

struct Person {
    view: UserView,
    roles: BTreeSet<RoleName>,
}

fn role(name: &str) -> RoleName {
    name.parse().expect("a role name")
}

fn generate(users: usize, rng: &mut StdRng) -> Vec<Person> {
    let tenant: TenantId = TENANT.parse().unwrap();
    let span_ms = (NOW - SINCE).whole_milliseconds() as i64;
    let mut emails: HashSet<String> = HashSet::with_capacity(users);
    let mut people = Vec::with_capacity(users);
    for position in 0..users as u64 {
        let script = SCRIPTS.choose_weighted(rng, |s| s.weight).expect("weights");
        let first = *script.first.choose(rng).unwrap();
        // A few people have one name only.
        let last = if rng.random_bool(0.001) {
            ("", "")
        } else {
            *script.last.choose(rng).unwrap()
        };
        let (f, l) = (first.1, last.1);
        let mut local = match (f.is_empty(), l.is_empty(), rng.random_range(0..5)) {
            (_, true, _) => f.to_owned(),
            (true, _, _) => l.to_owned(),
            (_, _, 0) => format!("{f}.{l}"),
            (_, _, 1) => format!("{f}{l}"),
            (_, _, 2) => format!("{}{l}", &f[..1]),
            (_, _, 3) => format!("{f}_{l}"),
            _ => format!("{l}.{f}"),
        };
        if rng.random_bool(0.4) {
            if rng.random_bool(0.5) {
                write!(local, "{}", rng.random_range(1960..2008)).unwrap();
            } else {
                write!(local, "{}", rng.random_range(1..100)).unwrap();
            }
        }
        let domain = if rng.random_bool(0.25) {
            WORK_DOMAINS.choose(rng).unwrap()
        } else {
            script.domains.choose(rng).unwrap()
        };
        let mut email = format!("{local}@{domain}");
        while emails.contains(&email) {
            local.push(char::from(b'0' + rng.random_range(0..10u8)));
            email = format!("{local}@{domain}");
        }
        emails.insert(email.clone());

        let status = match rng.random_range(0..10_000) {
            0..7_200 => UserStatus::Active,
            7_200..8_200 => UserStatus::Invited,
            8_200..8_800 => UserStatus::Suspended,
            8_800..9_997 => UserStatus::Inactive,
            _ => UserStatus::Erased,
        };
        let created_at = SINCE + time::Duration::milliseconds(rng.random_range(0..span_ms));
        let signed_in_span = (NOW - created_at).whole_milliseconds() as i64;
        let last_sign_in = (status != UserStatus::Invited && rng.random_bool(0.8)).then(|| {
            created_at + time::Duration::milliseconds(rng.random_range(0..signed_in_span.max(1)))
        });
        let suspended_until = (status == UserStatus::Suspended && rng.random_bool(0.5))
            .then(|| NOW + time::Duration::days(rng.random_range(-90..90)));
        let id = UserId::new(Ulid::from_parts(
            (created_at.unix_timestamp_nanos() / 1_000_000) as u64,
            rng.random(),
        ));
        let erased = status == UserStatus::Erased;
        let view = UserView {
            id,
            email: if erased { String::new() } else { email },
            email_index: None,
            first_name: if erased { "" } else { first.0 }.to_owned(),
            last_name: if erased { "" } else { last.0 }.to_owned(),
            image_url: None,
            notifications: Default::default(),
            phone: None,
            language: None,
            attributes: Default::default(),
            external_ids: Default::default(),
            user_names: Default::default(),
            updated_at: None,
            status,
            suspended_until,
            suspension_reason: None,
            flags: Default::default(),
            email_verified: status != UserStatus::Invited && rng.random_bool(0.85),
            activated: status != UserStatus::Invited,
            created_at,
            last_sign_in,
            two_factor: rng.random_bool(0.2),
            created_in: tenant.clone(),
            position: position + 1,
        };
        let count = match rng.random_range(0..10) {
            0..6 => 1,
            6..9 => 2,
            _ => 3,
        };
        let mut roles = BTreeSet::new();
        while roles.len() < count {
            roles.insert(role(ROLES.choose_weighted(rng, |r| r.1).unwrap().0));
        }
        people.push(Person { view, roles });
    }
    people
}

// ---------------------------------------------------------------------------------------------
// The index, through a sled tree
// ---------------------------------------------------------------------------------------------

/// The read models' sled configuration in the service.
fn open_sled(dir: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(Some(1000))
        .open()
        .expect("sled opens")
}

/// Writes the directory rows the index reads: `user/<id>` and `member/<tenant>/<user>`.
/// Creates `count` people's keys in a file key store under `root`, then reads each once with a
/// cold cache, as the service does at start; returns the time the reads took.
fn file_key_store_reads(root: &std::path::Path, count: usize) -> Duration {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store: std::sync::Arc<dyn idstream_keys::KeyStore> =
            std::sync::Arc::new(idstream_keys::FileKeyStore::open(root.join("keys")).unwrap());
        let users: Vec<String> = (0..count)
            .map(|n| UserId::new(Ulid::from_parts(1, n as u128)).to_string())
            .collect();
        let writer = idstream_keys::PersonalKeys::new(store.clone());
        for user in &users {
            writer.for_writing(user).await.unwrap();
        }
        let reader = idstream_keys::PersonalKeys::new(store);
        let started = Instant::now();
        for user in &users {
            black_box(reader.for_reading(user).await.unwrap());
        }
        started.elapsed()
    })
}

/// Writes the users as the directory stores them: personal fields sealed with each person's key
/// (`seal`, whose keys are in memory here).
fn write_tree(dir: &std::path::Path, people: &[Person], seal: &dyn PersonalSeal) -> u64 {
    let tenant: TenantId = TENANT.parse().unwrap();
    let db = open_sled(dir);
    let tree = db.open_tree(NAME).unwrap();
    for chunk in people.chunks(10_000) {
        let mut batch = sled::Batch::default();
        for person in chunk {
            let id = person.view.id;
            let user = id.to_string();
            let stored = UserView {
                email: seal_text(seal, &user, "email", &person.view.email).unwrap(),
                first_name: seal_text(seal, &user, "first_name", &person.view.first_name).unwrap(),
                last_name: seal_text(seal, &user, "last_name", &person.view.last_name).unwrap(),
                ..person.view.clone()
            };
            batch.insert(
                format!("user/{id}").into_bytes(),
                serde_json::to_vec(&stored).unwrap(),
            );
            let membership = MembershipView {
                tenant: tenant.clone(),
                user: id,
                roles: person.roles.clone(),
                custom_permissions: BTreeSet::new(),
                position: person.view.position,
            };
            batch.insert(
                format!("member/{tenant}/{id}").into_bytes(),
                serde_json::to_vec(&membership).unwrap(),
            );
        }
        tree.apply_batch(batch).unwrap();
    }
    db.flush().unwrap();
    db.size_on_disk().unwrap()
}

unsafe extern "C" {
    /// mimalloc's own: returns the memory it holds free to the system.
    fn mi_collect(force: bool);
}

/// The resident set, after the allocator has returned what it holds free.
fn rss_bytes() -> u64 {
    // SAFETY: mi_collect only walks the allocator's own free lists; it takes no pointers.
    unsafe { mi_collect(true) };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// What the index sorts and searches one user by, computed the way it does.
struct Folded {
    email: String,
    first: String,
    last: String,
    name: String,
}

fn folded(view: &UserView) -> Folded {
    if view.status == UserStatus::Erased {
        return Folded {
            email: String::new(),
            first: String::new(),
            last: String::new(),
            name: String::new(),
        };
    }
    let (email, first, last) = (
        fold(&view.email),
        fold(&view.first_name),
        fold(&view.last_name),
    );
    let name = match (first.is_empty(), last.is_empty()) {
        (false, false) => format!("{first} {last}"),
        (false, true) => first.clone(),
        (true, _) => last.clone(),
    };
    Folded {
        email,
        first,
        last,
        name,
    }
}

fn status_rank(status: UserStatus) -> i16 {
    match status {
        UserStatus::Invited => 0,
        UserStatus::Active => 1,
        UserStatus::Suspended => 2,
        UserStatus::Inactive => 3,
        UserStatus::Erased => 4,
    }
}

/// A value in COPY's text format.
fn copy_field(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap()
}

/// Sends every row with COPY; returns how long it took.
fn copy_rows(client: &mut Client, people: &[Person]) -> Duration {
    let started = Instant::now();
    let mut writer = client
        .copy_in(
            "COPY users (id, email, first_name, last_name, full_name, search, status, \
             created_at, last_sign_in, verified, roles) FROM STDIN",
        )
        .unwrap();
    let mut buffer = String::with_capacity(1 << 20);
    for person in people {
        let view = &person.view;
        let f = folded(view);
        let search = format!("{}{SEPARATOR}{}", f.email, f.name);
        let sign_in = view.last_sign_in.map_or("\\N".to_owned(), rfc3339);
        let roles: Vec<&str> = person.roles.iter().map(RoleName::as_str).collect();
        write!(buffer, "{}\t", view.id).unwrap();
        for text in [&f.email, &f.first, &f.last, &f.name, &search] {
            copy_field(&mut buffer, text);
            buffer.push('\t');
        }
        writeln!(
            buffer,
            "{}\t{}\t{sign_in}\t{}\t{{{}}}",
            status_rank(view.status_at(NOW)),
            rfc3339(view.created_at),
            if view.email_verified { 't' } else { 'f' },
            roles.join(",")
        )
        .unwrap();
        if buffer.len() > (1 << 20) - 4096 {
            writer.write_all(buffer.as_bytes()).unwrap();
            buffer.clear();
        }
    }
    writer.write_all(buffer.as_bytes()).unwrap();
    writer.finish().unwrap();
    started.elapsed()
}

/// The expression a column sorts by in PostgreSQL, and the type of its key. Users who never
/// signed in sort first, as in the index; a coalesce keeps them in one B-tree range.
fn sort_expression(column: SortColumn) -> (&'static str, &'static str) {
    match column {
        SortColumn::Email => ("email", "text"),
        SortColumn::FirstName => ("first_name", "text"),
        SortColumn::LastName => ("last_name", "text"),
        SortColumn::CreatedAt => ("created_at", "timestamptz"),
        SortColumn::LastSignIn => (
            "coalesce(last_sign_in, '-infinity'::timestamptz)",
            "timestamptz",
        ),
        SortColumn::Status => ("status", "smallint"),
    }
}

struct PgLoad {
    copy: Duration,
    indexes: Vec<(String, Duration)>,
    table_bytes: i64,
    total_bytes: i64,
}

fn load_postgres(client: &mut Client, people: &[Person]) -> PgLoad {
    client
        .batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS pg_trgm;
             DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
             CREATE SCHEMA {SCHEMA};
             SET search_path = {SCHEMA}, public;
             SET maintenance_work_mem = '1GB';
             CREATE TABLE users (
                 id text COLLATE \"C\" NOT NULL,
                 email text COLLATE \"C\" NOT NULL,
                 first_name text COLLATE \"C\" NOT NULL,
                 last_name text COLLATE \"C\" NOT NULL,
                 full_name text COLLATE \"C\" NOT NULL,
                 search text NOT NULL,
                 status smallint NOT NULL,
                 created_at timestamptz NOT NULL,
                 last_sign_in timestamptz,
                 verified bool NOT NULL,
                 roles text[] NOT NULL
             );"
        ))
        .unwrap();
    let copy = copy_rows(client, people);
    let mut statements = vec![
        (
            "primary key (id)".to_owned(),
            "ALTER TABLE users ADD PRIMARY KEY (id)".to_owned(),
        ),
        (
            "GIN trigram (search gin_trgm_ops)".to_owned(),
            "CREATE INDEX users_search ON users USING gin (search gin_trgm_ops)".to_owned(),
        ),
        (
            "GIN (roles)".to_owned(),
            "CREATE INDEX users_roles ON users USING gin (roles)".to_owned(),
        ),
    ];
    for column in SortColumn::ALL {
        let (expression, _) = sort_expression(column);
        statements.push((
            format!("B-tree ({expression}, id)"),
            format!(
                "CREATE INDEX users_by_{} ON users (({expression}), id)",
                column.name()
            ),
        ));
    }
    statements.push((
        "VACUUM ANALYZE".to_owned(),
        "VACUUM ANALYZE users".to_owned(),
    ));
    let mut indexes = Vec::new();
    for (label, sql) in statements {
        let started = Instant::now();
        client.batch_execute(&sql).unwrap();
        indexes.push((label, started.elapsed()));
    }
    let row = client
        .query_one(
            "SELECT pg_relation_size('users'), pg_total_relation_size('users')",
            &[],
        )
        .unwrap();
    PgLoad {
        copy,
        indexes,
        table_bytes: row.get(0),
        total_bytes: row.get(1),
    }
}

// ---------------------------------------------------------------------------------------------
// Query shapes
// ---------------------------------------------------------------------------------------------

/// One query, as both sides ask it.
struct Case {
    label: String,
    text: Option<String>,
    roles: Vec<RoleName>,
    column: SortColumn,
    /// idstream's cursor, found by following `next` from the first page.
    after: Option<Cursor>,
    /// PostgreSQL's parameters, all text.
    params: Vec<String>,
}

struct Shape {
    name: String,
    idstream: String,
    sql: String,
    statement: Statement,
    /// Whether PostgreSQL plans each execution for its parameters (`plan_cache_mode =
    /// force_custom_plan`) rather than reusing a generic plan: a generic plan of the ILIKE
    /// cannot tell a two-character pattern (no trigram, so a full GIN scan) from a long one.
    custom_plans: bool,
    cases: Vec<Case>,
}

fn search_of<'a>(tenant: &'a TenantId, case: &'a Case) -> Search<'a> {
    Search {
        scope: Scope::Tenant(tenant),
        text: case.text.as_deref(),
        roles: &case.roles,
        statuses: &[],
        created: (None, None),
        last_sign_in: (None, None),
        verified: None,
        attributes: &[],
        field: None,
        sort: Sort {
            column: case.column,
            descending: false,
        },
        after: case.after.as_ref(),
        limit: PAGE,
        now: NOW,
    }
}

/// A LIKE pattern that matches `text` anywhere.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A page from PostgreSQL: the ids, and the sort key of the last row (the next cursor).
fn pg_page(client: &mut Client, statement: &Statement, params: &[String]) -> (Vec<String>, String) {
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
    let rows = client.query(statement, &refs).unwrap();
    let ids = rows.iter().map(|row| row.get::<_, String>(0)).collect();
    let last = rows
        .last()
        .map(|row| row.get::<_, String>(1))
        .unwrap_or_default();
    (ids, last)
}

fn text_shape(client: &mut Client, name: &str, queries: &[&str]) -> Shape {
    let sql = "SELECT id, email FROM users WHERE search ILIKE $1 ORDER BY email, id LIMIT 50";
    let cases = queries
        .iter()
        .map(|query| {
            let folded = fold(query.trim());
            let pattern = contains_pattern(&folded);
            Case {
                label: format!("{query:?} → '{pattern}'"),
                text: Some((*query).to_owned()),
                roles: Vec::new(),
                column: SortColumn::Email,
                after: None,
                params: vec![pattern],
            }
        })
        .collect();
    Shape {
        name: name.to_owned(),
        idstream:
            "search(Search { scope: Tenant(bench), text: Some(q), sort: email asc, limit: 50 })"
                .to_owned(),
        sql: sql.to_owned(),
        statement: client.prepare(sql).unwrap(),
        custom_plans: true,
        cases,
    }
}

fn role_shape(client: &mut Client, name: &str, roles: &[&str]) -> Shape {
    let sql =
        "SELECT id, email FROM users WHERE roles @> ARRAY[$1::text] ORDER BY email, id LIMIT 50";
    let cases = roles
        .iter()
        .map(|r| Case {
            label: format!("role {r}"),
            text: None,
            roles: vec![role(r)],
            column: SortColumn::Email,
            after: None,
            params: vec![(*r).to_owned()],
        })
        .collect();
    Shape {
        name: name.to_owned(),
        idstream: "search(Search { scope: Tenant(bench), roles: [r], sort: email asc, limit: 50 })"
            .to_owned(),
        sql: sql.to_owned(),
        statement: client.prepare(sql).unwrap(),
        custom_plans: true,
        cases,
    }
}

/// The first page, or the tenth (both sides reach its cursor by paging through the nine before).
fn sort_shape(
    client: &mut Client,
    index: &PeopleIndex,
    tenant: &TenantId,
    column: SortColumn,
    tenth: bool,
) -> Shape {
    let (expression, kind) = sort_expression(column);
    let first_sql = format!(
        "SELECT id, ({expression})::text AS key FROM users ORDER BY {expression}, id LIMIT 50"
    );
    let next_sql = format!(
        "SELECT id, ({expression})::text AS key FROM users WHERE ({expression}, id) > ($1::text::{kind}, $2::text) \
         ORDER BY {expression}, id LIMIT 50"
    );
    let mut case = Case {
        label: format!("{} asc, page {}", column.name(), if tenth { 10 } else { 1 }),
        text: None,
        roles: Vec::new(),
        column,
        after: None,
        params: Vec::new(),
    };
    if tenth {
        let first = client.prepare(&first_sql).unwrap();
        let next = client.prepare(&next_sql).unwrap();
        let (mut ids, mut key) = pg_page(client, &first, &[]);
        for _ in 0..8 {
            let params = [key.clone(), ids.last().unwrap().clone()];
            (ids, key) = pg_page(client, &next, &params);
        }
        case.params = vec![key, ids.last().unwrap().clone()];
        for _ in 0..9 {
            let page = index.search(&search_of(tenant, &case)).unwrap();
            case.after = page.next;
        }
    }
    let sql = if tenth { next_sql } else { first_sql };
    Shape {
        name: format!(
            "sort by {}, page {}",
            column.name(),
            if tenth { 10 } else { 1 }
        ),
        idstream: format!(
            "search(Search {{ scope: Tenant(bench), sort: {} asc, limit: 50, after: {} }})",
            column.name(),
            if tenth {
                "the cursor of page 9"
            } else {
                "None"
            }
        ),
        statement: client.prepare(&sql).unwrap(),
        sql,
        custom_plans: false,
        cases: vec![case],
    }
}

// ---------------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Stats {
    samples: usize,
    p50: Duration,
    p99: Duration,
}

struct Budget {
    iterations: usize,
    time: Duration,
}

/// Times `run(case)` round-robin over the cases after a warm-up (six rounds, so that
/// PostgreSQL has settled its plan cache, or a quarter of the time budget).
fn measure(cases: usize, budget: &Budget, mut run: impl FnMut(usize)) -> Stats {
    let warm = Instant::now();
    for _ in 0..6 {
        for case in 0..cases {
            run(case);
        }
        if warm.elapsed() > budget.time / 4 {
            break;
        }
    }
    let mut samples = Vec::with_capacity(budget.iterations);
    let started = Instant::now();
    for i in 0..budget.iterations {
        let t = Instant::now();
        run(i % cases);
        samples.push(t.elapsed());
        if started.elapsed() > budget.time && samples.len() >= cases.max(20) {
            break;
        }
    }
    samples.sort_unstable();
    let rank = |q: f64| samples[((q * samples.len() as f64).ceil() as usize).max(1) - 1];
    Stats {
        samples: samples.len(),
        p50: rank(0.50),
        p99: rank(0.99),
    }
}

fn show(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.1} µs")
    } else {
        format!("{:.2} ms", micros / 1000.0)
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct Row {
    shape: String,
    idstream: Stats,
    postgres: Stats,
}

fn main() {
    let users: usize = env_or("IDSTREAM_BENCH_USERS", 1_000_000);
    let budget = Budget {
        iterations: env_or("IDSTREAM_BENCH_ITERS", 500),
        time: Duration::from_secs_f64(env_or("IDSTREAM_BENCH_SECONDS", 20.0)),
    };
    let explain = std::env::var("IDSTREAM_BENCH_EXPLAIN").is_ok_and(|v| v == "1");
    let connection = std::env::var("IDSTREAM_BENCH_PG")
        .unwrap_or_else(|_| "host=/var/run/postgresql user=postgres dbname=test".to_owned());
    let tenant: TenantId = TENANT.parse().unwrap();
    println!(
        "user directory search vs PostgreSQL: {users} users in one tenant, pages of {PAGE}, load average {}",
        load_average()
    );

    // The people.
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(14);
    let people = generate(users, &mut rng);
    println!(
        "generated {users} users in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The index, the way the service builds it at start: from the directory tree.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("models");
    let seal = idstream_keys::ReadModelSeal::in_memory();
    let started = Instant::now();
    let disk = write_tree(&dir, &people, seal.as_ref());
    println!(
        "wrote the directory tree ({} user and {} member rows) in {:.1} s; {:.0} MiB on disk",
        users,
        users,
        started.elapsed().as_secs_f64(),
        disk as f64 / (1 << 20) as f64
    );
    let rss_before = rss_bytes();
    let started = Instant::now();
    let index = PeopleIndex::new();
    {
        let db = open_sled(&dir);
        let tree = db.open_tree(NAME).unwrap();
        index.load(&tree, seal.as_ref());
    }
    let build = started.elapsed();
    let rss_after = rss_bytes();
    let growth = rss_after.saturating_sub(rss_before);
    let per_million = growth as f64 * 1e6 / users as f64;
    println!(
        "PeopleIndex::load (open the tree, read, open the sealed fields with keys in memory, and index {} users): {:.1} s; RSS {:.0} → {:.0} MiB, \
         +{:.0} MiB = {:.0} MiB per million users (with what sled and the decoding leave resident)",
        index.len(),
        build.as_secs_f64(),
        rss_before as f64 / (1 << 20) as f64,
        rss_after as f64 / (1 << 20) as f64,
        growth as f64 / (1 << 20) as f64,
        per_million / (1 << 20) as f64,
    );

    // The keys above were in memory. The service reads each person's key from its key store the
    // first time (then keeps it): measured here on the file key store, for a sample of people.
    let sample = users.min(20_000);
    let key_cost = file_key_store_reads(root.path(), sample);
    println!(
        "reading a person's key from the file key store the first time: {:.1} µs each ({sample} people); \
         at start, for {users} people: +{:.1} s to the load above",
        key_cost.as_secs_f64() * 1e6 / sample as f64,
        key_cost.as_secs_f64() * users as f64 / sample as f64,
    );

    // PostgreSQL.
    let mut client = Client::connect(&connection, NoTls).expect("PostgreSQL accepts a connection");
    let version: String = client.query_one("SHOW server_version", &[]).unwrap().get(0);
    let loaded = load_postgres(&mut client, &people);
    println!(
        "PostgreSQL {version}: COPY of {users} rows in {:.1} s",
        loaded.copy.as_secs_f64()
    );
    let mut index_total = Duration::ZERO;
    for (label, took) in &loaded.indexes {
        println!("  {label}: {:.1} s", took.as_secs_f64());
        index_total += *took;
    }
    println!(
        "  indexes and VACUUM ANALYZE: {:.1} s; table {:.0} MiB, table + indexes {:.0} MiB (pg_total_relation_size)",
        index_total.as_secs_f64(),
        loaded.table_bytes as f64 / (1 << 20) as f64,
        loaded.total_bytes as f64 / (1 << 20) as f64
    );
    drop(people);

    let ping = client.prepare("SELECT 1").unwrap();
    let floor = measure(1, &budget, |_| {
        black_box(client.query(&ping, &[]).unwrap());
    });
    println!(
        "PostgreSQL round trip (SELECT 1 over the Unix socket): p50 {}, p99 {}",
        show(floor.p50),
        show(floor.p99)
    );

    let mut shapes = vec![
        text_shape(
            &mut client,
            "text, 2 characters",
            &["an", "ov", "Jö", "ол", "Πα", "佐藤", "ng", "zh"],
        ),
        text_shape(
            &mut client,
            "text, 3 characters",
            &["ale", "GAR", "Mül", "Νίκ", "Ива", "kim", "@qq", "ssi"],
        ),
        text_shape(
            &mut client,
            "text, 6 characters",
            &[
                "garcia",
                "GARCÍA",
                "Müller",
                "иванов",
                "Παπαδό",
                "yamada",
                "smirno",
                "khalil",
            ],
        ),
        role_shape(
            &mut client,
            "role filter, common (member, viewer, editor)",
            &["member", "viewer", "editor"],
        ),
        role_shape(
            &mut client,
            "role filter, rare (billing, admin, auditor)",
            &["billing", "admin", "auditor"],
        ),
    ];
    for column in SortColumn::ALL {
        for tenth in [false, true] {
            shapes.push(sort_shape(&mut client, &index, &tenant, column, tenth));
        }
    }

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    for shape in &shapes {
        println!();
        println!("[{}]", shape.name);
        println!(
            "  idstream:   PeopleIndex::{} (it also counts the total, exactly up to {} checks)",
            shape.idstream,
            idstream_directory::search::EXACT_TOTAL_CHECKS
        );
        println!(
            "  PostgreSQL: {} (no count; {} plans)",
            shape.sql,
            if shape.custom_plans {
                "custom"
            } else {
                "cached generic"
            }
        );
        client
            .batch_execute(if shape.custom_plans {
                "SET plan_cache_mode = force_custom_plan"
            } else {
                "SET plan_cache_mode = auto"
            })
            .unwrap();
        // The same page on both sides, for every query of the shape.
        for case in &shape.cases {
            let page = index.search(&search_of(&tenant, case)).unwrap();
            let ours: Vec<String> = page.users.iter().map(UserId::to_string).collect();
            let (theirs, _) = pg_page(&mut client, &shape.statement, &case.params);
            let same = ours == theirs;
            println!(
                "    {} {:<40} params {:?}: {} rows, idstream total {}{}",
                if same { "same page" } else { "DIFFERENT" },
                case.label,
                case.params,
                ours.len(),
                page.total,
                if page.total_exact {
                    ""
                } else {
                    " (lower bound)"
                },
            );
            if !same {
                let at = ours
                    .iter()
                    .zip(&theirs)
                    .position(|(a, b)| a != b)
                    .unwrap_or(ours.len().min(theirs.len()));
                failures.push(format!(
                    "{} / {}: idstream {} rows, PostgreSQL {} rows, first difference at row {at}",
                    shape.name,
                    case.label,
                    ours.len(),
                    theirs.len()
                ));
            }
            if explain {
                let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {}", shape.sql);
                let refs: Vec<&(dyn ToSql + Sync)> = case
                    .params
                    .iter()
                    .map(|p| p as &(dyn ToSql + Sync))
                    .collect();
                for row in client.query(sql.as_str(), &refs).unwrap() {
                    println!("        {}", row.get::<_, String>(0));
                }
            }
        }
        let ours = measure(shape.cases.len(), &budget, |i| {
            let page = index.search(&search_of(&tenant, &shape.cases[i])).unwrap();
            black_box(page);
        });
        let theirs = measure(shape.cases.len(), &budget, |i| {
            black_box(pg_page(
                &mut client,
                &shape.statement,
                &shape.cases[i].params,
            ));
        });
        let (r50, r99) = (
            theirs.p50.as_secs_f64() / ours.p50.as_secs_f64(),
            theirs.p99.as_secs_f64() / ours.p99.as_secs_f64(),
        );
        println!(
            "  idstream p50 {} p99 {} ({} runs) | PostgreSQL p50 {} p99 {} ({} runs) | \
             PostgreSQL ÷ idstream: p50 {r50:.1}×, p99 {r99:.1}× | goal ≥ 2×: {}",
            show(ours.p50),
            show(ours.p99),
            ours.samples,
            show(theirs.p50),
            show(theirs.p99),
            theirs.samples,
            if r50 >= 2.0 && r99 >= 2.0 {
                "met"
            } else {
                "MISSED"
            }
        );
        rows.push(Row {
            shape: shape.name.clone(),
            idstream: ours,
            postgres: theirs,
        });
    }

    // Autocomplete, idstream only.
    let prefixes: [(usize, &[&str]); 4] = [
        (1, &["a", "м", "k", "李", "s"]),
        (2, &["ma", "jo", "Ан", "ki", "πα"]),
        (3, &["ale", "kim", "Νικ", "sch", "gar"]),
        (5, &["alexa", "smirn", "papad", "Garcí", "takah"]),
    ];
    let mut completions = Vec::new();
    println!();
    println!("[autocomplete] PeopleIndex::autocomplete(bench, prefix, 10)");
    for (length, texts) in prefixes {
        let stats = measure(texts.len(), &budget, |i| {
            black_box(index.autocomplete(&tenant, texts[i], 10));
        });
        println!(
            "  {length} character(s) {texts:?}: p50 {} p99 {} ({} runs) | goal p99 ≤ 2 ms: {}",
            show(stats.p50),
            show(stats.p99),
            stats.samples,
            if stats.p99 <= Duration::from_millis(2) {
                "met"
            } else {
                "MISSED"
            }
        );
        completions.push((length, texts, stats));
    }

    // The summary, as Markdown.
    println!();
    println!(
        "| shape | idstream p50 | idstream p99 | PostgreSQL p50 | PostgreSQL p99 | PG ÷ idstream p50 | PG ÷ idstream p99 | goal ≥ 2× |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for row in &rows {
        let r50 = row.postgres.p50.as_secs_f64() / row.idstream.p50.as_secs_f64();
        let r99 = row.postgres.p99.as_secs_f64() / row.idstream.p99.as_secs_f64();
        println!(
            "| {} | {} | {} | {} | {} | {r50:.1}× | {r99:.1}× | {} |",
            row.shape,
            show(row.idstream.p50),
            show(row.idstream.p99),
            show(row.postgres.p50),
            show(row.postgres.p99),
            if r50 >= 2.0 && r99 >= 2.0 {
                "met"
            } else {
                "**missed**"
            }
        );
    }
    println!();
    println!("| autocomplete prefix | p50 | p99 | goal p99 ≤ 2 ms |");
    println!("| --- | --- | --- | --- |");
    for (length, texts, stats) in &completions {
        println!(
            "| {length} character(s): {} | {} | {} | {} |",
            texts.join(", "),
            show(stats.p50),
            show(stats.p99),
            if stats.p99 <= Duration::from_millis(2) {
                "met"
            } else {
                "**missed**"
            }
        );
    }

    if std::env::var("IDSTREAM_BENCH_KEEP_PG").is_ok_and(|v| v == "1") {
        println!("kept the schema {SCHEMA}");
    } else {
        client
            .batch_execute(&format!("DROP SCHEMA {SCHEMA} CASCADE"))
            .unwrap();
    }
    // What the index itself holds: the memory handed back when it is dropped.
    let rss_with = rss_bytes();
    drop(index);
    let rss_without = rss_bytes();
    let held = rss_with.saturating_sub(rss_without);
    println!(
        "dropping the index returned {:.0} MiB of RSS = {:.0} MiB per million users",
        held as f64 / (1 << 20) as f64,
        held as f64 * 1e6 / users as f64 / (1 << 20) as f64
    );
    println!("load average at the end: {}", load_average());
    if !failures.is_empty() {
        println!();
        println!(
            "FAILED: idstream and PostgreSQL disagree on {} page(s):",
            failures.len()
        );
        for failure in &failures {
            println!("  {failure}");
        }
        std::process::exit(1);
    }
    println!("every compared page was the same on both sides");
}
