//! The checker: after the faults, every acknowledged write is everywhere, the members agree,
//! and the history shows no two primaries (Galera: no two Primary components) taking writes at
//! once.

use crate::cluster::{Cluster, Credentials};
use crate::load::{connect_to, ReadStats, TABLE};
use myset_api::{ClusterStatus, EventKind, InstanceStatus, Topology};
use mysql_async::prelude::Queryable;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

pub struct Verdict {
    pub lost: u64,
    pub split_brain: u64,
    pub all_rejoined: bool,
    pub converged: bool,
    pub problems: Vec<String>,
}

/// Checks the cluster after the faults. It never gives up early: a member that cannot be
/// read in time, or a status that cannot be had, is a problem in the verdict, so a failed run
/// still ends with a report that says why.
pub async fn verify(
    cluster: &Cluster,
    topology: Topology,
    credentials: &Credentials,
    acked: &[u64],
    timeout: Duration,
) -> Verdict {
    let mut problems = Vec::new();
    let status = match cluster.wait_converged(timeout).await {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(format!("not every instance rejoined: {e:#}"));
            match cluster.status().await {
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(format!("no status to check the members against: {e:#}"));
                    None
                }
            }
        }
    };
    let Some(status) = status else {
        return Verdict {
            lost: 0,
            split_brain: 0,
            all_rejoined: false,
            converged: false,
            problems,
        };
    };
    let all_rejoined = status.converged();

    // The replicas converge to the primary's GTID position; Galera members to the same
    // cluster state and seqno. The positions are read from the servers themselves: the
    // controller's status is its last probe, up to a probe period old, and could show members
    // level from before the writer's last writes while one of them is still applying those.
    let deadline = Instant::now() + timeout;
    let mut positions;
    let converged = loop {
        let now = cluster.status().await.ok();
        positions = live_positions(topology, credentials, now.as_ref().unwrap_or(&status)).await;
        if positions.len() == 1 && now.is_some_and(|s| s.converged()) {
            break true;
        }
        if Instant::now() > deadline {
            problems.push(format!("positions differ: {positions:?}"));
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let acked: BTreeSet<u64> = acked.iter().copied().collect();
    let mut lost = 0u64;
    let mut checksums = BTreeSet::new();
    let mut primary_rows = Vec::new();
    // Converged is not yet answering: a Galera member can refuse queries (1047, "WSREP has
    // not yet prepared node") for a moment after it is level, so each member gets until the
    // deadline to answer.
    let deadline = Instant::now() + timeout;
    for instance in &status.instances {
        let (rows, checksum) = match table_when_answering(credentials, instance, deadline).await {
            Ok(table) => table,
            Err(e) => {
                problems.push(format!("cannot read {}'s rows: {e:#}", instance.name));
                continue;
            }
        };
        let present: BTreeSet<u64> = rows.iter().map(|(id, _)| *id).collect();
        let missing: Vec<u64> = acked.difference(&present).copied().collect();
        if !missing.is_empty() {
            lost = lost.max(missing.len() as u64);
            problems.push(format!(
                "{} lacks {} acknowledged writes, first {:?}",
                instance.name,
                missing.len(),
                &missing[..missing.len().min(5)]
            ));
        }
        checksums.insert(checksum);
        if instance.ordinal == status.primary {
            primary_rows = rows;
        }
    }
    if checksums.len() > 1 {
        problems.push(format!(
            "table checksums differ across instances: {checksums:?}"
        ));
    }

    let split_brain = match topology {
        Topology::Replication => {
            let sequence = primary_sequence(cluster);
            let writers: Vec<u32> = primary_rows.iter().map(|(_, server)| *server).collect();
            let windows = split_brain_windows(&writers, &sequence);
            if windows > 0 {
                problems.push(format!(
                    "{windows} split-brain window(s): writers {:?} do not follow the primaries {sequence:?}",
                    runs(&writers)
                ));
            }
            windows
        }
        Topology::Galera => {
            // A member that reports no state yet is "not converged", not another history.
            let uuids: BTreeSet<&str> = positions
                .iter()
                .map(|p| p.0.as_str())
                .filter(|uuid| !uuid.is_empty())
                .collect();
            let histories = galera_histories(uuids.len(), positions.len(), checksums.len());
            if histories > 1 {
                problems.push(format!(
                    "{histories} diverging Galera histories: positions {positions:?}, checksums {checksums:?}"
                ));
            }
            histories.saturating_sub(1) as u64
        }
    };
    Verdict {
        lost,
        split_brain,
        all_rejoined,
        converged,
        problems,
    }
}

/// A member's rows (id and the server that accepted each) and the table's checksum.
type Table = (Vec<(u64, u32)>, Option<u64>);

/// Reads a member's table, trying again until `deadline` while it cannot answer.
async fn table_when_answering(
    credentials: &Credentials,
    instance: &InstanceStatus,
    deadline: Instant,
) -> anyhow::Result<Table> {
    loop {
        match table_of(credentials, instance).await {
            Ok(table) => return Ok(table),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn table_of(credentials: &Credentials, instance: &InstanceStatus) -> anyhow::Result<Table> {
    let mut conn = connect_to(credentials, &instance.host, instance.port).await?;
    let rows: Vec<(u64, u32)> = conn
        .query(format!("SELECT id, server_id FROM {TABLE} ORDER BY id"))
        .await?;
    let checksum: Option<(String, Option<u64>)> =
        conn.query_first(format!("CHECKSUM TABLE {TABLE}")).await?;
    let _ = conn.disconnect().await;
    Ok((rows, checksum.and_then(|(_, c)| c)))
}

/// Where each member stands now, asked of its server: the GTID position of the replication
/// topology, or a Galera member's cluster state UUID and last committed seqno. A member that
/// cannot answer stands nowhere (an empty position), which keeps the set from converging.
async fn live_positions(
    topology: Topology,
    credentials: &Credentials,
    status: &ClusterStatus,
) -> BTreeSet<(String, String)> {
    let mut positions = BTreeSet::new();
    for instance in &status.instances {
        positions.insert(
            live_position(topology, credentials, instance)
                .await
                .unwrap_or_default(),
        );
    }
    positions
}

async fn live_position(
    topology: Topology,
    credentials: &Credentials,
    instance: &InstanceStatus,
) -> anyhow::Result<(String, String)> {
    let mut conn = connect_to(credentials, &instance.host, instance.port).await?;
    let position = match topology {
        Topology::Replication => {
            let gtid: Option<String> = conn.query_first("SELECT @@GLOBAL.gtid_current_pos").await?;
            (String::new(), gtid.unwrap_or_default())
        }
        Topology::Galera => {
            let rows: Vec<(String, String)> = conn
                .query(
                    "SHOW GLOBAL STATUS WHERE Variable_name IN \
                     ('wsrep_cluster_state_uuid', 'wsrep_last_committed')",
                )
                .await?;
            let value = |name: &str| {
                rows.iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (
                value("wsrep_cluster_state_uuid"),
                value("wsrep_last_committed"),
            )
        }
    };
    let _ = conn.disconnect().await;
    Ok(position)
}

/// How many separate histories a converged Galera cluster shows. Two Primary components that
/// both committed cannot be merged again: their members end up under different cluster state
/// UUIDs (a second bootstrap), or under the same UUID and seqno with different rows. Members
/// merely behind (same UUID, lower seqno) are one history.
pub fn galera_histories(uuids: usize, positions: usize, checksums: usize) -> usize {
    if uuids > 1 {
        uuids
    } else if positions == 1 && checksums > 1 {
        checksums
    } else {
        1
    }
}

/// Reads through ro must have answered (at least `min_success` of those that counted) and
/// none may have been staler than `limit`.
pub fn reads(stats: &ReadStats, min_success: f64, limit: Duration) -> Vec<String> {
    let mut problems = Vec::new();
    match stats.success_ratio() {
        None => problems.push("no read through ro was attempted".to_string()),
        Some(ratio) if ratio < min_success => problems.push(format!(
            "only {:.2}% of reads through ro succeeded ({} of {}); at least {:.0}% must",
            ratio * 100.0,
            stats.ok,
            stats.ok + stats.failed,
            min_success * 100.0
        )),
        Some(_) => {}
    }
    if stats.stale > 0 {
        problems.push(format!(
            "{} read(s) through ro were staler than {}s, the stalest by at least {:.1}s",
            stats.stale,
            limit.as_secs(),
            stats.max_staleness.as_secs_f64()
        ));
    }
    problems
}

/// Server ids of the successive primaries, from the controller's events.
fn primary_sequence(cluster: &Cluster) -> Vec<u32> {
    let mut seq = vec![100];
    for e in cluster
        .events()
        .iter()
        .filter(|e| e.kind == EventKind::Promoted)
    {
        if let Some(o) = e.to {
            seq.push(100 + o);
        }
    }
    seq
}

/// Consecutive runs of the same writer, in id order.
pub fn runs(writers: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for &w in writers {
        if out.last() != Some(&w) {
            out.push(w);
        }
    }
    out
}

/// Writes accepted by server A, then B, then A again without A being promoted again in
/// between mean two servers took writes in the same period: each run of writers must follow
/// the order of promotions. Returns the number of runs that break that order.
pub fn split_brain_windows(writers: &[u32], primaries: &[u32]) -> u64 {
    let mut position = 0usize;
    let mut windows = 0;
    for w in runs(writers) {
        match primaries[position..].iter().position(|&p| p == w) {
            Some(offset) => position += offset,
            None => windows += 1,
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_following_promotions_are_fine() {
        assert_eq!(
            split_brain_windows(&[100, 100, 101, 101, 100], &[100, 101, 100]),
            0
        );
        assert_eq!(split_brain_windows(&[100, 102], &[100, 101, 102]), 0);
        assert_eq!(split_brain_windows(&[], &[100]), 0);
    }

    fn stats(ok: u64, failed: u64, stale: u64) -> ReadStats {
        ReadStats {
            ok,
            failed,
            failed_while_stopped: 7,
            max_staleness: Duration::from_secs(if stale > 0 { 15 } else { 3 }),
            stale,
        }
    }

    #[test]
    fn reads_pass_at_99_percent_and_none_stale() {
        let limit = Duration::from_secs(12);
        assert!(reads(&stats(990, 10, 0), 0.99, limit).is_empty());
        assert_eq!(reads(&stats(989, 11, 0), 0.99, limit).len(), 1);
        assert_eq!(reads(&stats(1000, 0, 1), 0.99, limit).len(), 1);
        assert_eq!(reads(&stats(0, 0, 0), 0.99, limit).len(), 1);
    }

    #[test]
    fn galera_members_split_only_when_their_histories_cannot_merge() {
        // One UUID, one seqno, one checksum: one history.
        assert_eq!(galera_histories(1, 1, 1), 1);
        // A member still behind is not a split.
        assert_eq!(galera_histories(1, 2, 2), 1);
        // A second bootstrap: two cluster state UUIDs.
        assert_eq!(galera_histories(2, 2, 1), 2);
        // Same position, different rows.
        assert_eq!(galera_histories(1, 1, 2), 2);
    }

    #[test]
    fn interleaved_writers_are_split_brain() {
        // 100 writing again after 101 took over is one window; 101 going on is not another.
        assert_eq!(split_brain_windows(&[100, 101, 100, 101], &[100, 101]), 1);
        assert_eq!(
            split_brain_windows(&[100, 101, 100, 101, 100], &[100, 101]),
            2
        );
        assert_eq!(split_brain_windows(&[101], &[100]), 1);
    }
}
