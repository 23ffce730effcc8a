//! Cross-origin requests (CORS) from browser front ends, against a real `idstream` process: an
//! allow-list of origins in the configuration, none by default.

use reqwest::Method;
use serde_json::json;

use crate::support::service::{Answer, Service};

const APP: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example.net";

/// The `access-control-*` headers of an answer.
fn cors_headers(answer: &Answer) -> Vec<String> {
    answer
        .headers
        .keys()
        .map(|name| name.as_str().to_owned())
        .filter(|name| name.starts_with("access-control-"))
        .collect()
}

/// The comma-separated list of header `name`, lower-cased.
fn list(answer: &Answer, name: &str) -> Vec<String> {
    answer
        .header(name)
        .unwrap_or_else(|| panic!("no {name} in {answer:?}"))
        .split(',')
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

async fn preflight(svc: &Service, origin: &str, method: &str, path: &str) -> Answer {
    svc.send(
        svc.anonymous(Method::OPTIONS, path)
            .header("origin", origin)
            .header("access-control-request-method", method)
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            ),
    )
    .await
}

#[tokio::test]
async fn an_allowed_origin_gets_its_preflight_answered_and_may_read_answers() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded_with_env(
        dir.path(),
        &[(
            "IDSTREAM_CORS_ORIGINS",
            "https://app.example.com/,http://localhost:5173",
        )],
    )
    .await;

    // The preflight of a command from an allowed origin: that origin, the API's methods and
    // request headers, no credentials, cached for a while.
    let answer = preflight(&svc, APP, "POST", "/v1/tenants").await;
    assert!(answer.status == 200 || answer.status == 204, "{answer:?}");
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    let methods = list(&answer, "access-control-allow-methods");
    for method in ["get", "post", "put", "patch", "delete"] {
        assert!(methods.contains(&method.to_owned()), "{answer:?}");
    }
    let headers = list(&answer, "access-control-allow-headers");
    for header in [
        "authorization",
        "content-type",
        "idempotency-key",
        "x-idstream-min-position",
        "x-correlation-id",
    ] {
        assert!(headers.contains(&header.to_owned()), "{answer:?}");
    }
    assert_eq!(answer.header("access-control-allow-credentials"), None);
    assert!(
        answer.header("access-control-max-age").is_some(),
        "{answer:?}"
    );
    assert!(
        list(&answer, "vary").contains(&"origin".to_owned()),
        "{answer:?}"
    );
    // The second origin of the list too.
    let local = preflight(&svc, "http://localhost:5173", "GET", "/v1/auth/me").await;
    assert_eq!(
        local.header("access-control-allow-origin"),
        Some("http://localhost:5173")
    );

    // The same preflight from another origin gets no CORS headers: the router answers the
    // OPTIONS method as any method it does not serve.
    let refused = preflight(&svc, EVIL, "POST", "/v1/tenants").await;
    refused.assert_problem(405, "method_not_allowed");
    assert_eq!(cors_headers(&refused), Vec::<String>::new(), "{refused:?}");
    assert!(
        list(&refused, "vary").contains(&"origin".to_owned()),
        "{refused:?}"
    );
    // An OPTIONS request that is no preflight is no CORS business either.
    let plain = svc
        .send(
            svc.anonymous(Method::OPTIONS, "/v1/tenants")
                .header("origin", APP),
        )
        .await;
    plain.assert_problem(405, "method_not_allowed");
    assert_eq!(cors_headers(&plain), Vec::<String>::new(), "{plain:?}");

    // The real request: the origin may read the answer and the headers the API's clients use.
    let created = svc
        .send(
            svc.request(Method::POST, "/v1/tenants")
                .header("origin", APP)
                .header("idempotency-key", "cors-1")
                .json(&json!({"id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.header("access-control-allow-origin"), Some(APP));
    assert_eq!(created.header("access-control-allow-credentials"), None);
    let exposed = list(&created, "access-control-expose-headers");
    for header in [
        "x-idstream-position",
        "retry-after",
        "idempotent-replayed",
        "x-correlation-id",
    ] {
        assert!(exposed.contains(&header.to_owned()), "{created:?}");
    }
    assert!(created.header("x-idstream-position").is_some());
    // Problems are readable too: a front end shows their code.
    let problem = svc
        .send(
            svc.anonymous(Method::GET, "/v1/tenants/acme")
                .header("origin", APP),
        )
        .await;
    problem.assert_problem(401, "unauthorized");
    assert_eq!(problem.header("access-control-allow-origin"), Some(APP));

    // A request from another origin is served (CORS is the browser's rule, not authentication)
    // but carries no CORS header, so a browser keeps the page from reading it.
    let other = svc
        .send(
            svc.request(Method::GET, "/v1/tenants/acme")
                .header("origin", EVIL)
                .header("x-idstream-min-position", created.position().to_string()),
        )
        .await;
    assert_eq!(other.status, 200, "{other:?}");
    assert_eq!(cors_headers(&other), Vec::<String>::new(), "{other:?}");
}

#[tokio::test]
async fn without_configured_origins_no_answer_carries_cors_headers() {
    let dir = tempfile::tempdir().unwrap();
    let svc = Service::embedded(dir.path()).await;

    let answer = preflight(&svc, APP, "POST", "/v1/tenants").await;
    answer.assert_problem(405, "method_not_allowed");
    assert_eq!(cors_headers(&answer), Vec::<String>::new(), "{answer:?}");
    let created = svc
        .send(
            svc.request(Method::POST, "/v1/tenants")
                .header("origin", APP)
                .json(&json!({"id": "acme", "name": "Acme"})),
        )
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(cors_headers(&created), Vec::<String>::new(), "{created:?}");
    assert_eq!(created.header("vary"), None, "{created:?}");
    // An unknown path is still not found, and a method no route serves still 405.
    svc.send(
        svc.anonymous(Method::OPTIONS, "/v1/nothing-here")
            .header("origin", APP),
    )
    .await
    .assert_problem(404, "not_found");
}
