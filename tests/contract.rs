//! The contract: `/openapi.json` tells the truth.
//!
//! The test reads the document the service serves and, for every operation:
//!
//! - (a) builds a valid request from the document alone (the declared examples, or values made
//!   from the declared formats, filled with real ids of a small world where the request needs
//!   existing objects), sends it, and checks that the answer's status is one the operation
//!   declares and, for a problem, that its `code` is one the document lists for that status.
//!   Every operation must succeed but the few whose valid request needs a secret only a mailbox
//!   or an authenticator app holds ([`SECRET_NEEDED`]): those must answer a declared refusal.
//! - (b) for each parameter and body field with a pattern, length, range or item count (and for
//!   the two headers every operation reads), sends one value breaking each rule, every other
//!   part valid, and checks that the answer is a declared 400 or 422 with a declared code whose
//!   `detail` names the parameter or field, and that a command appended nothing. Each body is
//!   also sent as broken JSON (400 `malformed_json`) and as JSON of the wrong shape (422
//!   `invalid_body`).
//!
//! - (c) sends the valid request of every authenticated operation as callers it is not for: a
//!   refused credential (401), a member of the tenant without permissions, and a member of
//!   another tenant only (403 and 404 without standing), and checks that every answer is
//!   declared.
//!
//! The refusals (b) run first, on the freshly built world, then (c), then the valid requests (a)
//! in an order that creates before it deletes. All failures are collected and reported together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::support::service::{Answer, Service};
use crate::support::world::{Account, created, eventually, invitation_token, join, text};

const ACME: &str = "acme";
const PASSWORD: &str = "Contract-Passphrase-2026";
const ROLE: &str = "editor";
const ENTITY: &str = "project";
const RECORD: &str = "R1";

/// Operations whose valid request needs a secret the document cannot give (an emailed token or
/// code, a TOTP code, a second-factor challenge, a passkey's signature), or a state the world
/// does not have (a locked account, a second factor to reset): they must refuse, with a
/// declared problem.
const SECRET_NEEDED: &[&str] = &[
    // The OpenID Connect protocol endpoints take a client's secret, code or token (see
    // tests/oidc.rs), and a consent is given on its screen.
    "POST /t/{tenant}/oidc/token",
    "POST /t/{tenant}/oidc/revoke",
    "POST /t/{tenant}/oidc/introspect",
    "GET /t/{tenant}/oidc/userinfo",
    "DELETE /v1/auth/consents/{id}",
    // A linked identity needs a sign-in through an upstream provider (see tests/upstream.rs).
    "DELETE /v1/auth/identities/{provider}",
    "POST /v1/auth/sign-in/second-factor",
    "POST /v1/auth/magic-link/sign-in",
    "POST /v1/auth/email-code/sign-in",
    "POST /v1/auth/verify-email",
    "POST /v1/auth/email/confirm",
    "POST /v1/auth/password/reset",
    "POST /v1/auth/totp/confirm",
    "POST /v1/auth/totp/disable",
    "POST /v1/users/{user}/unlock",
    "POST /v1/users/{user}/reset-factors",
    "POST /v1/auth/passkeys/registration/finish",
    "DELETE /v1/auth/passkeys/{credential}",
    "POST /v1/auth/sign-in/passkey/finish",
    "POST /v1/auth/sign-in/second-factor/passkey/start",
    "POST /v1/auth/sign-in/second-factor/passkey/finish",
];

/// The valid requests that undo or end what others use run last, in this order.
const LAST: &[&str] = &[
    "DELETE /v1/tenants/{tenant}/attributes/{attribute}",
    "DELETE /v1/tenants/{tenant}/resources/{resource}",
    "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/local-roles/{user}/{role}",
    "DELETE /v1/tenants/{tenant}/entities/{entity}/records/{record}/grants/{user}",
    "DELETE /v1/tenants/{tenant}/users/{user}/roles/{role}",
    "DELETE /v1/tenants/{tenant}/roles/{role}",
    "DELETE /v1/tenants/{tenant}/invitations/{id}",
    "DELETE /v1/tenants/{tenant}/api-keys/{id}",
    "DELETE /v1/tenants/{tenant}/clients/{id}",
    "DELETE /v1/tenants/{tenant}/identity-providers/{provider}",
    "DELETE /v1/auth/sessions/{id}",
    "POST /v1/auth/password",
    "POST /v1/users/{user}/suspend",
    "POST /v1/users/{user}/reinstate",
    "POST /v1/users/{user}/deactivate",
    "POST /v1/users/{user}/reactivate",
    "DELETE /v1/tenants/{tenant}/users/{user}",
    "POST /v1/users/{user}/erase",
    "POST /v1/auth/sign-out",
];

// ----- the document -----

struct Doc(Value);

/// One operation of the document.
struct Op<'a> {
    method: Method,
    template: &'a str,
    key: String,
    spec: &'a Value,
}

impl Doc {
    fn operations(&self) -> Vec<Op<'_>> {
        let mut ops = Vec::new();
        for (template, item) in self.0["paths"].as_object().expect("paths") {
            for (method, spec) in item.as_object().expect("a path item") {
                let method: Method = method.to_uppercase().parse().expect("a method");
                ops.push(Op {
                    key: format!("{method} {template}"),
                    method,
                    template,
                    spec,
                });
            }
        }
        ops
    }

    /// `schema` through `$ref`s and `oneOf [null, …]` (an optional value).
    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            return self.resolve(&self.0["components"]["schemas"][name]);
        }
        if let Some(one) = schema["oneOf"].as_array()
            && one.len() == 2
            && let Some(other) = one.iter().find(|s| s["type"] != "null")
        {
            return self.resolve(other);
        }
        schema
    }

    /// The component a schema refers to, through `oneOf [null, …]`.
    fn component<'a>(&self, schema: &'a Value) -> Option<&'a str> {
        if let Some(r) = schema["$ref"].as_str() {
            return r.rsplit('/').next();
        }
        schema["oneOf"]
            .as_array()?
            .iter()
            .find_map(|s| s["$ref"].as_str())
            .and_then(|r| r.rsplit('/').next())
    }
}

impl Op<'_> {
    fn authenticated(&self) -> bool {
        self.spec["security"].as_array().is_some_and(|s| {
            s.iter()
                .any(|r| r.as_object().is_some_and(|o| !o.is_empty()))
        })
    }

    fn is_command(&self) -> bool {
        self.method != Method::GET
    }

    fn parameters(&self) -> impl Iterator<Item = &Value> {
        self.spec["parameters"].as_array().into_iter().flatten()
    }

    fn body_schema(&self) -> Option<&Value> {
        self.spec["requestBody"]["content"]["application/json"].get("schema")
    }

    /// The codes declared for `status`, if it is declared as a problem.
    fn codes(&self, status: u16) -> Option<Vec<String>> {
        let response = self.spec["responses"].get(status.to_string())?;
        let schema = response["content"].get("application/problem+json")?;
        Some(
            schema["schema"]["allOf"][1]["properties"]["code"]["enum"]
                .as_array()?
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
        )
    }
}

/// Whether `value` keeps the string rules of `schema` (pattern and lengths in characters).
fn keeps_string_rules(schema: &Value, value: &str) -> bool {
    let chars = value.chars().count() as u64;
    schema["pattern"].as_str().is_none_or(|p| {
        regex::Regex::new(p)
            .unwrap_or_else(|e| panic!("the pattern {p} compiles: {e}"))
            .is_match(value)
    }) && schema["minLength"].as_u64().is_none_or(|min| chars >= min)
        && schema["maxLength"].as_u64().is_none_or(|max| chars <= max)
}

// ----- the world -----

struct World {
    _dir: tempfile::TempDir,
    svc: Service,
    /// An admin of acme, with a session: the caller of the account's own operations.
    ada: Account,
    /// Another session of ada's, for ending one session.
    other_session: String,
    /// A member of acme (role `user`) whom the operations about a user act on.
    target: String,
    /// An open invitation to acme.
    invitation: String,
    /// The emailed token of another open invitation, for accepting it.
    accept_token: String,
    /// ada's API key.
    api_key: String,
    /// An OpenID Connect client of acme.
    client: String,
    /// A member of acme whose only role has no permission.
    bare: Account,
    /// An admin of another tenant, not a member of acme.
    stranger: Account,
    /// A log position once the world was built.
    as_of: u64,
    counter: AtomicUsize,
}

impl World {
    async fn build() -> World {
        let dir = tempfile::tempdir().unwrap();
        // A public URL with a host name, which passkeys are bound to (a browser refuses an IP
        // address as a WebAuthn relying party).
        let svc =
            Service::embedded_with_env(dir.path(), &[("IDSTREAM_PUBLIC_URL", "http://localhost")])
                .await;
        eventually("the service is ready", || async {
            svc.get("/readyz").await.status == 200
        })
        .await;
        svc.create_tenant(ACME).await;
        let settings = json!({
            "self_registration": true, "default_role": "user", "require_email_verification": true,
            "password_policy": {
                "min_length": 12, "max_length": 128, "require_lowercase": false,
                "require_uppercase": false, "require_digit": false, "require_symbol": false,
                "deny_common": true
            },
            "invitation_ttl_hours": 72, "session_idle_minutes": 60, "session_max_hours": 10,
            "magic_link_ttl_minutes": 10, "mfa_required": false
        });
        created(
            &svc.put("/v1/tenants/acme/settings", settings).await,
            "settings",
        );
        for role in [ROLE, "bare"] {
            created(
                &svc.post(
                    "/v1/tenants/acme/roles",
                    json!({"name": role, "permissions": []}),
                )
                .await,
                "a role",
            );
        }
        svc.create_tenant("beta").await;
        created(
            &svc.post(
                "/v1/tenants/acme/entities",
                json!({"name": ENTITY, "fields": ["title", "budget"], "rls": false}),
            )
            .await,
            "an entity",
        );
        let mut world = World {
            _dir: dir,
            svc,
            ada: Account::default(),
            other_session: String::new(),
            target: String::new(),
            invitation: String::new(),
            accept_token: String::new(),
            api_key: String::new(),
            client: String::new(),
            bare: Account::default(),
            stranger: Account::default(),
            as_of: 0,
            counter: AtomicUsize::new(0),
        };
        world.ada = world.join(ACME, &["admin"]).await;
        world.bare = world.join(ACME, &["bare"]).await;
        world.stranger = world.join("beta", &["admin"]).await;
        world.target = world.join(ACME, &["user"]).await.id;
        let svc = &world.svc;
        created(
            &svc.put(
                &format!("/v1/tenants/acme/entities/{ENTITY}/records/{RECORD}/owner"),
                json!({"user": world.target}),
            )
            .await,
            "a record",
        );
        let (invitation, _) = world.invite().await;
        world.invitation = invitation;
        let (_, email) = world.invite().await;
        world.accept_token = invitation_token(&world.svc, &email).await;
        let other = world.svc.sign_in(&world.ada.email, PASSWORD).await;
        world.other_session = text(&other["session"]);
        let issued = world
            .svc
            .post_as(
                &world.ada.token,
                "/v1/tenants/acme/api-keys",
                json!({"name": "fixture"}),
            )
            .await;
        created(&issued, "an API key");
        world.api_key = text(&issued.body["id"]);
        let client = world
            .svc
            .post(
                "/v1/tenants/acme/clients",
                json!({"kind": "confidential", "name": "Fixture app",
                       "redirect_uris": ["https://app.example/cb"],
                       "grant_types": ["authorization_code"], "scopes": ["openid"]}),
            )
            .await;
        created(&client, "a client");
        world.client = text(&client.body["id"]);
        let provider = world
            .svc
            .put(
                "/v1/tenants/acme/identity-providers/corp",
                json!({"name": "Corp", "issuer": "https://id.example.com", "client_id": "fixture"}),
            )
            .await;
        assert_eq!(provider.status, 200, "a provider: {provider:?}");
        world.as_of = world.svc.log_position().await;
        world
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn fresh_email(&self) -> String {
        format!("{}@example.com", self.unique("contract-"))
    }

    /// An invitation to acme for a new address: (id, email).
    async fn invite(&self) -> (String, String) {
        let email = self.fresh_email();
        let invited = self
            .svc
            .post(
                "/v1/tenants/acme/invitations",
                json!({"email": email, "roles": ["user"]}),
            )
            .await;
        created(&invited, "an invitation");
        (text(&invited.body["id"]), email)
    }

    /// A new member of `tenant` with `roles`, signed in through the invitation they accepted.
    async fn join(&self, tenant: &str, roles: &[&str]) -> Account {
        join(&self.svc, &self.fresh_email(), tenant, roles, PASSWORD).await
    }

    /// The value of a path parameter.
    fn path_value(&self, template: &str, name: &str) -> String {
        match name {
            "tenant" => ACME.into(),
            "user" => self.target.clone(),
            "role" => ROLE.into(),
            "entity" => ENTITY.into(),
            "record" => RECORD.into(),
            "resource" => "invoice_export".into(),
            "attribute" => "department".into(),
            "provider" => "corp".into(),
            "id" if template.contains("/sessions/") => self.other_session.clone(),
            "id" if template.contains("/invitations/") => self.invitation.clone(),
            "id" if template.contains("/api-keys/") => self.api_key.clone(),
            "id" if template.contains("/clients/") || template.contains("/consents/") => {
                self.client.clone()
            }
            // No passkey of the world's caller has it (a registration needs an authenticator).
            "credential" => "bm8tc3VjaC1wYXNza2V5".into(),
            other => panic!("no value for the path parameter {other} of {template}"),
        }
    }

    /// A world value for a parameter or field, by its name and format, where the document's
    /// example would not do (an object that must exist, a secret, a name that must be new).
    fn fixture(&self, op: &Op<'_>, field: &str, component: Option<&str>) -> Option<Value> {
        let auth_flow = op.template.starts_with("/v1/auth/");
        Some(match (component, field) {
            (Some("TenantId"), "id") => json!(self.unique("contract-")),
            (Some("TenantId"), _) => json!(ACME),
            (Some("AuditScope"), _) => json!(ACME),
            (Some("RoleName"), "name") => json!(self.unique("role")),
            (Some("RoleName"), "default_role") => json!("user"),
            (Some("RoleName"), _) => json!(ROLE),
            (Some("EntityName"), "name") => json!(self.unique("entity")),
            (Some("EntityName"), _) => json!(ENTITY),
            (Some("RecordId"), _) => json!(RECORD),
            (Some("UserId"), "owner") => json!(self.ada.id),
            (Some("UserId"), "user") if auth_flow => json!(self.ada.id),
            (Some("UserId"), "after") => return None,
            (Some("UserId"), _) => json!(self.target),
            (Some("Ulid"), _) => return None,
            (Some("Email"), _) => json!(self.fresh_email()),
            (Some("Subject"), _) => json!("anonymous"),
            (_, "email") => json!(self.ada.email),
            (_, "password" | "current_password" | "new_password") => json!(PASSWORD),
            (_, "refresh_token") => json!(self.ada.refresh),
            (_, "token") if op.key == "POST /v1/invitations/accept" => json!(self.accept_token),
            (_, "token") => json!("idx_not-a-real-token"),
            (_, "challenge") => json!("not-a-real-challenge"),
            (_, "position") => json!(self.as_of),
            (_, "self_registration") => json!(true),
            (_, "issuer") => json!("https://id.example.com"),
            (_, "scopes") if op.template.contains("/identity-providers/") => {
                json!(["openid", "email"])
            }
            (_, "allowed_email_domains") => json!(["example.com"]),
            _ => return None,
        })
    }

    /// Who calls an operation: nobody for the public ones, ada for her own account and keys,
    /// the operator for the rest.
    fn bearer(&self, op: &Op) -> Option<Option<&str>> {
        if !op.authenticated() {
            return None;
        }
        if op.template.starts_with("/v1/auth/") || op.template.contains("/api-keys") {
            Some(Some(&self.ada.token))
        } else {
            Some(None)
        }
    }
}

// ----- requests -----

/// One request: the path (with its query string), headers, and body.
#[derive(Clone, Debug)]
struct Request {
    path: BTreeMap<String, String>,
    query: BTreeMap<String, String>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    /// A body sent as these bytes instead.
    raw: Option<&'static str>,
}

fn query_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(query_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

impl World {
    fn url(&self, op: &Op<'_>, request: &Request) -> String {
        let mut path = op.template.to_owned();
        for (name, value) in &request.path {
            path = path.replace(&format!("{{{name}}}"), &encoded(value));
        }
        let query: Vec<String> = request
            .query
            .iter()
            .map(|(name, value)| format!("{}={}", encoded(name), encoded(value)))
            .collect();
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        path
    }

    async fn send(&self, op: &Op<'_>, request: &Request) -> Answer {
        self.send_as(op, request, self.bearer(op)).await
    }

    /// `request` with `bearer`: none, the operator's (`Some(None)`) or a token.
    async fn send_as(
        &self,
        op: &Op<'_>,
        request: &Request,
        bearer: Option<Option<&str>>,
    ) -> Answer {
        let path = self.url(op, request);
        let builder = match bearer {
            None => self.svc.anonymous(op.method.clone(), &path),
            Some(None) => self.svc.request(op.method.clone(), &path),
            Some(Some(token)) => self.svc.request_as(token, op.method.clone(), &path),
        };
        let mut builder = builder;
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        builder = match (request.raw, &request.body) {
            (Some(raw), _) => builder.header("content-type", "application/json").body(raw),
            (None, Some(body)) => builder.json(body),
            (None, None) => builder,
        };
        self.svc.send(builder).await
    }

    /// A valid request for `op`, from the document and the world, or why none can be made.
    fn valid(&self, doc: &Doc, op: &Op) -> Result<Request, String> {
        let mut request = Request {
            path: BTreeMap::new(),
            query: BTreeMap::new(),
            headers: Vec::new(),
            body: None,
            raw: None,
        };
        for parameter in op.parameters() {
            let name = parameter["name"].as_str().unwrap();
            match parameter["in"].as_str().unwrap() {
                "path" => {
                    request
                        .path
                        .insert(name.to_owned(), self.path_value(op.template, name));
                }
                "query" => {
                    let component = doc.component(&parameter["schema"]);
                    let value = self.fixture(op, name, component).or_else(|| {
                        (parameter["required"] == true)
                            .then(|| self.value(doc, op, name, &parameter["schema"]).ok())
                            .flatten()
                    });
                    match value {
                        Some(value) => {
                            request.query.insert(name.to_owned(), query_text(&value));
                        }
                        None if parameter["required"] == true => {
                            return Err(format!("no value for the query parameter {name}"));
                        }
                        None => {}
                    }
                }
                _ => {}
            }
        }
        if let Some(schema) = op.body_schema() {
            request.body = Some(self.value(doc, op, "", schema)?);
        }
        Ok(request)
    }

    /// A valid value of `schema` for the field `field`.
    fn value(&self, doc: &Doc, op: &Op<'_>, field: &str, schema: &Value) -> Result<Value, String> {
        let component = doc.component(schema);
        if let Some(value) = self.fixture(op, field, component) {
            return Ok(value);
        }
        if let Some(example) = schema.get("example").or_else(|| schema["examples"].get(0)) {
            return Ok(example.clone());
        }
        let resolved = doc.resolve(schema);
        if let Some(example) = resolved
            .get("example")
            .or_else(|| resolved["examples"].get(0))
        {
            return Ok(example.clone());
        }
        if let Some(first) = resolved["enum"].get(0) {
            return Ok(first.clone());
        }
        let kind = resolved["type"].as_str().unwrap_or_else(|| {
            resolved["type"]
                .as_array()
                .and_then(|t| t.iter().find(|t| *t != "null"))
                .and_then(Value::as_str)
                .unwrap_or("")
        });
        match kind {
            "object" => {
                let required: Vec<&str> = resolved["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut out = Map::new();
                for (name, property) in resolved["properties"].as_object().into_iter().flatten() {
                    let wanted = required.contains(&name.as_str())
                        || self.fixture(op, name, doc.component(property)).is_some()
                        || property.get("example").is_some()
                        || doc.resolve(property).get("example").is_some()
                        || doc.resolve(property).get("examples").is_some();
                    if wanted {
                        out.insert(name.clone(), self.value(doc, op, name, property)?);
                    }
                }
                Ok(Value::Object(out))
            }
            "array" => Ok(json!([self.value(doc, op, field, &resolved["items"])?])),
            "boolean" => Ok(json!(false)),
            "integer" | "number" => Ok(json!(resolved["minimum"].as_u64().unwrap_or(1))),
            "string" if resolved["format"] == "date-time" => Ok(json!("2030-01-01T00:00:00Z")),
            "string" if resolved.get("pattern").is_none() => Ok(json!("contract")),
            _ => Err(format!("no value for {field:?}: {resolved}")),
        }
    }
}

/// A path segment or query component, percent-encoded but for the unreserved characters.
fn encoded(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

// ----- rule breaking -----

/// A value breaking one declared rule: (which rule, the value).
fn breaking(doc: &Doc, schema: &Value, in_path: bool) -> Vec<(String, Value)> {
    let schema = doc.resolve(schema);
    let mut out = Vec::new();
    if let Some(options) = schema["enum"].as_array()
        && !options.is_empty()
    {
        out.push(("enum".into(), json!("not-one-of-them")));
        return out;
    }
    match schema["type"].as_str() {
        Some("string") => {
            if schema.get("pattern").is_some() {
                let candidates = ["\u{202E}", "\u{200B}", "bad value!", "\u{0007}", "x"];
                if let Some(bad) = candidates.iter().find(|c| !keeps_string_rules(schema, c)) {
                    out.push(("pattern".into(), json!(bad)));
                }
            }
            if let Some(max) = schema["maxLength"].as_u64() {
                out.push(("maxLength".into(), json!("x".repeat(max as usize + 1))));
            }
            if let Some(min) = schema["minLength"].as_u64()
                && min >= 1
                && !(in_path && min == 1)
            {
                out.push(("minLength".into(), json!("x".repeat(min as usize - 1))));
            }
            if schema["format"] == "date-time" {
                out.push(("format".into(), json!("yesterday")));
            }
        }
        Some("integer") => {
            if let Some(min) = schema["minimum"].as_i64() {
                out.push(("minimum".into(), json!(min - 1)));
            }
            if let Some(max) = schema["maximum"].as_i64() {
                out.push(("maximum".into(), json!(max + 1)));
            }
        }
        Some("array") => {
            let item = doc.component(&schema["items"]).unwrap_or("");
            let distinct = |i: usize| -> Value {
                match item {
                    "Permission" => json!(format!("entity.e{i}:read")),
                    "RecordId" => json!(format!("r{i}")),
                    "FieldName" => json!(format!("f{i}")),
                    _ => json!(format!("x{i}")),
                }
            };
            if let Some(min) = schema["minItems"].as_u64()
                && min >= 1
            {
                out.push(("minItems".into(), json!([])));
            }
            if let Some(max) = schema["maxItems"].as_u64() {
                let items: Vec<Value> = (0..=max as usize).map(distinct).collect();
                out.push(("maxItems".into(), Value::Array(items)));
            }
            for (rule, bad) in breaking(doc, &schema["items"], in_path) {
                out.push((format!("items {rule}"), json!([bad])));
            }
        }
        Some("object") => {
            if schema.get("propertyNames").is_some() {
                out.push(("propertyNames".into(), json!({"Not A Name!": true})));
            }
            if let Some(max) = schema["maxProperties"].as_u64() {
                let map: Map<String, Value> =
                    (0..=max).map(|i| (format!("t{i}"), json!(true))).collect();
                out.push(("maxProperties".into(), Value::Object(map)));
            }
        }
        _ => {}
    }
    out
}

/// Every field of a body with a rule to break, as (path to the field, its schema): object
/// properties at any depth and the first item of arrays of objects.
fn body_fields<'a>(
    doc: &'a Doc,
    schema: &'a Value,
    at: Vec<Step>,
    out: &mut Vec<(Vec<Step>, &'a Value)>,
) {
    // A recursive schema (a menu's children) is walked once.
    if at.iter().filter(|s| matches!(s, Step::Item)).count() > 1 {
        return;
    }
    let resolved = doc.resolve(schema);
    match resolved["type"].as_str() {
        Some("object") if resolved.get("properties").is_some() => {
            for (name, property) in resolved["properties"].as_object().unwrap() {
                let mut step = at.clone();
                step.push(Step::Field(name.clone()));
                out.push((step.clone(), property));
                body_fields(doc, property, step, out);
            }
        }
        Some("array") if doc.resolve(&resolved["items"])["type"] == "object" => {
            let mut step = at;
            step.push(Step::Item);
            body_fields(doc, &resolved["items"], step, out);
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum Step {
    Field(String),
    Item,
}

fn field_name(path: &[Step]) -> String {
    path.iter()
        .map(|s| match s {
            Step::Field(f) => f.clone(),
            Step::Item => "0".into(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `body` with the value at `path` set to `value` (objects and arrays on the way made).
fn with(body: &Value, path: &[Step], value: Value) -> Value {
    let mut body = body.clone();
    let mut here = &mut body;
    for (i, step) in path.iter().enumerate() {
        let last = i == path.len() - 1;
        match step {
            Step::Field(name) => {
                if !here.is_object() {
                    *here = json!({});
                }
                let map = here.as_object_mut().unwrap();
                if last {
                    map.insert(name.clone(), value);
                    return body;
                }
                here = map.entry(name.clone()).or_insert(json!({}));
            }
            Step::Item => {
                if !here.is_array() || here.as_array().unwrap().is_empty() {
                    *here = json!([{}]);
                }
                here = &mut here.as_array_mut().unwrap()[0];
            }
        }
    }
    body
}

// ----- checking -----

type Failures = Vec<String>;

fn problem_of(answer: &Answer) -> String {
    format!(
        "{} {} ({})",
        answer.status,
        answer.body["code"].as_str().unwrap_or("-"),
        answer.body["detail"].as_str().unwrap_or("")
    )
}

/// Whether the answer is one the operation declares: its status, and for a problem its code.
fn declared(op: &Op<'_>, answer: &Answer) -> Result<(), String> {
    let status = answer.status;
    if op.spec["responses"].get(status.to_string()).is_none() {
        return Err(format!("undeclared status: {}", problem_of(answer)));
    }
    if answer.header("content-type") == Some("application/problem+json") {
        let code = answer.body["code"].as_str().unwrap_or("");
        match op.codes(status) {
            Some(codes) if codes.iter().any(|c| c == code) => {}
            Some(codes) => {
                return Err(format!(
                    "undeclared code: {} (declared for {status}: {codes:?})",
                    problem_of(answer)
                ));
            }
            None => {
                return Err(format!(
                    "{status} is not declared as a problem: {}",
                    problem_of(answer)
                ));
            }
        }
    }
    Ok(())
}

impl World {
    /// Sends a request breaking a rule and checks the refusal: a declared 400 or 422 with a
    /// declared code naming `field` (for the codes of malformed input), and nothing appended.
    async fn refused(
        &self,
        op: &Op<'_>,
        request: &Request,
        what: &str,
        field: &str,
        failures: &mut Failures,
    ) {
        let before = if op.is_command() {
            Some(self.svc.log_position().await)
        } else {
            None
        };
        let answer = self.send(op, request).await;
        let label = format!("{} — {what}", op.key);
        if !(answer.status == 400 || answer.status == 422) {
            failures.push(format!(
                "{label}: not refused as malformed: {}",
                problem_of(&answer)
            ));
        }
        if let Err(why) = declared(op, &answer) {
            failures.push(format!("{label}: {why}"));
        }
        let code = answer.body["code"].as_str().unwrap_or("");
        let detail = answer.body["detail"].as_str().unwrap_or("");
        let located = ["invalid_path", "invalid_query", "invalid_body"];
        if located.contains(&code) && !field.is_empty() && !detail.contains(field) {
            failures.push(format!(
                "{label}: the detail does not name {field}: {detail:?}"
            ));
        }
        if let Some(before) = before {
            let after = self.svc.log_position().await;
            if after != before {
                failures.push(format!(
                    "{label}: refused ({}) but the log moved from {before} to {after}",
                    problem_of(&answer)
                ));
            }
        }
    }

    /// (b): every rule of every parameter and body field of `op`, broken once.
    async fn break_rules(
        &self,
        doc: &Doc,
        op: &Op<'_>,
        valid: &Request,
        failures: &mut Failures,
    ) -> usize {
        let mut sent = 0;
        for parameter in op.parameters() {
            let name = parameter["name"].as_str().unwrap();
            let place = parameter["in"].as_str().unwrap();
            match place {
                "path" | "query" => {
                    for (rule, bad) in breaking(doc, &parameter["schema"], place == "path") {
                        let mut request = valid.clone();
                        let text = query_text(&bad);
                        if place == "path" {
                            request.path.insert(name.to_owned(), text.clone());
                        } else {
                            request.query.insert(name.to_owned(), text.clone());
                        }
                        let what =
                            format!("{place} parameter {name} breaking its {rule} ({text:?})");
                        // The consistency token is read before the query (by every operation).
                        let field = if name == "min_position" { "" } else { name };
                        self.refused(op, &request, &what, field, failures).await;
                        sent += 1;
                    }
                }
                "header" => {
                    let bad = match name {
                        "X-Idstream-Min-Position" => "soon".to_owned(),
                        "Idempotency-Key" => "k".repeat(256),
                        _ => continue,
                    };
                    let mut request = valid.clone();
                    request.headers.push((name.to_owned(), bad));
                    let what = format!("header {name} breaking its format");
                    self.refused(op, &request, &what, "", failures).await;
                    sent += 1;
                }
                _ => {}
            }
        }
        if let (Some(schema), Some(body)) = (op.body_schema(), &valid.body) {
            let mut fields = Vec::new();
            body_fields(doc, schema, Vec::new(), &mut fields);
            for (path, field_schema) in fields {
                for (rule, bad) in breaking(doc, field_schema, false) {
                    let mut request = valid.clone();
                    request.body = Some(with(body, &path, bad));
                    let name = field_name(&path);
                    let what = format!("body field {name} breaking its {rule}");
                    let last = match path.last() {
                        Some(Step::Field(f)) => f.clone(),
                        _ => String::new(),
                    };
                    self.refused(op, &request, &what, &last, failures).await;
                    sent += 1;
                }
            }
            let mut broken = valid.clone();
            broken.raw = Some("{\"not json");
            self.refused(op, &broken, "a body that is not JSON", "", failures)
                .await;
            let mut wrong = valid.clone();
            wrong.body = Some(if body.is_array() {
                json!({})
            } else {
                json!([])
            });
            self.refused(op, &wrong, "a body of the wrong shape", "", failures)
                .await;
            sent += 2;
        }
        sent
    }

    /// After a valid request: keep the tokens a refresh handed out.
    fn remember(&mut self, op: &Op<'_>, answer: &Answer) {
        if op.key == "POST /v1/auth/refresh" && answer.status == 200 {
            self.ada.token = text(&answer.body["access_token"]);
            self.ada.refresh = text(&answer.body["refresh_token"]);
        }
        if op.key == "POST /v1/auth/switch-tenant" && answer.status == 200 {
            self.ada.token = text(&answer.body["access_token"]);
            self.ada.refresh = text(&answer.body["refresh_token"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_declares_what_the_server_accepts_and_answers() {
    let started = Instant::now();
    let mut world = World::build().await;
    let built = started.elapsed();
    let served = world.svc.get("/openapi.json").await;
    assert_eq!(served.status, 200, "{served:?}");
    let doc = Doc(served.body);
    let mut failures: Failures = Vec::new();

    // Every pattern compiles, and every example keeps its own rules.
    for (name, schema) in doc.0["components"]["schemas"].as_object().unwrap() {
        if schema["type"] == "string"
            && let Some(example) = schema["examples"][0].as_str()
            && !keeps_string_rules(schema, example)
        {
            failures.push(format!(
                "component {name}: its example {example:?} breaks its rules"
            ));
        }
    }

    let mut operations = doc.operations();
    operations.sort_by_key(|op| LAST.iter().position(|k| *k == op.key).map_or(0, |i| i + 1));
    let requests: Vec<Result<Request, String>> =
        operations.iter().map(|op| world.valid(&doc, op)).collect();

    // (b) first, on the world as it was built.
    let mut refusals = 0;
    for (op, request) in operations.iter().zip(&requests) {
        match request {
            Ok(request) => refusals += world.break_rules(&doc, op, request, &mut failures).await,
            Err(why) => failures.push(format!("{}: cannot build a valid request: {why}", op.key)),
        }
    }
    let broke = started.elapsed() - built;

    // (c) Callers the operations are not for. A refused credential must get 401; the others
    // may get anything the operation declares (their own account's operations succeed).
    let mut unprivileged = 0;
    for (op, request) in operations.iter().zip(&requests) {
        let Ok(request) = request else { continue };
        if !op.authenticated() {
            continue;
        }
        let bare = world.bare.token.clone();
        let stranger = world.stranger.token.clone();
        for (who, bearer) in [
            ("a refused credential", "not-a-credential"),
            ("a member without permissions", bare.as_str()),
            ("a member of another tenant", stranger.as_str()),
        ] {
            let answer = world.send_as(op, request, Some(Some(bearer))).await;
            unprivileged += 1;
            if let Err(why) = declared(op, &answer) {
                failures.push(format!("{} — as {who}: {why}", op.key));
            }
            if bearer == "not-a-credential" && answer.status != 401 {
                failures.push(format!("{} — as {who}: {}", op.key, problem_of(&answer)));
            }
        }
    }

    // (a)
    let mut succeeded = 0;
    for (op, request) in operations.iter().zip(&requests) {
        let Ok(mut request) = request.clone() else {
            continue;
        };
        // Values of the world that change as the requests run (ada's tokens).
        if let Some(body) = request.body.as_mut()
            && body.get("refresh_token").is_some()
        {
            body["refresh_token"] = json!(world.ada.refresh);
        }
        let answer = world.send(op, &request).await;
        if let Err(why) = declared(op, &answer) {
            failures.push(format!("{} — a valid request: {why}", op.key));
        }
        let ok = (200..300).contains(&answer.status);
        if ok {
            succeeded += 1;
        }
        match (ok, SECRET_NEEDED.contains(&op.key.as_str())) {
            (false, false) => failures.push(format!(
                "{} — a valid request was refused: {} (sent {request:?})",
                op.key,
                problem_of(&answer)
            )),
            (true, true) => failures.push(format!(
                "{} — a request without the secret succeeded: {}",
                op.key, answer.status
            )),
            _ => {}
        }
        world.remember(op, &answer);
    }

    eprintln!(
        "contract: {} operations; world built in {built:.1?}; {refusals} rule-breaking requests in \
         {broke:.1?}; {unprivileged} requests of unprivileged callers; {succeeded} valid requests \
         succeeded, all in {:.1?}",
        operations.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
