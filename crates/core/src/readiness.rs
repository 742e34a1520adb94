//! Readiness as the controller tracks it from successive probes, like a Pod's readiness.

/// Consecutive probe results needed to change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub success: u32,
    pub failure: u32,
}

impl Default for Thresholds {
    /// One failure removes an instance from `ro` at once (within one probe period plus the probe
    /// timeout); one success brings it back.
    fn default() -> Self {
        Thresholds {
            success: 1,
            failure: 1,
        }
    }
}

/// A change of readiness worth acting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    BecameReady,
    BecameUnready,
}

/// Readiness of one instance. New instances start unready, as Pods do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    thresholds: Thresholds,
    ready: bool,
    streak: u32,
    /// Whether it has been Ready since it was created (an instance's start resets it).
    been_ready: bool,
}

impl Readiness {
    pub fn new(thresholds: Thresholds) -> Self {
        Readiness {
            thresholds: Thresholds {
                success: thresholds.success.max(1),
                failure: thresholds.failure.max(1),
            },
            ready: false,
            streak: 0,
            been_ready: false,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether it has not been Ready yet since it was created: an instance coming up.
    pub fn coming_up(&self) -> bool {
        !self.been_ready
    }

    /// Feeds one probe result; returns the transition it caused, if any.
    pub fn observe(&mut self, probe_ok: bool) -> Option<Transition> {
        if probe_ok == self.ready {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if probe_ok {
            self.thresholds.success
        } else {
            self.thresholds.failure
        };
        if self.streak < needed {
            return None;
        }
        self.ready = probe_ok;
        self.been_ready |= probe_ok;
        self.streak = 0;
        Some(if probe_ok {
            Transition::BecameReady
        } else {
            Transition::BecameUnready
        })
    }
}

/// How long after its start an instance that is not Ready yet is checked between probe ticks.
/// Past this it is not coming up quickly anyway (a long clone, a crash loop), and the probe
/// tick suffices.
pub const QUICK_CHECK_WINDOW_MS: u64 = 120_000;

/// Whether an instance is checked on the quick period, between probe ticks, so a start is
/// noticed as soon as it is Ready: only while it comes up (never Ready since this start of its
/// agent, started `since_start_ms` ago, within [`QUICK_CHECK_WINDOW_MS`]).
///
/// Such checks cannot speed up failure detection: failure thresholds count results on a Ready
/// instance, and an instance that is checked quickly has never been Ready since its start, so
/// a failed check changes nothing for it.
pub fn check_quickly(readiness: &Readiness, since_start_ms: Option<u64>) -> bool {
    readiness.coming_up() && since_start_ms.is_some_and(|ms| ms < QUICK_CHECK_WINDOW_MS)
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new(Thresholds::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn starts_unready_and_becomes_ready_on_success() {
        let mut r = Readiness::default();
        assert!(!r.is_ready());
        assert_eq!(r.observe(true), Some(Transition::BecameReady));
        assert_eq!(r.observe(true), None);
        assert_eq!(r.observe(false), Some(Transition::BecameUnready));
        assert_eq!(r.observe(false), None);
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        let mut r = Readiness::new(Thresholds {
            success: 2,
            failure: 3,
        });
        assert_eq!(r.observe(true), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(true), None);
        assert_eq!(r.observe(true), Some(Transition::BecameReady));
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(true), None, "a success resets the failure streak");
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), None);
        assert_eq!(r.observe(false), Some(Transition::BecameUnready));
    }

    #[test]
    fn an_instance_comes_up_until_it_is_first_ready() {
        let mut r = Readiness::default();
        assert!(r.coming_up());
        r.observe(false);
        assert!(r.coming_up());
        r.observe(true);
        assert!(!r.coming_up());
        r.observe(false);
        assert!(!r.is_ready());
        assert!(!r.coming_up(), "failing after being Ready is not coming up");
    }

    #[test]
    fn quick_checks_only_while_coming_up_within_the_window() {
        let fresh = Readiness::default();
        assert!(check_quickly(&fresh, Some(0)));
        assert!(check_quickly(&fresh, Some(QUICK_CHECK_WINDOW_MS - 1)));
        assert!(!check_quickly(&fresh, Some(QUICK_CHECK_WINDOW_MS)));
        assert!(
            !check_quickly(&fresh, None),
            "not started by this controller: the tick suffices"
        );
        let mut ready = Readiness::default();
        ready.observe(true);
        assert!(!check_quickly(&ready, Some(0)));
        ready.observe(false);
        assert!(
            !check_quickly(&ready, Some(0)),
            "a failed instance is watched on the tick, as before"
        );
    }

    proptest! {
        /// Quick checks never cause a failure transition: whatever results they feed, an
        /// instance checked quickly only ever becomes Ready.
        #[test]
        fn quick_checks_never_mark_an_instance_unready(
            success in 1u32..4,
            failure in 1u32..4,
            probes in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            let mut r = Readiness::new(Thresholds { success, failure });
            for p in probes {
                if !check_quickly(&r, Some(0)) { break; }
                prop_assert_ne!(r.observe(p), Some(Transition::BecameUnready));
            }
        }

        #[test]
        fn state_changes_only_after_threshold_consecutive_results(
            success in 1u32..4,
            failure in 1u32..4,
            probes in proptest::collection::vec(any::<bool>(), 0..60),
        ) {
            let mut r = Readiness::new(Thresholds { success, failure });
            let mut streak_ok = 0u32;
            let mut streak_fail = 0u32;
            for p in probes {
                if p { streak_ok += 1; streak_fail = 0 } else { streak_fail += 1; streak_ok = 0 }
                let before = r.is_ready();
                let t = r.observe(p);
                prop_assert_eq!(t.is_some(), before != r.is_ready());
                match t {
                    Some(Transition::BecameReady) => { prop_assert!(p && streak_ok >= success); streak_ok = 0; }
                    Some(Transition::BecameUnready) => { prop_assert!(!p && streak_fail >= failure); streak_fail = 0; }
                    None => {}
                }
                if r.is_ready() { streak_ok = 0 } else { streak_fail = 0 }
            }
        }
    }
}
