//! The checker: after the faults, every acknowledged write is everywhere, the replicas agree,
//! and the history shows no two primaries taking writes at once.

use crate::cluster::{Cluster, Credentials};
use crate::load::{connect_to, ReadStats, TABLE};
use myset_api::EventKind;
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

pub async fn verify(
    cluster: &Cluster,
    credentials: &Credentials,
    acked: &[u64],
    timeout: Duration,
) -> anyhow::Result<Verdict> {
    let mut problems = Vec::new();
    let status = match cluster.wait_converged(timeout).await {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("not every instance rejoined: {e:#}"));
            cluster.status().await?
        }
    };
    let all_rejoined = status.converged();

    // The replicas converge to the primary's GTID position.
    let deadline = Instant::now() + timeout;
    let converged = loop {
        let s = cluster.status().await?;
        let positions: BTreeSet<String> = s
            .instances
            .iter()
            .map(|i| {
                i.gtid
                    .as_ref()
                    .map(|g| g.current.clone())
                    .unwrap_or_default()
            })
            .collect();
        if positions.len() == 1 && s.converged() {
            break true;
        }
        if Instant::now() > deadline {
            problems.push(format!("GTID positions differ: {positions:?}"));
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let acked: BTreeSet<u64> = acked.iter().copied().collect();
    let mut lost = 0u64;
    let mut checksums = BTreeSet::new();
    let mut primary_rows = Vec::new();
    for instance in &status.instances {
        let mut conn = connect_to(credentials, &instance.host, instance.port).await?;
        let rows: Vec<(u64, u32)> = conn
            .query(format!("SELECT id, server_id FROM {TABLE} ORDER BY id"))
            .await?;
        let checksum: Option<(String, Option<u64>)> =
            conn.query_first(format!("CHECKSUM TABLE {TABLE}")).await?;
        let _ = conn.disconnect().await;
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
        checksums.insert(checksum.and_then(|(_, c)| c));
        if instance.ordinal == status.primary {
            primary_rows = rows;
        }
    }
    if checksums.len() > 1 {
        problems.push(format!(
            "table checksums differ across instances: {checksums:?}"
        ));
    }

    let sequence = primary_sequence(cluster);
    let writers: Vec<u32> = primary_rows.iter().map(|(_, server)| *server).collect();
    let split_brain = split_brain_windows(&writers, &sequence);
    if split_brain > 0 {
        problems.push(format!(
            "{split_brain} split-brain window(s): writers {:?} do not follow the primaries {sequence:?}",
            runs(&writers)
        ));
    }
    Ok(Verdict {
        lost,
        split_brain,
        all_rejoined,
        converged,
        problems,
    })
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
