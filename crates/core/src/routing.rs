//! Which instances the endpoints route to, and what the cluster's status warns about.

use myset_api::{AgentStatus, Condition, Durability, Role};

/// Whether an instance may serve reads through `ro`: its agent reports it Ready and plays the
/// role the cluster's record gives it. A replica at an older term still serves (its data is
/// bounded in staleness by its own readiness) so `ro` stays up through a change of primary; a
/// former primary that has not yet accepted its new role, or one held until its data is
/// checked, never does.
pub fn serves_reads(reported: &AgentStatus, wanted: Role, held: bool) -> bool {
    reported.ready && reported.role == wanted && !held
}

/// What the status of a cluster must tell about durability and failover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView<'a> {
    pub asked: Durability,
    pub members: usize,
    pub primary: u32,
    /// The primary's latest report, when its agent answered.
    pub primary_status: Option<&'a AgentStatus>,
    /// Replicas that could be promoted now: Ready, not held, not leaving.
    pub failover_candidates: usize,
}

/// The durability actually in force, and the conditions to show in `status`.
pub fn conditions(view: &ClusterView) -> (Durability, Vec<Condition>) {
    let mut out = Vec::new();
    let in_force = match view.asked {
        Durability::Async => Durability::Async,
        Durability::Semisync if view.members < 2 => {
            out.push(Condition::DurabilityDegraded {
                asked: Durability::Semisync,
                in_force: Durability::Async,
                reason: "a single instance has no replica to acknowledge commits".into(),
            });
            Durability::Async
        }
        Durability::Semisync => match view.primary_status.and_then(|s| s.semisync) {
            Some(false) => {
                out.push(Condition::DurabilityDegraded {
                    asked: Durability::Semisync,
                    in_force: Durability::Async,
                    reason: "semi-synchronous replication is off on the primary (it is fenced or being reconfigured)".into(),
                });
                Durability::Async
            }
            _ => Durability::Semisync,
        },
    };
    if let Some(since_ms) = view.primary_status.and_then(|s| s.commits_waiting_since_ms) {
        out.push(Condition::CommitsWaiting {
            ordinal: view.primary,
            since_ms,
        });
    }
    if view.members < 2 {
        out.push(Condition::NoFailoverCandidate {
            reason: "the cluster has a single instance".into(),
        });
    } else if view.failover_candidates == 0 {
        out.push(Condition::NoFailoverCandidate {
            reason: "no replica is Ready".into(),
        });
    }
    (in_force, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use myset_api::Phase;

    fn status(role: Role, ready: bool) -> AgentStatus {
        AgentStatus {
            ordinal: 0,
            role,
            term: 1,
            phase: Phase::Running,
            live: true,
            ready,
            reason: None,
            pid: None,
            agent_pid: 1,
            gtid: None,
            replication: None,
            read_only: None,
            restarts: 0,
            primary_silent_ms: None,
            semisync: None,
            fenced: None,
            semisync_clients: None,
            commits_waiting_since_ms: None,
            galera: None,
            version: None,
            cloned_from: None,
            server_log: None,
        }
    }

    #[test]
    fn reads_go_to_ready_members_in_their_recorded_role() {
        assert!(serves_reads(
            &status(Role::Replica, true),
            Role::Replica,
            false
        ));
        assert!(serves_reads(
            &status(Role::Primary, true),
            Role::Primary,
            false
        ));
        assert!(!serves_reads(
            &status(Role::Replica, false),
            Role::Replica,
            false
        ));
        // A former primary that still believes it is primary serves no reads.
        assert!(!serves_reads(
            &status(Role::Primary, true),
            Role::Replica,
            false
        ));
        assert!(!serves_reads(
            &status(Role::Replica, true),
            Role::Replica,
            true
        ));
    }

    fn view(members: usize, primary: Option<&AgentStatus>, candidates: usize) -> ClusterView<'_> {
        ClusterView {
            asked: Durability::Semisync,
            members,
            primary: 0,
            primary_status: primary,
            failover_candidates: candidates,
        }
    }

    #[test]
    fn a_single_instance_runs_without_semisync_and_without_a_candidate() {
        let (in_force, conditions) = conditions(&view(1, None, 0));
        assert_eq!(in_force, Durability::Async);
        assert!(conditions
            .iter()
            .any(|c| matches!(c, Condition::DurabilityDegraded { .. })));
        assert!(conditions
            .iter()
            .any(|c| matches!(c, Condition::NoFailoverCandidate { .. })));
    }

    #[test]
    fn a_healthy_cluster_has_no_conditions() {
        let mut p = status(Role::Primary, true);
        p.semisync = Some(true);
        assert_eq!(
            conditions(&view(3, Some(&p), 2)),
            (Durability::Semisync, vec![])
        );
    }

    #[test]
    fn waiting_commits_and_missing_candidates_are_reported() {
        let mut p = status(Role::Primary, true);
        p.semisync = Some(true);
        p.commits_waiting_since_ms = Some(42);
        let (_, c) = conditions(&view(2, Some(&p), 0));
        assert!(c.contains(&Condition::CommitsWaiting {
            ordinal: 0,
            since_ms: 42
        }));
        assert!(c.iter().any(
            |c| matches!(c, Condition::NoFailoverCandidate { reason } if reason.contains("Ready"))
        ));
        p.semisync = Some(false);
        let (in_force, _) = conditions(&view(2, Some(&p), 1));
        assert_eq!(in_force, Durability::Async);
    }
}
