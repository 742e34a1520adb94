//! Clocks the agent keeps from successive samples of its server's state.

use std::time::{Duration, Instant};

/// When a replica last heard from its primary (an event or a heartbeat), from successive
/// samples of its replication status.
#[derive(Debug, Default)]
pub struct StreamClock {
    last: Option<(u64, String)>,
    heard_at: Option<Instant>,
}

impl StreamClock {
    /// Records a sample taken at `now` and returns the silence so far: None until a sample
    /// shows the stream advancing, since an agent that has only just started cannot know
    /// when the primary last spoke.
    ///
    /// A heartbeat count that grew is word from the primary. So is a received position that
    /// moved while the IO thread was connected; while it is not, a moving position comes
    /// from CHANGE MASTER or START SLAVE, not from the primary. A count that fell was reset
    /// (a restart, CHANGE MASTER) and only starts a new baseline.
    pub fn observe(
        &mut self,
        heartbeats: u64,
        received: &str,
        io_running: bool,
        now: Instant,
    ) -> Option<Duration> {
        if let Some((h, r)) = &self.last {
            if heartbeats > *h || (io_running && received != r) {
                self.heard_at = Some(now);
            }
        }
        self.last = Some((heartbeats, received.to_string()));
        self.heard_at.map(|at| now.saturating_duration_since(at))
    }

    /// Forgets everything: the server is no longer a replica.
    pub fn forget(&mut self) {
        *self = StreamClock::default();
    }
}

/// Since when commits have been waiting for a semi-sync acknowledgement, as continuously
/// observed by successive samples.
#[derive(Debug, Default)]
pub struct WaitClock {
    since_ms: Option<u64>,
}

impl WaitClock {
    /// Records whether commits wait at `now_ms` (since the Unix epoch); returns since when
    /// they have been waiting, None when none waits.
    pub fn observe(&mut self, waiting: bool, now_ms: u64) -> Option<u64> {
        if waiting {
            Some(*self.since_ms.get_or_insert(now_ms))
        } else {
            self.since_ms = None;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_unknown_until_the_stream_is_seen_advancing() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = StreamClock::default();
        assert_eq!(c.observe(5, "0-1-9", true, t0), None);
        assert_eq!(c.observe(5, "0-1-9", true, t0 + s(3)), None);
        assert_eq!(c.observe(6, "0-1-9", true, t0 + s(4)), Some(s(0)));
        assert_eq!(c.observe(6, "0-1-9", true, t0 + s(6)), Some(s(2)));
        // An event with no heartbeat in between.
        assert_eq!(c.observe(6, "0-1-10", true, t0 + s(7)), Some(s(0)));
        // The IO thread stops: silence grows.
        assert_eq!(c.observe(6, "0-1-10", false, t0 + s(9)), Some(s(2)));
    }

    #[test]
    fn a_reset_or_a_position_moved_without_a_connection_is_not_word_from_the_primary() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut c = StreamClock::default();
        c.observe(5, "0-1-9", true, t0);
        c.observe(6, "0-1-9", true, t0 + s(1));
        // CHANGE MASTER to an unreachable primary: count reset, position re-initialised.
        assert_eq!(c.observe(0, "0-2-3", false, t0 + s(4)), Some(s(3)));
        assert_eq!(c.observe(0, "0-2-3", false, t0 + s(5)), Some(s(4)));
        assert_eq!(c.observe(1, "0-2-3", true, t0 + s(6)), Some(s(0)));
        c.forget();
        assert_eq!(c.observe(1, "0-2-3", true, t0 + s(7)), None);
    }

    #[test]
    fn waiting_commits_keep_the_time_they_started_waiting() {
        let mut w = WaitClock::default();
        assert_eq!(w.observe(false, 1_000), None);
        assert_eq!(w.observe(true, 2_000), Some(2_000));
        assert_eq!(w.observe(true, 3_000), Some(2_000));
        assert_eq!(w.observe(false, 4_000), None);
        assert_eq!(w.observe(true, 5_000), Some(5_000));
    }
}
