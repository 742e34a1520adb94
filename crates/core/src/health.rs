//! What makes an instance Ready, given what its agent read from the server.

use myset_api::{ReplicationStatus, Role};

/// Whether a live server may serve reads: a primary always; a replica only while both
/// replication threads run and it lags by at most `max_lag_seconds`. Err says why not.
pub fn readiness(
    role: Role,
    replication: Option<&ReplicationStatus>,
    max_lag_seconds: u64,
) -> Result<(), String> {
    if role == Role::Primary {
        return Ok(());
    }
    let Some(r) = replication else {
        return Err("replication is not configured".into());
    };
    if !r.io_running {
        return Err(match &r.last_error {
            Some(e) => format!("replication IO thread is not running: {e}"),
            None => "replication IO thread is not running".into(),
        });
    }
    if !r.sql_running {
        return Err(match &r.last_error {
            Some(e) => format!("replication SQL thread is not running: {e}"),
            None => "replication SQL thread is not running".into(),
        });
    }
    match r.seconds_behind {
        Some(lag) if lag <= max_lag_seconds => Ok(()),
        Some(lag) => Err(format!("replication lag {lag}s exceeds {max_lag_seconds}s")),
        None => Err("replication lag is unknown".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy(lag: u64) -> ReplicationStatus {
        ReplicationStatus {
            source: "127.0.0.1:1".into(),
            received: String::new(),
            sql_error: None,
            heartbeats: 0,
            io_running: true,
            sql_running: true,
            seconds_behind: Some(lag),
            last_error: None,
        }
    }

    #[test]
    fn primary_is_ready_without_replication() {
        assert!(readiness(Role::Primary, None, 10).is_ok());
    }

    #[test]
    fn replica_needs_both_threads_and_small_lag() {
        assert!(readiness(Role::Replica, Some(&healthy(0)), 10).is_ok());
        assert!(readiness(Role::Replica, Some(&healthy(10)), 10).is_ok());
        assert!(readiness(Role::Replica, Some(&healthy(11)), 10)
            .unwrap_err()
            .contains("lag 11s"));
        assert!(readiness(Role::Replica, None, 10).is_err());
        let mut io_down = healthy(0);
        io_down.io_running = false;
        io_down.last_error = Some("cannot connect".into());
        assert!(readiness(Role::Replica, Some(&io_down), 10)
            .unwrap_err()
            .contains("cannot connect"));
        let mut sql_down = healthy(0);
        sql_down.sql_running = false;
        sql_down.seconds_behind = None;
        assert!(readiness(Role::Replica, Some(&sql_down), 10)
            .unwrap_err()
            .contains("SQL thread"));
    }
}
