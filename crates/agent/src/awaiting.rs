//! Starting without a spec. On Kubernetes the Pod starts before the operator has anything to
//! tell its agent: the operator sends the spec with `PUT /spec` once the Pod runs. Until then
//! the agent serves its API (the token is required, as always), takes the first spec naming
//! its own cluster and ordinal, stores it durably, and then runs exactly as if it had found
//! that spec on disk at start.
//!
//! Meanwhile its server is not running, so it can answer what the operator cannot read itself
//! from the volume: a Galera member's last committed position (`GET /galera/position`), which
//! the operator compares across members before deciding who bootstraps after a full outage.

use crate::layout::InstanceLayout;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use myset_api::{GaleraPositionReport, InstanceSpec, GALERA_POSITION_PATH};
use myset_core::galera::MemberData;
use myset_http::{error_response, require_token, Token};
use myset_mariadb::galera::PositionError;
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
    /// Where a Galera position is read from; None in tests that serve no position.
    position_source: Option<PositionSource>,
    /// Serialises position reads with each other and with the handover of a spec: nothing
    /// may run `mariadbd --wsrep-recover` on the data dir once the server is about to start.
    position: Mutex<PositionState>,
}

/// What the Galera position is read with.
struct PositionSource {
    mariadbd: PathBuf,
    layout: InstanceLayout,
}

#[derive(Default)]
struct PositionState {
    /// The position once read: the data cannot change while no server runs.
    known: Option<MemberData>,
    /// A spec was taken: the server starts, the data dir is no longer this code's.
    handed_over: bool,
}

/// Serves the API on `listener` until a spec for `identity` arrives, and returns it once it
/// is on disk; returns None when the agent is told to stop first (`stop`, or `POST
/// /shutdown`). `mariadbd` recovers a crashed Galera member's position when asked.
pub async fn await_spec(
    listener: tokio::net::TcpListener,
    layout: &InstanceLayout,
    mariadbd: PathBuf,
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
        position_source: Some(PositionSource {
            mariadbd,
            layout: layout.clone(),
        }),
        position: Mutex::default(),
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
        .route(GALERA_POSITION_PATH, get(galera_position))
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

async fn galera_position(State(state): State<Arc<Awaiting>>) -> Response {
    // In a task of its own: a recovery runs to its end even when its caller gave up, and its
    // result is kept for the next call.
    match tokio::spawn(async move { state.read_position().await }).await {
        Ok(Ok(data)) => Json(report(&data)).into_response(),
        Ok(Err(PositionRefused::HandedOver)) => error_response(
            StatusCode::CONFLICT,
            "a spec was taken and the server is starting: its position is no longer read here",
        ),
        Ok(Err(PositionRefused::NoSource)) => error_response(
            StatusCode::NOT_IMPLEMENTED,
            "this agent reads no Galera position",
        ),
        Ok(Err(PositionRefused::Read(e))) => {
            error_response(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        Err(e) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the position failed: {e}"),
        ),
    }
}

/// The wire form of what a data dir holds.
fn report(data: &MemberData) -> GaleraPositionReport {
    match data {
        MemberData::Empty => GaleraPositionReport::Empty,
        MemberData::At {
            position,
            safe_to_bootstrap,
        } => GaleraPositionReport::At {
            uuid: position.uuid.to_string(),
            seqno: position.seqno,
            safe_to_bootstrap: *safe_to_bootstrap,
        },
    }
}

#[derive(Debug, thiserror::Error)]
enum PositionRefused {
    #[error("the server is starting")]
    HandedOver,
    #[error("no position source")]
    NoSource,
    #[error(transparent)]
    Read(#[from] PositionError),
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
    /// The member's position from its data dir: `grastate.dat`, and after a crash
    /// `mariadbd --wsrep-recover` (run once; the data does not change while no server runs).
    async fn read_position(&self) -> Result<MemberData, PositionRefused> {
        let mut state = self.position.lock().await;
        if state.handed_over {
            return Err(PositionRefused::HandedOver);
        }
        if let Some(known) = &state.known {
            return Ok(known.clone());
        }
        let source = self
            .position_source
            .as_ref()
            .ok_or(PositionRefused::NoSource)?;
        let layout = &source.layout;
        let data = myset_mariadb::galera::member_data(
            &source.mariadbd,
            &layout.server_config(),
            &layout.data(),
            &layout.wsrep_recover_log(),
        )
        .await?;
        state.known = Some(data.clone());
        Ok(data)
    }

    async fn store(&self, spec: InstanceSpec) -> Result<(), (StatusCode, String)> {
        // Waits for a position read in progress; none starts after this.
        let mut position = self.position.lock().await;
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
            position.handed_over = true;
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
            position_source: None,
            position: Mutex::default(),
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

    #[tokio::test]
    async fn a_galera_position_is_read_from_the_data_dir_until_a_spec_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let layout = InstanceLayout::new(dir.path().to_path_buf());
        let (tx, _rx) = oneshot::channel();
        let awaiting = Awaiting {
            identity: identity(),
            spec_file: layout.spec_file(),
            received: Mutex::new(Some(tx)),
            stop: CancellationToken::new(),
            position_source: Some(PositionSource {
                // A clean stop left the seqno in grastate.dat: no recovery runs.
                mariadbd: "/nonexistent/mariadbd".into(),
                layout: layout.clone(),
            }),
            position: Mutex::default(),
        };
        // No data dir yet: nothing to offer.
        assert!(matches!(
            awaiting.read_position().await,
            Ok(MemberData::Empty)
        ));
        awaiting.position.lock().await.known = None;
        std::fs::create_dir_all(layout.data()).unwrap();
        let uuid = "5ee99582-bb8d-11f0-b3a4-6b0bdc7c1b7e";
        std::fs::write(
            layout.data().join("grastate.dat"),
            format!("# GALERA saved state\nversion: 2.1\nuuid: {uuid}\nseqno: 42\nsafe_to_bootstrap: 1\n"),
        )
        .unwrap();
        let data = awaiting.read_position().await.unwrap();
        assert_eq!(
            report(&data),
            GaleraPositionReport::At {
                uuid: uuid.into(),
                seqno: 42,
                safe_to_bootstrap: true
            }
        );
        awaiting.store(spec(Role::Replica, 1, None)).await.unwrap();
        assert!(matches!(
            awaiting.read_position().await,
            Err(PositionRefused::HandedOver)
        ));
    }
}
