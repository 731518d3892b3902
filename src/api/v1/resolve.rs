//! `GET /api/v1/resolve?uri=models:/NAME/REF`: the one version a `models:/` URI names — what
//! model servers ask on every load, answered from the service's read cache.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::api::extract::{CallerAuth, Q};
use crate::domain::uri::parse_model_uri;

pub fn routes() -> Router<AppState> {
    Router::new().route("/resolve", get(resolve))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveParams {
    uri: String,
}

#[utoipa::path(
    get,
    path = "/resolve",
    tag = "resolve",
    summary = "The version a models:/ URI names",
    responses(
        (status = 200, description = "success"),
        (status = "4XX", description = "a JSON error: `{\"error_code\", \"message\"}`"),
    ),
)]
async fn resolve(
    State(state): State<AppState>,
    CallerAuth(caller): CallerAuth,
    Q(params): Q<ResolveParams>,
) -> Result<Response, ApiError> {
    let uri = parse_model_uri(&params.uri)?;
    let view = state.service.resolve(&caller, &uri).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "'{}' does not resolve to a model version",
            params.uri
        ))
    })?;
    Ok(Json(&*view).into_response())
}
