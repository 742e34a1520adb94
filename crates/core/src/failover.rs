//! When to fail over, whom to promote, and whether a former primary may rejoin.

use crate::gtid::GtidPos;
use std::collections::BTreeSet;

/// Knobs of failure detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long the primary must look dead before a failover.
    pub delay_ms: u64,
    /// Flap guard: no automatic failover sooner than this after the previous one.
    pub min_interval_ms: u64,
}

/// A replica that received from the primary more recently than this still hears it (the
/// primary sends a heartbeat every second when idle).
pub const HEARD_RECENTLY_MS: u64 = 2000;

/// The primary as the controller sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryView {
    /// Its agent answers and its server is live.
    pub healthy: bool,
    /// How long it has not been healthy.
    pub unhealthy_for_ms: u64,
}

/// What one replica sees of the primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaView {
    pub ordinal: u32,
    /// The controller can reach the replica's agent.
    pub reachable: bool,
    /// How long since the replica last received an event or heartbeat from the primary.
    pub primary_silent_ms: Option<u64>,
}

/// How long past the failover delay an unhealthy primary stays watched closely: enough for the
/// replicas' silence to pass [`HEARD_RECENTLY_MS`] when the primary's last good probe came just
/// before it went silent to them.
pub const CLOSE_WATCH_AFTER_DELAY_MS: u64 = HEARD_RECENTLY_MS;

/// Whether the primary is judged every quick check rather than every probe period. Judged only
/// on the probe tick, a failover came up to a whole period after the delay had run out (the
/// partition bench measured it 3.65-3.85 s after the last good probe with a 3 s delay). The
/// close watch changes when the judgement runs, never what it requires.
pub fn watch_closely(primary: PrimaryView, policy: Policy) -> bool {
    !primary.healthy
        && primary.unhealthy_for_ms < policy.delay_ms.saturating_add(CLOSE_WATCH_AFTER_DELAY_MS)
}

/// How long a probe of the primary may wait. A suspect primary's probe must not hold up the
/// judgement past the moment the delay runs out, yet until then it gets as long as any probe, so
/// a primary that is merely slow to answer is still seen healthy; past that moment, the quick
/// bound.
pub fn primary_probe_timeout(
    primary: PrimaryView,
    policy: Policy,
    regular: std::time::Duration,
    quick: std::time::Duration,
) -> std::time::Duration {
    if !watch_closely(primary, policy) {
        return regular;
    }
    let until_delay =
        std::time::Duration::from_millis(policy.delay_ms.saturating_sub(primary.unhealthy_for_ms));
    until_delay.min(regular).max(quick)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Something is wrong but a failover is not (yet) justified; the reason says why.
    Hold(String),
    Failover(String),
}

/// Tells a dead primary from one the controller merely cannot reach: a failover needs the
/// primary unhealthy for `delay_ms` *and* no reachable replica still hearing from it.
pub fn judge(
    primary: PrimaryView,
    replicas: &[ReplicaView],
    policy: Policy,
    since_last_failover_ms: Option<u64>,
) -> Verdict {
    if primary.healthy {
        return Verdict::Healthy;
    }
    if primary.unhealthy_for_ms < policy.delay_ms {
        return Verdict::Hold(format!(
            "primary unhealthy for {}ms; waiting {}ms before failing over",
            primary.unhealthy_for_ms, policy.delay_ms
        ));
    }
    let reachable: Vec<&ReplicaView> = replicas.iter().filter(|r| r.reachable).collect();
    if reachable.is_empty() {
        return Verdict::Hold("no reachable replica to promote".into());
    }
    if let Some(r) = reachable.iter().find(|r| {
        r.primary_silent_ms
            .is_some_and(|ms| ms < HEARD_RECENTLY_MS.min(policy.delay_ms))
    }) {
        return Verdict::Hold(format!(
            "replica {} still receives from the primary; only the controller's view is cut off",
            r.ordinal
        ));
    }
    if let Some(since) = since_last_failover_ms.filter(|&ms| ms < policy.min_interval_ms) {
        return Verdict::Hold(format!(
            "flap guard: the last failover was {since}ms ago (minimum {}ms)",
            policy.min_interval_ms
        ));
    }
    Verdict::Failover(format!(
        "primary unhealthy for {}ms and no replica receives from it",
        primary.unhealthy_for_ms
    ))
}

/// A replica that could be promoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub ordinal: u32,
    /// Transactions received from the primary (relay log included).
    pub received: GtidPos,
    /// Transactions applied.
    pub executed: GtidPos,
}

/// A replica has errant transactions when its history holds a GTID written by a server that
/// was never primary (for example a write made on the replica itself).
pub fn is_errant(executed: &GtidPos, primary_server_ids: &BTreeSet<u32>) -> bool {
    executed
        .iter()
        .any(|g| !primary_server_ids.contains(&g.server))
}

/// The replica to promote: skip errant ones, then the most received, then the most applied,
/// then the lowest ordinal (deterministic).
pub fn choose_candidate(
    candidates: &[Candidate],
    primary_server_ids: &BTreeSet<u32>,
) -> Option<u32> {
    candidates
        .iter()
        .filter(|c| !is_errant(&c.executed, primary_server_ids))
        .max_by(|a, b| {
            a.received
                .progress()
                .cmp(&b.received.progress())
                .then(a.executed.progress().cmp(&b.executed.progress()))
                .then(b.ordinal.cmp(&a.ordinal))
        })
        .map(|c| c.ordinal)
}

/// What to do with a former primary that comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejoin {
    AsReplica,
    /// It holds transactions the new primary never had: set its data aside and re-clone.
    Reclone(String),
}

/// `own` is the returning server's GTID position; `promoted_at` is the new primary's position
/// when it was promoted. Comparing with the position at promotion (not the new primary's
/// current one) keeps later writes from hiding a divergence at the same sequence numbers.
pub fn rejoin(own: &GtidPos, promoted_at: &GtidPos) -> Rejoin {
    if own.contained_in(promoted_at) {
        Rejoin::AsReplica
    } else {
        Rejoin::Reclone(format!(
            "its GTID position {own} is not contained in the new primary's position at promotion {promoted_at}"
        ))
    }
}

/// A spec or order from an older term is never obeyed.
pub fn accept_term(current: u64, offered: u64) -> bool {
    offered >= current
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    #[test]
    fn an_unhealthy_primary_is_watched_closely_until_a_while_after_the_delay() {
        let policy = Policy {
            delay_ms: 3000,
            min_interval_ms: 10_000,
        };
        let view = |healthy, unhealthy_for_ms| PrimaryView {
            healthy,
            unhealthy_for_ms,
        };
        assert!(!watch_closely(view(true, 0), policy));
        assert!(watch_closely(view(false, 0), policy));
        assert!(watch_closely(view(false, 2999), policy));
        // Past the delay while the replicas may still need a moment to fall silent.
        assert!(watch_closely(
            view(false, 3000 + CLOSE_WATCH_AFTER_DELAY_MS - 1),
            policy
        ));
        // A primary that stays dead (no replica to promote, the flap guard) goes back to the
        // probe tick.
        assert!(!watch_closely(
            view(false, 3000 + CLOSE_WATCH_AFTER_DELAY_MS),
            policy
        ));
    }

    #[test]
    fn a_suspect_primary_s_probe_never_outlasts_the_delay() {
        use std::time::Duration;
        let policy = Policy {
            delay_ms: 3000,
            min_interval_ms: 10_000,
        };
        let (regular, quick) = (Duration::from_secs(1), Duration::from_millis(250));
        let timeout = |healthy, unhealthy_for_ms| {
            let view = PrimaryView {
                healthy,
                unhealthy_for_ms,
            };
            primary_probe_timeout(view, policy, regular, quick)
        };
        assert_eq!(timeout(true, 0), regular);
        // Far from the delay: the whole timeout, for a primary that is only slow.
        assert_eq!(timeout(false, 1000), regular);
        assert_eq!(timeout(false, 2400), Duration::from_millis(600));
        assert_eq!(timeout(false, 2900), quick);
        assert_eq!(timeout(false, 4000), quick);
        // No longer watched closely: back to the tick's own timeout.
        assert_eq!(timeout(false, 3000 + CLOSE_WATCH_AFTER_DELAY_MS), regular);
    }

    const POLICY: Policy = Policy {
        delay_ms: 2000,
        min_interval_ms: 30_000,
    };

    fn down(ms: u64) -> PrimaryView {
        PrimaryView {
            healthy: false,
            unhealthy_for_ms: ms,
        }
    }

    fn replica(ordinal: u32, silent: Option<u64>) -> ReplicaView {
        ReplicaView {
            ordinal,
            reachable: true,
            primary_silent_ms: silent,
        }
    }

    fn pos(s: &str) -> GtidPos {
        GtidPos::parse(s).unwrap()
    }

    #[test]
    fn healthy_primary_is_left_alone() {
        let v = judge(
            PrimaryView {
                healthy: true,
                unhealthy_for_ms: 0,
            },
            &[],
            POLICY,
            None,
        );
        assert_eq!(v, Verdict::Healthy);
    }

    #[test]
    fn a_quick_restart_needs_no_failover() {
        assert!(matches!(
            judge(down(500), &[replica(1, Some(600))], POLICY, None),
            Verdict::Hold(_)
        ));
    }

    #[test]
    fn dead_primary_fails_over_after_the_delay() {
        let v = judge(
            down(2500),
            &[replica(1, Some(2600)), replica(2, None)],
            POLICY,
            None,
        );
        assert!(matches!(v, Verdict::Failover(_)));
    }

    #[test]
    fn a_replica_still_hearing_the_primary_blocks_failover() {
        let v = judge(
            down(9000),
            &[replica(1, Some(100)), replica(2, Some(9000))],
            POLICY,
            None,
        );
        assert!(matches!(v, Verdict::Hold(r) if r.contains("replica 1")));
    }

    #[test]
    fn flap_guard_holds_a_second_failover() {
        let v = judge(down(5000), &[replica(1, None)], POLICY, Some(10_000));
        assert!(matches!(v, Verdict::Hold(r) if r.contains("flap guard")));
        let v = judge(down(5000), &[replica(1, None)], POLICY, Some(40_000));
        assert!(matches!(v, Verdict::Failover(_)));
    }

    #[test]
    fn no_reachable_replica_no_failover() {
        let mut r = replica(1, None);
        r.reachable = false;
        assert!(matches!(
            judge(down(5000), &[r], POLICY, None),
            Verdict::Hold(_)
        ));
    }

    #[test]
    fn candidate_is_the_most_advanced_non_errant_replica() {
        let primaries: BTreeSet<u32> = [100].into();
        let c = |o, r: &str, e: &str| Candidate {
            ordinal: o,
            received: pos(r),
            executed: pos(e),
        };
        let cands = [
            c(1, "0-100-10", "0-100-10"),
            c(2, "0-100-12", "0-100-9"),
            c(3, "0-102-13", "0-102-13"),
        ];
        assert_eq!(choose_candidate(&cands, &primaries), Some(2));
        // Equal received: the one that applied more wins; then the lowest ordinal.
        let cands = [c(2, "0-100-12", "0-100-9"), c(1, "0-100-12", "0-100-11")];
        assert_eq!(choose_candidate(&cands, &primaries), Some(1));
        let cands = [c(2, "0-100-12", "0-100-12"), c(1, "0-100-12", "0-100-12")];
        assert_eq!(choose_candidate(&cands, &primaries), Some(1));
        assert_eq!(
            choose_candidate(&[c(3, "0-103-1", "0-103-1")], &primaries),
            None
        );
    }

    #[test]
    fn errant_transactions_are_writes_by_a_server_never_primary() {
        let primaries: BTreeSet<u32> = [100, 101].into();
        assert!(!is_errant(&pos("0-101-5"), &primaries));
        assert!(is_errant(&pos("0-102-5"), &primaries));
        assert!(!is_errant(&pos(""), &primaries));
    }

    #[test]
    fn rejoin_needs_containment_in_the_promotion_position() {
        assert_eq!(
            rejoin(&pos("0-100-10"), &pos("0-100-10")),
            Rejoin::AsReplica
        );
        assert_eq!(rejoin(&pos("0-100-9"), &pos("0-100-10")), Rejoin::AsReplica);
        assert!(matches!(
            rejoin(&pos("0-100-11"), &pos("0-100-10")),
            Rejoin::Reclone(_)
        ));
    }

    #[test]
    fn terms_never_go_back() {
        assert!(accept_term(3, 3));
        assert!(accept_term(3, 4));
        assert!(!accept_term(3, 2));
    }

    proptest! {
        #[test]
        fn never_fails_over_before_the_delay_or_while_a_replica_hears_the_primary(
            unhealthy in 0u64..10_000,
            silences in proptest::collection::vec(proptest::option::of(0u64..10_000), 0..5),
            since in proptest::option::of(0u64..60_000),
        ) {
            let replicas: Vec<ReplicaView> = silences.iter().enumerate().map(|(i, s)| replica(i as u32 + 1, *s)).collect();
            let v = judge(down(unhealthy), &replicas, POLICY, since);
            if let Verdict::Failover(_) = v {
                prop_assert!(unhealthy >= POLICY.delay_ms);
                prop_assert!(!replicas.is_empty());
                prop_assert!(replicas.iter().all(|r| r.primary_silent_ms.is_none_or(|ms| ms >= HEARD_RECENTLY_MS)));
                prop_assert!(since.is_none_or(|ms| ms >= POLICY.min_interval_ms));
            }
        }

        #[test]
        fn the_chosen_candidate_received_at_least_as_much_as_any_other(
            seqs in proptest::collection::vec((0u64..100, 0u64..100), 1..6),
        ) {
            let primaries: BTreeSet<u32> = [100].into();
            let cands: Vec<Candidate> = seqs.iter().enumerate().map(|(i, (r, e))| Candidate {
                ordinal: i as u32,
                received: pos(&format!("0-100-{}", r.max(e))),
                executed: pos(&format!("0-100-{e}")),
            }).collect();
            let chosen = choose_candidate(&cands, &primaries).unwrap();
            let best = &cands[chosen as usize];
            prop_assert!(cands.iter().all(|c| c.received.progress() <= best.received.progress()));
        }
    }
}
