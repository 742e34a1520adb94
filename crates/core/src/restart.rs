//! When a dead controller may be started again: at once, unless it keeps dying.

/// How restarts of a crashing controller are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// This many restarts within `window_ms` happen at once ...
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
            burst: 3,
            window_ms: 60_000,
            first_delay_ms: 2_000,
            max_delay_ms: 60_000,
        }
    }
}

/// What to do about a controller found dead at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartDecision {
    Now,
    /// Not before `at_ms`; `recent` restarts happened within the window.
    Later {
        at_ms: u64,
        recent: usize,
    },
}

/// `history` holds the times of earlier restarts (milliseconds, any order).
pub fn restart_decision(history: &[u64], now_ms: u64, policy: RestartPolicy) -> RestartDecision {
    let since = now_ms.saturating_sub(policy.window_ms);
    let recent: Vec<u64> = history.iter().copied().filter(|&t| t > since).collect();
    if recent.len() < policy.burst {
        return RestartDecision::Now;
    }
    let doublings = (recent.len() - policy.burst).min(16) as u32;
    let delay = policy
        .first_delay_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.max_delay_ms);
    let last = recent.iter().copied().max().unwrap_or(now_ms);
    let at_ms = last.saturating_add(delay);
    if at_ms <= now_ms {
        RestartDecision::Now
    } else {
        RestartDecision::Later {
            at_ms,
            recent: recent.len(),
        }
    }
}

/// The restart times worth keeping: those still inside the window (older ones no longer
/// count), so the history stays small.
pub fn prune_history(history: &mut Vec<u64>, now_ms: u64, policy: RestartPolicy) {
    let since = now_ms.saturating_sub(policy.window_ms.max(policy.max_delay_ms));
    history.retain(|&t| t > since);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: RestartPolicy = RestartPolicy {
        burst: 3,
        window_ms: 60_000,
        first_delay_ms: 2_000,
        max_delay_ms: 60_000,
    };

    #[test]
    fn a_rare_death_is_restarted_at_once() {
        assert_eq!(restart_decision(&[], 1_000_000, P), RestartDecision::Now);
        assert_eq!(
            restart_decision(&[900_000, 990_000], 1_000_000, P),
            RestartDecision::Now
        );
        // Restarts older than the window do not count.
        assert_eq!(
            restart_decision(&[1, 2, 3, 4, 5], 1_000_000, P),
            RestartDecision::Now
        );
    }

    #[test]
    fn a_controller_that_keeps_dying_is_restarted_ever_more_slowly() {
        let now = 1_000_000;
        assert_eq!(
            restart_decision(&[now - 3_000, now - 2_000, now - 1_000], now, P),
            RestartDecision::Later {
                at_ms: now + 1_000,
                recent: 3
            }
        );
        let four = [now - 4_000, now - 3_000, now - 2_000, now - 1_000];
        assert_eq!(
            restart_decision(&four, now, P),
            RestartDecision::Later {
                at_ms: now + 3_000,
                recent: 4
            }
        );
        assert_eq!(
            restart_decision(&four, now + 3_000, P),
            RestartDecision::Now
        );
    }

    proptest! {
        #[test]
        fn never_more_than_the_burst_at_once_and_never_waits_past_the_cap(
            mut history in proptest::collection::vec(0u64..200_000, 0..40),
            now in 100_000u64..200_000,
        ) {
            history.retain(|&t| t <= now);
            match restart_decision(&history, now, P) {
                RestartDecision::Now => {
                    let recent = history.iter().filter(|&&t| t > now - P.window_ms).count();
                    let last = history.iter().copied().max().unwrap_or(0);
                    prop_assert!(recent < P.burst || now >= last + P.first_delay_ms);
                }
                RestartDecision::Later { at_ms, recent } => {
                    prop_assert!(recent >= P.burst);
                    prop_assert!(at_ms > now);
                    prop_assert!(at_ms <= now + P.max_delay_ms);
                }
            }
        }
    }
}
