//! What the operator does about nodes, decided by a pure function of the cluster record, the
//! listed Pods and nodes, and how long things have been wrong:
//! - **a drain**: the primary's node is cordoned, so its Pod is about to be evicted: switch
//!   over first, to a Ready replica on a schedulable node;
//! - **a node that stopped reporting**: once the member there is no longer the primary (the
//!   failover fenced and replaced it) or is a replica, and the node has been unready for the
//!   failover delay, its Pod is force-deleted so it can be recreated (the kubelet will never
//!   confirm a graceful deletion);
//! - **a node gone for good with a member's local volume**: a member whose Pod cannot run
//!   (its node is gone, or it stays Pending) for the rebuild timeout is rebuilt on another
//!   node with a fresh volume cloned from a peer, unless it is the primary or the last copy
//!   of the data.
//!
//! Galera has no primary to protect: a drain needs no switchover (rw moves off a member as it
//! leaves), and a member's quorum fences it, so a member on an unready node counts as fenced
//! once it is not Ready while another member is (the Primary component is elsewhere).

use crate::kube_runtime::View;
use myset_api::{ClusterState, Topology};
use std::collections::{BTreeMap, BTreeSet};

/// One thing to do about nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAction {
    /// Switch the primary over to `to` before its cordoned node is drained.
    SwitchoverForDrain { from: u32, to: u32, node: String },
    /// Delete the member's Pod without grace: its node does not answer and it is fenced.
    ForceDelete { ordinal: u32, node: String },
    /// Delete the member's PVC and Pod, so it is recreated elsewhere and cloned from a peer.
    Rebuild { ordinal: u32, reason: String },
}

/// How long each condition has lasted, in milliseconds, as the operator has seen it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations {
    /// Per node: how long it has not been Ready.
    pub node_unready_ms: BTreeMap<String, u64>,
    /// Per member: how long its Pod has been unable to run (Pending, or on a node that is
    /// unready or no longer exists).
    pub member_stuck_ms: BTreeMap<u32, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePolicy {
    /// A node unready this long has its fenced members' Pods force-deleted.
    pub force_delete_after_ms: u64,
    /// A member stuck this long is rebuilt elsewhere (`spec.nodeLossTimeoutSeconds`).
    pub rebuild_after_ms: u64,
}

/// Decides what to do; `ready` are the members the controller sees Ready.
pub fn node_actions(
    record: &ClusterState,
    view: &View,
    ready: &BTreeSet<u32>,
    lasted: &Durations,
    policy: NodePolicy,
) -> Vec<NodeAction> {
    let mut actions = Vec::new();
    let node_of = |o: u32| view.pods.get(&o).and_then(|p| p.node.clone());
    let schedulable_and_ready = |o: u32| {
        view.node_of(o)
            .is_some_and(|(_, n)| n.ready && !n.unschedulable)
    };

    let galera = record.topology == Topology::Galera;
    if let Some((node, info)) = view.node_of(record.primary).filter(|_| !galera) {
        if info.unschedulable {
            let target = record
                .members
                .iter()
                .copied()
                .filter(|&o| o != record.primary && ready.contains(&o))
                .find(|&o| schedulable_and_ready(o));
            if let Some(to) = target {
                actions.push(NodeAction::SwitchoverForDrain {
                    from: record.primary,
                    to,
                    node: node.to_string(),
                });
            }
        }
    }

    for &ordinal in &record.members {
        let Some(node) = node_of(ordinal) else {
            continue;
        };
        let unready_for = lasted.node_unready_ms.get(&node).copied().unwrap_or(0);
        let fenced = if galera {
            !ready.contains(&ordinal) && ready.iter().any(|&r| r != ordinal)
        } else {
            ordinal != record.primary
        };
        let on_unready_node = view.nodes.get(&node).is_some_and(|n| !n.ready);
        let terminating_or_running = view.pods.contains_key(&ordinal);
        if fenced
            && on_unready_node
            && terminating_or_running
            && unready_for >= policy.force_delete_after_ms
        {
            actions.push(NodeAction::ForceDelete { ordinal, node });
        }
    }

    // Members holding data that another Ready member also holds: never the last copy.
    let other_ready = |o: u32| ready.iter().any(|&r| r != o);
    for (&ordinal, &stuck_ms) in &lasted.member_stuck_ms {
        if (!galera && ordinal == record.primary) || !record.members.contains(&ordinal) {
            continue;
        }
        if stuck_ms >= policy.rebuild_after_ms && other_ready(ordinal) {
            actions.push(NodeAction::Rebuild {
                ordinal,
                reason: format!(
                    "its Pod could not run for {}s (node lost with its volume?)",
                    stuck_ms / 1000
                ),
            });
        }
    }
    actions
}

/// Whether a member's Pod cannot run where it is: still Pending (say, bound by its local
/// volume to a node that is gone), or placed on a node that is unready or no longer listed.
pub fn stuck(view: &View, ordinal: u32) -> bool {
    let Some(pod) = view.pods.get(&ordinal) else {
        return false;
    };
    match pod.node.as_deref() {
        None => pod.phase.as_deref() == Some("Pending"),
        Some(node) => view.nodes.get(node).is_none_or(|n| !n.ready),
    }
}

/// Advances how long each condition has lasted by `elapsed_ms`; conditions that ended are
/// forgotten.
pub fn advance(
    previous: &Durations,
    view: &View,
    members: &BTreeSet<u32>,
    elapsed_ms: u64,
) -> Durations {
    let node_unready_ms = view
        .nodes
        .iter()
        .filter(|(_, n)| !n.ready)
        .map(|(name, _)| {
            let before = previous.node_unready_ms.get(name).copied().unwrap_or(0);
            (name.clone(), before + elapsed_ms)
        })
        .collect();
    let member_stuck_ms = members
        .iter()
        .copied()
        .filter(|&o| stuck(view, o))
        .map(|o| {
            let before = previous.member_stuck_ms.get(&o).copied().unwrap_or(0);
            (o, before + elapsed_ms)
        })
        .collect();
    Durations {
        node_unready_ms,
        member_stuck_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube_runtime::{NodeView, PodView};

    const POLICY: NodePolicy = NodePolicy {
        force_delete_after_ms: 3_000,
        rebuild_after_ms: 300_000,
    };

    fn record(primary: u32) -> ClusterState {
        let mut r = ClusterState::new("db", 3, "0.0.0.0", 3306, 3306);
        r.members = [0, 1, 2].into();
        r.primary = primary;
        r
    }

    /// Members 0, 1, 2 on nodes n0, n1, n2, all Ready and schedulable.
    fn view() -> View {
        let mut v = View::default();
        for o in 0..3 {
            v.pods.insert(
                o,
                PodView {
                    node: Some(format!("n{o}")),
                    terminating: false,
                    phase: Some("Running".into()),
                    role_label: None,
                    uid: Some(format!("uid-{o}")),
                    restarts: 0,
                    spec_delivered: Some(0),
                },
            );
            v.nodes.insert(
                format!("n{o}"),
                NodeView {
                    ready: true,
                    unschedulable: false,
                },
            );
        }
        v
    }

    fn all_ready() -> BTreeSet<u32> {
        [0, 1, 2].into()
    }

    #[test]
    fn a_healthy_cluster_needs_nothing() {
        let v = view();
        let lasted = advance(&Durations::default(), &v, &record(0).members, 1000);
        assert_eq!(lasted, Durations::default());
        assert!(node_actions(&record(0), &v, &all_ready(), &lasted, POLICY).is_empty());
    }

    #[test]
    fn a_cordoned_primary_node_switches_over_to_a_ready_replica_elsewhere() {
        let mut v = view();
        v.nodes.get_mut("n0").unwrap().unschedulable = true;
        // Replica 1's node is cordoned too: 2 is the only good target.
        v.nodes.get_mut("n1").unwrap().unschedulable = true;
        let actions = node_actions(&record(0), &v, &all_ready(), &Durations::default(), POLICY);
        assert_eq!(
            actions,
            vec![NodeAction::SwitchoverForDrain {
                from: 0,
                to: 2,
                node: "n0".into()
            }]
        );
        // No Ready replica on a good node: nothing to switch to.
        let only_primary_ready: BTreeSet<u32> = [0, 1].into();
        assert!(node_actions(
            &record(0),
            &v,
            &only_primary_ready,
            &Durations::default(),
            POLICY
        )
        .is_empty());
    }

    #[test]
    fn a_cordoned_replica_node_changes_nothing() {
        let mut v = view();
        v.nodes.get_mut("n1").unwrap().unschedulable = true;
        assert!(
            node_actions(&record(0), &v, &all_ready(), &Durations::default(), POLICY).is_empty()
        );
    }

    #[test]
    fn a_lost_nodes_pod_is_force_deleted_only_once_fenced_and_after_the_delay() {
        let mut v = view();
        v.nodes.get_mut("n0").unwrap().ready = false;
        let ready: BTreeSet<u32> = [1, 2].into();
        let lasted = advance(&Durations::default(), &v, &record(0).members, 5_000);
        // Still the primary: failover has not replaced it, so it is not fenced yet.
        assert!(node_actions(&record(0), &v, &ready, &lasted, POLICY).is_empty());
        // After the failover to 1, and once the node was unready long enough.
        let short = advance(&Durations::default(), &v, &record(1).members, 1_000);
        assert!(node_actions(&record(1), &v, &ready, &short, POLICY).is_empty());
        assert_eq!(
            node_actions(&record(1), &v, &ready, &lasted, POLICY),
            vec![NodeAction::ForceDelete {
                ordinal: 0,
                node: "n0".into()
            }]
        );
    }

    #[test]
    fn a_member_stuck_past_the_timeout_is_rebuilt_unless_primary_or_last_copy() {
        let mut v = view();
        // Member 2's node is gone and its Pod, recreated, stays Pending.
        v.nodes.remove("n2");
        let pod = v.pods.get_mut(&2).unwrap();
        pod.node = None;
        pod.phase = Some("Pending".into());
        let members = record(0).members;
        let mut lasted = Durations::default();
        for _ in 0..299 {
            lasted = advance(&lasted, &v, &members, 1_000);
        }
        let ready: BTreeSet<u32> = [0, 1].into();
        assert!(node_actions(&record(0), &v, &ready, &lasted, POLICY).is_empty());
        lasted = advance(&lasted, &v, &members, 1_000);
        assert!(matches!(
            node_actions(&record(0), &v, &ready, &lasted, POLICY).as_slice(),
            [NodeAction::Rebuild { ordinal: 2, .. }]
        ));
        // Nobody else Ready: it may hold the last copy, so it is left alone.
        let none: BTreeSet<u32> = BTreeSet::new();
        assert!(node_actions(&record(0), &v, &none, &lasted, POLICY).is_empty());
        // The primary is never rebuilt (a failover replaces it first).
        assert!(node_actions(&record(2), &v, &ready, &lasted, POLICY)
            .iter()
            .all(|a| !matches!(a, NodeAction::Rebuild { .. })));
    }

    #[test]
    fn galera_drains_without_switchover_and_its_quorum_fences_a_member_cut_off() {
        let galera = |primary| ClusterState {
            topology: Topology::Galera,
            ..record(primary)
        };
        let mut v = view();
        v.nodes.get_mut("n0").unwrap().unschedulable = true;
        assert!(
            node_actions(&galera(0), &v, &all_ready(), &Durations::default(), POLICY).is_empty(),
            "no switchover: rw leaves a member as it goes"
        );
        let mut v = view();
        v.nodes.get_mut("n0").unwrap().ready = false;
        let lasted = advance(&Durations::default(), &v, &galera(0).members, 5_000);
        // Member 0 still Ready (its agent answers and it is in the Primary component): kept.
        assert!(node_actions(&galera(0), &v, &all_ready(), &lasted, POLICY).is_empty());
        // Not Ready while others are: the Primary component is elsewhere, so it is fenced,
        // even though the record's preferred writer is 0.
        let ready: BTreeSet<u32> = [1, 2].into();
        assert_eq!(
            node_actions(&galera(0), &v, &ready, &lasted, POLICY),
            vec![NodeAction::ForceDelete {
                ordinal: 0,
                node: "n0".into()
            }]
        );
        // Nobody Ready: nothing says the cut-off member is outside the Primary component.
        assert!(node_actions(&galera(0), &v, &BTreeSet::new(), &lasted, POLICY).is_empty());
    }

    #[test]
    fn a_condition_that_ends_is_forgotten() {
        let mut v = view();
        v.nodes.get_mut("n1").unwrap().ready = false;
        let members = record(0).members;
        let lasted = advance(&Durations::default(), &v, &members, 2_000);
        assert_eq!(lasted.node_unready_ms.get("n1"), Some(&2_000));
        assert_eq!(lasted.member_stuck_ms.get(&1), Some(&2_000));
        v.nodes.get_mut("n1").unwrap().ready = true;
        assert_eq!(advance(&lasted, &v, &members, 1_000), Durations::default());
    }
}
