//! MLflow 3's webhooks API (`/api/2.0/mlflow/webhooks`), plus model-ledger's delivery history.
//!
//! The MLflow client sends and reads events as protobuf enums, `{"entity": "MODEL_VERSION",
//! "action": "CREATED"}`; model-ledger stores event names (`model_version.created`), so this
//! module translates both ways: the name is `lower(entity) + "." + lower(action)`, which also
//! carries model-ledger's own events (`{"entity": "LEDGER.MODEL_VERSION", "action":
//! "STAGE_TRANSITIONED"}`). A plain name string is accepted as well, for curl users.
//! Answers list MLflow's events under `events` and every event name under `event_names`, since
//! an MLflow client cannot parse an entity it does not know (a webhook subscribed only to
//! `ledger.*` events is therefore readable over REST but not through the MLflow client).
//! Timestamps are MLflow's milliseconds; a webhook's secret is never part of any answer.
//!
//! Beyond MLflow: `GET /webhooks/{id}/deliveries` lists a webhook's deliveries (newest first,
//! with status, attempts, the last response code, latency and error) and `POST
//! /webhooks/{id}/deliveries/{delivery_id}/redeliver` queues one again.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::filter::decode_page_token;
use super::request::{MlflowError, MlflowRequest};
use super::{Reply, empty, next_token, ok, with_fallback};
use crate::api::AppState;
use crate::api::error::ApiError;
use crate::service::Paging;
use crate::service::webhooks::{WebhookChange, WebhookTestResult, WebhookView};
use crate::service::{DeliveryRecord, WebhookStatus};

/// `max_results` as MLflow's server applies it to webhooks.
const DEFAULT_PAGE: i64 = 100;
const MAX_PAGE: i64 = 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/webhooks",
            with_fallback(post(create_webhook).get(list_webhooks)),
        )
        .route(
            "/webhooks/{webhook_id}",
            with_fallback(
                get(get_webhook)
                    .patch(update_webhook)
                    .delete(delete_webhook),
            ),
        )
        .route(
            "/webhooks/{webhook_id}/test",
            with_fallback(post(test_webhook)),
        )
        .route(
            "/webhooks/{webhook_id}/deliveries",
            with_fallback(get(list_deliveries)),
        )
        .route(
            "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
            with_fallback(post(redeliver)),
        )
}

type IdPath = Result<Path<String>, PathRejection>;

fn path_id(path: IdPath) -> Result<String, MlflowError> {
    Ok(path.map_err(ApiError::from)?.0)
}

/// The wire form of an event name: `model_version.created` → MODEL_VERSION / CREATED.
pub fn event_json(name: &str) -> Value {
    let (entity, action) = name.rsplit_once('.').unwrap_or((name, ""));
    json!({"entity": entity.to_ascii_uppercase(), "action": action.to_ascii_uppercase()})
}

/// An event as a request carries it: `{"entity", "action"}` (either case) or a name string.
fn event_name(item: &Value) -> Result<String, MlflowError> {
    match item {
        Value::String(name) => Ok(name.trim().to_ascii_lowercase()),
        Value::Object(fields) => {
            let part = |key: &str| match fields.get(key) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_ascii_lowercase()),
                _ => Err(MlflowError::invalid(format!(
                    "Invalid webhook event {item}: '{key}' must be a non-empty string"
                ))),
            };
            Ok(format!("{}.{}", part("entity")?, part("action")?))
        }
        other => Err(MlflowError::invalid(format!(
            "Invalid webhook event {other}: expected {{\"entity\": ..., \"action\": ...}}"
        ))),
    }
}

fn text(params: &Map<String, Value>, key: &str) -> Result<Option<String>, MlflowError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(MlflowError::invalid(format!(
            "Invalid value for parameter '{key}': expected a string"
        ))),
    }
}

fn change(req: &MlflowRequest) -> Result<WebhookChange, MlflowError> {
    let p = &req.params.0;
    let events = match p.get("events") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(event_name)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => {
            return Err(MlflowError::invalid(
                "Invalid value for parameter 'events': expected a list of events",
            ));
        }
    };
    let status = match p.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_status(s)?),
        // Protobuf's JSON mapping allows an enum's number.
        Some(Value::Number(n)) => Some(match n.as_i64() {
            Some(1) => WebhookStatus::Active,
            Some(2) => WebhookStatus::Disabled,
            _ => return Err(MlflowError::invalid(format!("Invalid webhook status {n}"))),
        }),
        Some(_) => {
            return Err(MlflowError::invalid(
                "Invalid value for parameter 'status': expected ACTIVE or DISABLED",
            ));
        }
    };
    Ok(WebhookChange {
        name: text(p, "name")?,
        description: text(p, "description")?,
        url: text(p, "url")?,
        events,
        secret: text(p, "secret")?,
        status,
    })
}

fn parse_status(s: &str) -> Result<WebhookStatus, MlflowError> {
    WebhookStatus::parse(&s.trim().to_ascii_uppercase()).ok_or_else(|| {
        MlflowError::invalid(format!(
            "Invalid webhook status '{s}'. Valid statuses are: ACTIVE, DISABLED"
        ))
    })
}

fn webhook_json(w: &WebhookView) -> Value {
    let mut body = json!({
        "webhook_id": w.id,
        "name": w.name,
        "url": w.url,
        // MLflow clients parse `events` into their enums and fail on a value they do not know,
        // so it holds MLflow's events only; `event_names` (model-ledger's) holds every one.
        "events": w.events.iter().filter(|e| !e.starts_with("ledger.")).map(|e| event_json(e)).collect::<Vec<_>>(),
        "event_names": w.events,
        "status": w.status.as_str(),
        "creation_timestamp": w.created_at_us / 1000,
        "last_updated_timestamp": w.updated_at_us / 1000,
    });
    if let (Some(d), Some(map)) = (&w.description, body.as_object_mut()) {
        map.insert("description".into(), Value::String(d.clone()));
    }
    body
}

fn delivery_json(d: &DeliveryRecord) -> Value {
    json!({
        "delivery_id": d.id,
        "webhook_id": d.webhook_id,
        "event": event_json(&d.event_name),
        "event_name": d.event_name,
        "position": d.position,
        "checkpoint_id": d.checkpoint_id,
        "status": d.status.as_str().to_ascii_uppercase(),
        "attempts": d.attempts,
        "next_attempt_timestamp": d.next_attempt_at_us / 1000,
        "first_attempt_timestamp": d.first_attempt_at_us.map(|t| t / 1000),
        "last_response_code": d.last_response_code,
        "last_latency_ms": d.last_latency_ms,
        "last_error": d.last_error,
        "creation_timestamp": d.created_at_us / 1000,
        "last_updated_timestamp": d.updated_at_us / 1000,
    })
}

fn test_json(r: &WebhookTestResult) -> Value {
    let mut result = Map::new();
    result.insert("success".into(), Value::Bool(r.success));
    if let Some(s) = r.response_status {
        result.insert("response_status".into(), json!(s));
    }
    if let Some(b) = &r.response_body {
        result.insert("response_body".into(), Value::String(b.clone()));
    }
    if let Some(m) = &r.error_message {
        result.insert("error_message".into(), Value::String(m.clone()));
    }
    json!({ "result": result })
}

fn page(req: &MlflowRequest) -> Result<(i64, i64), MlflowError> {
    let limit = super::page_size(req, DEFAULT_PAGE, MAX_PAGE)?;
    let offset = match decode_page_token(text(&req.params.0, "page_token")?.as_deref())? {
        Paging::Offset(o) => o,
        Paging::After(_) => 0,
    };
    Ok((offset, limit))
}

async fn create_webhook(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    // MLflow's required fields, with its wording for a missing one.
    for key in ["name", "url"] {
        if text(&req.params.0, key)?.is_none() {
            req.params.required(key)?;
        }
    }
    let change = change(&req)?;
    let webhook = state.service.create_webhook(&req.caller, change).await?;
    ok(json!({ "webhook": webhook_json(&webhook) }))
}

async fn list_webhooks(State(state): State<AppState>, req: MlflowRequest) -> Reply {
    let (offset, limit) = page(&req)?;
    let (webhooks, next) = state
        .service
        .list_webhooks(&req.caller, offset, limit)
        .await?;
    let mut body = json!({ "webhooks": webhooks.iter().map(webhook_json).collect::<Vec<_>>() });
    if let (Some(token), Some(map)) = (next_token(next.map(Paging::Offset)), body.as_object_mut()) {
        map.insert("next_page_token".into(), Value::String(token));
    }
    ok(body)
}

async fn get_webhook(State(state): State<AppState>, path: IdPath, req: MlflowRequest) -> Reply {
    let id = path_id(path)?;
    let webhook = state.service.get_webhook(&req.caller, &id).await?;
    ok(json!({ "webhook": webhook_json(&webhook) }))
}

async fn update_webhook(State(state): State<AppState>, path: IdPath, req: MlflowRequest) -> Reply {
    let id = path_id(path)?;
    let change = change(&req)?;
    let webhook = state
        .service
        .update_webhook(&req.caller, &id, change)
        .await?;
    ok(json!({ "webhook": webhook_json(&webhook) }))
}

async fn delete_webhook(State(state): State<AppState>, path: IdPath, req: MlflowRequest) -> Reply {
    let id = path_id(path)?;
    state.service.delete_webhook(&req.caller, &id).await?;
    empty()
}

async fn test_webhook(State(state): State<AppState>, path: IdPath, req: MlflowRequest) -> Reply {
    let id = path_id(path)?;
    let event = match req.params.0.get("event") {
        None | Some(Value::Null) => None,
        Some(item) => Some(event_name(item)?),
    };
    let result = state.service.test_webhook(&req.caller, &id, event).await?;
    ok(test_json(&result))
}

async fn list_deliveries(State(state): State<AppState>, path: IdPath, req: MlflowRequest) -> Reply {
    let id = path_id(path)?;
    let (offset, limit) = page(&req)?;
    let (deliveries, next) = state
        .service
        .webhook_deliveries(&req.caller, &id, offset, limit)
        .await?;
    let mut body =
        json!({ "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>() });
    if let (Some(token), Some(map)) = (next_token(next.map(Paging::Offset)), body.as_object_mut()) {
        map.insert("next_page_token".into(), Value::String(token));
    }
    ok(body)
}

async fn redeliver(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: MlflowRequest,
) -> Reply {
    let Path((id, delivery_id)) = path.map_err(ApiError::from)?;
    let delivery = state
        .service
        .redeliver_webhook(&req.caller, &id, &delivery_id)
        .await?;
    ok(json!({ "delivery": delivery_json(&delivery) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_and_mlflows_enums_convert_both_ways() {
        for name in [
            "model_version.created",
            "model_version_alias.deleted",
            "ledger.model_version.stage_transitioned",
        ] {
            let wire = event_json(name);
            assert_eq!(event_name(&wire).expect("parses"), name);
        }
        assert_eq!(
            event_json("model_version_tag.set"),
            json!({"entity": "MODEL_VERSION_TAG", "action": "SET"})
        );
        assert_eq!(
            event_name(&json!({"entity": "model_version", "action": "created"})).expect("lower"),
            "model_version.created"
        );
        assert!(event_name(&json!({"entity": "MODEL_VERSION"})).is_err());
        assert!(event_name(&json!(7)).is_err());
    }
}
