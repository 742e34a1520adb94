//! The controller's HTTP API, used by the CLI. Every route requires the cluster's API token.

use crate::controller::Controller;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use myset_api::{ClusterStatus, ScaleRequest, SwitchoverRequest};
use myset_http::{error_response, require_token, Token};
use myset_runtime::Runtime;
use std::sync::Arc;

pub async fn serve<R: Runtime>(controller: Arc<Controller<R>>, listener: tokio::net::TcpListener) {
    let token = Token(controller_token(&controller));
    let app = Router::new()
        .route("/status", get(status::<R>))
        .route("/scale", put(scale::<R>))
        .route("/shutdown", post(shutdown::<R>))
        .route("/switchover", post(switchover::<R>))
        .route("/backups", post(backup::<R>))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(controller.clone());
    let stop = controller.stop.clone();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
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

/// Takes a base backup and answers with its manifest once it is stored and checked.
async fn backup<R: Runtime>(State(c): State<Arc<Controller<R>>>) -> Response {
    match c.take_backup().await {
        Ok(manifest) => Json(manifest).into_response(),
        Err(e) => error_response(StatusCode::CONFLICT, format!("{e:#}")),
    }
}
