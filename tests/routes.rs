//! Route-by-route authorization: every operation of the OpenAPI document has one row in
//! [`table`], saying what kind of route it is (public, the caller's own account, a tenant's, a
//! user's, the platform's) and how to call it. Each row is called by the caller it is for and by
//! every caller it is not for, against one service holding a small world of two tenants, and the
//! answers are checked against the authorization rules (the policy of `idstream_app::policy`,
//! written down in ARCHITECTURE.md, *Authorization*):
//!
//! - nobody (no credentials) gets `401 unauthorized` everywhere but on public routes;
//! - a member of another tenant gets exactly the answer a tenant (or user) that was never created
//!   gets, so that nothing tells them it exists;
//! - a member of the tenant without the permission, and an API key restricted to an unrelated
//!   permission, get `403`;
//! - every refusal is an RFC 9457 problem that carries no data, and a refused command appends
//!   nothing to the log;
//! - the rightful caller succeeds and, for queries, gets data.
//!
//! All failures are collected and reported together, so one run shows every deviation. A route
//! added to the API without a row here fails the test: decide who may call it, then add its row.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::support::passkey::SoftPasskey;
use crate::support::service::{Answer, Service};
use crate::support::world::{self, Account, created, eventually, invitation_token, text};

const ACME: &str = "acme";
const BETA: &str = "beta";
/// A tenant that is never created: a caller without standing in acme must get, for acme, exactly
/// the answer it gets for this one.
const NOWHERE: &str = "nonexistent-tenant";
const PASSWORD: &str = "Route-Table-Passphrase-2026";
/// The service's public URL, the origin its passkeys are bound to.
const PUBLIC_URL: &str = "http://localhost";
/// The only permission of admin_a's restricted key: one that no row needs.
const KEY_RESTRICTION: &str = "documentation:read";
/// Where the route table's OpenID Connect clients send people back.
const CLIENT_REDIRECT: &str = "https://app.example/cb";
/// The entity and record the record rows act on.
const ENTITY: &str = "doc";
const RECORD: &str = "r1";

// ----- who calls -----

/// The callers of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No `Authorization` header.
    Nobody,
    /// The operator token: a platform administrator.
    Operator,
    /// A session of an admin of acme.
    AdminA,
    /// A session of an admin of beta who is not a member of acme: a member of another tenant.
    AdminB,
    /// A session of a member of acme whose only role has no permission.
    BareA,
    /// admin_a's API key in acme, restricted to [`KEY_RESTRICTION`].
    Key,
    /// The session of the account a self-service row acts on ([`Call::own`]); admin_a's when the
    /// row has none.
    Own,
    /// admin_a's unrestricted key in acme: a SCIM provisioning client of acme.
    ScimA,
    /// admin_b's unrestricted key in beta: a SCIM provisioning client of another tenant.
    ScimB,
}

impl Who {
    fn label(self) -> &'static str {
        match self {
            Who::Nobody => "nobody",
            Who::Operator => "operator",
            Who::AdminA => "admin_a (admin of acme)",
            Who::AdminB => "admin_b (admin of beta, not in acme)",
            Who::BareA => "bare_a (acme member without permissions)",
            Who::Key => "key_a (admin_a's acme key restricted to documentation:read)",
            Who::Own => "the account's own session",
            Who::ScimA => "scim_a (admin_a's unrestricted acme key)",
            Who::ScimB => "scim_b (admin_b's unrestricted beta key)",
        }
    }
}

// ----- what is called -----

/// One concrete request.
#[derive(Debug, Clone)]
struct Call {
    method: Method,
    /// Path and query string.
    path: String,
    body: Option<Value>,
    /// For self-service rows: the session of the fresh account the row acts on (the rows sign
    /// out, change passwords, switch tenants…, so none may use an account another row needs).
    own: Option<String>,
}

impl Call {
    fn new(method: Method, path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method,
            path: path.into(),
            body,
            own: None,
        }
    }

    fn get(path: impl Into<String>) -> Call {
        Call::new(Method::GET, path, None)
    }

    fn post(path: impl Into<String>, body: Value) -> Call {
        Call::new(Method::POST, path, Some(body))
    }

    /// A POST of a route that takes no body.
    fn post_empty(path: impl Into<String>) -> Call {
        Call::new(Method::POST, path, None)
    }

    fn put(path: impl Into<String>, body: Value) -> Call {
        Call::new(Method::PUT, path, Some(body))
    }

    fn patch(path: impl Into<String>, body: Value) -> Call {
        Call::new(Method::PATCH, path, Some(body))
    }

    fn delete(path: impl Into<String>) -> Call {
        Call::new(Method::DELETE, path, None)
    }

    /// The call made by the account whose session this is ([`Who::Own`]).
    fn by(mut self, session: &str) -> Call {
        self.own = Some(session.to_owned());
        self
    }

    /// Whether the call may change state: then a refusal must leave the log as it was.
    fn is_command(&self) -> bool {
        self.method != Method::GET
    }

    fn split(&self) -> (&str, Option<&str>) {
        match self.path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (&self.path, None),
        }
    }

    /// The path segment after `/v1/<collection>/`, if the path has one.
    fn path_id(&self, collection: &str) -> Option<&str> {
        let segments: Vec<&str> = self.split().0.split('/').collect();
        (segments.len() > 3 && segments[1] == "v1" && segments[2] == collection)
            .then(|| segments[3])
    }

    /// The query parameter `name`, if any.
    fn query(&self, name: &str) -> Option<&str> {
        self.split()
            .1?
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// The tenant the call is about: in the path, or as the `tenant` query parameter.
    fn tenant(&self) -> Option<&str> {
        self.path_id("tenants").or_else(|| self.query("tenant"))
    }

    /// The same call with `/v1/<collection>/<from>` (and `?tenant=<from>` for tenants) naming
    /// `to` instead.
    fn replacing(&self, collection: &str, from: &str, to: &str) -> Call {
        let (path, query) = self.split();
        let mut segments: Vec<String> = path.split('/').map(str::to_owned).collect();
        if segments.len() > 3
            && segments[1] == "v1"
            && segments[2] == collection
            && segments[3] == from
        {
            segments[3] = to.to_owned();
        }
        let mut replaced = segments.join("/");
        if let Some(query) = query {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| {
                    if collection == "tenants" && pair == format!("tenant={from}") {
                        format!("tenant={to}")
                    } else {
                        pair.to_owned()
                    }
                })
                .collect();
            replaced = format!("{replaced}?{}", pairs.join("&"));
        }
        Call {
            path: replaced,
            ..self.clone()
        }
    }
}

/// Builds the call of a row (or of an extra check) in the world, creating what it acts on.
type Prepare = Box<dyn Fn(Arc<World>) -> Pin<Box<dyn Future<Output = Call>>>>;

/// A call that needs nothing created.
fn prepared(call: impl Fn(&World) -> Call + 'static) -> Prepare {
    Box::new(move |w| {
        let call = call(&w);
        Box::pin(std::future::ready(call))
    })
}

/// A call whose preparation creates something (a fresh user, role, invitation…).
fn preparing<F, Fut>(call: F) -> Prepare
where
    F: Fn(Arc<World>) -> Fut + 'static,
    Fut: Future<Output = Call> + 'static,
{
    Box::new(move |w| Box::pin(call(w)))
}

/// When a row's call is prepared.
enum Target {
    /// Once for the row: every caller makes the same call. For calls that change nothing a later
    /// call needs, and for self-service rows, whose fresh account is expensive (a password).
    Shared(Prepare),
    /// Once for every caller: destructive rows (erase, delete, revoke…) act on a fresh target
    /// each time, so that a wrong caller who is let through does not spoil the rightful call,
    /// and no row depends on another's order.
    PerCall(Prepare),
}

fn fixed(call: impl Fn(&World) -> Call + 'static) -> Target {
    Target::Shared(prepared(call))
}

fn shared<F, Fut>(call: F) -> Target
where
    F: Fn(Arc<World>) -> Fut + 'static,
    Fut: Future<Output = Call> + 'static,
{
    Target::Shared(preparing(call))
}

fn fresh<F, Fut>(call: F) -> Target
where
    F: Fn(Arc<World>) -> Fut + 'static,
    Fut: Future<Output = Call> + 'static,
{
    Target::PerCall(preparing(call))
}

// ----- what is expected -----

/// What kind of route a row is: decides who calls it and what each caller must get.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Works for anyone: nobody's call gets `status` (never `unauthorized`).
    Public { status: u16 },
    /// The caller's own account: a session; API keys get `403 session_required` unless
    /// `keys_too`.
    SelfService { keys_too: bool },
    /// Under `/v1/tenants/{tenant}`, or about the tenant of the `tenant` query parameter:
    /// standing in acme and the permission `needs` (None: standing is enough).
    Tenant { needs: Option<&'static str> },
    /// `/v1/users/{user}/…`: standing over the user and the permission `needs`.
    User { needs: &'static str },
    /// Platform administrators only.
    Platform,
    /// Platform administrators only, on `/v1/users/{user}/…`: without standing over the user
    /// the user is not shown to exist.
    PlatformOverUser,
    /// Any authenticated caller, who sees only its own tenants.
    AnyAuthenticated,
    /// `/scim/v2/…`: an API key of the tenant holding `scim:read` (reads) or `scim:update`
    /// (changes); `by_id`: the path names one of acme's users or groups, which another tenant's
    /// key must not learn exists.
    Scim { by_id: bool },
}

/// What a caller without standing must not learn exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    Tenant,
    User,
    /// The SCIM resource the path ends with.
    ScimResource,
}

/// What one caller must get.
#[derive(Debug, Clone)]
enum Expect {
    /// Works for anyone: this status, never `unauthorized`.
    Public(u16),
    /// A 2xx; for a query, with data.
    Succeeds,
    /// A 2xx: the rules let this caller in (an extra check; the answer may be empty).
    Allowed,
    /// A problem with this status (and code, when one is required).
    Refused(u16, Option<&'static str>),
    /// Exactly the answer (status and body) the same caller gets when the tenant (or user) is
    /// replaced by one that was never created, and that answer is a refusal.
    Hidden(Absent),
    /// [`Expect::Hidden`] for the same call moved from acme into this tenant, where the caller
    /// has no standing.
    HiddenIn(&'static str),
    /// `GET /v1/tenants`: a 200 listing these tenants and none of those (and nothing else when
    /// `only`).
    Lists {
        sees: &'static [&'static str],
        not: &'static [&'static str],
        only: bool,
    },
}

const UNAUTHORIZED: Expect = Expect::Refused(401, Some("unauthorized"));
const FORBIDDEN: Expect = Expect::Refused(403, None);
const PLATFORM_ONLY: Expect = Expect::Refused(403, Some("platform_admin_only"));

/// One operation of the API and how it is checked.
struct Row {
    method: Method,
    /// The path template exactly as `/openapi.json` has it.
    template: &'static str,
    kind: Kind,
    rightful: Who,
    target: Target,
    /// Further calls the rules single out (oneself, other tenants' scopes…), each checked too.
    extra: Vec<(Who, Prepare, Expect)>,
}

impl Row {
    fn also(mut self, who: Who, call: Prepare, expect: Expect) -> Row {
        self.extra.push((who, call, expect));
        self
    }

    fn key(&self) -> (String, String) {
        (self.method.to_string(), self.template.to_owned())
    }

    /// The wrong callers first (a wrong caller let through must not come after the rightful
    /// call it could spoil), then the rightful caller.
    fn expectations(&self) -> Vec<(Who, Expect)> {
        use Who::*;
        let mut list = match self.kind {
            Kind::Public { status } => return vec![(Nobody, Expect::Public(status))],
            Kind::SelfService { keys_too } => vec![
                (Nobody, UNAUTHORIZED),
                (
                    Key,
                    if keys_too {
                        Expect::Succeeds
                    } else {
                        Expect::Refused(403, Some("session_required"))
                    },
                ),
            ],
            // The key of acme has no standing in beta: it is checked there too, as a member of
            // another tenant is in acme.
            Kind::Tenant { needs: Some(_) } => vec![
                (Nobody, UNAUTHORIZED),
                (AdminB, Expect::Hidden(Absent::Tenant)),
                (Key, Expect::HiddenIn(BETA)),
                (BareA, FORBIDDEN),
                (Key, FORBIDDEN),
            ],
            // Standing is enough: the member without permissions and the key of the tenant
            // are let in.
            Kind::Tenant { needs: None } => vec![
                (Nobody, UNAUTHORIZED),
                (AdminB, Expect::Hidden(Absent::Tenant)),
                (Key, Expect::HiddenIn(BETA)),
                (BareA, Expect::Succeeds),
                (Key, Expect::Succeeds),
            ],
            Kind::User { .. } => vec![
                (Nobody, UNAUTHORIZED),
                (AdminB, Expect::Hidden(Absent::User)),
                (BareA, FORBIDDEN),
                (Key, FORBIDDEN),
            ],
            Kind::Platform => vec![
                (Nobody, UNAUTHORIZED),
                (AdminA, PLATFORM_ONLY),
                (AdminB, PLATFORM_ONLY),
                (BareA, PLATFORM_ONLY),
                (Key, PLATFORM_ONLY),
            ],
            // spec: the standing rule hides the user from admin_b (404 user_not_found) before
            // the platform rule refuses the others with 403 platform_admin_only.
            Kind::PlatformOverUser => vec![
                (Nobody, UNAUTHORIZED),
                (AdminA, PLATFORM_ONLY),
                (AdminB, Expect::Hidden(Absent::User)),
                (BareA, PLATFORM_ONLY),
                (Key, PLATFORM_ONLY),
            ],
            Kind::Scim { by_id } => {
                let mut list = vec![
                    (Nobody, UNAUTHORIZED),
                    (AdminA, Expect::Refused(403, Some("scim_key_required"))),
                    (BareA, Expect::Refused(403, Some("scim_key_required"))),
                    (Key, FORBIDDEN),
                ];
                if by_id {
                    list.push((ScimB, Expect::Hidden(Absent::ScimResource)));
                }
                list
            }
            Kind::AnyAuthenticated => vec![
                (Nobody, UNAUTHORIZED),
                (
                    AdminB,
                    Expect::Lists {
                        sees: &[BETA],
                        not: &[ACME],
                        only: false,
                    },
                ),
                (
                    BareA,
                    Expect::Lists {
                        sees: &[ACME],
                        not: &[BETA],
                        only: false,
                    },
                ),
                (
                    Key,
                    Expect::Lists {
                        sees: &[ACME],
                        not: &[],
                        only: true,
                    },
                ),
                (
                    Operator,
                    Expect::Lists {
                        sees: &[ACME, BETA],
                        not: &[],
                        only: false,
                    },
                ),
            ],
        };
        let rightful = match self.kind {
            Kind::AnyAuthenticated => Expect::Lists {
                sees: &[ACME],
                not: &[BETA],
                only: false,
            },
            _ => Expect::Succeeds,
        };
        list.push((self.rightful, rightful));
        list
    }

    /// The permission a refused member lacks, for the failure message.
    fn needs(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Tenant { needs } => needs,
            Kind::User { needs } => Some(needs),
            _ => None,
        }
    }
}

// ----- the world -----

/// The service and everything the rows act on.
struct World {
    _dir: tempfile::TempDir,
    svc: Service,
    /// Another service, acme's upstream identity provider for the rows about linked identities
    /// (started when first needed), with its member grace.
    upstream: tokio::sync::OnceCell<(tempfile::TempDir, Service, Account)>,
    admin_a: Account,
    admin_b: Account,
    bare_a: Account,
    /// An ordinary member of acme (role `user`, with a session) that the non-destructive rows
    /// act on.
    target: Account,
    /// admin_a's restricted key.
    key: String,
    /// admin_a's unrestricted key in acme, and admin_b's in beta.
    scim_a: String,
    scim_b: String,
    /// A log position once the world was built, for the point-in-time audit rows.
    as_of: u64,
    /// Makes names unique.
    counter: AtomicUsize,
}

fn settings() -> Value {
    // Self-registration on, for the register row; no second factor required, or every session
    // of the world would have to enrol first.
    json!({
        "self_registration": true,
        "default_role": "user",
        "require_email_verification": true,
        "password_policy": {
            "min_length": 12, "max_length": 128, "require_lowercase": false,
            "require_uppercase": false, "require_digit": false, "require_symbol": false,
            "deny_common": true
        },
        "invitation_ttl_hours": 72,
        "session_idle_minutes": 60,
        "session_max_hours": 10,
        "magic_link_ttl_minutes": 10,
        "mfa_required": false
    })
}

impl World {
    /// Two tenants, their members with sessions, a restricted key, roles, an entity and a record.
    async fn build() -> World {
        let dir = tempfile::tempdir().unwrap();
        // A public URL with a host name: passkeys are bound to it (a browser refuses an IP
        // address as a relying party).
        let svc =
            Service::embedded_with_env(dir.path(), &[("IDSTREAM_PUBLIC_URL", PUBLIC_URL)]).await;
        eventually("the service is ready", || async {
            svc.get("/readyz").await.status == 200
        })
        .await;
        for tenant in [ACME, BETA] {
            svc.create_tenant(tenant).await;
        }
        for (name, permissions) in [("bare", json!([])), ("editor", json!([KEY_RESTRICTION]))] {
            let defined = svc
                .post(
                    &format!("/v1/tenants/{ACME}/roles"),
                    json!({"name": name, "permissions": permissions, "global_access": false}),
                )
                .await;
            created(&defined, "a role");
        }
        created(
            &svc.put(&format!("/v1/tenants/{ACME}/settings"), settings())
                .await,
            "acme's settings",
        );
        let counter = AtomicUsize::new(0);
        let (admin_a, admin_b, bare_a, target) = tokio::join!(
            join(&svc, &counter, ACME, &["admin"]),
            join(&svc, &counter, BETA, &["admin"]),
            join(&svc, &counter, ACME, &["bare"]),
            join(&svc, &counter, ACME, &["user"]),
        );
        let issued = svc
            .post_as(
                &admin_a.token,
                &format!("/v1/tenants/{ACME}/api-keys"),
                json!({"name": "restricted", "permissions": [KEY_RESTRICTION]}),
            )
            .await;
        created(&issued, "admin_a's restricted key");
        let key = text(&issued.body["key"]);
        let key_id = text(&issued.body["id"]);
        let mut scim = Vec::new();
        for (account, tenant) in [(&admin_a, ACME), (&admin_b, BETA)] {
            let issued = svc
                .post_as(
                    &account.token,
                    &format!("/v1/tenants/{tenant}/api-keys"),
                    json!({"name": "provisioning"}),
                )
                .await;
            created(&issued, "a provisioning key");
            let key = text(&issued.body["key"]);
            // Its first use recorded now, not in the middle of a row (as below).
            created(
                &svc.get_as(&key, "/v1/auth/me").await,
                "the key's first use",
            );
            scim.push(key);
        }
        let scim_b = scim.pop().unwrap();
        let scim_a = scim.pop().unwrap();
        // A key's first use is recorded in the log (then at most once a minute), in the
        // background: use it now and wait for the record, so that it does not land in the
        // middle of a row.
        created(
            &svc.get_as(&key, "/v1/auth/me").await,
            "the key's first use",
        );
        eventually("the key's use is recorded", || async {
            let keys = svc.get(&format!("/v1/tenants/{ACME}/api-keys")).await;
            keys.body["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|k| k["id"] == key_id.as_str() && k["last_used_at"].is_string())
            })
        })
        .await;
        let entity = svc
            .post(
                &format!("/v1/tenants/{ACME}/entities"),
                json!({"name": ENTITY, "fields": ["title", "body"], "rls": false}),
            )
            .await;
        created(&entity, "the entity");
        created(
            &svc.put(
                &format!("/v1/tenants/{ACME}/entities/{ENTITY}/records/{RECORD}/owner"),
                json!({"user": target.id}),
            )
            .await,
            "the record",
        );
        // A menu on the role `user`, so that the target's menu has items to show.
        created(
            &svc.put(
                &format!("/v1/tenants/{ACME}/roles/user/menu"),
                json!([{"id": "docs", "label": "Docs", "permission": KEY_RESTRICTION}]),
            )
            .await,
            "the menu of the role user",
        );
        let as_of = svc.log_position().await;
        World {
            _dir: dir,
            upstream: tokio::sync::OnceCell::new(),
            svc,
            admin_a,
            admin_b,
            bare_a,
            target,
            key,
            scim_a,
            scim_b,
            as_of,
            counter,
        }
    }

    /// `prefix-<n>`, unique in the world.
    fn unique(&self, prefix: &str) -> String {
        unique(&self.counter, prefix)
    }

    /// A new member of acme holding `roles`, created by the operator (no session).
    async fn fresh_user(&self, roles: &[&str]) -> String {
        let email = format!("{}@example.com", self.unique("fresh"));
        self.svc.create_user(ACME, &email, roles).await.0
    }

    /// A new member of acme holding `roles`, with a password and a session.
    async fn fresh_account(&self, roles: &[&str]) -> Account {
        join(&self.svc, &self.counter, ACME, roles).await
    }

    /// A new OpenID Connect client of acme, registered by the operator: its id.
    async fn fresh_client(&self) -> String {
        let body = json!({
            "kind": "confidential", "name": self.unique("app"),
            "redirect_uris": [CLIENT_REDIRECT], "grant_types": ["authorization_code"],
            "scopes": ["openid", "email"],
        });
        let registered = self.svc.post(&acme("/clients"), body).await;
        created(&registered, "a client");
        text(&registered.body["id"])
    }

    /// A new client of acme that `me` consented to on its consent screen (as a browser would:
    /// the screen, then its form): the client's id.
    async fn consented_client(&self, me: &Account) -> String {
        let client = self.fresh_client().await;
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let cookie = format!(
            "ids_csrf=route-csrf; ids_access={}; ids_session={}",
            me.token, me.refresh
        );
        let params = [
            ("response_type", "code"),
            ("client_id", client.as_str()),
            ("redirect_uri", CLIENT_REDIRECT),
            ("scope", "openid"),
        ];
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(params);
        let screen = browser
            .get(
                self.svc
                    .url(&format!("/t/acme/oidc/authorize?{}", query.finish())),
            )
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(screen.status(), 200, "the consent screen");
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.extend_pairs(params);
        form.append_pair("csrf", "route-csrf");
        form.append_pair("decision", "allow");
        let answer = browser
            .post(self.svc.url("/t/acme/oidc/authorize"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 303, "consented");
        client
    }

    /// A new upstream identity provider of acme: its name.
    async fn fresh_provider(&self) -> String {
        let id = self.unique("idp").to_lowercase().replace('_', "-");
        let body = json!({
            "name": "Route provider", "issuer": "https://id.example.com", "client_id": "route",
        });
        let configured = self
            .svc
            .put(&acme(&format!("/identity-providers/{id}")), body)
            .await;
        assert_eq!(configured.status, 200, "a provider: {configured:?}");
        id
    }

    /// An identity linking `me` through acme's upstream provider (another service, where `me`'s
    /// address is grace's, verified on both sides), as a browser signed in there would: the
    /// provider's name.
    async fn linked_identity(&self, me: &Account) -> String {
        let (_, upstream, grace) = self
            .upstream
            .get_or_init(|| async {
                let dir = tempfile::tempdir().unwrap();
                let (svc, grace) = crate::oidc::service(dir.path(), 60).await;
                (dir, svc, grace)
            })
            .await;
        let id = self.unique("up").to_lowercase().replace('_', "-");
        let callback = format!("{PUBLIC_URL}/t/acme/sign-in/{id}/callback");
        let registered = upstream
            .post(
                "/v1/tenants/acme/clients",
                json!({
                    "kind": "confidential", "name": "Route app",
                    "redirect_uris": [callback], "grant_types": ["authorization_code"],
                    "scopes": ["openid", "email", "profile"], "first_party": true,
                }),
            )
            .await;
        created(&registered, "a client");
        let configured = self
            .svc
            .put(
                &acme(&format!("/identity-providers/{id}")),
                json!({
                    "name": "Upstream", "issuer": upstream.url("/t/acme"),
                    "client_id": text(&registered.body["id"]),
                    "client_secret": text(&registered.body["client_secret"]),
                }),
            )
            .await;
        assert_eq!(configured.status, 200, "a provider: {configured:?}");
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // Linking from the account: `me` signed in here, grace signed in at the provider.
        let here = format!(
            "ids_csrf=route-csrf; ids_access={}; ids_session={}",
            me.token, me.refresh
        );
        let started = browser
            .post(self.svc.url("/account/identities"))
            .header("cookie", &here)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf=route-csrf&provider={id}&action=link"))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 303, "started");
        let pending = started
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .next()?
                    .strip_prefix("ids_upstream=")
                    .map(str::to_owned)
            })
            .expect("the sign-in's cookie");
        let to = started.headers()["location"].to_str().unwrap().to_owned();
        let there = format!(
            "ids_csrf=route-csrf; ids_access={}; ids_session={}",
            grace.token, grace.refresh
        );
        let back = browser
            .get(&to)
            .header("cookie", there)
            .send()
            .await
            .unwrap();
        assert_eq!(back.status(), 303, "the provider sends the browser back");
        let back = back.headers()["location"].to_str().unwrap().to_owned();
        let back = back.replacen(PUBLIC_URL, &self.svc.url(""), 1);
        let done = browser
            .get(&back)
            .header("cookie", format!("{here}; ids_upstream={pending}"))
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 303, "linked");
        id
    }

    /// An open invitation to acme for a new address, sent by the operator: (id, email).
    async fn fresh_invitation(&self) -> (String, String) {
        let email = format!("{}@example.com", self.unique("invitee"));
        let invited = self
            .svc
            .post(
                &format!("/v1/tenants/{ACME}/invitations"),
                json!({"email": email, "roles": ["user"]}),
            )
            .await;
        created(&invited, "an invitation");
        (text(&invited.body["id"]), email)
    }

    /// A registration of a passkey begun by `account` and answered by a software authenticator:
    /// the finish's body.
    async fn passkey_registration(&self, account: &Account) -> Value {
        let start = self
            .svc
            .post_as(
                &account.token,
                "/v1/auth/passkeys/registration/start",
                json!({}),
            )
            .await;
        created(&start, "a passkey registration's start");
        let (_, credential) = SoftPasskey::register(&start.body["options"], PUBLIC_URL);
        json!({"ceremony": start.body["ceremony"], "name": "Laptop", "credential": credential})
    }

    /// A passkey registered for `account`: its credential id.
    async fn passkey(&self, account: &Account) -> String {
        let body = self.passkey_registration(account).await;
        let finished = self
            .svc
            .post_as(
                &account.token,
                "/v1/auth/passkeys/registration/finish",
                body,
            )
            .await;
        created(&finished, "a registered passkey");
        text(&finished.body["credential"])
    }

    /// A second factor set up (not confirmed) for `account`: its secret.
    async fn totp_secret(&self, account: &Account) -> String {
        let setup = self
            .svc
            .post_as(&account.token, "/v1/auth/totp/setup", json!({}))
            .await;
        created(&setup, "a TOTP set-up");
        text(&setup.body["secret"])
    }

    fn bearer<'a>(&'a self, who: Who, call: &'a Call) -> &'a str {
        match who {
            Who::AdminA => &self.admin_a.token,
            Who::AdminB => &self.admin_b.token,
            Who::BareA => &self.bare_a.token,
            Who::Key => &self.key,
            Who::ScimA => &self.scim_a,
            Who::ScimB => &self.scim_b,
            Who::Own => call.own.as_deref().unwrap_or(&self.admin_a.token),
            Who::Nobody | Who::Operator => unreachable!("{who:?} has no bearer of its own"),
        }
    }

    /// Makes `call` as `who`, at least as fresh as log position `at` (what was just created is
    /// seen).
    async fn send(&self, who: Who, call: &Call, at: u64) -> Answer {
        let svc = &self.svc;
        let method = call.method.clone();
        let request = match who {
            Who::Nobody => svc.anonymous(method, &call.path),
            Who::Operator => svc.request(method, &call.path),
            _ => svc.request_as(self.bearer(who, call), method, &call.path),
        }
        .header("x-idstream-min-position", at);
        let request = match &call.body {
            Some(body) => request.json(body),
            None => request,
        };
        svc.send(request).await
    }

    /// The types of the events appended after `before`, apart from records of API-key uses
    /// (appended in the background, at most once a minute per key, whoever is refused).
    async fn appended_since(&self, before: u64) -> Vec<String> {
        let after = self.svc.log_position().await;
        if after == before {
            return Vec::new();
        }
        let trail = self
            .svc
            .send(
                self.svc
                    .request(
                        Method::GET,
                        &format!(
                            "/v1/audit/events?order=newest&limit={}",
                            (after - before).min(500)
                        ),
                    )
                    .header("x-idstream-min-position", after),
            )
            .await;
        let Some(items) = trail.body["items"].as_array() else {
            return vec![format!("(the audit trail answered {trail:?})")];
        };
        items
            .iter()
            .filter(|e| e["position"].as_u64().is_some_and(|p| p > before))
            .map(|e| e["type"].as_str().unwrap_or("?").to_owned())
            .filter(|t| t != "ApiKeyUsed")
            .collect()
    }
}

fn unique(counter: &AtomicUsize, prefix: &str) -> String {
    format!("{prefix}-{}", counter.fetch_add(1, Ordering::Relaxed))
}

/// A new member of `tenant` with `roles`: invited by the operator, accepted with [`PASSWORD`],
/// which signs them in.
async fn join(svc: &Service, counter: &AtomicUsize, tenant: &str, roles: &[&str]) -> Account {
    let email = format!("{}@example.com", unique(counter, "member"));
    world::join(svc, &email, tenant, roles, PASSWORD).await
}

// ----- checking -----

/// The stable code of a refusal: a problem's `code`, or a SCIM error's `X-Idstream-Code`.
fn code_of(answer: &Answer) -> Option<&str> {
    answer
        .body
        .get("code")
        .and_then(Value::as_str)
        .or_else(|| answer.header("x-idstream-code"))
}

/// `status N code C` of an answer.
fn got(answer: &Answer) -> String {
    format!(
        "status {} code {}",
        answer.status,
        code_of(answer).unwrap_or("-")
    )
}

/// What is wrong with `answer` as a refusal: an RFC 9457 problem of `status` with nothing but
/// the problem's fields (no data).
fn problem_flaws(answer: &Answer) -> Vec<String> {
    let mut flaws = Vec::new();
    if answer.header("content-type") != Some("application/problem+json") {
        flaws.push(format!(
            "content-type {:?}, not application/problem+json",
            answer.header("content-type")
        ));
    }
    let fields: BTreeSet<&str> = answer
        .body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let problem: BTreeSet<&str> = ["type", "title", "status", "detail", "code"].into();
    if fields != problem {
        flaws.push(format!(
            "body fields {fields:?}, not exactly type/title/status/detail/code"
        ));
    }
    if answer.body["status"] != answer.status {
        flaws.push("the body's status is not the answer's".into());
    }
    flaws
}

/// What is wrong with `answer` as a SCIM refusal: a SCIM error (RFC 7644 §3.12) with its
/// status as a string, idstream's stable code in a header, and no data.
fn scim_flaws(answer: &Answer) -> Vec<String> {
    let mut flaws = Vec::new();
    if answer.header("content-type") != Some("application/scim+json") {
        flaws.push(format!(
            "content-type {:?}, not application/scim+json",
            answer.header("content-type")
        ));
    }
    let fields: BTreeSet<&str> = answer
        .body
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let allowed: BTreeSet<&str> = ["schemas", "status", "detail", "scimType"].into();
    if !fields.is_subset(&allowed) || !fields.contains("detail") {
        flaws.push(format!(
            "body fields {fields:?}, not schemas/status/detail (and scimType)"
        ));
    }
    if answer.header("x-idstream-code").is_none() {
        flaws.push("no X-Idstream-Code header".into());
    }
    let status = answer.status.to_string();
    if answer.body["status"].as_str() != Some(status.as_str()) {
        flaws.push("the body's status is not the answer's, as a string".into());
    }
    if answer.body["schemas"][0] != "urn:ietf:params:scim:api:messages:2.0:Error" {
        flaws.push("not a SCIM error".into());
    }
    flaws
}

/// Why a successful query's answer carries no data, if it does not.
fn missing_data(answer: &Answer) -> Option<&'static str> {
    match &answer.body {
        Value::Null => Some("no JSON body"),
        Value::Object(fields) if fields.is_empty() => Some("an empty object"),
        Value::Object(fields) => match fields.get("items") {
            Some(Value::Array(items)) if items.is_empty() => Some("no items"),
            _ => None,
        },
        _ => None,
    }
}

/// What a hidden resource's answer must be, and what it is compared with: the same call about a
/// tenant (or user) that was never created.
fn absent_twin(
    call: &Call,
    absent: Absent,
) -> (Call, &'static [(u16, Option<&'static str>)], String) {
    match absent {
        Absent::Tenant => {
            let tenant = call.tenant().expect("a tenant row names a tenant");
            let twin = call.replacing("tenants", tenant, NOWHERE);
            let what = format!("tenant {NOWHERE}");
            // spec: under /v1/tenants/{tenant} the rules say 404 tenant_not_found; a tenant given
            // as a query parameter is only said to be refused as one that does not exist would
            // be (403 or 404).
            if call.path_id("tenants").is_some() {
                (twin, &[(404, Some("tenant_not_found"))], what)
            } else {
                (twin, &[(403, None), (404, None)], what)
            }
        }
        Absent::ScimResource => {
            let (path, _) = call.split();
            let (collection, _) = path.rsplit_once('/').expect("a SCIM resource path");
            let never = if collection.ends_with("/Users") {
                ulid::Ulid::new().to_string()
            } else {
                "never-defined-group".to_owned()
            };
            let twin = Call {
                path: format!("{collection}/{never}"),
                ..call.clone()
            };
            (
                twin,
                &[(404, Some("not_found"))],
                format!("{never}, which does not exist"),
            )
        }
        Absent::User => {
            let user = call.path_id("users").expect("a user row names a user");
            let twin = call.replacing("users", user, &ulid::Ulid::new().to_string());
            let what = "a user id that does not exist".to_owned();
            (twin, &[(404, Some("user_not_found"))], what)
        }
    }
}

/// Checks one call by one caller against what it must get, and records at most one line.
async fn check(
    w: &World,
    row: &Row,
    who: Who,
    call: &Call,
    expect: &Expect,
    extra: bool,
) -> Option<String> {
    // A caller without standing in acme is also checked on the other tenant's copy of the call.
    let moved;
    let (call, expect, shown) = match expect {
        Expect::HiddenIn(tenant) => {
            moved = call.replacing("tenants", ACME, tenant);
            (&moved, &Expect::Hidden(Absent::Tenant), true)
        }
        _ => (call, expect, extra),
    };
    let before = w.svc.log_position().await;
    let answer = w.send(who, call, before).await;
    let code = code_of(&answer);
    let success = (200..300).contains(&answer.status);
    // What was expected, whether the answer is it, and what the failure line should show of
    // the answer besides its status and code.
    let (expected, right, context): (String, bool, Option<String>) = match expect {
        Expect::Public(status) => (
            format!("{status} for anyone (public)"),
            answer.status == *status && code != Some("unauthorized"),
            None,
        ),
        Expect::Allowed => ("success".into(), success, None),
        Expect::Succeeds => {
            let missing = (success && call.method == Method::GET)
                .then(|| missing_data(&answer))
                .flatten();
            (
                "success with data".into(),
                success && missing.is_none(),
                missing.map(|why| format!("with {why}")),
            )
        }
        Expect::Lists { sees, not, only } => {
            let listed: BTreeSet<String> = answer.body["items"]
                .as_array()
                .map(|items| items.iter().map(|t| text(&t["id"])).collect())
                .unwrap_or_default();
            let wanted: BTreeSet<String> = sees.iter().map(|t| t.to_string()).collect();
            let right = answer.status == 200
                && wanted.is_subset(&listed)
                && !not.iter().any(|t| listed.contains(*t))
                && (!*only || listed == wanted);
            let only = if *only { "only " } else { "" };
            (
                format!("200 listing {only}{sees:?} and none of {not:?}"),
                right,
                Some(format!("listing {listed:?}")),
            )
        }
        Expect::Refused(status, wanted) => {
            let needs = row
                .needs()
                .filter(|_| *status == 403)
                .map(|n| format!(" (lacks {n})"))
                .unwrap_or_default();
            (
                format!("{status} {}{needs}", wanted.unwrap_or("(any code)")),
                answer.status == *status && wanted.is_none_or(|c| code == Some(c)),
                None,
            )
        }
        Expect::Hidden(absent) => {
            let (twin, wanted, what) = absent_twin(call, *absent);
            let there = w.send(who, &twin, before).await;
            let fits = wanted.iter().any(|(status, code)| {
                answer.status == *status && code.is_none_or(|c| code_of(&answer) == Some(c))
            });
            let same = there.status == answer.status && there.body == answer.body;
            let statuses: Vec<String> = wanted
                .iter()
                .map(|(s, c)| format!("{s} {}", c.unwrap_or("(any code)")))
                .collect();
            let note = if there.status == answer.status && !same {
                format!(
                    "the same status, but a different body there: {} here, {} there",
                    answer.body, there.body
                )
            } else {
                format!("{} for {what}", got(&there))
            };
            (
                format!("{} exactly as for {what}", statuses.join(" or ")),
                fits && same,
                Some(note),
            )
        }
        Expect::HiddenIn(_) => unreachable!("turned into Hidden above"),
    };
    // A refusal is a problem without data (when the caller was let through, its status says
    // enough), and a refused command changed nothing.
    let refusal = matches!(expect, Expect::Refused(..) | Expect::Hidden(_));
    let mut flaws = Vec::new();
    if refusal && answer.status >= 400 {
        if row.template.starts_with("/scim/") {
            flaws.extend(scim_flaws(&answer));
        } else {
            flaws.extend(problem_flaws(&answer));
        }
    }
    if refusal && call.is_command() {
        let appended = w.appended_since(before).await;
        if !appended.is_empty() {
            flaws.push(format!("the log moved: {}", appended.join(", ")));
        }
    }
    if right && flaws.is_empty() {
        return None;
    }
    let concrete = if shown {
        format!(" [{} {}]", call.method, call.path)
    } else {
        String::new()
    };
    let notes: Vec<String> = context.into_iter().chain(flaws).collect();
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    };
    Some(format!(
        "{} {} {}{concrete}: expected {expected}, got {}{notes}",
        row.method,
        row.template,
        who.label(),
        got(&answer)
    ))
}

/// A failure: the rule it breaks, and its line.
type Failure = (&'static str, String);

/// The authorization rule an expectation checks, for the summary.
fn rule(expect: &Expect, who: Who) -> &'static str {
    match expect {
        Expect::Public(_) => "public routes work for anyone",
        Expect::Succeeds | Expect::Allowed => "the rightful caller is let in",
        Expect::Lists { .. } => "GET /v1/tenants lists the caller's own tenants only",
        Expect::Hidden(Absent::Tenant) if who == Who::Nobody => {
            "a tenant without self-registration answers as if it did not exist"
        }
        Expect::Hidden(Absent::Tenant) => {
            "no standing in the tenant: answered as a tenant never created"
        }
        Expect::HiddenIn(_) => {
            "an API key has no standing in another tenant: answered as a tenant never created"
        }
        Expect::Hidden(Absent::User) => {
            "no standing over the user: answered as a user that does not exist"
        }
        Expect::Hidden(Absent::ScimResource) => {
            "another tenant's SCIM key: answered as a resource that does not exist"
        }
        Expect::Refused(_, Some("scim_key_required")) => "SCIM takes an API key, never a session",
        Expect::Refused(401, _) => "nobody gets 401",
        Expect::Refused(_, Some("platform_admin_only")) => "platform administrators only",
        Expect::Refused(_, Some("session_required")) => "API keys get 403 session_required",
        Expect::Refused(_, Some("session_not_found")) => "one's own sessions only",
        Expect::Refused(..) => "standing without the permission: 403",
    }
}

/// Runs every expectation of a row, then its extra checks, the rightful call last.
async fn run(w: &Arc<World>, row: &Row, failures: &mut Vec<Failure>) {
    let mut expectations = row.expectations();
    let rightful = expectations.pop();
    let shared = match &row.target {
        Target::Shared(prepare) => Some(prepare(w.clone()).await),
        Target::PerCall(_) => None,
    };
    for (who, expect) in &expectations {
        let call = call_for(w, &row.target, &shared).await;
        let line = check(w, row, *who, &call, expect, false).await;
        failures.extend(line.map(|line| (rule(expect, *who), line)));
    }
    for (who, prepare, expect) in &row.extra {
        let call = prepare(w.clone()).await;
        let line = check(w, row, *who, &call, expect, true).await;
        failures.extend(line.map(|line| (rule(expect, *who), line)));
    }
    if let Some((who, expect)) = rightful {
        let call = call_for(w, &row.target, &shared).await;
        let line = check(w, row, who, &call, &expect, false).await;
        failures.extend(line.map(|line| (rule(&expect, who), line)));
    }
}

/// The row's call for the next caller: the shared one, or a fresh one.
async fn call_for(w: &Arc<World>, target: &Target, shared: &Option<Call>) -> Call {
    match (target, shared) {
        (_, Some(call)) => call.clone(),
        (Target::PerCall(prepare), None) => prepare(w.clone()).await,
        (Target::Shared(_), None) => unreachable!("a shared call is prepared once, first"),
    }
}

/// Every (METHOD, path template) of the OpenAPI document.
async fn operations(svc: &Service) -> BTreeSet<(String, String)> {
    let document = svc.send(svc.anonymous(Method::GET, "/openapi.json")).await;
    assert_eq!(document.status, 200, "{document:?}");
    let mut operations = BTreeSet::new();
    for (path, item) in document.body["paths"].as_object().expect("paths") {
        for method in [
            "get", "put", "post", "delete", "patch", "head", "options", "trace",
        ] {
            if item.get(method).is_some() {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

// ----- the table -----

fn acme(rest: &str) -> String {
    format!("/v1/tenants/{ACME}{rest}")
}

fn entity(rest: &str) -> String {
    acme(&format!("/entities/{ENTITY}{rest}"))
}

fn record(rest: &str) -> String {
    entity(&format!("/records/{RECORD}{rest}"))
}

/// `/v1/users/{user}{rest}`
fn user_path(user: &str, rest: &str) -> String {
    format!("/v1/users/{user}{rest}")
}

/// The target as the subject of a check: someone else than every caller but the operator.
fn about_target(w: &World) -> String {
    format!("user:{}", w.target.id)
}

fn check_body(w: &World) -> Value {
    json!({
        "subject": about_target(w),
        "permission": format!("entity.{ENTITY}:read"),
        "record": RECORD,
    })
}

/// A fresh address.
fn email(w: &World, prefix: &str) -> String {
    format!("{}@example.com", w.unique(prefix))
}

/// The current code of a TOTP secret.
fn totp_code(secret: &str) -> String {
    idstream_auth::TotpSecret::from_base32(secret)
        .expect("a base32 TOTP secret")
        .code_at(OffsetDateTime::now_utc())
}

/// A user id no account has, for public links that must be refused as invalid.
fn stranger() -> String {
    ulid::Ulid::new().to_string()
}

/// A row: `operation` is `METHOD /path/template` exactly as in `/openapi.json`.
fn row(operation: &'static str, kind: Kind, rightful: Who, target: Target) -> Row {
    let (method, template) = operation.split_once(' ').expect("METHOD /path");
    Row {
        method: Method::from_bytes(method.as_bytes()).expect("an HTTP method"),
        template,
        kind,
        rightful,
        target,
        extra: Vec::new(),
    }
}

/// A public POST of a fixed body.
fn public_post(operation: &'static str, status: u16, body: Value) -> Row {
    let path = operation.split_once(' ').expect("METHOD /path").1;
    let target = fixed(move |_| Call::post(path, body.clone()));
    row(operation, Kind::Public { status }, Who::Nobody, target)
}

/// A public GET.
fn public_get(operation: &'static str) -> Row {
    let path = operation.split_once(' ').expect("METHOD /path").1;
    let target = fixed(move |_| Call::get(path));
    row(operation, Kind::Public { status: 200 }, Who::Nobody, target)
}

/// One row per operation of `/openapi.json`, in the document's order.
fn table() -> Vec<Row> {
    use Kind::*;
    use Who::*;
    let tenant = |needs: &'static str| Tenant { needs: Some(needs) };
    let user = |needs: &'static str| User { needs };
    let own = SelfService { keys_too: false };
    // Asking about someone else than oneself needs permissions:read in the tenant.
    let asking = tenant("permissions:read (the subject is someone else)");
    let reading_member = tenant("users:read or permissions:read (not oneself)");
    let nobody = json!({"email": "nobody@example.com"});
    let mut rows = vec![
        // ----- operations -----
        public_get("GET /.well-known/jwks.json"),
        public_get("GET /healthz"),
        public_get("GET /metrics"),
        public_get("GET /openapi.json"),
        public_get("GET /readyz"),
        public_get("GET /readyz/write"),
        row(
            "GET /v1/admin/read-models",
            Platform,
            Operator,
            fixed(|_| Call::get("/v1/admin/read-models")),
        ),
        row(
            "POST /v1/tenants/{tenant}/roles/{role}/copy",
            Platform,
            Operator,
            fixed(|_| Call::post(acme("/roles/editor/copy"), json!({"to": [BETA]}))),
        ),
        row(
            "GET /v1/users",
            Platform,
            Operator,
            fixed(|_| Call::get("/v1/users?q=example&sort=last_sign_in:desc")),
        ),
        row(
            "POST /v1/admin/read-models/rebuild",
            Platform,
            Operator,
            fixed(|_| Call::post_empty("/v1/admin/read-models/rebuild")),
        ),
        // ----- the audit trail: the tenant is a query parameter -----
        row(
            "GET /v1/audit/access-review",
            tenant("audit:read"),
            AdminA,
            fixed(|_| Call::get(format!("/v1/audit/access-review?tenant={ACME}"))),
        ),
        row(
            "GET /v1/audit/applications",
            tenant("audit:read"),
            AdminA,
            fixed(|w| {
                Call::get(format!(
                    "/v1/audit/applications?tenant={ACME}&position={}",
                    w.as_of
                ))
            }),
        ),
        row(
            "GET /v1/audit/as-of/explain",
            tenant("audit:read"),
            AdminA,
            fixed(|w| {
                let permission = format!("permission=entity.{ENTITY}:read&record={RECORD}");
                let moment = format!("position={}", w.as_of);
                let user = &w.target.id;
                Call::get(format!(
                    "/v1/audit/as-of/explain?tenant={ACME}&user={user}&{permission}&{moment}"
                ))
            }),
        ),
        row(
            "GET /v1/audit/as-of/holders",
            tenant("audit:read"),
            AdminA,
            fixed(|w| {
                let permission = format!("permission=entity.{ENTITY}:read&record={RECORD}");
                let moment = format!("position={}", w.as_of);
                Call::get(format!(
                    "/v1/audit/as-of/holders?tenant={ACME}&{permission}&{moment}"
                ))
            }),
        ),
        row(
            "GET /v1/audit/events",
            tenant("audit:read"),
            AdminA,
            fixed(|_| Call::get(format!("/v1/audit/events?tenant={ACME}"))),
        )
        // Every tenant's trail, and the events of no tenant, are the platform's.
        .also(
            AdminA,
            prepared(|_| Call::get("/v1/audit/events")),
            PLATFORM_ONLY,
        )
        .also(
            AdminA,
            prepared(|_| Call::get("/v1/audit/events?tenant=_")),
            PLATFORM_ONLY,
        ),
        // ----- sign-in and the caller's own account -----
        row(
            "POST /v1/auth/email",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let body = json!({"new_email": email(&w, "renamed"), "password": PASSWORD});
                Call::post("/v1/auth/email", body).by(&me.token)
            }),
        ),
        public_post("POST /v1/auth/email-code", 202, nobody.clone()),
        public_post(
            "POST /v1/auth/email-code/sign-in",
            401,
            json!({"email": "nobody@example.com", "code": "000000"}),
        ),
        public_post(
            "POST /v1/auth/email/confirm",
            400,
            json!({"user": stranger(), "token": "ide_not_a_real_token"}),
        ),
        public_post("POST /v1/auth/magic-link", 202, nobody.clone()),
        public_post("POST /v1/auth/verify-email/resend", 202, nobody.clone()),
        public_post(
            "POST /v1/auth/magic-link/sign-in",
            400,
            json!({"user": stranger(), "token": "idm_not_a_real_token"}),
        ),
        row(
            "GET /v1/auth/me",
            SelfService { keys_too: true },
            Own,
            fixed(|_| Call::get("/v1/auth/me")),
        ),
        row(
            "GET /v1/auth/passkeys",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                w.passkey(&me).await;
                Call::get("/v1/auth/passkeys").by(&me.token)
            }),
        ),
        row(
            "DELETE /v1/auth/passkeys/{credential}",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let credential = w.passkey(&me).await;
                Call::delete(format!("/v1/auth/passkeys/{credential}")).by(&me.token)
            }),
        )
        // spec: one's own passkeys only; someone else's is answered as an unknown one.
        .also(
            AdminB,
            preparing(|w| async move {
                let someone = w.fresh_account(&["user"]).await;
                let credential = w.passkey(&someone).await;
                Call::delete(format!("/v1/auth/passkeys/{credential}"))
            }),
            Expect::Refused(404, Some("passkey_not_found")),
        ),
        row(
            "POST /v1/auth/passkeys/registration/finish",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let body = w.passkey_registration(&me).await;
                Call::post("/v1/auth/passkeys/registration/finish", body).by(&me.token)
            }),
        ),
        row(
            "POST /v1/auth/passkeys/registration/start",
            own,
            Own,
            fixed(|_| Call::post_empty("/v1/auth/passkeys/registration/start")),
        ),
        row(
            "POST /v1/auth/password",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let body = json!({
                    "current_password": PASSWORD,
                    "new_password": "Another-Route-Passphrase-77",
                });
                Call::post("/v1/auth/password", body).by(&me.token)
            }),
        ),
        public_post(
            "POST /v1/auth/password/reset",
            400,
            json!({"user": stranger(), "token": "idp_not_a_real_token", "password": PASSWORD}),
        ),
        public_post("POST /v1/auth/password/reset-request", 202, nobody),
        public_post(
            "POST /v1/auth/refresh",
            401,
            json!({"refresh_token": "idr_not_a_real_token"}),
        ),
        row(
            "GET /v1/auth/sessions",
            own,
            Own,
            fixed(|_| Call::get("/v1/auth/sessions")),
        ),
        row(
            "DELETE /v1/auth/sessions/{id}",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                Call::delete(format!("/v1/auth/sessions/{}", me.session)).by(&me.token)
            }),
        )
        // spec: one's own sessions only; someone else's is answered as an unknown one.
        .also(
            AdminB,
            prepared(|w| Call::delete(format!("/v1/auth/sessions/{}", w.target.session))),
            Expect::Refused(404, Some("session_not_found")),
        ),
        row(
            "POST /v1/auth/sign-in",
            Public { status: 200 },
            Nobody,
            fixed(|w| {
                let body = json!({"email": w.admin_a.email, "password": PASSWORD});
                Call::post("/v1/auth/sign-in", body)
            }),
        ),
        public_post(
            "POST /v1/auth/sign-in/second-factor",
            401,
            json!({"challenge": "not-a-real-challenge", "code": "123456"}),
        ),
        public_post("POST /v1/auth/sign-in/passkey/start", 200, json!({})),
        public_post(
            "POST /v1/auth/sign-in/passkey/finish",
            401,
            json!({"ceremony": "not-a-real-ceremony", "credential": {}}),
        ),
        public_post(
            "POST /v1/auth/sign-in/second-factor/passkey/start",
            401,
            json!({"challenge": "not-a-real-challenge"}),
        ),
        public_post(
            "POST /v1/auth/sign-in/second-factor/passkey/finish",
            401,
            json!({"ceremony": "not-a-real-ceremony", "credential": {}}),
        ),
        row(
            "POST /v1/auth/sign-out",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                Call::post_empty("/v1/auth/sign-out").by(&me.token)
            }),
        ),
        row(
            "POST /v1/auth/switch-tenant",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let joined = w
                    .svc
                    .post(
                        &format!("/v1/tenants/{BETA}/users/{}/roles", me.id),
                        json!({"role": "user"}),
                    )
                    .await;
                created(&joined, "a second tenant to switch to");
                let body = json!({"tenant": BETA, "refresh_token": me.refresh});
                Call::post("/v1/auth/switch-tenant", body).by(&me.token)
            }),
        ),
        row(
            "GET /v1/auth/tenants",
            own,
            Own,
            fixed(|_| Call::get("/v1/auth/tenants")),
        ),
        row(
            "POST /v1/auth/totp/confirm",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let code = totp_code(&w.totp_secret(&me).await);
                Call::post("/v1/auth/totp/confirm", json!({"code": code})).by(&me.token)
            }),
        ),
        row(
            "POST /v1/auth/totp/disable",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let code = totp_code(&w.totp_secret(&me).await);
                let confirmed = w
                    .svc
                    .post_as(&me.token, "/v1/auth/totp/confirm", json!({"code": code}))
                    .await;
                created(&confirmed, "a confirmed second factor");
                let body = json!({"password": PASSWORD});
                Call::post("/v1/auth/totp/disable", body).by(&me.token)
            }),
        ),
        row(
            "POST /v1/auth/totp/setup",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                Call::post_empty("/v1/auth/totp/setup").by(&me.token)
            }),
        ),
        public_post(
            "POST /v1/auth/verify-email",
            400,
            json!({"user": stranger(), "token": "ide_not_a_real_token"}),
        ),
        row(
            "POST /v1/invitations/accept",
            Public { status: 200 },
            Nobody,
            shared(|w| async move {
                let (_, email) = w.fresh_invitation().await;
                let token = invitation_token(&w.svc, &email).await;
                let body = json!({"token": token, "password": PASSWORD});
                Call::post("/v1/invitations/accept", body)
            }),
        ),
        // ----- the check API with the tenant as a query parameter -----
        row(
            "GET /v1/permissions/entity/{entity}",
            asking,
            AdminA,
            fixed(|w| {
                let subject = about_target(w);
                Call::get(format!(
                    "/v1/permissions/entity/{ENTITY}?tenant={ACME}&subject={subject}"
                ))
            }),
        ),
        // ----- tenants -----
        row(
            "GET /v1/tenants",
            AnyAuthenticated,
            AdminA,
            fixed(|_| Call::get("/v1/tenants")),
        ),
        row(
            "POST /v1/tenants",
            Platform,
            Operator,
            fresh(|w| async move {
                let body = json!({"id": w.unique("made"), "name": "Made by the route table"});
                Call::post("/v1/tenants", body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}",
            Tenant { needs: None },
            AdminA,
            fixed(|_| Call::get(acme(""))),
        ),
        row(
            "PATCH /v1/tenants/{tenant}",
            tenant("settings:update"),
            AdminA,
            fixed(|_| Call::patch(acme(""), json!({"name": "Acme Renamed"}))),
        ),
        row(
            "POST /v1/tenants/{tenant}/access/check",
            asking,
            AdminA,
            fixed(|w| Call::post(acme("/access/check"), check_body(w))),
        )
        // About oneself: standing is enough.
        .also(
            BareA,
            prepared(|_| {
                let body = json!({"permission": format!("entity.{ENTITY}:read")});
                Call::post(acme("/access/check"), body)
            }),
            Expect::Allowed,
        ),
        row(
            "POST /v1/tenants/{tenant}/access/check-batch",
            asking,
            AdminA,
            fixed(|w| {
                let body = json!({
                    "subject": about_target(w),
                    "permission": format!("entity.{ENTITY}:read"),
                    "records": [RECORD],
                });
                Call::post(acme("/access/check-batch"), body)
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/access/explain",
            asking,
            AdminA,
            fixed(|w| Call::post(acme("/access/explain"), check_body(w))),
        ),
        // ----- OpenID Connect -----
        row(
            "GET /t/{tenant}/.well-known/openid-configuration",
            Public { status: 200 },
            Nobody,
            fixed(|_| Call::get("/t/acme/.well-known/openid-configuration")),
        ),
        row(
            "GET /t/{tenant}/oidc/jwks",
            Public { status: 200 },
            Nobody,
            fixed(|_| Call::get("/t/acme/oidc/jwks")),
        ),
        // The protocol endpoints authenticate the client themselves: without one they answer
        // OAuth's errors, never `unauthorized`.
        row(
            "POST /t/{tenant}/oidc/token",
            Public { status: 400 },
            Nobody,
            fixed(|_| Call::post("/t/acme/oidc/token", json!({}))),
        ),
        row(
            "POST /t/{tenant}/oidc/revoke",
            Public { status: 400 },
            Nobody,
            fixed(|_| Call::post("/t/acme/oidc/revoke", json!({}))),
        ),
        row(
            "POST /t/{tenant}/oidc/introspect",
            Public { status: 400 },
            Nobody,
            fixed(|_| Call::post("/t/acme/oidc/introspect", json!({}))),
        ),
        row(
            "GET /t/{tenant}/oidc/userinfo",
            Public { status: 401 },
            Nobody,
            fixed(|_| Call::get("/t/acme/oidc/userinfo")),
        ),
        row(
            "GET /v1/tenants/{tenant}/clients",
            tenant("settings:read"),
            AdminA,
            shared(|w| async move {
                w.fresh_client().await;
                Call::get(acme("/clients"))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/clients",
            tenant("settings:update"),
            AdminA,
            fixed(|_| {
                let body = json!({
                    "kind": "public", "name": "Route app", "redirect_uris": [CLIENT_REDIRECT],
                    "grant_types": ["authorization_code"], "scopes": ["openid"],
                });
                Call::post(acme("/clients"), body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/clients/{id}",
            tenant("settings:read"),
            AdminA,
            shared(
                |w| async move { Call::get(acme(&format!("/clients/{}", w.fresh_client().await))) },
            ),
        ),
        row(
            "PUT /v1/tenants/{tenant}/clients/{id}",
            tenant("settings:update"),
            AdminA,
            shared(|w| async move {
                let body = json!({
                    "name": "Renamed app", "redirect_uris": [CLIENT_REDIRECT],
                    "grant_types": ["authorization_code"], "scopes": ["openid"],
                });
                Call::put(acme(&format!("/clients/{}", w.fresh_client().await)), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/clients/{id}",
            tenant("settings:update"),
            AdminA,
            shared(|w| async move {
                Call::delete(acme(&format!("/clients/{}", w.fresh_client().await)))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/clients/{id}/secret",
            tenant("settings:update"),
            AdminA,
            shared(|w| async move {
                Call::post(
                    acme(&format!("/clients/{}/secret", w.fresh_client().await)),
                    json!({}),
                )
            }),
        ),
        row(
            "GET /v1/auth/consents",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                w.consented_client(&me).await;
                Call::get("/v1/auth/consents").by(&me.token)
            }),
        ),
        row(
            "DELETE /v1/auth/consents/{id}",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let client = w.consented_client(&me).await;
                Call::delete(format!("/v1/auth/consents/{client}")).by(&me.token)
            }),
        )
        // spec: one's own consents only; a client someone else consented to is not found.
        .also(
            AdminB,
            prepared(|_| Call::delete(format!("/v1/auth/consents/{}", ulid::Ulid::new()))),
            Expect::Refused(404, Some("consent_not_found")),
        ),
        // ----- upstream identity providers -----
        row(
            "GET /v1/tenants/{tenant}/identity-providers",
            tenant("settings:read"),
            AdminA,
            shared(|w| async move {
                w.fresh_provider().await;
                Call::get(acme("/identity-providers"))
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/identity-providers/{provider}",
            tenant("settings:read"),
            AdminA,
            shared(|w| async move {
                Call::get(acme(&format!(
                    "/identity-providers/{}",
                    w.fresh_provider().await
                )))
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/identity-providers/{provider}",
            tenant("settings:update"),
            AdminA,
            shared(|w| async move {
                let body = json!({
                    "name": "Another", "issuer": "https://other.example.com", "client_id": "c",
                });
                Call::put(
                    acme(&format!("/identity-providers/{}", w.fresh_provider().await)),
                    body,
                )
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/identity-providers/{provider}",
            tenant("settings:update"),
            AdminA,
            shared(|w| async move {
                Call::delete(acme(&format!(
                    "/identity-providers/{}",
                    w.fresh_provider().await
                )))
            }),
        ),
        row(
            "GET /v1/auth/identities",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                w.linked_identity(&me).await;
                Call::get("/v1/auth/identities").by(&me.token)
            }),
        ),
        row(
            "DELETE /v1/auth/identities/{provider}",
            own,
            Own,
            shared(|w| async move {
                let me = w.fresh_account(&["user"]).await;
                let provider = w.linked_identity(&me).await;
                Call::delete(format!("/v1/auth/identities/{provider}")).by(&me.token)
            }),
        )
        // spec: one's own identities only; someone else's link is not found.
        .also(
            AdminB,
            prepared(|_| Call::delete("/v1/auth/identities/corp")),
            Expect::Refused(404, Some("identity_not_linked")),
        ),
        // ----- API keys -----
        row(
            "GET /v1/tenants/{tenant}/api-keys",
            tenant("users:read"),
            AdminA,
            fixed(|_| Call::get(acme("/api-keys"))),
        )
        // One's own keys: any member.
        .also(
            BareA,
            prepared(|w| Call::get(acme(&format!("/api-keys?owner={}", w.bare_a.id)))),
            Expect::Allowed,
        ),
        row(
            "POST /v1/tenants/{tenant}/api-keys",
            tenant("users:update (a key for another member)"),
            AdminA,
            fixed(|w| {
                let body = json!({
                    "name": "for the target",
                    "owner": w.target.id,
                    "permissions": [KEY_RESTRICTION],
                });
                Call::post(acme("/api-keys"), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/api-keys/{id}",
            tenant("users:update (someone else's key)"),
            AdminA,
            fresh(|w| async move {
                let body = json!({"name": "to revoke", "owner": w.target.id});
                let issued = w.svc.post(&acme("/api-keys"), body).await;
                created(&issued, "a key to revoke");
                Call::delete(acme(&format!("/api-keys/{}", text(&issued.body["id"]))))
            }),
        ),
        // ----- entities and records -----
        row(
            "GET /v1/tenants/{tenant}/entities",
            tenant("entities:read"),
            AdminA,
            fixed(|_| Call::get(acme("/entities"))),
        ),
        row(
            "POST /v1/tenants/{tenant}/entities",
            tenant("entities:create"),
            AdminA,
            fresh(|w| async move {
                let name = w.unique("ent").replace('-', "_");
                let body = json!({"name": name, "fields": ["title"], "rls": true});
                Call::post(acme("/entities"), body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/entities/{entity}",
            tenant("entities:read"),
            AdminA,
            fixed(|_| Call::get(entity(""))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/field-rules/{role}",
            tenant("fields:update"),
            AdminA,
            fixed(|_| Call::put(entity("/field-rules/user"), json!({"hidden": ["body"]}))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/fields",
            tenant("fields:update"),
            AdminA,
            // Only adds a field: the field-rules row hides one of the others.
            fixed(|_| {
                let body = json!({"fields": ["title", "body", "notes"]});
                Call::put(entity("/fields"), body)
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/policy",
            tenant("entities:update"),
            AdminA,
            fixed(|_| {
                let body = json!({
                    "read": ["_CREATOR", "user"],
                    "update": ["_CREATOR"],
                    "delete": ["_CREATOR"],
                });
                Call::put(entity("/policy"), body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/entities/{entity}/readable-records",
            asking,
            AdminA,
            fixed(|w| {
                let subject = about_target(w);
                Call::get(entity(&format!("/readable-records?subject={subject}")))
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
            tenant("entity.doc:update"),
            AdminA,
            fixed(|w| {
                let body = json!({"access": "read_only"});
                Call::put(record(&format!("/grants/{}", w.target.id)), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
            tenant("entity.doc:update"),
            AdminA,
            fresh(|w| async move {
                let granted = w.unique("granted");
                let path = entity(&format!("/records/{granted}/grants/{}", w.target.id));
                let grant = w.svc.put(&path, json!({"access": "read_write"})).await;
                created(&grant, "a grant to withdraw");
                Call::delete(path)
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
            tenant("role.user:assign"),
            AdminA,
            fixed(|w| {
                let path = record(&format!("/local-roles/{}/user", w.target.id));
                Call::put(path, json!({}))
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
            tenant("role.user:revoke"),
            AdminA,
            fresh(|w| async move {
                let local = w.unique("local");
                let member = &w.target.id;
                let path = entity(&format!("/records/{local}/local-roles/{member}/user"));
                created(&w.svc.put(&path, json!({})).await, "a local role to take");
                Call::delete(path)
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/records/{record}/owner",
            tenant("entity.doc:update"),
            AdminA,
            fixed(|w| Call::put(record("/owner"), json!({"user": w.target.id}))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/entities/{entity}/rls",
            tenant("entities:update"),
            AdminA,
            fixed(|_| Call::put(entity("/rls"), json!({"enabled": true}))),
        ),
        row(
            "GET /v1/tenants/{tenant}/entities/{entity}/visible-fields",
            asking,
            AdminA,
            fixed(|w| {
                let subject = about_target(w);
                Call::get(entity(&format!("/visible-fields?subject={subject}")))
            }),
        ),
        // ----- invitations and registration -----
        row(
            "GET /v1/tenants/{tenant}/invitations",
            tenant("users:read"),
            AdminA,
            fixed(|_| Call::get(acme("/invitations"))),
        ),
        row(
            "POST /v1/tenants/{tenant}/invitations",
            tenant("users:create and role.user:assign"),
            AdminA,
            fresh(|w| async move {
                let body = json!({"email": email(&w, "invited"), "roles": ["user"]});
                Call::post(acme("/invitations"), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/invitations/{id}",
            tenant("users:create"),
            AdminA,
            fresh(|w| async move {
                let (id, _) = w.fresh_invitation().await;
                Call::delete(acme(&format!("/invitations/{id}")))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/invitations/{id}/resend",
            tenant("users:create"),
            AdminA,
            shared(|w| async move {
                let (id, _) = w.fresh_invitation().await;
                Call::post_empty(acme(&format!("/invitations/{id}/resend")))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/register",
            Public { status: 202 },
            Nobody,
            fresh(|w| async move {
                let body = json!({"email": email(&w, "registered"), "password": PASSWORD});
                Call::post(acme("/register"), body)
            }),
        )
        // A tenant without self-registration (beta) answers as if it did not exist.
        .also(
            Nobody,
            preparing(|w| async move {
                let body = json!({"email": email(&w, "registered"), "password": PASSWORD});
                Call::post(format!("/v1/tenants/{BETA}/register"), body)
            }),
            Expect::Hidden(Absent::Tenant),
        ),
        // ----- roles -----
        row(
            "GET /v1/tenants/{tenant}/roles",
            tenant("roles:read"),
            AdminA,
            fixed(|_| Call::get(acme("/roles"))),
        ),
        row(
            "POST /v1/tenants/{tenant}/roles",
            tenant("roles:create"),
            AdminA,
            fresh(|w| async move {
                let body = json!({
                    "name": w.unique("role"),
                    "permissions": [KEY_RESTRICTION],
                    "global_access": false,
                });
                Call::post(acme("/roles"), body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/permissions",
            tenant("roles:read"),
            AdminA,
            fixed(|_| Call::get(acme("/permissions"))),
        ),
        row(
            "GET /v1/tenants/{tenant}/resources",
            tenant("roles:read"),
            AdminA,
            fresh(|w| async move {
                let body = json!({"description": "Listed"});
                let defined = w.svc.put(&acme("/resources/listed"), body).await;
                assert_eq!(defined.status, 200, "a resource to list: {defined:?}");
                Call::get(acme("/resources"))
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/resources/{resource}",
            tenant("permissions:create"),
            AdminA,
            fixed(|_| {
                Call::put(
                    acme("/resources/invoice_export"),
                    json!({"description": "Exporting invoices"}),
                )
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/resources/{resource}",
            tenant("permissions:delete"),
            AdminA,
            fresh(|w| async move {
                let name = w.unique("doomed").replace('-', "_");
                let body = json!({"description": "Short-lived"});
                let path = acme(&format!("/resources/{name}"));
                let defined = w.svc.put(&path, body).await;
                assert_eq!(defined.status, 200, "a resource to remove: {defined:?}");
                Call::delete(path)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/attributes",
            Tenant { needs: None },
            AdminA,
            fresh(|w| async move {
                let body = json!({"label": "Listed", "type": "text"});
                let defined = w.svc.put(&acme("/attributes/listed"), body).await;
                assert_eq!(defined.status, 200, "an attribute to list: {defined:?}");
                Call::get(acme("/attributes"))
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/attributes/{attribute}",
            tenant("settings:update"),
            AdminA,
            fixed(|_| {
                Call::put(
                    acme("/attributes/department"),
                    json!({"label": "Department", "type": "text", "searchable": true}),
                )
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/attributes/{attribute}",
            tenant("settings:update"),
            AdminA,
            fresh(|w| async move {
                let name = w.unique("doomed").replace('-', "_");
                let path = acme(&format!("/attributes/{name}"));
                let defined = w
                    .svc
                    .put(&path, json!({"label": "Short-lived", "type": "boolean"}))
                    .await;
                assert_eq!(defined.status, 200, "an attribute to remove: {defined:?}");
                Call::delete(path)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/users/{user}/attributes",
            tenant("users:read (not oneself)"),
            AdminA,
            fresh(|w| async move {
                let defined = w
                    .svc
                    .put(
                        &acme("/attributes/nickname"),
                        json!({"label": "Nickname", "type": "text", "user_editable": true}),
                    )
                    .await;
                assert_eq!(defined.status, 200, "an attribute: {defined:?}");
                let path = acme(&format!("/users/{}/attributes", w.target.id));
                let set = w.svc.patch(&path, json!({"nickname": "Tee"})).await;
                assert_eq!(set.status, 200, "a value to read: {set:?}");
                Call::get(path)
            }),
        )
        .also(
            BareA,
            prepared(|w| Call::get(acme(&format!("/users/{}/attributes", w.bare_a.id)))),
            Expect::Allowed,
        ),
        row(
            "PATCH /v1/tenants/{tenant}/users/{user}/attributes",
            tenant("users:update (not oneself, for user-editable attributes)"),
            AdminA,
            fresh(|w| async move {
                let defined = w
                    .svc
                    .put(
                        &acme("/attributes/nickname"),
                        json!({"label": "Nickname", "type": "text", "user_editable": true}),
                    )
                    .await;
                assert_eq!(defined.status, 200, "an attribute: {defined:?}");
                let path = acme(&format!("/users/{}/attributes", w.target.id));
                Call::patch(path, json!({"nickname": "Tee"}))
            }),
        )
        .also(
            BareA,
            prepared(|w| {
                let path = acme(&format!("/users/{}/attributes", w.bare_a.id));
                Call::patch(path, json!({"nickname": null}))
            }),
            Expect::Allowed,
        ),
        row(
            "GET /v1/tenants/{tenant}/roles/{role}",
            tenant("roles:read"),
            AdminA,
            fixed(|_| Call::get(acme("/roles/editor"))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/roles/{role}",
            tenant("roles:update"),
            AdminA,
            fixed(|_| {
                let body = json!({
                    "description": "Edits",
                    "permissions": [KEY_RESTRICTION, "files:read"],
                    "global_access": false,
                });
                Call::put(acme("/roles/editor"), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/roles/{role}",
            tenant("roles:delete"),
            AdminA,
            fresh(|w| async move {
                let name = w.unique("doomed");
                let body = json!({"name": name, "permissions": [], "global_access": false});
                created(&w.svc.post(&acme("/roles"), body).await, "a role to delete");
                Call::delete(acme(&format!("/roles/{name}")))
            }),
        ),
        row(
            "PUT /v1/tenants/{tenant}/roles/{role}/label",
            tenant("roles:update"),
            AdminA,
            fixed(|_| Call::put(acme("/roles/editor/label"), json!({"label": "Editors"}))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/roles/{role}/menu",
            tenant("menus:update"),
            AdminA,
            fixed(|_| {
                let item = json!({"id": "docs", "label": "Docs", "permission": KEY_RESTRICTION});
                Call::put(acme("/roles/editor/menu"), json!([item]))
            }),
        ),
        // ----- settings -----
        row(
            "GET /v1/tenants/{tenant}/settings",
            tenant("settings:read"),
            AdminA,
            fixed(|_| Call::get(acme("/settings"))),
        ),
        row(
            "PUT /v1/tenants/{tenant}/settings",
            tenant("settings:update"),
            AdminA,
            fixed(|_| Call::put(acme("/settings"), settings())),
        ),
        // ----- members -----
        row(
            "GET /v1/tenants/{tenant}/users",
            tenant("users:read"),
            AdminA,
            fixed(|_| Call::get(acme("/users"))),
        ),
        row(
            "GET /v1/tenants/{tenant}/users/autocomplete",
            tenant("users:read"),
            AdminA,
            fixed(|_| Call::get(acme("/users/autocomplete?q=ad"))),
        ),
        row(
            "GET /v1/tenants/{tenant}/roles/{role}/members",
            tenant("users:read"),
            AdminA,
            fixed(|_| Call::get(acme("/roles/admin/members?sort=created_at:desc"))),
        ),
        row(
            "POST /v1/tenants/{tenant}/roles/{role}/members",
            tenant("role.user:assign"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["bare"]).await;
                Call::post(acme("/roles/user/members"), json!({"add": [member]}))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/users/import",
            tenant("users:update"),
            AdminA,
            fixed(|_| {
                let csv = "email,first_name,roles\nimported@example.com,Imp,user\n";
                Call::post(acme("/users/import"), json!({"csv": csv, "dry_run": true}))
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/users/bulk",
            tenant("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["bare"]).await;
                let body = json!({"operations": [
                    {"op": "assign_role", "user": member, "role": "user"},
                ]});
                Call::post(acme("/users/bulk"), body)
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/users",
            tenant("users:create and role.user:assign"),
            AdminA,
            fresh(|w| async move {
                let body = json!({"email": email(&w, "created"), "roles": ["user"]});
                Call::post(acme("/users"), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/users/{user}",
            tenant("users:delete"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                Call::delete(acme(&format!("/users/{member}")))
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/users/{user}/menu",
            reading_member,
            AdminA,
            fixed(|w| Call::get(acme(&format!("/users/{}/menu", w.target.id)))),
        ),
        row(
            "GET /v1/tenants/{tenant}/users/{user}/permissions",
            reading_member,
            AdminA,
            fixed(|w| Call::get(acme(&format!("/users/{}/permissions", w.target.id)))),
        )
        // One's own permissions: standing is enough.
        .also(
            BareA,
            prepared(|w| Call::get(acme(&format!("/users/{}/permissions", w.bare_a.id)))),
            Expect::Allowed,
        ),
        row(
            "POST /v1/tenants/{tenant}/users/{user}/permissions",
            tenant("permissions:create"),
            AdminA,
            fixed(|w| {
                let body = json!({"permissions": ["workflows:update"]});
                Call::post(acme(&format!("/users/{}/permissions", w.target.id)), body)
            }),
        ),
        row(
            "POST /v1/tenants/{tenant}/users/{user}/permissions/revoke",
            tenant("permissions:delete"),
            AdminA,
            shared(|w| async move {
                let path = acme(&format!("/users/{}/permissions", w.target.id));
                let body = json!({"permissions": ["workflows:delete"]});
                let granted = w.svc.post(&path, body.clone()).await;
                created(&granted, "a permission to revoke");
                Call::post(format!("{path}/revoke"), body)
            }),
        ),
        row(
            "GET /v1/tenants/{tenant}/users/{user}/roles",
            reading_member,
            AdminA,
            fixed(|w| Call::get(acme(&format!("/users/{}/roles", w.target.id)))),
        )
        .also(
            BareA,
            prepared(|w| Call::get(acme(&format!("/users/{}/roles", w.bare_a.id)))),
            Expect::Allowed,
        ),
        row(
            "POST /v1/tenants/{tenant}/users/{user}/roles",
            tenant("role.user:assign"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["bare"]).await;
                let body = json!({"role": "user"});
                Call::post(acme(&format!("/users/{member}/roles")), body)
            }),
        ),
        row(
            "DELETE /v1/tenants/{tenant}/users/{user}/roles/{role}",
            tenant("role.user:revoke"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user", "bare"]).await;
                Call::delete(acme(&format!("/users/{member}/roles/user")))
            }),
        ),
        // ----- users -----
        row(
            "GET /v1/users/{user}",
            user("users:read"),
            AdminA,
            fixed(|w| Call::get(user_path(&w.target.id, ""))),
        )
        // Oneself: always.
        .also(
            BareA,
            prepared(|w| Call::get(user_path(&w.bare_a.id, ""))),
            Expect::Allowed,
        ),
        row(
            "GET /v1/users/{user}/access",
            user("users:read"),
            AdminA,
            fixed(|w| Call::get(user_path(&w.target.id, "/access"))),
        )
        // Oneself: always.
        .also(
            BareA,
            prepared(|w| Call::get(user_path(&w.bare_a.id, "/access"))),
            Expect::Allowed,
        ),
        row(
            "POST /v1/users/{user}/deactivate",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                Call::post_empty(user_path(&member, "/deactivate"))
            }),
        ),
        row(
            "POST /v1/users/{user}/erase",
            user("users:delete"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                Call::post_empty(user_path(&member, "/erase"))
            }),
        ),
        row(
            "PUT /v1/users/{user}/flags",
            PlatformOverUser,
            Operator,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                let body = json!({
                    "dashboard_access": true,
                    "api_access": false,
                    "platform_admin": false,
                });
                Call::put(user_path(&member, "/flags"), body)
            }),
        ),
        row(
            "PUT /v1/users/{user}/profile",
            user("users:update"),
            AdminA,
            fixed(|w| {
                let body = json!({"first_name": "Grace", "last_name": "Hopper"});
                Call::put(user_path(&w.target.id, "/profile"), body)
            }),
        )
        // Oneself: always (with a session).
        .also(
            BareA,
            prepared(|w| {
                let body = json!({"first_name": "Bare", "last_name": "Member"});
                Call::put(user_path(&w.bare_a.id, "/profile"), body)
            }),
            Expect::Allowed,
        ),
        row(
            "POST /v1/users/{user}/reactivate",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                let deactivated = w
                    .svc
                    .post(&user_path(&member, "/deactivate"), json!({}))
                    .await;
                created(&deactivated, "a deactivated user");
                Call::post_empty(user_path(&member, "/reactivate"))
            }),
        ),
        row(
            "POST /v1/users/{user}/reinstate",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                let body = json!({"reason": "route table"});
                let suspended = w.svc.post(&user_path(&member, "/suspend"), body).await;
                created(&suspended, "a suspended user");
                Call::post_empty(user_path(&member, "/reinstate"))
            }),
        ),
        row(
            "GET /v1/users/{user}/sessions",
            user("users:update"),
            AdminA,
            fixed(|w| Call::get(user_path(&w.target.id, "/sessions"))),
        ),
        row(
            "POST /v1/users/{user}/sessions/revoke",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                Call::post_empty(user_path(&member, "/sessions/revoke"))
            }),
        ),
        row(
            "POST /v1/users/{user}/suspend",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_user(&["user"]).await;
                let body = json!({"reason": "route table"});
                Call::post(user_path(&member, "/suspend"), body)
            }),
        ),
        row(
            "POST /v1/users/{user}/reset-factors",
            user("users:update"),
            AdminA,
            fresh(|w| async move {
                let member = w.fresh_account(&["user"]).await;
                w.passkey(&member).await;
                Call::post_empty(user_path(&member.id, "/reset-factors"))
            }),
        ),
        row(
            "POST /v1/users/{user}/unlock",
            user("users:update"),
            AdminA,
            shared(|w| async move {
                // Locked out by wrong passwords (5 in a row by default).
                let locked = w.fresh_account(&["user"]).await;
                let wrong = json!({"email": locked.email, "password": "not-the-password-at-all"});
                for _ in 0..5 {
                    let refused = w
                        .svc
                        .post_anonymous("/v1/auth/sign-in", wrong.clone())
                        .await;
                    assert_eq!(refused.status, 401, "building the world: {refused:?}");
                }
                // A wrong password's failure is recorded after its answer: wait for the lock-out
                // in the log, so that it does not land in the middle of a refused call's check.
                let trail = format!(
                    "/v1/audit/events?tenant=_&subject={}&type=AccountLocked",
                    locked.id
                );
                eventually("the lock-out is recorded", || async {
                    let position = w.svc.log_position().await;
                    let page = w.svc.get_at(&trail, position).await;
                    page.body["items"]
                        .as_array()
                        .is_some_and(|items| !items.is_empty())
                })
                .await;
                Call::post_empty(user_path(&locked.id, "/unlock"))
            }),
        ),
    ];
    rows.extend(scim_rows());
    rows
}

/// The SCIM routes (`idstream_server::scim::ROUTES`): acme's provisioning key is the rightful
/// caller; sessions, keys without the scim permissions and nobody are refused; beta's key does
/// not learn that acme's users and groups exist.
fn scim_rows() -> Vec<Row> {
    use Who::*;
    let whole = Kind::Scim { by_id: false };
    let by_id = Kind::Scim { by_id: true };
    const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
    let person = |w: &World| json!({"userName": format!("{}@example.com", w.unique("scim")), "name": {"givenName": "Sam", "familyName": "Scim"}});
    let deactivate = json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": false}]});
    async fn fresh_group(w: &World) -> String {
        let name = w.unique("scimgroup");
        let body = json!({"name": name, "permissions": [], "global_access": false});
        created(
            &w.svc.post(&acme("/roles"), body).await,
            "a group to change",
        );
        name
    }
    vec![
        row(
            "GET /scim/v2/ServiceProviderConfig",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/ServiceProviderConfig")),
        ),
        row(
            "GET /scim/v2/ResourceTypes",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/ResourceTypes")),
        ),
        row(
            "GET /scim/v2/ResourceTypes/{id}",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/ResourceTypes/User")),
        ),
        row(
            "GET /scim/v2/Schemas",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/Schemas")),
        ),
        row(
            "GET /scim/v2/Schemas/{id}",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")),
        ),
        row(
            "GET /scim/v2/Users",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/Users")),
        ),
        row(
            "POST /scim/v2/Users",
            whole,
            ScimA,
            fresh(move |w| async move { Call::post("/scim/v2/Users", person(&w)) }),
        ),
        row(
            "POST /scim/v2/Users/.search",
            whole,
            ScimA,
            fixed(|_| {
                Call::post(
                    "/scim/v2/Users/.search",
                    json!({"filter": "active eq true", "count": 5}),
                )
            }),
        ),
        row(
            "GET /scim/v2/Users/{id}",
            by_id,
            ScimA,
            fixed(|w| Call::get(format!("/scim/v2/Users/{}", w.target.id))),
        ),
        row(
            "PUT /scim/v2/Users/{id}",
            by_id,
            ScimA,
            fresh(move |w| async move {
                let body = person(&w);
                let email = body["userName"].as_str().unwrap().to_owned();
                let id = w.svc.create_user(ACME, &email, &["user"]).await.0;
                Call::put(
                    format!("/scim/v2/Users/{id}"),
                    json!({"userName": email, "name": {"givenName": "Renamed"}}),
                )
            }),
        ),
        row(
            "PATCH /scim/v2/Users/{id}",
            by_id,
            ScimA,
            fresh(move |w| {
                let deactivate = deactivate.clone();
                async move {
                    let id = w.fresh_user(&["user"]).await;
                    Call::patch(format!("/scim/v2/Users/{id}"), deactivate)
                }
            }),
        ),
        row(
            "DELETE /scim/v2/Users/{id}",
            by_id,
            ScimA,
            fresh(|w| async move {
                let id = w.fresh_user(&["user"]).await;
                Call::delete(format!("/scim/v2/Users/{id}"))
            }),
        ),
        row(
            "GET /scim/v2/Groups",
            whole,
            ScimA,
            fixed(|_| Call::get("/scim/v2/Groups")),
        ),
        row(
            "POST /scim/v2/Groups",
            whole,
            ScimA,
            fresh(|w| async move {
                Call::post(
                    "/scim/v2/Groups",
                    json!({"displayName": w.unique("Scim Group")}),
                )
            }),
        ),
        row(
            "POST /scim/v2/Groups/.search",
            whole,
            ScimA,
            fixed(|_| {
                Call::post(
                    "/scim/v2/Groups/.search",
                    json!({"filter": "displayName pr"}),
                )
            }),
        ),
        row(
            "GET /scim/v2/Groups/{id}",
            by_id,
            ScimA,
            fixed(|_| Call::get("/scim/v2/Groups/bare")),
        ),
        row(
            "PUT /scim/v2/Groups/{id}",
            by_id,
            ScimA,
            fresh(|w| async move {
                let name = fresh_group(&w).await;
                Call::put(
                    format!("/scim/v2/Groups/{name}"),
                    json!({"displayName": "Relabelled"}),
                )
            }),
        ),
        row(
            "PATCH /scim/v2/Groups/{id}",
            by_id,
            ScimA,
            fresh(|w| async move {
                let name = fresh_group(&w).await;
                let body = json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": w.target.id}]}]});
                Call::patch(format!("/scim/v2/Groups/{name}"), body)
            }),
        ),
        row(
            "DELETE /scim/v2/Groups/{id}",
            by_id,
            ScimA,
            fresh(|w| async move {
                let name = fresh_group(&w).await;
                Call::delete(format!("/scim/v2/Groups/{name}"))
            }),
        ),
        row(
            "POST /scim/v2/Bulk",
            whole,
            ScimA,
            fresh(move |w| async move {
                let body = json!({"Operations": [{"method": "POST", "path": "/Users", "bulkId": "a", "data": person(&w)}]});
                Call::post("/scim/v2/Bulk", body)
            }),
        ),
    ]
}

// ----- the test -----

const COVERAGE: &str = "every operation of /openapi.json has exactly one row";

/// The failures, counted by rule, then one line each in the order the rows ran.
fn report(failures: &[Failure]) -> String {
    let mut by_rule: BTreeMap<&str, usize> = BTreeMap::new();
    for (rule, _) in failures {
        *by_rule.entry(rule).or_default() += 1;
    }
    let mut text = format!("{} authorization failures, by rule:\n", failures.len());
    for (rule, count) in &by_rule {
        text += &format!("{count:5}  {rule}\n");
    }
    text += "\nMETHOD path caller: expected …, got …\n";
    for (_, line) in failures {
        text += &format!("{line}\n");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_each_caller_as_the_authorization_rules_say() {
    let started = Instant::now();
    let w = Arc::new(World::build().await);
    let built = started.elapsed();
    let mut failures: Vec<Failure> = Vec::new();

    // The table covers the document and the SCIM routes, no more and no less.
    let mut operations = operations(&w.svc).await;
    for (method, path) in idstream_server::scim::ROUTES {
        operations.insert((method.to_string(), path.to_string()));
    }
    let table = table();
    let mut rows: BTreeMap<(String, String), &Row> = BTreeMap::new();
    for row in &table {
        if rows.insert(row.key(), row).is_some() {
            let line = format!(
                "{} {}: two rows in tests/routes.rs",
                row.method, row.template
            );
            failures.push((COVERAGE, line));
        }
    }
    for (method, path) in &operations {
        if !rows.contains_key(&(method.clone(), path.clone())) {
            let line = format!("{method} {path}: a new route needs a row in tests/routes.rs");
            failures.push((COVERAGE, line));
        }
    }
    for (method, path) in rows.keys() {
        if !operations.contains(&(method.clone(), path.clone())) {
            let line = format!(
                "{method} {path}: a row without an operation in /openapi.json or a SCIM route"
            );
            failures.push((COVERAGE, line));
        }
    }

    // Public rows last: what anyone may do (sign in, register…) appends to the log, and must
    // not land in the window where another row's refusal is checked to have appended nothing.
    let mut order: Vec<&Row> = table
        .iter()
        .filter(|r| operations.contains(&r.key()))
        .collect();
    order.sort_by_key(|r| matches!(r.kind, Kind::Public { .. }));
    for row in order {
        run(&w, row, &mut failures).await;
    }

    eprintln!(
        "routes: {} operations, {} rows; world built in {built:.1?}, table run in {:.1?}",
        operations.len(),
        table.len(),
        started.elapsed() - built
    );
    assert!(failures.is_empty(), "{}", report(&failures));
}

// ----- the hosted pages -----

/// The CSRF cookie and token a page hands a browser.
async fn page_csrf(client: &reqwest::Client, svc: &Service) -> String {
    let page = client.get(svc.url("/sign-in")).send().await.unwrap();
    let cookie = page.headers()["set-cookie"].to_str().unwrap();
    cookie["ids_csrf=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// Every page route of `idstream_server::pages::table`, called as each kind of browser: with no
/// session, with a form that lacks its CSRF token, and (for session pages) signed in. The pages
/// are not in the API document, so they have their own table, read from the server itself: a
/// page route added without saying who may use it does not compile.
///
/// - a form posted without its CSRF token is refused (403) and appends nothing;
/// - a session page without a session sends the browser to sign in (303 to `/sign-in`), its
///   form too, and appends nothing;
/// - a link page without its link says how to get one (400) and appends nothing;
/// - public pages answer, and a public form with made-up input appends nothing;
/// - with a session, every session page answers 200;
/// - an administration page refuses a member without its permission (403) and serves an
///   administrator (200);
/// - every answer carries the pages' Content-Security-Policy and `no-store`;
/// - sign-up for a tenant that was never created looks exactly like sign-up for one that exists
///   and does not allow it.
#[tokio::test]
async fn every_page_route_answers_each_browser_as_its_access_says() {
    use idstream_server::pages::{PageAccess, table};

    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;
    svc.create_tenant(ACME).await;
    let member = world::join(&svc, "pages@example.com", ACME, &["user"], PASSWORD).await;
    let admin = world::join(&svc, "pages-admin@example.com", ACME, &["admin"], PASSWORD).await;
    let platform = world::join(
        &svc,
        "pages-platform@example.com",
        ACME,
        &["admin"],
        PASSWORD,
    )
    .await;
    let flags = svc
        .put(
            &format!("/v1/users/{}/flags", platform.id),
            json!({"dashboard_access": true, "api_access": true, "platform_admin": true}),
        )
        .await;
    assert_eq!(flags.status, 200, "{flags:?}");
    svc.get_at(&format!("/v1/users/{}", platform.id), flags.position())
        .await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let csrf = page_csrf(&client, &svc).await;
    let mut failures: Vec<String> = Vec::new();
    let made_up = [
        ("email", "nobody@example.com"),
        ("password", "Not-The-Password-1"),
        ("new_password", "Not-The-Password-2"),
        ("confirm", "Not-The-Password-2"),
        ("current", "Not-The-Password-1"),
        ("code", "123456"),
        ("challenge", "not-a-challenge"),
        ("tenant", NOWHERE),
        ("first_name", "No"),
        ("last_name", "Body"),
        ("session", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("key", "01ARZ3NDEKTSV4RRFFQ69G5FAV"),
        ("name", "made up"),
        ("action", "suspend"),
    ];
    let encode = |pairs: &[(&str, &str)]| {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let routes = table();
    assert!(routes.len() > 30, "{routes:?}");
    for route in &routes {
        let label = format!("{} {} ({:?})", route.method, route.path, route.access);
        let before = svc.log_position().await;
        // A browser without a session (but with its CSRF cookie).
        let request = |with_csrf: bool, session: Option<&world::Account>| {
            let mut cookies = format!("ids_csrf={csrf}");
            if let Some(account) = session {
                cookies += &format!(
                    "; ids_access={}; ids_session={}",
                    account.token, account.refresh
                );
            }
            // Paths name a person, the member, and a role, theirs.
            let path = route
                .path
                .replace("{user}", &member.id)
                .replace("{role}", "user")
                .replace("{provider}", "corp")
                .replace("{tenant}", ACME);
            let builder = if route.method == "GET" {
                client.get(svc.url(&path))
            } else {
                let mut pairs = made_up.to_vec();
                if with_csrf {
                    pairs.push(("csrf", csrf.as_str()));
                }
                client
                    .post(svc.url(&path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(encode(&pairs))
            };
            builder.header("cookie", cookies)
        };
        let answer = request(true, None).send().await.unwrap();
        let status = answer.status().as_u16();
        let location = answer
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        if !route.path.starts_with("/assets/") {
            let csp = answer
                .headers()
                .get("content-security-policy")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            if !csp.contains("frame-ancestors 'none'")
                || answer
                    .headers()
                    .get("cache-control")
                    .map(|v| v.to_str().unwrap())
                    != Some("no-store")
            {
                failures.push(format!("{label}: without its security headers"));
            }
        }
        match route.access {
            PageAccess::Session | PageAccess::Admin | PageAccess::Platform => {
                if status != 303 || !location.starts_with("/sign-in") {
                    failures.push(format!(
                        "{label} without a session: expected 303 to /sign-in, got {status} {location}"
                    ));
                }
            }
            PageAccess::Link => {
                if status != 400 {
                    failures.push(format!(
                        "{label} without its link: expected 400, got {status}"
                    ));
                }
            }
            PageAccess::Public => {
                if !(200..500).contains(&status) || status == 404 || status == 405 {
                    failures.push(format!("{label}: expected an answer, got {status}"));
                }
            }
        }
        if route.method == "POST" {
            let forged = request(false, Some(&member)).send().await.unwrap();
            if forged.status() != 403 {
                failures.push(format!(
                    "{label} without its CSRF token: expected 403, got {}",
                    forged.status()
                ));
            }
        }
        let after = svc.log_position().await;
        if after != before {
            failures.push(format!(
                "{label}: a refused or made-up request appended to the log ({before} → {after})"
            ));
        }
        if route.access == PageAccess::Admin && route.method == "GET" {
            // A member without the screen's permission is refused; an administrator is served.
            let refused = request(true, Some(&member)).send().await.unwrap();
            if refused.status() != 403 {
                failures.push(format!(
                    "{label} as a member without the permission: expected 403, got {}",
                    refused.status()
                ));
            }
            let served = request(true, Some(&admin)).send().await.unwrap();
            if served.status() != 200 {
                failures.push(format!(
                    "{label} as an administrator: expected 200, got {}",
                    served.status()
                ));
            }
        }
        if route.access == PageAccess::Platform && route.method == "GET" {
            // Members and a tenant's administrators are refused; a platform administrator is
            // served.
            for (who, account) in [("a member", &member), ("a tenant administrator", &admin)] {
                let refused = request(true, Some(account)).send().await.unwrap();
                if refused.status() != 403 {
                    failures.push(format!(
                        "{label} as {who}: expected 403, got {}",
                        refused.status()
                    ));
                }
            }
            let served = request(true, Some(&platform)).send().await.unwrap();
            if served.status() != 200 {
                failures.push(format!(
                    "{label} as a platform administrator: expected 200, got {}",
                    served.status()
                ));
            }
        }
        if route.access == PageAccess::Session && route.method == "GET" {
            let page = request(true, Some(&member)).send().await.unwrap();
            let onwards = page
                .headers()
                .get("location")
                .is_some_and(|l| !l.to_str().unwrap().starts_with("/sign-in"));
            // The choice of organisation passes a person of one organisation straight on.
            if page.status() != 200 && !(page.status() == 303 && onwards) {
                failures.push(format!(
                    "{label} signed in: expected 200, got {}",
                    page.status()
                ));
            }
        }
    }

    // Sign-up names no tenant's existence: one never created reads like one that is closed.
    let page_of = |tenant: &'static str| {
        let client = client.clone();
        let url = svc.url(&format!("/sign-up?tenant={tenant}"));
        let csrf = csrf.clone();
        async move {
            let answer = client
                .get(url)
                .header("cookie", format!("ids_csrf={csrf}"))
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let body = answer.text().await.unwrap().replace(tenant, "T");
            (status, body)
        }
    };
    if page_of(ACME).await != page_of(NOWHERE).await {
        failures.push("GET /sign-up tells a closed tenant from one never created".into());
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
