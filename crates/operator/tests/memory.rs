//! Operator memory with one `MySet`, for BENCHMARKS.md (a measurement, not a check):
//!
//!     cargo test -p myset-operator --release --test memory -- --ignored --nocapture
//!
//! No Kubernetes API server runs here, so the operator is measured in-process against the
//! in-memory API server of the scenario tests: the baseline is this process with that API
//! server and the simulated cluster loaded, and the figure is what one `MySet`'s brain adds
//! after ten (simulated) minutes of operation.

mod sim;

use sim::Harness;
use std::time::Duration;

/// This process's resident set size, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

#[tokio::test(start_paused = true)]
#[ignore = "a measurement for BENCHMARKS.md; run it with --ignored --nocapture"]
async fn operator_rss_with_one_myset() {
    let h = Harness::new(3, 3).await;
    let baseline = rss_kib();
    h.converge(3).await;
    let converged = rss_kib();
    // Ten minutes of reconciling, probing, listing and status writes.
    let ten_minutes = Duration::from_secs(600);
    assert!(!h.until(ten_minutes, || async { false }).await);
    let after = rss_kib();
    println!(
        "baseline (API server and simulated cluster) {baseline} KiB; \
         with one MySet converged {converged} KiB (+{} KiB); \
         after 10 min {after} KiB (+{} KiB); ratio {:.2}",
        converged.saturating_sub(baseline),
        after.saturating_sub(baseline),
        after as f64 / baseline as f64
    );
}
