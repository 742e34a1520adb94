//! The agent's HTTP API. Every route requires the cluster's API token.

use crate::probe;
use crate::state::{Shared, SpecError};
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use myset_api::{AgentStatus, InstanceSpec, Order, Phase};
use myset_http::{error_response, require_token, Token};
use std::sync::Arc;

/// Answers as soon as the agent does, without touching its server: peers use it to tell
/// whether the network path to this agent works.
pub const PING_PATH: &str = "/ping";

pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let token = Token(shared.secrets.api_token.as_str().into());
    let shared_tls = shared.tls.as_ref().map(|t| t.server.clone());
    let app = Router::new()
        .route(PING_PATH, get(ping))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .route("/spec", put(set_spec))
        .route("/clone", get(clone))
        .route(crate::same_host::COPY_INTO_PATH, post(copy_into))
        .route("/shutdown", post(shutdown))
        .route("/order", post(order))
        .route(myset_api::TLS_RELOAD_PATH, post(reload_tls))
        .route(myset_api::GALERA_POSITION_PATH, get(position_while_running))
        .route(myset_api::RESTART_PATH, post(restart))
        .route(myset_api::PRIMARY_BACK_PATH, post(primary_back))
        .route(myset_api::VARIABLES_PATH, post(variables))
        .route(myset_api::LIVE_SETTINGS_PATH, post(live_settings))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            note_controller,
        ))
        .layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(shared);
    let tls = shared_tls;
    if let Err(e) = myset_http::serve(listener, app, tls, std::future::pending()).await {
        tracing::error!("agent API stopped: {e}");
    }
}

async fn reload_tls(State(shared): State<Arc<Shared>>) -> Response {
    match crate::tls::reload(&shared).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// A position is read from a data dir no server uses: only an agent waiting for its spec
/// answers it.
async fn position_while_running() -> Response {
    error_response(
        StatusCode::CONFLICT,
        "this member's agent has its spec and runs its server: its Galera position is read only while it waits for a spec",
    )
}

/// Calls carrying the controller's term header prove the controller can reach this agent.
async fn note_controller(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let term = req
        .headers()
        .get(myset_api::CONTROLLER_TERM_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(term) = term {
        shared.controller_contact(term);
    }
    next.run(req).await
}

async fn order(State(shared): State<Arc<Shared>>, Json(order): Json<Order>) -> Response {
    use crate::orders::OrderError;
    match crate::orders::obey(&shared, order).await {
        Ok(result) => Json(result).into_response(),
        Err(e @ OrderError::StaleTerm { .. }) => {
            error_response(StatusCode::CONFLICT, e.to_string())
        }
        Err(e @ OrderError::WrongRole(..)) => error_response(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn stale(shared: &Shared, term: u64) -> Option<Response> {
    let current = shared.spec().term;
    (!myset_core::failover::accept_term(current, term)).then(|| {
        error_response(
            StatusCode::CONFLICT,
            format!("request of term {term} refused: this agent is at term {current}"),
        )
    })
}

/// Asks the supervisor for a clean restart of the server with the spec in force; answers at
/// once (the status shows the new pid once it runs, and `restarts` counts failed starts).
async fn restart(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<myset_api::ServerRestart>,
) -> Response {
    if let Some(refusal) = stale(&shared, req.term) {
        return refusal;
    }
    shared.request_restart();
    (StatusCode::ACCEPTED, Json(())).into_response()
}

/// A primary's agent says its server is back: a replica waiting to reconnect to it does so now.
async fn primary_back(
    State(shared): State<Arc<Shared>>,
    Json(hint): Json<myset_api::PrimaryBack>,
) -> Response {
    match crate::reconnect::on_hint(&shared, &hint).await {
        Ok(step) => {
            tracing::debug!(?step, primary = %hint.primary, "primary-back hint");
            Json(()).into_response()
        }
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// Which of the named variables the server knows, and which are dynamic.
async fn variables(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<myset_api::VariablesRequest>,
) -> Response {
    let described = async {
        let mut c = crate::role::admin(&shared).await?;
        let result = crate::settings::describe(&mut c, &req.names).await;
        c.disconnect().await;
        result
    };
    match described.await {
        Ok(infos) => Json(infos).into_response(),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

/// Sets dynamic variables now, all or none; answers with their values before.
async fn live_settings(
    State(shared): State<Arc<Shared>>,
    Json(req): Json<myset_api::LiveSettingsRequest>,
) -> Response {
    if let Some(refusal) = stale(&shared, req.term) {
        return refusal;
    }
    // In a task of its own: cut off half-way, some variables would be set and others not.
    let applied = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ops = shared.server_ops().await;
            crate::settings::apply_live(&shared, &req.settings).await
        })
        .await
    };
    match applied {
        Ok(Ok(before)) => Json(before).into_response(),
        Ok(Err(e)) => error_response(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}")),
    }
}

async fn ping() -> StatusCode {
    StatusCode::NO_CONTENT
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let p = probe::evaluate(&shared).await;
    verdict(p.live, p.reason)
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let p = probe::evaluate(&shared).await;
    verdict(p.ready, p.reason)
}

fn verdict(ok: bool, reason: Option<String>) -> Response {
    if ok {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            reason.unwrap_or_else(|| "not ok".into()),
        )
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Json<AgentStatus> {
    let p = probe::evaluate(&shared).await;
    let spec = shared.spec();
    let server = shared.server();
    Json(AgentStatus {
        ordinal: spec.ordinal,
        role: spec.role,
        term: spec.term,
        phase: server.phase,
        live: p.live,
        ready: p.ready,
        reason: p.reason,
        pid: server.pid,
        agent_pid: std::process::id(),
        gtid: p.gtid,
        replication: p.replication,
        read_only: p.read_only,
        restarts: server.restarts,
        primary_silent_ms: p.primary_silent_ms,
        semisync: p.semisync,
        fenced: shared.fencing().self_fenced,
        semisync_clients: p.semisync_clients,
        commits_waiting_since_ms: p.commits_waiting_since_ms,
        galera: p.galera,
        version: server.version,
        cloned_from: server.cloned_from,
        server_log: Some(shared.layout.server_log().display().to_string()),
    })
}

async fn set_spec(State(shared): State<Arc<Shared>>, Json(spec): Json<InstanceSpec>) -> Response {
    let current = shared.spec();
    if spec.ordinal != current.ordinal || spec.cluster != current.cluster {
        return error_response(
            StatusCode::CONFLICT,
            format!(
                "this agent runs {}-{}, not {}-{}",
                current.cluster, current.ordinal, spec.cluster, spec.ordinal
            ),
        );
    }
    // In a task of its own: a caller that gives up must not cut the change off between the
    // write to disk and the switch in memory.
    let stored = {
        let shared = shared.clone();
        tokio::spawn(async move { shared.set_spec(spec).await }).await
    };
    match stored {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err(e @ SpecError::StaleTerm { .. })) => {
            error_response(StatusCode::CONFLICT, e.to_string())
        }
        Ok(Err(e)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the spec failed: {e}"),
        ),
    }
}

async fn clone(State(shared): State<Arc<Shared>>) -> Response {
    if shared.server().phase != Phase::Running {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "this instance is not running",
        );
    }
    match crate::clone::serve(&shared) {
        Ok(stream) => Body::from_stream(stream).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

/// A same-host receiver's request to back up into its dir ([`crate::same_host`]): 409 when
/// this agent does not see the dir as the receiver prepared it (the receiver streams instead).
async fn copy_into(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<crate::same_host::CopyInto>,
) -> Response {
    use crate::clone::CopyIntoError;
    if shared.server().phase != Phase::Running {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "this instance is not running",
        );
    }
    match crate::clone::copy_into(&shared, request).await {
        Ok(()) => Json(()).into_response(),
        Err(e @ CopyIntoError::Refused(_)) => error_response(StatusCode::CONFLICT, e.to_string()),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn shutdown(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.stop.cancel();
    StatusCode::ACCEPTED
}

/// What the probe port reports on: nothing until the agent has a spec, then its state.
pub type ProbeTarget = Arc<std::sync::OnceLock<Arc<Shared>>>;

/// The kubelet's port: `GET /healthz` and `GET /readyz` without the token, answering 200 or
/// 503 with a bare verdict and no reason (anyone who reaches the Pod can call it), and
/// nothing else. The kubelet cannot present the token: probe headers are literal strings in
/// the Pod spec.
pub async fn serve_probes(target: ProbeTarget, listener: tokio::net::TcpListener) {
    let app = Router::new()
        .route("/healthz", get(pod_healthz))
        .route("/readyz", get(pod_readyz))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(target);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!("probe listener stopped: {e}");
    }
}

/// Liveness for the kubelet ([`probe::pod_live`]). An agent still waiting for its first spec
/// is live: it waits for the operator, and a restart would not bring the spec sooner.
async fn pod_healthz(State(target): State<ProbeTarget>) -> Response {
    let Some(shared) = target.get() else {
        return bare_verdict(true);
    };
    let server = shared.server();
    let server_live = server.phase == Phase::Running && probe::evaluate(shared).await.live;
    bare_verdict(probe::pod_live(
        &server.phase,
        server_live,
        server.progress_at.elapsed(),
    ))
}

/// Readiness, exactly as the authenticated `/readyz` decides it.
async fn pod_readyz(State(target): State<ProbeTarget>) -> Response {
    match target.get() {
        Some(shared) => bare_verdict(probe::evaluate(shared).await.ready),
        None => bare_verdict(false),
    }
}

fn bare_verdict(ok: bool) -> Response {
    if ok {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ok\n").into_response()
    }
}
