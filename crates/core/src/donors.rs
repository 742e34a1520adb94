//! Whom an empty instance clones from.

/// Orders the Ready peers an empty instance `target` should try to clone from.
///
/// The tutorial only ever tries `target - 1`. We prefer the nearest lower ordinal, fall back
/// through the lower ordinals in descending order, then to any other Ready member, nearest first.
/// `target` itself is never a donor; duplicates in `ready` are ignored.
pub fn donor_order(target: u32, ready: &[u32]) -> Vec<u32> {
    let mut lower: Vec<u32> = ready.iter().copied().filter(|&o| o < target).collect();
    let mut higher: Vec<u32> = ready.iter().copied().filter(|&o| o > target).collect();
    lower.sort_unstable_by(|a, b| b.cmp(a));
    lower.dedup();
    higher.sort_unstable();
    higher.dedup();
    lower.extend(higher);
    lower
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefers_the_ordinal_just_below() {
        assert_eq!(donor_order(3, &[0, 1, 2]), vec![2, 1, 0]);
    }

    #[test]
    fn falls_back_through_lower_ordinals_when_the_one_below_is_not_ready() {
        assert_eq!(donor_order(3, &[0, 1]), vec![1, 0]);
        assert_eq!(donor_order(3, &[0]), vec![0]);
    }

    #[test]
    fn falls_back_to_higher_ordinals_last() {
        assert_eq!(donor_order(0, &[2, 1]), vec![1, 2]);
        assert_eq!(donor_order(2, &[4, 0, 3]), vec![0, 3, 4]);
    }

    #[test]
    fn no_ready_peer_means_no_donor() {
        assert!(donor_order(1, &[]).is_empty());
        assert!(donor_order(1, &[1]).is_empty());
    }

    proptest! {
        #[test]
        fn every_ready_peer_appears_once_and_never_the_target(
            target in 0u32..20,
            ready in proptest::collection::vec(0u32..20, 0..30),
        ) {
            let order = donor_order(target, &ready);
            let mut expected: Vec<u32> = ready.iter().copied().filter(|&o| o != target).collect();
            expected.sort_unstable();
            expected.dedup();
            let mut got = order.clone();
            got.sort_unstable();
            prop_assert_eq!(got, expected);
            prop_assert!(!order.contains(&target));
        }

        #[test]
        fn lower_ordinals_come_first_nearest_first(
            target in 0u32..20,
            ready in proptest::collection::vec(0u32..20, 0..30),
        ) {
            let order = donor_order(target, &ready);
            let split = order.iter().position(|&o| o > target).unwrap_or(order.len());
            prop_assert!(order[split..].iter().all(|&o| o > target));
            prop_assert!(order[..split].windows(2).all(|w| w[0] > w[1]));
            prop_assert!(order[split..].windows(2).all(|w| w[0] < w[1]));
        }
    }
}
