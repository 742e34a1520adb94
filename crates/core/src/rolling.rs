//! The order of a rolling restart: replicas one at a time, then a switchover, then the old
//! primary, so writes pause only for the switchover.

use myset_api::Topology;
use std::collections::BTreeSet;

/// What a rolling restart does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollingStep {
    /// Restart this member and wait until it is Ready again.
    Restart(u32),
    /// Every replica is restarted: move the primary off `from` (to a restarted replica).
    Switchover {
        from: u32,
    },
    Done,
}

/// The next step given the members, the current primary (for Galera: the member rw writes
/// to) and the members already restarted. A Galera member leaves rw and ro by itself while it
/// restarts, so Galera restarts members one at a time, the writer last, with no switchover.
/// A lone primary has nobody to switch over to: it is restarted in place (writes stop).
pub fn next_step(
    topology: Topology,
    members: &BTreeSet<u32>,
    primary: u32,
    restarted: &BTreeSet<u32>,
) -> RollingStep {
    let pending = |o: &&u32| !restarted.contains(*o);
    if let Some(&replica) = members.iter().filter(|&&o| o != primary).find(pending) {
        return RollingStep::Restart(replica);
    }
    if !members.contains(&primary) || restarted.contains(&primary) {
        return RollingStep::Done;
    }
    if topology == Topology::Replication && members.len() > 1 {
        RollingStep::Switchover { from: primary }
    } else {
        RollingStep::Restart(primary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    /// Plays a whole rolling restart, the switchover moving the primary to the lowest
    /// restarted replica.
    fn play(topology: Topology, members: &[u32], mut primary: u32) -> Vec<RollingStep> {
        let members = set(members);
        let mut restarted = BTreeSet::new();
        let mut steps = Vec::new();
        loop {
            let step = next_step(topology, &members, primary, &restarted);
            steps.push(step);
            match step {
                RollingStep::Restart(o) => {
                    restarted.insert(o);
                }
                RollingStep::Switchover { .. } => {
                    primary = *restarted.iter().next().unwrap();
                }
                RollingStep::Done => return steps,
            }
            assert!(steps.len() < 20, "{steps:?}");
        }
    }

    #[test]
    fn replicas_then_a_switchover_then_the_old_primary() {
        use RollingStep::*;
        assert_eq!(
            play(Topology::Replication, &[0, 1, 2], 0),
            vec![
                Restart(1),
                Restart(2),
                Switchover { from: 0 },
                Restart(0),
                Done
            ]
        );
        assert_eq!(
            play(Topology::Replication, &[0, 1, 2], 2),
            vec![
                Restart(0),
                Restart(1),
                Switchover { from: 2 },
                Restart(2),
                Done
            ]
        );
    }

    #[test]
    fn galera_goes_member_by_member_the_writer_last_without_switchover() {
        use RollingStep::*;
        assert_eq!(
            play(Topology::Galera, &[0, 1, 2], 1),
            vec![Restart(0), Restart(2), Restart(1), Done]
        );
    }

    #[test]
    fn a_lone_primary_restarts_in_place() {
        use RollingStep::*;
        assert_eq!(play(Topology::Replication, &[0], 0), vec![Restart(0), Done]);
    }

    #[test]
    fn a_failover_mid_way_to_a_replica_not_yet_restarted_still_restarts_it_first() {
        // 1 was restarted; the primary failed over to 2, not restarted yet.
        let step = next_step(Topology::Replication, &set(&[0, 1, 2]), 2, &set(&[1]));
        assert_eq!(step, RollingStep::Restart(0));
        let step = next_step(Topology::Replication, &set(&[0, 1, 2]), 2, &set(&[0, 1]));
        assert_eq!(step, RollingStep::Switchover { from: 2 });
    }

    proptest! {
        #[test]
        fn every_member_restarts_once_and_the_primary_only_after_a_switchover(
            n in 1u32..7, primary_pick in 0u32..7, galera in any::<bool>()
        ) {
            let members: Vec<u32> = (0..n).collect();
            let primary = primary_pick % n;
            let topology = if galera { Topology::Galera } else { Topology::Replication };
            let steps = play(topology, &members, primary);
            let restarts: Vec<u32> = steps.iter().filter_map(|s| match s {
                RollingStep::Restart(o) => Some(*o),
                _ => None,
            }).collect();
            prop_assert_eq!(set(&restarts).len(), n as usize);
            prop_assert_eq!(restarts.len(), n as usize);
            let switchovers = steps.iter().filter(|s| matches!(s, RollingStep::Switchover { .. })).count();
            let expected = usize::from(topology == Topology::Replication && n > 1);
            prop_assert_eq!(switchovers, expected);
            if expected == 1 {
                // The old primary is restarted after the switchover, never while primary.
                let at = steps.iter().position(|s| matches!(s, RollingStep::Switchover { .. })).unwrap();
                prop_assert_eq!(steps[at + 1], RollingStep::Restart(primary));
            }
        }
    }
}
