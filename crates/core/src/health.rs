//! What makes an instance Ready, and when an isolated primary fences itself, given what its
//! agent read from the server and the network.

use myset_api::{ReplicationStatus, Role};

/// Whether a live server may serve reads. Err says why not.
///
/// A primary: always. A replica: while its data is provably at most `max_staleness_seconds`
/// stale:
/// - its applier (SQL thread) runs. A stopped applier, even without an error, is not Ready:
///   what it has applied is then tied to nothing measured here (`Seconds_Behind_Master` is
///   NULL, and `primary_silent_ms` measures receiving, not applying); myset itself only stops
///   it to change the instance's role, when serving reads as a replica is moot anyway;
/// - it has heard from its primary (an event or a heartbeat) within the bound, when that is
///   known (`primary_silent_ms`): a primary that froze leaves the IO thread "running" and the
///   lag at 0, and only the silence shows it;
/// - its lag, when known, is within the bound, and while the IO thread runs it must be known
///   (a replica catching up after a restart joins once within it);
/// - while the IO thread does not run (the primary is unreachable, or the controller fenced
///   this replica for a change of primary), the silence must be known: it bounds the
///   staleness, so the replica keeps serving through a short outage and leaves after the
///   bound. Unknown silence (an agent that never saw the stream) is not Ready.
///
/// A primary is idle-silent up to its heartbeat period (1 s), so a bound below that keeps the
/// replicas of an idle primary from being Ready.
pub fn readiness(
    role: Role,
    replication: Option<&ReplicationStatus>,
    primary_silent_ms: Option<u64>,
    max_staleness_seconds: u64,
) -> Result<(), String> {
    if role == Role::Primary {
        return Ok(());
    }
    let Some(r) = replication else {
        return Err("replication is not configured".into());
    };
    if !r.sql_running {
        return Err(match &r.sql_error {
            Some(e) => format!("replication SQL thread stopped on an error: {e}"),
            None => "replication SQL thread is not running".into(),
        });
    }
    let bound_ms = max_staleness_seconds.saturating_mul(1000);
    if let Some(silent) = primary_silent_ms.filter(|&s| s > bound_ms) {
        return Err(format!(
            "nothing heard from the primary for {silent}ms, more than {max_staleness_seconds}s"
        ));
    }
    if let Some(lag) = r.seconds_behind.filter(|&lag| lag > max_staleness_seconds) {
        return Err(format!(
            "replication lag {lag}s exceeds {max_staleness_seconds}s"
        ));
    }
    if r.io_running {
        return match r.seconds_behind {
            Some(_) => Ok(()),
            None => Err("replication lag is unknown".into()),
        };
    }
    match primary_silent_ms {
        Some(_) => Ok(()),
        None => Err(match &r.last_error {
            Some(e) => format!(
                "replication IO thread is not running ({e}) and the last word from the primary is unknown"
            ),
            None => "replication IO thread is not running and the last word from the primary is unknown".into(),
        }),
    }
}

/// What a primary's agent knows when it asks whether it is cut off from everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isolation {
    pub role: Role,
    /// How long the controller may stay silent; 0 disables self-fencing.
    pub limit_ms: u64,
    pub controller_silent_ms: u64,
    /// Whether the spec names any peer.
    pub has_peers: bool,
    pub already_fenced: bool,
}

impl Isolation {
    /// Whether the agent should ask its peers: an unfenced primary that has not heard from
    /// the controller for the limit. Without peers there is nobody to promote in its place,
    /// so fencing could only turn the controller's outage into the database's.
    pub fn suspected(&self) -> bool {
        self.role == Role::Primary
            && self.limit_ms > 0
            && self.has_peers
            && !self.already_fenced
            && self.controller_silent_ms >= self.limit_ms
    }

    /// Whether to fence now: isolation is suspected and no peer answered at all. Any answer,
    /// even an error status, proves the network path to the rest of the cluster works.
    pub fn fence_now(&self, any_peer_answered: bool) -> bool {
        self.suspected() && !any_peer_answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn healthy(lag: u64) -> ReplicationStatus {
        ReplicationStatus {
            source: "127.0.0.1:1".into(),
            received: String::new(),
            sql_error: None,
            heartbeats: 0,
            io_running: true,
            sql_running: true,
            seconds_behind: Some(lag),
            last_error: None,
        }
    }

    fn primary_gone() -> ReplicationStatus {
        ReplicationStatus {
            io_running: false,
            seconds_behind: None,
            last_error: Some("error reconnecting to master: Connection refused".into()),
            ..healthy(0)
        }
    }

    #[test]
    fn primary_is_ready_without_replication() {
        assert!(readiness(Role::Primary, None, None, 10).is_ok());
    }

    #[test]
    fn connected_replica_needs_a_known_lag_within_the_bound() {
        let ready = |r: &ReplicationStatus, silent| readiness(Role::Replica, Some(r), silent, 10);
        assert!(ready(&healthy(0), Some(300)).is_ok());
        assert!(ready(&healthy(10), None).is_ok());
        assert!(ready(&healthy(11), Some(0))
            .unwrap_err()
            .contains("lag 11s"));
        let unknown = ReplicationStatus {
            seconds_behind: None,
            ..healthy(0)
        };
        assert!(ready(&unknown, Some(0)).unwrap_err().contains("unknown"));
        assert!(readiness(Role::Replica, None, Some(0), 10).is_err());
    }

    #[test]
    fn a_silent_primary_makes_even_a_connected_replica_unready_after_the_bound() {
        // A frozen primary: the IO thread still says Yes and the lag 0.
        assert!(readiness(Role::Replica, Some(&healthy(0)), Some(10_000), 10).is_ok());
        assert!(
            readiness(Role::Replica, Some(&healthy(0)), Some(10_001), 10)
                .unwrap_err()
                .contains("nothing heard")
        );
    }

    #[test]
    fn unreachable_or_fenced_primary_keeps_replicas_ready_within_the_bound() {
        let gone = primary_gone();
        assert!(readiness(Role::Replica, Some(&gone), Some(2_000), 10).is_ok());
        assert!(readiness(Role::Replica, Some(&gone), Some(11_000), 10).is_err());
        let fenced = ReplicationStatus {
            last_error: None,
            ..gone.clone()
        };
        assert!(readiness(Role::Replica, Some(&fenced), Some(500), 10).is_ok());
    }

    #[test]
    fn unknown_silence_without_a_stream_is_not_ready() {
        let err = readiness(Role::Replica, Some(&primary_gone()), None, 10).unwrap_err();
        assert!(err.contains("Connection refused"), "{err}");
        assert!(err.contains("unknown"), "{err}");
    }

    #[test]
    fn a_stopped_applier_is_not_ready() {
        let failed = ReplicationStatus {
            sql_running: false,
            seconds_behind: None,
            sql_error: Some("Duplicate entry".into()),
            last_error: Some("Duplicate entry".into()),
            ..healthy(0)
        };
        let err = readiness(Role::Replica, Some(&failed), Some(0), 10).unwrap_err();
        assert!(err.contains("Duplicate entry"), "{err}");
        let stopped = ReplicationStatus {
            sql_running: false,
            sql_error: None,
            last_error: None,
            ..healthy(0)
        };
        assert!(readiness(Role::Replica, Some(&stopped), Some(0), 10)
            .unwrap_err()
            .contains("SQL thread"));
    }

    fn any_replication() -> impl Strategy<Value = ReplicationStatus> {
        (
            any::<bool>(),
            any::<bool>(),
            proptest::option::of(0u64..100),
            proptest::option::of(Just("an error".to_string())),
            proptest::option::of(Just("an applier error".to_string())),
        )
            .prop_map(|(io, sql, lag, io_err, sql_err)| ReplicationStatus {
                io_running: io,
                sql_running: sql,
                seconds_behind: lag,
                last_error: io_err.or(sql_err.clone()),
                sql_error: sql_err,
                ..healthy(0)
            })
    }

    proptest! {
        /// A replica is never Ready while its primary has been silent longer than the bound,
        /// nor while its known lag exceeds it, nor with its applier stopped.
        #[test]
        fn replica_never_ready_beyond_the_bound(
            r in any_replication(),
            silent in proptest::option::of(0u64..100_000),
            bound in 0u64..60,
        ) {
            if readiness(Role::Replica, Some(&r), silent, bound).is_ok() {
                prop_assert!(r.sql_running);
                prop_assert!(silent.is_none_or(|s| s <= bound * 1000));
                prop_assert!(r.seconds_behind.is_none_or(|lag| lag <= bound));
                // Some measure of staleness was known and within the bound.
                prop_assert!(silent.is_some() || (r.io_running && r.seconds_behind.is_some()));
            }
        }
    }

    fn isolated() -> Isolation {
        Isolation {
            role: Role::Primary,
            limit_ms: 5_000,
            controller_silent_ms: 5_000,
            has_peers: true,
            already_fenced: false,
        }
    }

    #[test]
    fn fences_only_when_neither_controller_nor_any_peer_is_heard() {
        assert!(isolated().fence_now(false));
        assert!(!isolated().fence_now(true), "a peer answered");
        let in_contact = Isolation {
            controller_silent_ms: 4_999,
            ..isolated()
        };
        assert!(!in_contact.suspected());
        assert!(!in_contact.fence_now(false));
    }

    #[test]
    fn never_fences_a_replica_a_fenced_primary_or_when_disabled() {
        for view in [
            Isolation {
                role: Role::Replica,
                ..isolated()
            },
            Isolation {
                already_fenced: true,
                ..isolated()
            },
            Isolation {
                limit_ms: 0,
                ..isolated()
            },
            Isolation {
                has_peers: false,
                ..isolated()
            },
        ] {
            assert!(!view.suspected(), "{view:?}");
            assert!(!view.fence_now(false), "{view:?}");
        }
    }
}
