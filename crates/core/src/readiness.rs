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
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
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
        self.streak = 0;
        Some(if probe_ok {
            Transition::BecameReady
        } else {
            Transition::BecameUnready
        })
    }
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

    proptest! {
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
