//! Which ordinals join on scale-up and which leave on scale-down.

use std::collections::BTreeSet;

/// The ordinals to remove so that `members` shrinks to `desired`: the highest ones, never the
/// primary. Returns them highest first. Removing the primary is never an option, so the result
/// is shorter than asked when only the primary would remain to remove.
pub fn scale_down_victims(members: &BTreeSet<u32>, desired: u32, primary: u32) -> Vec<u32> {
    let excess = members.len().saturating_sub(desired as usize);
    members
        .iter()
        .rev()
        .copied()
        .filter(|&o| o != primary)
        .take(excess)
        .collect()
}

/// The ordinals to add so that `members` grows to `desired`: the lowest free ones, so identities
/// (and the data dirs kept for them) are reused, as a StatefulSet does.
pub fn scale_up_additions(members: &BTreeSet<u32>, desired: u32) -> Vec<u32> {
    let missing = (desired as usize).saturating_sub(members.len());
    (0u32..)
        .filter(|o| !members.contains(o))
        .take(missing)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    #[test]
    fn removes_the_highest_ordinals() {
        assert_eq!(scale_down_victims(&set(&[0, 1, 2, 3, 4]), 3, 0), vec![4, 3]);
    }

    #[test]
    fn never_removes_the_primary() {
        assert_eq!(scale_down_victims(&set(&[0, 1, 2, 3, 4]), 3, 4), vec![3, 2]);
        assert_eq!(scale_down_victims(&set(&[0, 1]), 0, 1), vec![0]);
    }

    #[test]
    fn nothing_to_remove_when_not_above_desired() {
        assert!(scale_down_victims(&set(&[0, 1, 2]), 3, 0).is_empty());
        assert!(scale_down_victims(&set(&[0, 1, 2]), 5, 0).is_empty());
    }

    #[test]
    fn adds_the_lowest_free_ordinals() {
        assert_eq!(scale_up_additions(&set(&[0, 1, 2]), 5), vec![3, 4]);
        assert_eq!(scale_up_additions(&set(&[0, 1, 4]), 5), vec![2, 3]);
        assert!(scale_up_additions(&set(&[0, 1, 2]), 3).is_empty());
    }

    proptest! {
        #[test]
        fn scale_down_keeps_the_primary_and_reaches_desired(
            members in proptest::collection::btree_set(0u32..16, 1..16),
            desired in 1u32..16,
            pick in any::<proptest::sample::Index>(),
        ) {
            let primary = *pick.get(&members.iter().copied().collect::<Vec<_>>());
            let victims = scale_down_victims(&members, desired, primary);
            prop_assert!(!victims.contains(&primary));
            let kept: BTreeSet<u32> = members.difference(&victims.iter().copied().collect()).copied().collect();
            prop_assert_eq!(kept.len(), members.len().min(desired as usize).max(1));
            // Every removed ordinal is above every kept non-primary ordinal.
            for v in &victims {
                prop_assert!(kept.iter().filter(|&&k| k != primary).all(|k| k < v));
            }
        }

        #[test]
        fn scale_up_reaches_desired_with_new_lowest_ordinals(
            members in proptest::collection::btree_set(0u32..16, 0..16),
            desired in 0u32..24,
        ) {
            let added = scale_up_additions(&members, desired);
            prop_assert!(added.iter().all(|o| !members.contains(o)));
            prop_assert_eq!(members.len() + added.len(), members.len().max(desired as usize));
            let free_below: Vec<u32> = (0..*added.last().unwrap_or(&0)).filter(|o| !members.contains(o) && !added.contains(o)).collect();
            prop_assert!(free_below.is_empty());
        }
    }
}
