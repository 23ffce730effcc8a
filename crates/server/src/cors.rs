//! Cross-origin requests (CORS) for browser front ends served from other origins.
//!
//! Off unless origins are configured (`cors_origins`): then no response carries a CORS header and
//! browsers keep pages of other origins from reading the API's answers, as they always did. With
//! an allow-list, a request whose `Origin` is on it is answered with that origin in
//! `Access-Control-Allow-Origin` (never `*`), the headers a front end needs to read exposed, and
//! its preflight (`OPTIONS` with `Access-Control-Request-Method`) answered here with the methods
//! and request headers the API takes. Credentials are off: no `Access-Control-Allow-Credentials`,
//! so a browser sends no cookies cross-origin; front ends send `Authorization: Bearer …`.
//!
//! tower-http's `CorsLayer` writes the headers, but only for requests from an allowed origin:
//! on its own it answers *every* `OPTIONS` request as a preflight (any origin, any path, with the
//! allowed methods listed), which would give a disallowed origin CORS headers and turn the
//! `405 method_not_allowed` of `OPTIONS` into a 200. Here a request from any other origin, and an
//! `OPTIONS` request that is no preflight, goes to the router untouched (with `Vary: Origin`, since
//! the answer depends on the origin).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONTENT_TYPE, ORIGIN, RETRY_AFTER, VARY,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::{Layer, ServiceExt};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::extract::{
    CORRELATION_HEADER, IDEMPOTENCY_HEADER, MIN_POSITION_HEADER, POSITION_HEADER,
};

/// How long a browser may cache a preflight's answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The methods of the API.
pub const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// The request headers a front end may send.
pub fn allowed_headers() -> [HeaderName; 5] {
    [
        AUTHORIZATION,
        CONTENT_TYPE,
        HeaderName::from_static(IDEMPOTENCY_HEADER),
        HeaderName::from_static(MIN_POSITION_HEADER),
        HeaderName::from_static(CORRELATION_HEADER),
    ]
}

/// The response headers a front end may read (besides the CORS-safelisted ones such as
/// `Content-Type`).
pub fn exposed_headers() -> [HeaderName; 4] {
    [
        HeaderName::from_static(POSITION_HEADER),
        RETRY_AFTER,
        HeaderName::from_static("idempotent-replayed"),
        HeaderName::from_static(CORRELATION_HEADER),
    ]
}

/// One allowed origin: `scheme://host[:port]` as a browser sends it in `Origin` (lower case, no
/// path, no default port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

/// Why an origin could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0:?} is not an origin: write http:// or https://, a host and an optional port, without a \
     path (such as https://app.example.com or http://localhost:5173)"
)]
pub struct InvalidOrigin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Origin {
    type Err = InvalidOrigin;

    fn from_str(text: &str) -> Result<Origin, InvalidOrigin> {
        let invalid = || InvalidOrigin(text.to_owned());
        let lower = text.trim().to_ascii_lowercase();
        let (scheme, rest) = lower.split_once("://").ok_or_else(invalid)?;
        let default_port = match scheme {
            "https" => "443",
            "http" => "80",
            _ => return Err(invalid()),
        };
        // A trailing slash is what people paste from an address bar; anything more is a path.
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty()
            || authority
                .chars()
                .any(|c| matches!(c, '/' | '?' | '#' | '@' | '*') || c.is_whitespace())
        {
            return Err(invalid());
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 address's own colons are inside its brackets.
            Some((host, port)) if !port.contains(']') => (host, Some(port)),
            _ => (authority, None),
        };
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if host.is_empty()
            || (!bracketed
                && !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(invalid());
        }
        let port = match port {
            None => None,
            Some(p) if p.parse::<u16>().is_ok_and(|n| n > 0) => {
                (p.trim_start_matches('0') != default_port).then(|| p.trim_start_matches('0'))
            }
            Some(_) => return Err(invalid()),
        };
        let origin = match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        };
        HeaderValue::from_str(&origin).map_err(|_| invalid())?;
        Ok(Origin(origin))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The origins whose pages may call the API. Empty (the default): CORS is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins(pub Vec<Origin>);

impl CorsOrigins {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.0
            .iter()
            .any(|allowed| allowed.0.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }
}

/// The CORS policy of a running server: the allow-list and the layer that writes the headers.
pub struct Cors {
    origins: CorsOrigins,
    layer: CorsLayer,
}

impl Cors {
    pub fn new(origins: CorsOrigins) -> Cors {
        let list = origins
            .0
            .iter()
            .map(|o| HeaderValue::from_str(o.as_str()).expect("checked when parsed"));
        let layer = CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods(ALLOWED_METHODS)
            .allow_headers(allowed_headers())
            .expose_headers(exposed_headers())
            .max_age(PREFLIGHT_MAX_AGE);
        Cors { origins, layer }
    }
}

/// The middleware: see the module's documentation.
pub async fn cors(State(cors): State<Arc<Cors>>, request: Request, next: Next) -> Response {
    let allowed = request
        .headers()
        .get(ORIGIN)
        .is_some_and(|origin| cors.origins.allows(origin));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if allowed && (preflight || request.method() != Method::OPTIONS) {
        return match cors.layer.layer(next).oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
    }
    let mut response = next.run(request).await.into_response();
    response
        .headers_mut()
        .append(VARY, HeaderValue::from_static("origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        for (given, read) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.com/", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://localhost:80", "http://localhost"),
            (
                "https://app.example.com:8443",
                "https://app.example.com:8443",
            ),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://[::1]", "http://[::1]"),
        ] {
            assert_eq!(given.parse::<Origin>().unwrap().as_str(), read, "{given}");
        }
        for bad in [
            "*",
            "null",
            "app.example.com",
            "ftp://app.example.com",
            "https://",
            "https://app.example.com/path",
            "https://app.example.com?x",
            "https://user@app.example.com",
            "https://*.example.com",
            "https://app.example.com:0",
            "https://app.example.com:99999",
            "https://app.example.com:port",
            "https://app example.com",
        ] {
            assert!(bad.parse::<Origin>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let origins = CorsOrigins(vec!["https://app.example.com".parse().unwrap()]);
        assert!(origins.allows(&HeaderValue::from_static("https://app.example.com")));
        assert!(!origins.allows(&HeaderValue::from_static("https://evil.example.com")));
        assert!(!origins.allows(&HeaderValue::from_static(
            "https://app.example.com.evil.test"
        )));
        assert!(!origins.allows(&HeaderValue::from_static("http://app.example.com")));
        assert!(!CorsOrigins::default().allows(&HeaderValue::from_static("null")));
    }
}
