//! `myset chaos`: runs the harness and prints its report.

use myset_chaos::{ChaosOptions, ChaosReport, FaultReport};
use std::path::PathBuf;

pub async fn run(options: ChaosOptions, report_file: Option<PathBuf>) -> anyhow::Result<()> {
    say!(
        "chaos: cluster {}, {} faults, seed {} (rerun with --seed {})",
        options.name,
        options.faults,
        options.seed,
        options.seed
    );
    say!(
        "{:>4}  {:<34} {:>8} {:>9} {:>8} {:>13} {:>7}  RESULT",
        "#",
        "FAULT",
        "GAP_S",
        "HEALED_S",
        "PRIMARY",
        "READS_OK/FAIL",
        "STALE_S"
    );
    let report = myset_chaos::run(options, print_fault).await?;
    if let Some(path) = report_file {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    }
    summary(&report);
    if !report.passed() {
        anyhow::bail!("chaos run failed: {}", report.problems.join("; "));
    }
    Ok(())
}

fn print_fault(f: &FaultReport) {
    say!(
        "{:>4}  {:<34} {:>8.3} {:>9.1} {:>3} -> {:<2} {:>13} {:>7.1}  {}",
        f.index + 1,
        f.fault.to_string(),
        f.write_gap_s,
        f.healed_in_s,
        f.primary_before,
        f.primary_after,
        format!("{}/{}", f.reads_ok, f.reads_failed),
        f.max_read_staleness_s,
        if f.ok {
            "ok".to_string()
        } else {
            format!("FAILED: {}", f.detail)
        }
    );
}

fn summary(r: &ChaosReport) {
    let mut gaps: Vec<f64> = r.faults.iter().map(|f| f.write_gap_s).collect();
    gaps.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        gaps.get(((gaps.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or_default()
    };
    say!(
        "acknowledged writes {}, lost {}, split-brain windows {}, every instance rejoined: {}, replicas converged: {}",
        r.acknowledged_writes, r.lost_writes, r.split_brain_windows, r.all_rejoined, r.converged
    );
    say!(
        "write gap over all faults: median {:.3}s, p95 {:.3}s, max {:.3}s",
        pick(0.5),
        pick(0.95),
        gaps.last().copied().unwrap_or_default(),
    );
    say!(
        "reads through ro ({} endpoints): ok {}, failed {} ({:.2}% succeeded, at least {:.0}% must), \
         failed while stopped on purpose {}; stalest read {:.1}s (limit {:.0}s), {} stale",
        r.endpoints.map_or_else(|| "unknown".to_string(), |p| p.to_string()),
        r.reads_ok,
        r.reads_failed,
        r.read_success_ratio * 100.0,
        myset_chaos::min_read_success(r.endpoints) * 100.0,
        r.reads_failed_while_stopped,
        r.max_read_staleness_s,
        r.read_staleness_limit_s,
        r.stale_reads
    );
    for p in &r.problems {
        say!("problem: {p}");
    }
    let failed = r.faults.iter().filter(|f| !f.ok).count() + usize::from(!r.problems.is_empty());
    let passed = r.faults.iter().filter(|f| f.ok).count();
    say!("chaos: {passed} passed, {failed} failed");
}
