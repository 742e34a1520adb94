//! How an instance gets its data when its agent starts.

/// What an instance's agent should do with its data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPlan {
    /// The data dir holds data: restart from it and catch up by replication. Never re-clone.
    FromData,
    /// The very first primary of a new cluster: create a fresh data dir.
    Bootstrap,
    /// Copy the data from these Ready peers, most preferred first.
    Clone(Vec<u32>),
    /// Nothing can be done yet; the reason says why.
    Wait(String),
}

/// Decides how instance `ordinal` starts.
///
/// `initialized` is whether the cluster has ever bootstrapped: once it has, an empty data dir is
/// always filled by a clone, even on the primary's ordinal, so no second history is ever created.
pub fn start_plan(
    ordinal: u32,
    has_data: bool,
    initialized: bool,
    primary: u32,
    ready: &[u32],
) -> StartPlan {
    if has_data {
        return StartPlan::FromData;
    }
    if !initialized {
        return if ordinal == primary {
            StartPlan::Bootstrap
        } else {
            StartPlan::Wait(format!(
                "the cluster is not bootstrapped yet (primary {primary})"
            ))
        };
    }
    let donors = crate::donor_order(ordinal, ready);
    if donors.is_empty() {
        StartPlan::Wait("no Ready member to clone from".into())
    } else {
        StartPlan::Clone(donors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn existing_data_is_never_recloned() {
        assert_eq!(start_plan(2, true, true, 0, &[0, 1]), StartPlan::FromData);
        assert_eq!(start_plan(0, true, false, 0, &[]), StartPlan::FromData);
    }

    #[test]
    fn only_the_first_primary_bootstraps() {
        assert_eq!(start_plan(0, false, false, 0, &[]), StartPlan::Bootstrap);
        assert!(matches!(
            start_plan(1, false, false, 0, &[]),
            StartPlan::Wait(_)
        ));
    }

    #[test]
    fn an_empty_member_of_an_initialized_cluster_clones() {
        assert_eq!(
            start_plan(3, false, true, 0, &[0, 1, 2]),
            StartPlan::Clone(vec![2, 1, 0])
        );
        assert_eq!(
            start_plan(0, false, true, 0, &[1, 2]),
            StartPlan::Clone(vec![1, 2])
        );
        assert!(matches!(
            start_plan(3, false, true, 0, &[]),
            StartPlan::Wait(_)
        ));
    }

    proptest! {
        #[test]
        fn bootstrap_happens_only_once_and_only_on_the_primary(
            ordinal in 0u32..8, has_data: bool, initialized: bool, primary in 0u32..8,
            ready in proptest::collection::vec(0u32..8, 0..8),
        ) {
            let plan = start_plan(ordinal, has_data, initialized, primary, &ready);
            if plan == StartPlan::Bootstrap {
                prop_assert!(!has_data && !initialized && ordinal == primary);
            }
            if has_data { prop_assert_eq!(plan, StartPlan::FromData); }
        }
    }
}
