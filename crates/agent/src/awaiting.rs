//! Starting without a spec. On Kubernetes the Pod starts before the operator has anything to
//! tell its agent: the operator sends the spec with `PUT /spec` once the Pod runs. Until then
//! the agent serves its API (the token is required, as always), takes the first spec naming
//! its own cluster and ordinal, stores it durably, and then runs exactly as if it had found
//! that spec on disk at start.

use crate::layout::InstanceLayout;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use myset_api::InstanceSpec;
use myset_http::{error_response, require_token, Token};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, Mutex};
use tokio_util::sync::CancellationToken;

/// How long requests still in flight may take once the spec is stored.
const HANDOVER_GRACE: Duration = Duration::from_secs(5);

/// The cluster and ordinal an agent was started for, which every spec it takes must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub cluster: String,
    pub ordinal: u32,
}

impl Identity {
    /// Refuses a spec of another member: the wrong spec on a volume would make this agent
    /// impersonate another member.
    pub fn check(&self, spec: &InstanceSpec) -> Result<(), String> {
        if spec.cluster == self.cluster && spec.ordinal == self.ordinal {
            Ok(())
        } else {
            Err(format!(
                "this agent runs {}-{}, not {}-{}",
                self.cluster, self.ordinal, spec.cluster, spec.ordinal
            ))
        }
    }
}

struct Awaiting {
    identity: Identity,
    spec_file: PathBuf,
    /// Taken by the first spec stored; later ones are told to retry against the running agent.
    received: Mutex<Option<oneshot::Sender<InstanceSpec>>>,
    stop: CancellationToken,
}

/// Serves the API on `listener` until a spec for `identity` arrives, and returns it once it
/// is on disk; returns None when the agent is told to stop first (`stop`, or `POST
/// /shutdown`).
pub async fn await_spec(
    listener: tokio::net::TcpListener,
    layout: &InstanceLayout,
    identity: Identity,
    token: &str,
    stop: CancellationToken,
) -> anyhow::Result<Option<InstanceSpec>> {
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(Awaiting {
        identity,
        spec_file: layout.spec_file(),
        received: Mutex::new(Some(tx)),
        stop: stop.clone(),
    });
    let app = Router::new()
        .route(
            crate::http::PING_PATH,
            get(|| async { StatusCode::NO_CONTENT }),
        )
        .route("/healthz", get(|| async { (StatusCode::OK, "ok\n") }))
        .route("/readyz", get(no_spec_yet))
        .route("/status", get(no_spec_yet))
        .route("/clone", get(no_spec_yet))
        .route("/order", post(no_spec_yet))
        .route("/spec", put(set_spec))
        .route("/shutdown", post(shutdown))
        .layer(axum::middleware::from_fn_with_state(
            Token(token.into()),
            require_token,
        ))
        .with_state(state);
    let finished = CancellationToken::new();
    let until = finished.clone();
    let mut server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { until.cancelled().await })
            .await
    });
    tracing::info!("waiting for a spec (PUT /spec)");
    let spec = tokio::select! {
        r = rx => r.ok(),
        _ = stop.cancelled() => None,
    };
    finished.cancel();
    if tokio::time::timeout(HANDOVER_GRACE, &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    if let Some(spec) = &spec {
        tracing::info!(term = spec.term, role = %spec.role, "received a spec");
    }
    Ok(spec)
}

async fn no_spec_yet() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "this agent has no spec yet (PUT /spec)",
    )
}

async fn shutdown(State(state): State<Arc<Awaiting>>) -> StatusCode {
    state.stop.cancel();
    StatusCode::ACCEPTED
}

async fn set_spec(State(state): State<Arc<Awaiting>>, Json(spec): Json<InstanceSpec>) -> Response {
    // In a task of its own: a caller that gives up must not cut the change off between the
    // write to disk and the handover.
    match tokio::spawn(async move { state.store(spec).await }).await {
        Ok(Ok(())) => StatusCode::NO_CONTENT.into_response(),
        Ok(Err((status, message))) => error_response(status, message),
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the spec failed: {e}"),
        ),
    }
}

impl Awaiting {
    async fn store(&self, spec: InstanceSpec) -> Result<(), (StatusCode, String)> {
        let mut received = self.received.lock().await;
        if received.is_none() {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "a spec was just stored and the agent is starting; retry".into(),
            ));
        }
        self.identity
            .check(&spec)
            .map_err(|e| (StatusCode::CONFLICT, e))?;
        let bytes = serde_json::to_vec_pretty(&spec).expect("spec serializes");
        crate::blocking::write_atomic(self.spec_file.clone(), bytes, 0o600)
            .await
            .map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store spec: {e}"),
                )
            })?;
        if let Some(tx) = received.take() {
            let _ = tx.send(spec);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::spec;
    use myset_api::Role;

    fn identity() -> Identity {
        Identity {
            cluster: "t".into(),
            ordinal: 1,
        }
    }

    #[test]
    fn only_a_spec_of_this_member_is_taken() {
        let mine = spec(Role::Primary, 1, None);
        assert_eq!(identity().check(&mine), Ok(()));
        let mut other = mine.clone();
        other.ordinal = 2;
        assert!(identity().check(&other).unwrap_err().contains("t-2"));
        let mut other = mine;
        other.cluster = "u".into();
        assert!(identity().check(&other).is_err());
    }

    #[tokio::test]
    async fn the_first_spec_of_this_member_is_stored_and_handed_over_once() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = oneshot::channel();
        let awaiting = Awaiting {
            identity: identity(),
            spec_file: dir.path().join("spec.json"),
            received: Mutex::new(Some(tx)),
            stop: CancellationToken::new(),
        };
        let mut other = spec(Role::Primary, 1, None);
        other.ordinal = 0;
        let (status, _) = awaiting.store(other).await.unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(!dir.path().join("spec.json").exists());
        assert!(rx.try_recv().is_err());

        let mine = spec(Role::Primary, 1, None);
        awaiting.store(mine.clone()).await.unwrap();
        let on_disk: InstanceSpec =
            serde_json::from_slice(&std::fs::read(dir.path().join("spec.json")).unwrap()).unwrap();
        assert_eq!(on_disk, mine);
        assert_eq!(rx.try_recv().unwrap(), mine);
        let (status, _) = awaiting.store(mine).await.unwrap_err();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
