//! MLflow's JSON shapes for registered models and model versions, built from the store's views.
//!
//! The MLflow client is strict about a few details (see the registry reference): `version` is a
//! string, timestamps are integer milliseconds, `status` must be `READY`, and unset fields are
//! left out rather than sent as null. Keeping the shapes here, apart from the handlers, makes
//! those details testable without a server.

use axum::http::{HeaderMap, header};
use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::ARTIFACTS_PATH;
use crate::service::{ModelView, VersionView};

/// `{"key", "value"}`, MLflow's tag message.
#[derive(Serialize)]
struct TagJson<'a> {
    key: &'a str,
    value: &'a str,
}

fn tags(tags: &BTreeMap<String, String>) -> Vec<TagJson<'_>> {
    tags.iter()
        .map(|(key, value)| TagJson { key, value })
        .collect()
}

/// A `ModelVersion` message, borrowing from the view. Typed rather than built as a
/// `serde_json::Value`: the hottest MLflow reads serialize this straight into the response,
/// without allocating a map per field first.
#[derive(Serialize)]
pub struct VersionJson<'a> {
    name: &'a str,
    version: String,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
    user_id: &'a str,
    current_stage: &'a str,
    // MLflow's server stores the proto default, so a version always carries a description.
    description: &'a str,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_id: Option<&'a str>,
    status: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagJson<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    aliases: &'a [String],
}

impl<'a> VersionJson<'a> {
    /// `with_aliases` is false inside a registered model's `latest_versions`, as MLflow sends it.
    pub fn new(v: &'a VersionView, with_aliases: bool) -> Self {
        VersionJson {
            name: &v.name,
            version: v.version.to_string(),
            creation_timestamp: v.created_at.timestamp_millis(),
            last_updated_timestamp: v.updated_at.timestamp_millis(),
            user_id: &v.created_by.subject,
            current_stage: &v.stage,
            description: &v.description,
            source: &v.source,
            run_id: v.run_id.as_deref(),
            status: v.status,
            tags: tags(&v.tags),
            aliases: if with_aliases { &v.aliases } else { &[] },
        }
    }
}

#[derive(Serialize)]
struct AliasJson<'a> {
    alias: &'a str,
    version: String,
}

/// A `RegisteredModel` message, borrowing from the views (see [`VersionJson`]).
#[derive(Serialize)]
pub struct RegisteredModelJson<'a> {
    name: &'a str,
    creation_timestamp: i64,
    last_updated_timestamp: i64,
    user_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    latest_versions: Vec<VersionJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<TagJson<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    aliases: Vec<AliasJson<'a>>,
}

impl<'a> RegisteredModelJson<'a> {
    /// `latest` is the model's newest version per stage.
    pub fn new(m: &'a ModelView, latest: &'a [VersionView]) -> Self {
        RegisteredModelJson {
            name: &m.name,
            creation_timestamp: m.created_at.timestamp_millis(),
            last_updated_timestamp: m.updated_at.timestamp_millis(),
            user_id: &m.created_by.subject,
            description: &m.description,
            latest_versions: latest.iter().map(|v| VersionJson::new(v, false)).collect(),
            tags: tags(&m.tags),
            aliases: m
                .aliases
                .iter()
                .map(|(alias, version)| AliasJson {
                    alias,
                    version: version.to_string(),
                })
                .collect(),
        }
    }
}

/// `{"model_version": …}`: the get-version and get-by-alias answers.
#[derive(Serialize)]
pub struct ModelVersionReply<'a> {
    pub model_version: VersionJson<'a>,
}

/// `{"registered_model": …}`: the get-model answer.
#[derive(Serialize)]
pub struct RegisteredModelReply<'a> {
    pub registered_model: RegisteredModelJson<'a>,
}

/// `{"model_versions": […]}`: the get-latest-versions answer.
#[derive(Serialize)]
pub struct ModelVersionsReply<'a> {
    pub model_versions: Vec<VersionJson<'a>>,
}

/// A `ModelVersion` message as a JSON value (for answers that embed it in a larger one).
pub fn model_version(v: &VersionView) -> Value {
    serde_json::to_value(VersionJson::new(v, true)).unwrap_or_default()
}

/// A `RegisteredModel` message as a JSON value; `latest` is its newest version per stage.
pub fn registered_model(m: &ModelView, latest: &[VersionView]) -> Value {
    serde_json::to_value(RegisteredModelJson::new(m, latest)).unwrap_or_default()
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        // A proxy may send a list; the first entry is the client-facing one.
        .and_then(|v| v.split(',').next())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The first element of an RFC 7239 `Forwarded` header: its `proto` and `host` parameters.
fn forwarded_pair(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let Some(first) = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
    else {
        return (None, None);
    };
    let mut proto = None;
    let mut host = None;
    for pair in first.split(';') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"').to_string();
        match key.trim().to_ascii_lowercase().as_str() {
            "proto" => proto = Some(value),
            "host" => host = Some(value),
            _ => {}
        }
    }
    (proto, host)
}

/// `scheme://host` as the client reached this server: from `Forwarded`, else
/// `X-Forwarded-Proto`/`-Host`, else `Host`. The HTTP edge ([`crate::api`]) removes the
/// forwarding headers from every request whose peer is not a `--trusted-proxy`, so what is left
/// here came from a proxy the operator named. Only host-like characters are accepted, so even a
/// proxy passing a forged value through cannot inject a path or another URL into the answer.
pub fn public_base_url(headers: &HeaderMap) -> String {
    let (fwd_proto, fwd_host) = forwarded_pair(headers);
    let proto = fwd_proto.or_else(|| header_text(headers, "x-forwarded-proto").map(str::to_string));
    let scheme = match proto {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    let host_like = |h: &str| {
        !h.is_empty()
            && h.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_')
            })
    };
    let host = fwd_host
        .or_else(|| header_text(headers, "x-forwarded-host").map(str::to_string))
        .or_else(|| header_text(headers, header::HOST.as_str()).map(str::to_string))
        .filter(|h| host_like(h))
        .unwrap_or_else(|| "localhost".to_string());
    format!("{scheme}://{host}")
}

/// Where the client downloads a version's files: from this server's artifact proxy when
/// model-ledger stores them, otherwise from the source as registered (as MLflow returns it).
pub fn download_uri(v: &VersionView, base_url: &str) -> String {
    if v.artifact.is_some() {
        format!("{base_url}{ARTIFACTS_PATH}/{}", artifact_path(v))
    } else {
        v.source.clone()
    }
}

/// The path of a stored version's files below the artifact proxy root. It uses the model's id,
/// not its name, so it survives renames and needs no escaping.
pub fn artifact_path(v: &VersionView) -> String {
    format!("models/{}/{}", v.model_id, v.version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Principal;
    use serde_json::json;

    fn version() -> VersionView {
        let t = chrono::DateTime::from_timestamp_millis(1_700_000_000_123).unwrap_or_default();
        VersionView {
            model_id: "0190".into(),
            name: "churn".into(),
            version: 3,
            source: "s3://b/churn".into(),
            run_id: None,
            description: String::new(),
            stage: "Staging".into(),
            status: "READY",
            tags: [("k".to_string(), "v".to_string())].into(),
            metrics: Default::default(),
            signature: None,
            input_example: None,
            artifact: None,
            artifact_verified: false,
            verification: Value::Null,
            aliases: vec!["champion".into()],
            created_at: t,
            updated_at: t,
            created_by: Principal {
                subject: "ana".into(),
                issuer: "dev".into(),
            },
        }
    }

    #[test]
    fn versions_carry_the_fields_the_client_needs() {
        let v = model_version(&version());
        assert_eq!(v["version"], "3");
        assert_eq!(v["status"], "READY");
        assert_eq!(v["creation_timestamp"], 1_700_000_000_123i64);
        assert_eq!(v["current_stage"], "Staging");
        assert_eq!(v["tags"], json!([{ "key": "k", "value": "v" }]));
        assert_eq!(v["aliases"], json!(["champion"]));
        assert!(v.get("run_id").is_none());
    }

    #[test]
    fn download_uris_are_absolute_for_stored_artifacts() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "registry.local:8080".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        let base = public_base_url(&headers);
        assert_eq!(base, "https://registry.local:8080");
        let mut v = version();
        assert_eq!(download_uri(&v, &base), "s3://b/churn");
        v.artifact = Some(json!({}));
        assert_eq!(
            download_uri(&v, &base),
            "https://registry.local:8080/api/2.0/mlflow-artifacts/artifacts/models/0190/3"
        );
        headers.insert(
            header::FORWARDED,
            "for=10.0.0.1;proto=https;host=\"proxy.example\", for=10.0.0.2"
                .parse()
                .unwrap(),
        );
        assert_eq!(public_base_url(&headers), "https://proxy.example");
        headers.insert(header::FORWARDED, "host=evil/x".parse().unwrap());
        assert_eq!(public_base_url(&headers), "https://localhost");
        headers.remove(header::FORWARDED);
        headers.insert(header::HOST, "evil/x?".parse().unwrap());
        headers.remove("x-forwarded-proto");
        assert_eq!(public_base_url(&headers), "http://localhost");
    }
}
