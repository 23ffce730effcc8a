//! Extractors that turn every malformed request into an [`ApiError`] problem instead of axum's
//! plain-text rejections, and that authenticate the caller (authorizing is the application's).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use idstream_app::{AppError, Principal};
use idstream_eventlog::Position;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

pub const POSITION_HEADER: &str = "x-idstream-position";
pub const MIN_POSITION_HEADER: &str = "x-idstream-min-position";
pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A JSON body whose every refusal is a problem, one code per kind of mistake:
///
/// - 415 `unsupported_media_type`: the body is not declared `application/json` (or `…+json`);
/// - 413 `payload_too_large`: the body is larger than the limit;
/// - 400 `malformed_json`: the body is not JSON (or could not be read whole);
/// - 422 `invalid_body`: well-formed JSON of the wrong shape, or a field breaking its format
///   (the domain's parsers run inside deserialisation, so a malformed id is found here).
///
/// The `detail` names the field (`roles[1]`) and the rule it breaks.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                detail: "the body must be JSON, with `Content-Type: application/json`".into(),
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BadRequest {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "payload_too_large",
                    detail: rejection.body_text(),
                }
            } else {
                ApiError::bad_request(
                    "malformed_json",
                    format!("the body could not be read: {}", rejection.body_text()),
                )
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], for a body that may be left out: no body at all (no `Content-Type`, no
/// bytes), or JSON `null`, is `T::default()`; a body that is there must be JSON of the right
/// shape.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let no_type = !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
        let empty_length = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_none_or(|v| v.as_bytes() == b"0");
        if no_type && empty_length {
            let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
                ApiError::bad_request(
                    "malformed_json",
                    format!("the body could not be read: {}", rejection.body_text()),
                )
            })?;
            if bytes.is_empty() {
                return Ok(ApiJsonOrEmpty(T::default()));
            }
            return Err(ApiError::BadRequest {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "unsupported_media_type",
                detail: "the body must be JSON, with `Content-Type: application/json`".into(),
            });
        }
        ApiJson::<Option<T>>::from_request(req, state)
            .await
            .map(|ApiJson(body)| ApiJsonOrEmpty(body.unwrap_or_default()))
    }
}

/// `application/json`, or any `application/…+json`, with any parameters.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.split_once('/') {
        Some((kind, subtype)) => {
            kind == "application" && (subtype == "json" || subtype.ends_with("+json"))
        }
        None => false,
    }
}

/// Deserialises a JSON body: [`ApiJson`]'s mistakes.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(objects_only::ObjectsOnly(&mut deserializer))
        .map_err(|error| json_error(&error.path().to_string(), error.into_inner()))?;
    deserializer.end().map_err(|error| json_error("", error))?;
    Ok(value)
}

fn json_error(path: &str, error: serde_json::Error) -> ApiError {
    // A number JSON allows but no field can hold (1e400) is a value out of range, not broken
    // syntax.
    let out_of_range = error.to_string().starts_with("number out of range");
    match error.classify() {
        serde_json::error::Category::Data => ApiError::invalid_body(located("body", path), error),
        _ if out_of_range => ApiError::invalid_body(located("body", path), error),
        _ => ApiError::bad_request("malformed_json", format!("the body is not JSON: {error}")),
    }
}

/// `body field `roles[1]``, or `body` for the whole.
fn located(place: &str, path: &str) -> String {
    if path.is_empty() || path == "." || path == "?" {
        place.to_owned()
    } else {
        format!("{place} field `{path}`")
    }
}

/// A path whose every refusal is 400 `invalid_path`, the detail naming the parameter and the
/// rule of its format ([`crate::openapi::formats::path_parameter`]).
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(path_rejection(parts, state, rejection).await),
        }
    }
}

async fn path_rejection<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    rejection: PathRejection,
) -> ApiError {
    if let Ok(raw) = RawPathParams::from_request_parts(parts, state).await {
        for (name, value) in raw.iter() {
            if let Some(rule) = crate::openapi::formats::path_parameter_rule(name, value) {
                return ApiError::bad_request(
                    "invalid_path",
                    format!("path parameter `{name}` ({value:?}): {rule}"),
                );
            }
        }
    }
    ApiError::bad_request("invalid_path", rejection.body_text())
}

/// A query string whose every refusal is 400 `invalid_query`, the detail naming the parameter
/// and what is wrong with it. Unknown parameters are refused (the query types deny them).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Deserialises a query string: [`ApiQuery`]'s mistakes.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        // The standard library's words for a number that is not one.
        let message = match message.as_str() {
            "invalid digit found in string" | "cannot parse integer from empty string" => {
                "must be a non-negative integer".to_owned()
            }
            "number too large to fit in target type" => "is too large".to_owned(),
            _ => message,
        };
        if path.is_empty() || path == "." || path == "?" {
            ApiError::invalid_query(format!("query: {message}"))
        } else {
            ApiError::invalid_query(format!("query parameter `{path}`: {message}"))
        }
    })
}

/// Who is calling, as the application sees it ([`idstream_app::Caller`]): authenticated here,
/// authorized by the application.
///
/// `Authorization: Bearer <credential>` where the credential is an access token (a JWT from
/// sign-in), an API key (`ids_…`), or the operator token from configuration (a system actor,
/// compared in constant time). No credential makes an anonymous caller, a credential that is not
/// valid a refused one: each operation of the application decides what such a caller may do (the
/// operations open to anyone, such as sign-in, ignore it; every other answers 401 with no hint of
/// why). The caller also carries the client's address and `User-Agent` (see [`crate::client`]),
/// the correlation id and the `Idempotency-Key`.
pub struct Caller(pub idstream_app::Caller);

impl std::ops::Deref for Caller {
    type Target = idstream_app::Caller;

    fn deref(&self) -> &idstream_app::Caller {
        &self.0
    }
}

/// The bearer credential of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let min = MinPosition::from_request_parts(parts, state).await?;
        let principal = match bearer(parts) {
            None => Principal::Anonymous,
            Some(presented) => match &state.admin_token {
                Some(admin) if admin.matches(presented) => Principal::Operator,
                _ => {
                    // A consistency token covers who the caller is, too (a second factor just
                    // set up, a tenant setting just changed, a session just started): honour it
                    // first. (The handler honours it again, for the metric; by then it is
                    // reached.)
                    if let Some(min) = min.0 {
                        state.app.operations.wait_for_token(min).await?;
                    }
                    match state.app.identity.authenticate(presented).await {
                        Ok(auth) => Principal::User(auth),
                        Err(AppError::Unauthenticated) => Principal::Refused,
                        Err(other) => return Err(ApiError::App(other)),
                    }
                }
            },
        };
        let idempotency_key = match parts.headers.get(IDEMPOTENCY_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::App(AppError::InvalidIdempotencyKey))?,
            ),
        };
        let mut caller = idstream_app::Caller::new(
            principal,
            correlation_id(parts),
            idempotency_key,
            crate::client::client(parts, state),
        )?;
        // A dry run (see `crate::dry_run`): the command is decided, not carried out.
        if let Some(dry_run) = parts
            .extensions
            .get::<std::sync::Arc<idstream_app::DryRun>>()
        {
            caller = caller.with_dry_run(dry_run.clone());
        }
        Ok(Caller(caller))
    }
}

/// The request's correlation id: the client's `X-Correlation-Id` if it is sane, else a new ULID.
pub fn correlation_id(parts: &Parts) -> String {
    parts
        .headers
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| ulid::Ulid::new().to_string())
}

/// A query's consistency token: `X-Idstream-Min-Position` or `?min_position=`.
pub struct MinPosition(pub Option<Position>);

impl<S: Send + Sync> FromRequestParts<S> for MinPosition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let invalid = || {
            ApiError::bad_request(
                "invalid_min_position",
                "min_position must be a non-negative integer",
            )
        };
        if let Some(value) = parts.headers.get(MIN_POSITION_HEADER) {
            let value = value.to_str().map_err(|_| invalid())?;
            return value
                .trim()
                .parse()
                .map(|p| MinPosition(Some(p)))
                .map_err(|_| invalid());
        }
        let query = parts.uri.query().unwrap_or("");
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("min_position=") {
                return value
                    .parse()
                    .map(|p| MinPosition(Some(p)))
                    .map_err(|_| invalid());
            }
        }
        Ok(MinPosition(None))
    }
}

/// Reads every struct from a JSON object only. serde's derived structs also take an array of
/// their fields in order (`["acme", "Acme"]` for `{"id": "acme", "name": "Acme"}`), which the
/// document does not declare and no client means; through this, such a body is of the wrong
/// shape (422 `invalid_body`), at any depth.
mod objects_only {
    use std::fmt;

    use serde::de::{
        DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
    };

    pub struct ObjectsOnly<D>(pub D);

    macro_rules! forward {
        ($($method:ident),*) => {$(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method(Wrap(visitor))
            }
        )*};
    }

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
        type Error = D::Error;

        forward!(
            deserialize_any,
            deserialize_bool,
            deserialize_i8,
            deserialize_i16,
            deserialize_i32,
            deserialize_i64,
            deserialize_i128,
            deserialize_u8,
            deserialize_u16,
            deserialize_u32,
            deserialize_u64,
            deserialize_u128,
            deserialize_f32,
            deserialize_f64,
            deserialize_char,
            deserialize_str,
            deserialize_string,
            deserialize_bytes,
            deserialize_byte_buf,
            deserialize_option,
            deserialize_unit,
            deserialize_seq,
            deserialize_map,
            deserialize_identifier,
            deserialize_ignored_any
        );

        fn deserialize_unit_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_unit_struct(name, Wrap(visitor))
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_newtype_struct(name, Wrap(visitor))
        }

        fn deserialize_tuple<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple(len, Wrap(visitor))
        }

        fn deserialize_tuple_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
        }

        /// The point of it all: a struct is a map.
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_map(Wrap(visitor))
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            name: &'static str,
            variants: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_enum(name, variants, Wrap(visitor))
        }

        fn is_human_readable(&self) -> bool {
            self.0.is_human_readable()
        }
    }

    struct Wrap<V>(V);

    macro_rules! visit {
        ($($method:ident($ty:ty)),*) => {$(
            fn $method<E: serde::de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.0.$method(value)
            }
        )*};
    }

    impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
        type Value = V::Value;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.expecting(f)
        }

        visit!(
            visit_bool(bool),
            visit_i8(i8),
            visit_i16(i16),
            visit_i32(i32),
            visit_i64(i64),
            visit_i128(i128),
            visit_u8(u8),
            visit_u16(u16),
            visit_u32(u32),
            visit_u64(u64),
            visit_u128(u128),
            visit_f32(f32),
            visit_f64(f64),
            visit_char(char),
            visit_str(&str),
            visit_borrowed_str(&'de str),
            visit_string(String),
            visit_bytes(&[u8]),
            visit_borrowed_bytes(&'de [u8]),
            visit_byte_buf(Vec<u8>)
        );

        fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_none()
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
            self.0.visit_unit()
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.0.visit_some(ObjectsOnly(d))
        }

        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
            self.0.visit_newtype_struct(ObjectsOnly(d))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
            self.0.visit_seq(Seq(seq))
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
            self.0.visit_map(Map(map))
        }

        fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
            self.0.visit_enum(Enum(data))
        }
    }

    struct Seed<S>(S);

    impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
        type Value = S::Value;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
            self.0.deserialize(ObjectsOnly(d))
        }
    }

    struct Seq<A>(A);

    impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<A> {
        type Error = A::Error;

        fn next_element_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<Option<T::Value>, A::Error> {
            self.0.next_element_seed(Seed(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    struct Map<A>(A);

    impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<A> {
        type Error = A::Error;

        fn next_key_seed<K: DeserializeSeed<'de>>(
            &mut self,
            seed: K,
        ) -> Result<Option<K::Value>, A::Error> {
            self.0.next_key_seed(Seed(seed))
        }

        fn next_value_seed<T: DeserializeSeed<'de>>(
            &mut self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            self.0.next_value_seed(Seed(seed))
        }

        fn size_hint(&self) -> Option<usize> {
            self.0.size_hint()
        }
    }

    struct Enum<A>(A);

    impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Enum<A> {
        type Error = A::Error;
        type Variant = Variant<A::Variant>;

        fn variant_seed<S: DeserializeSeed<'de>>(
            self,
            seed: S,
        ) -> Result<(S::Value, Self::Variant), A::Error> {
            let (value, variant) = self.0.variant_seed(Seed(seed))?;
            Ok((value, Variant(variant)))
        }
    }

    struct Variant<A>(A);

    impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<A> {
        type Error = A::Error;

        fn unit_variant(self) -> Result<(), A::Error> {
            self.0.unit_variant()
        }

        fn newtype_variant_seed<T: DeserializeSeed<'de>>(
            self,
            seed: T,
        ) -> Result<T::Value, A::Error> {
            self.0.newtype_variant_seed(Seed(seed))
        }

        fn tuple_variant<V: Visitor<'de>>(
            self,
            len: usize,
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            self.0.tuple_variant(len, Wrap(visitor))
        }

        fn struct_variant<V: Visitor<'de>>(
            self,
            fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, A::Error> {
            self.0.struct_variant(fields, Wrap(visitor))
        }
    }

    #[cfg(test)]
    mod tests {
        use serde::Deserialize;

        use super::ObjectsOnly;

        #[derive(Debug, Deserialize, PartialEq)]
        struct Inner {
            a: u32,
        }

        #[derive(Debug, Deserialize, PartialEq)]
        struct Outer {
            inner: Inner,
            #[serde(default)]
            list: Vec<Inner>,
            maybe: Option<Inner>,
        }

        fn parse(text: &str) -> Result<Outer, serde_json::Error> {
            Outer::deserialize(ObjectsOnly(&mut serde_json::Deserializer::from_str(text)))
        }

        #[test]
        fn structs_are_read_from_objects_only_at_every_depth() {
            let read = parse(r#"{"inner": {"a": 1}, "list": [{"a": 2}], "maybe": {"a": 3}}"#);
            assert_eq!(
                read.unwrap(),
                Outer {
                    inner: Inner { a: 1 },
                    list: vec![Inner { a: 2 }],
                    maybe: Some(Inner { a: 3 }),
                }
            );
            for text in [
                r#"[{"a": 1}, [], null]"#,
                r#"{"inner": [1], "maybe": null}"#,
                r#"{"inner": {"a": 1}, "list": [[2]], "maybe": null}"#,
                r#"{"inner": {"a": 1}, "maybe": [3]}"#,
            ] {
                let error = parse(text).unwrap_err();
                assert_eq!(
                    error.classify(),
                    serde_json::error::Category::Data,
                    "{text}"
                );
            }
        }
    }
}
