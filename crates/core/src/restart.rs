//! When a dead process (the controller, an agent) may be started again: at once, unless it
//! keeps dying soon after it starts.

/// How restarts of a crashing process are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// A process that ran this long before it died was no crash loop: the restarts before it
    /// are forgotten (it may have been killed on purpose, or by a rare fault).
    pub stable_ms: u64,
    /// This many restarts of short-lived runs within `window_ms` happen at once ...
    pub burst: usize,
    pub window_ms: u64,
    /// ... beyond that, each waits twice as long as the previous one, from `first_delay_ms`
    /// up to `max_delay_ms`, counted from the last restart.
    pub first_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            // A crash loop dies within a second or two of starting (bad settings, a panic at
            // start); a process that served this long was killed, not broken.
            stable_ms: 3_000,
            burst: 3,
            window_ms: 60_000,
            first_delay_ms: 2_000,
            max_delay_ms: 60_000,
        }
    }
}

/// What to do about a process found dead at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    Now,
    /// Not before `at_ms`; `recent` short-lived runs happened within the window.
    Later {
        at_ms: u64,
        recent: usize,
    },
}

/// The restarts that count against a process: those of runs that died young.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartHistory {
    /// When each counted restart happened (ms since the epoch), oldest first.
    pub starts: Vec<u64>,
    /// The start whose death was already noted (a process in back-off is found dead many
    /// times, but died once).
    pub death_noted_for: Option<u64>,
}

impl RestartHistory {
    /// The process was found dead at `now_ms`: decides when to start it again. The first time
    /// a run's death is seen, a run that lasted `stable_ms` clears the history.
    pub fn decide(&mut self, now_ms: u64, policy: RestartPolicy) -> RestartDecision {
        let last = self.starts.last().copied();
        if last.is_some() && self.death_noted_for != last {
            self.death_noted_for = last;
            if last.is_some_and(|start| now_ms.saturating_sub(start) >= policy.stable_ms) {
                self.starts.clear();
            }
        }
        let since = now_ms.saturating_sub(policy.window_ms);
        let recent = self.starts.iter().filter(|&&t| t > since).count();
        if recent < policy.burst {
            return RestartDecision::Now;
        }
        let doublings = (recent - policy.burst).min(16) as u32;
        let delay = policy
            .first_delay_ms
            .saturating_mul(1u64 << doublings)
            .min(policy.max_delay_ms);
        let at_ms = last.unwrap_or(now_ms).saturating_add(delay);
        if at_ms <= now_ms {
            RestartDecision::Now
        } else {
            RestartDecision::Later { at_ms, recent }
        }
    }

    /// Records a restart at `now_ms`, keeping only what can still count.
    pub fn started(&mut self, now_ms: u64, policy: RestartPolicy) {
        let since = now_ms.saturating_sub(policy.window_ms.max(policy.max_delay_ms));
        self.starts.retain(|&t| t > since);
        self.starts.push(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: RestartPolicy = RestartPolicy {
        stable_ms: 10_000,
        burst: 3,
        window_ms: 60_000,
        first_delay_ms: 2_000,
        max_delay_ms: 60_000,
    };

    /// Starts at each time, every run dying at the next start.
    fn history(starts: &[u64]) -> RestartHistory {
        let mut h = RestartHistory::default();
        for &t in starts {
            assert_eq!(h.decide(t, P), RestartDecision::Now, "start at {t}");
            h.started(t, P);
        }
        h
    }

    #[test]
    fn a_rare_death_is_restarted_at_once() {
        let mut h = RestartHistory::default();
        assert_eq!(h.decide(1_000_000, P), RestartDecision::Now);
        let mut h = history(&[1_000, 2_000]);
        assert_eq!(h.decide(3_000, P), RestartDecision::Now);
    }

    #[test]
    fn a_process_that_keeps_dying_young_is_restarted_ever_more_slowly() {
        let mut h = history(&[1_000, 2_000, 3_000]);
        assert_eq!(
            h.decide(4_000, P),
            RestartDecision::Later {
                at_ms: 5_000,
                recent: 3
            }
        );
        // Found dead again while waiting: the same death, the same wait.
        assert_eq!(
            h.decide(4_500, P),
            RestartDecision::Later {
                at_ms: 5_000,
                recent: 3
            }
        );
        assert_eq!(h.decide(5_000, P), RestartDecision::Now);
        h.started(5_000, P);
        assert_eq!(
            h.decide(5_100, P),
            RestartDecision::Later {
                at_ms: 9_000,
                recent: 4
            }
        );
    }

    #[test]
    fn a_process_killed_after_running_stably_is_no_crash_loop() {
        // Killed every 12 s, each run healthy until then: never held back.
        let mut h = RestartHistory::default();
        for i in 0..20u64 {
            let t = 1_000 + i * 12_000;
            assert_eq!(h.decide(t, P), RestartDecision::Now);
            h.started(t, P);
        }
        // A long wait in back-off is not mistaken for a stable run: the death was noted young.
        let mut h = history(&[100_000, 101_000, 102_000]);
        let mut at = 103_000;
        for _ in 0..4 {
            let RestartDecision::Later { at_ms, .. } = h.decide(at, P) else {
                panic!("a crash loop must wait");
            };
            assert_eq!(h.decide(at_ms, P), RestartDecision::Now);
            h.started(at_ms, P);
            at = at_ms + 100;
        }
        let RestartDecision::Later { at_ms, .. } = h.decide(at, P) else {
            panic!("a crash loop must wait");
        };
        assert!(at_ms - (at - 100) >= 16_000, "waits {}", at_ms - at);
    }

    proptest! {
        #[test]
        fn never_more_than_the_burst_of_young_deaths_at_once_and_never_past_the_cap(
            gaps in proptest::collection::vec(1u64..20_000, 1..40),
        ) {
            let mut h = RestartHistory::default();
            let mut now = 1_000_000u64;
            let mut young_in_a_row = 0usize;
            for gap in gaps {
                let decision = h.decide(now, P);
                match decision {
                    RestartDecision::Now => {
                        h.started(now, P);
                        young_in_a_row = if gap < P.stable_ms { young_in_a_row + 1 } else { 0 };
                        now += gap;
                    }
                    RestartDecision::Later { at_ms, recent } => {
                        prop_assert!(recent >= P.burst);
                        prop_assert!(at_ms > now && at_ms <= now + P.max_delay_ms);
                        prop_assert!(young_in_a_row >= P.burst);
                        now = at_ms;
                    }
                }
            }
        }
    }
}
