//! Request extractors whose failures are [`ApiError`]s, never axum's plain-text rejections.
//!
//! `JsonBody` reads the (size-limited) body and parses it, telling malformed JSON (400
//! MALFORMED_REQUEST) from JSON of the wrong shape (400 INVALID_PARAMETER_VALUE) and an oversize
//! body (413). `CallerAuth` authenticates the bearer token before any handler code runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use std::collections::BTreeMap;

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::domain::names::{ModelName, TagKey};
use crate::service::{Caller, IdempotencyRequest, RequestMeta};

/// A JSON body and the raw bytes it came from (for idempotency hashing).
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                format!("request body is not valid JSON: {e}"),
            ),
            Category::Data => ApiError::invalid(format!("invalid request body: {e}")),
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(ct) = &content_type
            && !ct.starts_with("application/json")
            && !ct.contains("+json")
        {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "INVALID_PARAMETER_VALUE",
                format!("expected Content-Type application/json, got '{ct}'"),
            ));
        }
        let raw = Bytes::from_request(req, state).await?;
        let value = parse_json(&raw)?;
        Ok(JsonBody { value, raw })
    }
}

/// The authenticated caller of this request.
pub struct CallerAuth(pub Caller);

impl FromRequestParts<AppState> for CallerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.auth.authenticate(header).await?;
        Ok(CallerAuth(caller))
    }
}

/// Request id (set by the request-id layer), correlation id and `If-Match`.
pub fn request_meta(headers: &HeaderMap) -> Result<RequestMeta, ApiError> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let if_match = match headers.get(axum::http::header::IF_MATCH) {
        None => None,
        Some(value) => {
            let raw = value.to_str().unwrap_or_default().trim();
            let raw = raw.strip_prefix("W/").unwrap_or(raw).trim_matches('"');
            Some(raw.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!(
                    "If-Match must be a model stream version (a number), got '{raw}'"
                ))
            })?)
        }
    };
    Ok(RequestMeta {
        request_id: text("x-request-id"),
        correlation_id: text("x-correlation-id"),
        if_match,
    })
}

/// The `Idempotency-Key` of a request, scoped to the caller and route, with the body's hash.
pub fn idempotency(
    headers: &HeaderMap,
    caller: &Caller,
    route: &str,
    body: &[u8],
) -> Result<Option<IdempotencyRequest>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::invalid("Idempotency-Key must be 1 to 255 visible ASCII characters")
        })?;
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    Ok(Some(IdempotencyRequest {
        scope: format!("{}|{}|{}", caller.actor.issuer, caller.actor.subject, route),
        key: key.to_string(),
        request_hash: hex::encode(hasher.finalize()),
    }))
}

/// `Path` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `Query` whose rejection is an [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Q<T>(pub T);

pub const DEFAULT_PAGE: i64 = 100;
pub const MAX_PAGE: i64 = 1000;

pub(crate) fn model_name(raw: String) -> Result<ModelName, ApiError> {
    Ok(ModelName::parse(raw)?)
}

pub(crate) fn version_number(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|v| *v >= 1 && *v <= i64::MAX as u64)
        .ok_or_else(|| {
            ApiError::invalid(format!("version must be a positive integer, got '{raw}'"))
        })
}

pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(l) => Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_PAGE}, got {l}"
        ))),
    }
}

pub(crate) fn tags(raw: BTreeMap<String, String>) -> Result<BTreeMap<TagKey, String>, ApiError> {
    raw.into_iter()
        .map(|(k, v)| Ok((TagKey::parse(k)?, v)))
        .collect()
}

pub(crate) fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

pub(crate) fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::invalid("cursor is not one this server issued"))
}

/// The route a request matched, as `METHOD /template` (e.g. `POST /api/v1/models/{name}`):
/// the scope of an idempotency key, taken from the router so no handler names its own path.
pub struct Route(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Route {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let template = parts
            .extensions
            .get::<MatchedPath>()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| parts.uri.path().to_string());
        Ok(Route(format!("{} {template}", parts.method)))
    }
}
