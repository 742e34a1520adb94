//! The controller's HTTP API, used by the CLI. Every route requires the cluster's API token.

use crate::controller::Controller;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use myset_api::{ClusterStatus, ConfigSetRequest, ScaleRequest, ServerSettings, SwitchoverRequest};
use myset_http::{error_response, require_any_token, require_token, Token, Tokens};
use myset_runtime::Runtime;
use std::sync::Arc;

pub async fn serve<R: Runtime>(controller: Arc<Controller<R>>, listener: tokio::net::TcpListener) {
    let token = Token(controller_token(&controller));
    // /metrics also takes the read-only metrics token, so a scraper needs no token that can
    // change the cluster.
    let readers = Tokens(
        std::iter::once(token.0.clone())
            .chain(controller.metrics_token.get().cloned())
            .collect(),
    );
    let metrics = Router::new()
        .route(myset_api::METRICS_PATH, get(metrics::<R>))
        .layer(axum::middleware::from_fn_with_state(
            readers,
            require_any_token,
        ));
    let app = Router::new()
        .route("/status", get(status::<R>))
        .route("/scale", put(scale::<R>))
        .route("/shutdown", post(shutdown::<R>))
        .route("/switchover", post(switchover::<R>))
        .route("/backups", post(backup::<R>))
        .route(myset_api::TLS_ROTATE_PATH, post(rotate_certificates::<R>))
        .route("/config", get(config::<R>).post(set_config::<R>))
        .route("/restart", post(restart::<R>))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .merge(metrics)
        .with_state(controller.clone());
    let stop = controller.stop.clone();
    let tls = controller.api_tls();
    if let Err(e) =
        myset_http::serve(listener, app, tls, async move { stop.cancelled().await }).await
    {
        tracing::error!("controller API stopped: {e}");
    }
}

fn controller_token<R: Runtime>(c: &Controller<R>) -> Arc<str> {
    c.api_token().into()
}

async fn status<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Json<ClusterStatus> {
    Json(c.status())
}

/// The metrics in the format the scraper accepts (OpenMetrics for Prometheus).
async fn metrics<R: Runtime>(
    State(c): State<Arc<Controller<R>>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let accept = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    let format = crate::metrics::Format::negotiate(accept);
    (
        [(axum::http::header::CONTENT_TYPE, format.content_type())],
        c.metrics_text(format),
    )
        .into_response()
}

async fn scale<R: Runtime>(
    State(c): State<Arc<Controller<R>>>,
    Json(req): Json<ScaleRequest>,
) -> Response {
    if req.replicas == 0 {
        return error_response(StatusCode::BAD_REQUEST, "replicas must be at least 1");
    }
    match c.request_scale(req.replicas, req.delete_data).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

async fn shutdown<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> StatusCode {
    c.request_stop();
    StatusCode::ACCEPTED
}

async fn switchover<R: Runtime>(
    State(c): State<Arc<Controller<R>>>,
    Json(req): Json<SwitchoverRequest>,
) -> Response {
    match c.switchover(req.to).await {
        Ok(_) => Json(c.status()).into_response(),
        Err(e) => error_response(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

/// Renews every certificate now and has the members take them up.
async fn rotate_certificates<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Response {
    match c.rotate_certificates(true).await {
        Ok(rotation) => Json(rotation).into_response(),
        Err(e) => error_response(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

/// Takes a base backup and answers with its manifest once it is stored and checked.
async fn backup<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Response {
    match c.take_backup().await {
        Ok(manifest) => Json(manifest).into_response(),
        Err(e) => error_response(StatusCode::CONFLICT, format!("{e:#}")),
    }
}

/// The user's server settings in the record.
async fn config<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Json<ServerSettings> {
    Json(c.state().settings)
}

/// Changes server settings; answers once every server runs them (a rolling restart for
/// static ones), or with the one-line reason nothing changed.
async fn set_config<R: Runtime>(
    State(c): State<Arc<Controller<R>>>,
    Json(req): Json<ConfigSetRequest>,
) -> Response {
    let assignments = match myset_core::settings::check_assignments(&req.assignments) {
        Ok(a) => a,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // In a task of its own: a client that gives up must not cut a rolling restart off
    // half-way, with a server out of the endpoints.
    let task = tokio::spawn(async move { c.set_config(req.role, assignments).await });
    rolling_answer(task.await)
}

/// Restarts every server, one at a time, with a switchover before the primary's turn.
async fn restart<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Response {
    let task = tokio::spawn(async move { c.rolling_restart().await });
    rolling_answer(task.await)
}

fn rolling_answer(
    joined: Result<anyhow::Result<myset_api::RollingOutcome>, tokio::task::JoinError>,
) -> Response {
    match joined {
        Ok(Ok(outcome)) => Json(outcome).into_response(),
        Ok(Err(e)) => error_response(StatusCode::CONFLICT, format!("{e:#}")),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}
