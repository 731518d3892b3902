//! How MLflow requests arrive and how their failures leave: parameters from a query string
//! (GET) or a JSON body (everything else, DELETE included), and the one translation of
//! [`ApiError`] into MLflow's error codes and HTTP statuses.
//!
//! Parameters are read as MLflow's server reads them: numbers may arrive as strings, repeated
//! query keys form lists, a double-encoded JSON body is accepted, and an empty required value
//! counts as missing. Leniency stops at the JSON type, though: a number, boolean, object or
//! array where MLflow's protos declare a string is refused with INVALID_PARAMETER_VALUE, as
//! MLflow's `_assert_string` and protobuf's `ParseDict` refuse it, instead of being coerced
//! into a model named `12345` or `true` ([`Params::check_types`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::filter::SearchError;
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::domain::DomainError;
use crate::domain::names::NameError;
use crate::service::StoreError;
use crate::service::{Caller, Missing, ServiceError};

/// An error answered in MLflow's vocabulary. Every MLflow handler returns this, so the mapping
/// in [`MlflowError::into_response`] is the only place MLflow statuses are decided.
#[derive(Debug)]
pub struct MlflowError(pub ApiError);

impl MlflowError {
    pub fn invalid(message: impl Into<String>) -> Self {
        MlflowError(ApiError::invalid(message))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        MlflowError(ApiError::not_found(message))
    }

    pub fn endpoint_not_found(message: impl Into<String>) -> Self {
        MlflowError(ApiError::endpoint_not_found(message))
    }
}

/// MLflow's status for each error code (`mlflow/exceptions.py`). The native API answers a
/// duplicate with 409; MLflow's clients expect 400, and they retry 5xx for minutes, so only a
/// real server fault may stay 5xx.
fn to_mlflow(e: ApiError) -> ApiError {
    let (status, code) = match e.code {
        "RESOURCE_ALREADY_EXISTS" | "INVALID_PARAMETER_VALUE" => (StatusCode::BAD_REQUEST, e.code),
        "MALFORMED_REQUEST" => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
        // The documented answer to an oversized body on every API; MLflow's clients do not
        // retry a 413, and a 400 would tell the caller its JSON was wrong.
        "REQUEST_TOO_LARGE" => (StatusCode::PAYLOAD_TOO_LARGE, e.code),
        "REQUEST_TIMEOUT" => (StatusCode::REQUEST_TIMEOUT, e.code),
        "RESOURCE_DOES_NOT_EXIST" => (StatusCode::NOT_FOUND, e.code),
        "ENDPOINT_NOT_FOUND" if e.status == StatusCode::METHOD_NOT_ALLOWED => (e.status, e.code),
        "ENDPOINT_NOT_FOUND" => (StatusCode::NOT_FOUND, e.code),
        "PERMISSION_DENIED" => (StatusCode::FORBIDDEN, e.code),
        "UNAUTHENTICATED" => (StatusCode::UNAUTHORIZED, e.code),
        "CONFLICT" | "PRECONDITION_FAILED" | "IDEMPOTENCY_KEY_REUSED" => {
            (StatusCode::CONFLICT, "RESOURCE_CONFLICT")
        }
        "TEMPORARILY_UNAVAILABLE" => (StatusCode::SERVICE_UNAVAILABLE, e.code),
        // The authenticator has finer codes (expired, bad signature, …); MLflow has one.
        _ if e.status == StatusCode::UNAUTHORIZED => (e.status, "UNAUTHENTICATED"),
        _ if e.status == StatusCode::SERVICE_UNAVAILABLE => (e.status, "TEMPORARILY_UNAVAILABLE"),
        _ if e.status.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
        // Any other client error keeps its status under MLflow's generic code.
        _ => (e.status, "BAD_REQUEST"),
    };
    ApiError {
        status,
        code,
        message: e.message,
        details: e.details,
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        to_mlflow(self.0).into_response()
    }
}

impl From<ApiError> for MlflowError {
    fn from(e: ApiError) -> Self {
        MlflowError(e)
    }
}

impl From<ServiceError> for MlflowError {
    fn from(e: ServiceError) -> Self {
        match e {
            // MLflow clients match on MLflow's sentences.
            ServiceError::NotFound(Missing::Model { name }) => {
                MlflowError::not_found(format!("Registered Model with name={name} not found"))
            }
            ServiceError::NotFound(Missing::Version { name, version }) => MlflowError::not_found(
                format!("Model Version (name={name}, version={version}) not found"),
            ),
            e @ ServiceError::NotFound(Missing::Webhook { .. } | Missing::Delivery { .. }) => {
                MlflowError::not_found(e.to_string())
            }
            other => MlflowError(other.into()),
        }
    }
}

impl From<StoreError> for MlflowError {
    fn from(e: StoreError) -> Self {
        MlflowError(e.into())
    }
}

impl From<DomainError> for MlflowError {
    fn from(e: DomainError) -> Self {
        MlflowError(e.into())
    }
}

impl From<NameError> for MlflowError {
    fn from(e: NameError) -> Self {
        MlflowError(e.into())
    }
}

impl From<SearchError> for MlflowError {
    fn from(e: SearchError) -> Self {
        MlflowError::invalid(e.0)
    }
}

/// Fields that MLflow's protos declare `repeated`: on a GET they arrive as repeated keys.
const REPEATED: &[&str] = &["order_by", "stages"];

/// An authenticated MLflow request: who calls, its headers, and its parameters.
pub struct MlflowRequest {
    pub caller: Caller,
    pub headers: HeaderMap,
    pub params: Params,
}

impl FromRequest<AppState> for MlflowRequest {
    type Rejection = MlflowError;

    async fn from_request(mut req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let caller = state.auth.authenticate(authorization).await?;
        // Moved out rather than copied (the body extractor below reads only the body and the
        // size limit in the extensions): a copy of the map cost several allocations a request.
        let headers = std::mem::take(req.headers_mut());
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(ApiError::from)?;
        let body_empty = body.iter().all(u8::is_ascii_whitespace);
        let params = if method == Method::GET && !query.is_empty() {
            Params::from_query(&query)
        } else if body_empty {
            // A bodiless request may still carry its parameters in the query string.
            Params::from_query(&query)
        } else {
            if let Some(ct) = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
            {
                let ct = ct.to_ascii_lowercase();
                if !ct.starts_with("application/json") && !ct.contains("+json") {
                    return Err(MlflowError::invalid(
                        "Bad Request. Content-Type must be one of ['application/json'].",
                    ));
                }
            }
            let params = Params::from_json(&body)?;
            params.check_types()?;
            params
        };
        Ok(MlflowRequest {
            caller,
            headers,
            params,
        })
    }
}

/// What MLflow's protos declare a request field to be, for the fields model-ledger reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `string`: only a JSON string.
    Text,
    /// `version` is a `string` on the wire (`"3"`); a JSON integer is also taken, since it
    /// cannot be misread, but not a fraction, a boolean or a structure.
    Version,
    /// `int64`: a JSON integer or a string of one (protobuf's JSON mapping allows both).
    Integer,
    /// `bool`: a JSON boolean, or `"true"`/`"false"` as a query string carries it.
    Bool,
    /// `repeated string`: a list of strings (a single string is taken as a list of one).
    TextList,
    /// `repeated RegisteredModelTag/ModelVersionTag`: a list of `{"key": string, "value": string}`.
    Tags,
}

/// Every request field the MLflow handlers read, with its wire type. A field missing here is
/// ignored, as MLflow ignores unknown fields.
const FIELDS: &[(&str, Kind)] = &[
    ("name", Kind::Text),
    ("new_name", Kind::Text),
    ("description", Kind::Text),
    ("source", Kind::Text),
    ("run_id", Kind::Text),
    ("run_link", Kind::Text),
    ("model_id", Kind::Text),
    ("key", Kind::Text),
    ("value", Kind::Text),
    ("stage", Kind::Text),
    ("comment", Kind::Text),
    ("alias", Kind::Text),
    ("filter", Kind::Text),
    ("page_token", Kind::Text),
    ("version", Kind::Version),
    ("max_results", Kind::Integer),
    ("archive_existing_versions", Kind::Bool),
    ("order_by", Kind::TextList),
    ("stages", Kind::TextList),
    ("tags", Kind::Tags),
];

fn wrong_type(key: &str, expected: &str, got: &Value) -> MlflowError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    MlflowError::invalid(format!(
        "Invalid value for parameter '{key}': expected {expected}, got {got}"
    ))
}

fn is_integer(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64()
}

/// A request's parameters as one JSON object.
#[derive(Debug, Clone, Default)]
pub struct Params(pub Map<String, Value>);

fn missing(key: &str) -> MlflowError {
    MlflowError::invalid(format!(
        "Missing value for required parameter '{key}'. See the API docs for more information about request parameters."
    ))
}

impl Params {
    pub fn from_query(query: &str) -> Self {
        let mut map = Map::new();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let k = k.into_owned();
            let v = Value::String(v.into_owned());
            if REPEATED.contains(&k.as_str()) {
                match map.entry(k).or_insert_with(|| Value::Array(Vec::new())) {
                    Value::Array(list) => list.push(v),
                    other => *other = Value::Array(vec![v]),
                }
            } else {
                map.insert(k, v);
            }
        }
        Params(map)
    }

    pub fn from_json(body: &[u8]) -> Result<Self, MlflowError> {
        let mut value: Value = serde_json::from_slice(body).map_err(|e| {
            MlflowError::invalid(format!("Malformed request: body is not valid JSON: {e}"))
        })?;
        // MLflow tolerates a JSON document sent as a JSON string.
        if let Value::String(inner) = &value {
            value = serde_json::from_str(inner).map_err(|e| {
                MlflowError::invalid(format!("Malformed request: body is not valid JSON: {e}"))
            })?;
        }
        match value {
            Value::Object(map) => Ok(Params(map)),
            Value::Null => Ok(Params::default()),
            _ => Err(MlflowError::invalid(
                "Malformed request: the body must be a JSON object",
            )),
        }
    }

    /// Refuses a field whose JSON type is not the one MLflow's protos give it ([`FIELDS`]).
    /// `null` is absence for every field. Called on JSON bodies; a query string only carries
    /// text, which each accessor parses.
    pub fn check_types(&self) -> Result<(), MlflowError> {
        for (key, kind) in FIELDS {
            let Some(value) = self.0.get(*key) else {
                continue;
            };
            let fits = match (kind, value) {
                (_, Value::Null) => true,
                (Kind::Text, v) => v.is_string(),
                (Kind::Version | Kind::Integer, Value::String(_)) => true,
                (Kind::Version | Kind::Integer, Value::Number(n)) => is_integer(n),
                (Kind::Version | Kind::Integer, _) => false,
                (Kind::Bool, v) => v.is_boolean() || v.is_string(),
                (Kind::TextList, Value::String(_)) => true,
                (Kind::TextList, Value::Array(items)) => items.iter().all(Value::is_string),
                (Kind::TextList, _) => false,
                (Kind::Tags, Value::Array(items)) => items.iter().all(|item| {
                    item.get("key").is_some_and(Value::is_string)
                        && item
                            .get("value")
                            .is_none_or(|v| v.is_string() || v.is_null())
                }),
                (Kind::Tags, _) => false,
            };
            if !fits {
                let expected = match kind {
                    Kind::Text => "a string",
                    Kind::Version => "a version number as a string",
                    Kind::Integer => "an integer",
                    Kind::Bool => "true or false",
                    Kind::TextList => "a list of strings",
                    Kind::Tags => "a list of {\"key\": string, \"value\": string} objects",
                };
                return Err(wrong_type(key, expected, value));
            }
        }
        Ok(())
    }

    fn scalar(&self, key: &str) -> Option<String> {
        match self.0.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// A required string; absent, null and `""` all count as missing, as in MLflow.
    pub fn required(&self, key: &str) -> Result<String, MlflowError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Err(missing(key)),
            Some(Value::Array(_) | Value::Object(_)) => Err(MlflowError::invalid(format!(
                "Invalid value for parameter '{key}': expected a string"
            ))),
            Some(_) => self
                .scalar(key)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| missing(key)),
        }
    }

    pub fn optional(&self, key: &str) -> Option<String> {
        self.scalar(key)
    }

    /// The `version` parameter: a positive integer, sent as a string by the client.
    pub fn version(&self) -> Result<u64, MlflowError> {
        let raw = self.required("version")?;
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| *v >= 1 && *v <= i64::MAX as u64)
            .ok_or_else(|| {
                MlflowError::invalid(format!(
                    "Parameter 'version' must be an integer, got '{raw}'."
                ))
            })
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, MlflowError> {
        match self.scalar(key) {
            None => Ok(None),
            Some(raw) => raw.trim().parse::<i64>().map(Some).map_err(|_| {
                MlflowError::invalid(format!(
                    "Invalid value \"{raw}\" for parameter '{key}' supplied."
                ))
            }),
        }
    }

    pub fn flag(&self, key: &str) -> Result<bool, MlflowError> {
        match self.scalar(key).as_deref() {
            None => Ok(false),
            Some(s) if s.eq_ignore_ascii_case("true") => Ok(true),
            Some(s) if s.eq_ignore_ascii_case("false") => Ok(false),
            Some(other) => Err(MlflowError::invalid(format!(
                "Invalid value \"{other}\" for parameter '{key}': expected true or false"
            ))),
        }
    }

    pub fn list(&self, key: &str) -> Result<Vec<String>, MlflowError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(MlflowError::invalid(format!(
                        "Invalid value for parameter '{key}': expected a list of strings"
                    ))),
                })
                .collect(),
            Some(_) => Err(MlflowError::invalid(format!(
                "Invalid value for parameter '{key}': expected a list of strings"
            ))),
        }
    }

    /// `tags` as MLflow sends them: `[{"key": …, "value": …}]`.
    pub fn tags(&self) -> Result<Vec<(String, String)>, MlflowError> {
        let bad = || {
            MlflowError::invalid(
                "Invalid value for parameter 'tags': expected a list of {\"key\", \"value\"} objects",
            )
        };
        match self.0.get("tags") {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let key = item.get("key").and_then(Value::as_str).ok_or_else(bad)?;
                    let value = match item.get("value") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Number(n)) => n.to_string(),
                        Some(Value::Bool(b)) => b.to_string(),
                        Some(_) => return Err(bad()),
                    };
                    Ok((key.to_string(), value))
                })
                .collect(),
            Some(_) => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_repeat_list_fields_and_keep_numbers_as_text() {
        let p =
            Params::from_query("name=m&order_by=name+ASC&order_by=version_number&max_results=5");
        assert_eq!(p.required("name").unwrap(), "m");
        assert_eq!(
            p.list("order_by").unwrap(),
            vec!["name ASC".to_string(), "version_number".to_string()]
        );
        assert_eq!(p.int("max_results").unwrap(), Some(5));
        assert!(p.int("name").is_err());
    }

    #[test]
    fn json_bodies_and_required_values() {
        let p = Params::from_json(br#"{"name": "", "version": 3, "flag": "true"}"#).unwrap();
        assert!(p.required("name").is_err());
        assert_eq!(p.version().unwrap(), 3);
        assert!(p.flag("flag").unwrap());
        let double = Params::from_json(br#""{\"name\": \"x\"}""#).unwrap();
        assert_eq!(double.required("name").unwrap(), "x");
        assert!(Params::from_json(b"[1]").is_err());
        assert!(Params::from_json(b"{").is_err());
        let bad_version = Params::from_json(br#"{"version": "abc"}"#).unwrap();
        assert!(bad_version.version().is_err());
    }

    #[test]
    fn wrong_json_types_are_refused_and_the_wire_format_is_not() {
        let check = |body: &str| Params::from_json(body.as_bytes()).unwrap().check_types();
        for bad in [
            r#"{"name": 12345}"#,
            r#"{"name": true}"#,
            r#"{"name": ["x"]}"#,
            r#"{"description": {}}"#,
            r#"{"version": 1.5}"#,
            r#"{"version": false}"#,
            r#"{"max_results": true}"#,
            r#"{"max_results": 2.5}"#,
            r#"{"archive_existing_versions": 1}"#,
            r#"{"order_by": [1]}"#,
            r#"{"tags": [{"key": "k", "value": 1}]}"#,
            r#"{"tags": [{"value": "v"}]}"#,
            r#"{"tags": {"key": "k"}}"#,
        ] {
            assert!(check(bad).is_err(), "{bad} accepted");
        }
        for good in [
            r#"{"name": "m", "version": "3", "max_results": "5"}"#,
            r#"{"version": 3, "max_results": 5, "archive_existing_versions": true}"#,
            r#"{"archive_existing_versions": "false", "order_by": "name", "stages": ["None"]}"#,
            r#"{"tags": [{"key": "k", "value": "v"}, {"key": "e"}], "description": null}"#,
            r#"{"unknown_field": 5, "runId": 7}"#,
        ] {
            assert!(check(good).is_ok(), "{good} refused");
        }
        let large = to_mlflow(ApiError::too_large());
        assert_eq!(
            (large.status, large.code),
            (StatusCode::PAYLOAD_TOO_LARGE, "REQUEST_TOO_LARGE")
        );
    }

    #[test]
    fn statuses_follow_mlflow() {
        let dup = to_mlflow(ApiError::new(
            StatusCode::CONFLICT,
            "RESOURCE_ALREADY_EXISTS",
            "x",
        ));
        assert_eq!(dup.status, StatusCode::BAD_REQUEST);
        let malformed = to_mlflow(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "x",
        ));
        assert_eq!(malformed.code, "INVALID_PARAMETER_VALUE");
        assert_eq!(to_mlflow(ApiError::internal()).status, 500);
        let expired = to_mlflow(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "TOKEN_EXPIRED",
            "x",
        ));
        assert_eq!(
            (expired.status, expired.code),
            (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED")
        );
    }
}
