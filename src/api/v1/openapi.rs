//! The OpenAPI 3 document of `/api/v1`, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /api/v1/openapi.json` (unauthenticated: it describes the API,
//! not the registry's contents).
//!
//! Every route in this folder's `routes()` functions must be listed here; a test reads the
//! route definitions from the sources and fails when the document is missing one, so the
//! document cannot silently fall behind the router.

use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;

use super::{
    aliases, artifacts, audit, event_stream, events, models, requests, resolve, signatures, stages,
    versions,
};
use crate::api::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "model-ledger native API",
        description = "Event-sourced, policy-gated ML model registry. Every write is an event; every request is authorized by the Cedar policies. Errors are JSON `{error_code, message}` with a stable code.",
    ),
    servers((url = "/api/v1")),
    paths(
        models::create_model,
        models::list_models,
        models::get_model,
        models::update_model,
        models::delete_model,
        models::set_model_tag,
        models::delete_model_tag,
        versions::create_version,
        versions::list_versions,
        versions::get_version,
        versions::update_version,
        versions::delete_version,
        versions::set_version_tag,
        versions::record_metrics,
        signatures::record_signature,
        versions::delete_version_tag,
        stages::transition_stage,
        stages::rollback_stage,
        requests::inbox,
        requests::create_request,
        requests::list_requests,
        requests::get_request,
        requests::approve_request,
        requests::reject_request,
        requests::cancel_request,
        requests::create_comment,
        requests::list_comments,
        requests::edit_comment,
        requests::delete_comment,
        aliases::set_alias,
        aliases::get_alias,
        aliases::delete_alias,
        resolve::resolve,
        events::history,
        events::events,
        event_stream::stream_events,
        artifacts::start_upload,
        artifacts::abort_upload,
        artifacts::upload_file,
        artifacts::commit_upload,
        artifacts::list_files,
        artifacts::download_file,
        artifacts::repair_file,
        artifacts::verify,
        audit::events,
        audit::model_state,
        audit::stages,
        audit::report,
        audit::checkpoint,
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every route uses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `(METHOD, path)` of every route the `routes()` functions in `src/api/v1/` register,
    /// read from the sources (axum's router cannot list its routes).
    fn registered_routes() -> BTreeSet<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api/v1");
        let mut routes = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("read src/api/v1") {
            let path = entry.expect("entry").path();
            if path.file_name().is_some_and(|n| n == "openapi.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let mut rest = text.as_str();
            while let Some(at) = rest.find(".route(") {
                rest = &rest[at + ".route(".len()..];
                // The arguments of this `.route(`, up to its matching parenthesis.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find_map(|(i, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        (depth == 0).then_some(i)
                    })
                    .unwrap_or(rest.len());
                let arguments = &rest[..end];
                let Some((literal, chain)) = arguments
                    .split_once('"')
                    .and_then(|(_, tail)| tail.split_once('"'))
                else {
                    continue;
                };
                let route = literal.replace("{*", "{");
                for method in ["get", "post", "put", "patch", "delete"] {
                    let call = format!("{method}(");
                    let called = chain.match_indices(&call).any(|(i, _)| {
                        !chain[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                    });
                    if called {
                        routes.insert((method.to_uppercase(), route.clone()));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn every_registered_route_is_in_the_document() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("document as JSON");
        let paths = doc["paths"].as_object().expect("paths");
        let registered = registered_routes();
        assert!(registered.len() >= 30, "found only {registered:?}");
        for (method, route) in &registered {
            let operation = paths.get(route).and_then(|p| p.get(method.to_lowercase()));
            assert!(
                operation.is_some(),
                "{method} {route} is routed but missing from /api/v1/openapi.json"
            );
        }
        let documented: usize = paths
            .values()
            .map(|p| p.as_object().map_or(0, |o| o.len()))
            .sum();
        assert_eq!(
            documented,
            registered.len(),
            "the document lists routes the router does not have"
        );
    }
}
