//! The fault-injection harness in CI, against real clusters: at least 30 randomized faults for
//! each topology, partitions included when run as root, with 0 acknowledged writes lost, 0
//! split-brain windows, and every instance rejoined. MYSET_CHAOS_FAULTS and
//! MYSET_GALERA_CHAOS_FAULTS override the counts; MYSET_CHAOS_SEED replays a run.

mod support;

use std::sync::Mutex;
use std::time::Duration;
use support::Cluster;

/// One cluster at a time: two chaos runs side by side on a 2-core machine would measure each
/// other's load rather than the faults.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn randomized_faults_lose_no_acknowledged_write() {
    run_chaos("chaos", "replication", "MYSET_CHAOS_FAULTS");
}

#[test]
fn randomized_galera_faults_lose_no_acknowledged_write() {
    if !support::galera_available() {
        return;
    }
    run_chaos("chaos-galera", "galera", "MYSET_GALERA_CHAOS_FAULTS");
}

fn run_chaos(name: &str, topology: &str, faults_variable: &str) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let faults = std::env::var(faults_variable).unwrap_or_else(|_| "30".into());
    let seed = std::env::var("MYSET_CHAOS_SEED").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        nanos.to_string()
    });
    let cluster = Cluster::new(name);
    let report_file = cluster.scratch().join("chaos-report.json");
    let (rw, ro) = (cluster.rw_port.to_string(), cluster.ro_port.to_string());
    let report_arg = report_file.to_string_lossy().into_owned();
    // The harness destroys its cluster; a copy of its logs outlives it for a failure's output.
    let kept_logs = cluster.scratch().join("kept-logs");
    let kept_arg = kept_logs.to_string_lossy().into_owned();
    let _dump = DumpOnFailure(kept_logs);
    let mut args = vec![
        "chaos",
        "--topology",
        topology,
        "--faults",
        &faults,
        "--seed",
        &seed,
        "--rw-port",
        &rw,
        "--ro-port",
        &ro,
        "--report",
        &report_arg,
        "--keep-logs",
        &kept_arg,
    ];
    // As root, instances run in network namespaces, which adds partitions to the faults.
    if nix::unistd::geteuid().is_root() {
        args.push("--netns");
    } else {
        eprintln!("not root: running without network namespaces, so without partitions");
    }
    let run = cluster.cmd_timeout(&args, Duration::from_secs(40 * 60));
    println!("{}", run.stdout);
    eprintln!("{}", run.stderr);
    let which = format!("{topology}, seed {seed}");
    let written = std::fs::read(&report_file).unwrap_or_else(|e| {
        panic!(
            "the harness wrote no report ({e}; {which}); it exited with code {:?}, signal {:?}, \
             timed out: {}, after {:?}; its error: {}",
            run.code,
            run.signal,
            run.timed_out,
            run.elapsed,
            run.stderr.trim()
        )
    });
    let report: serde_json::Value = serde_json::from_slice(&written).expect("the report is JSON");
    // The harness's own verdict first, whole: it names every problem it found and each fault
    // that did not heal, which is what a failed CI run has to show.
    let injected = report["faults"].as_array().expect("faults array");
    let unhealed: Vec<String> = injected
        .iter()
        .filter(|f| f["ok"] != true)
        .map(|f| format!("fault {} {}: {}", f["index"], f["fault"], f["detail"]))
        .collect();
    assert!(
        report["problems"].as_array().is_some_and(|p| p.is_empty()) && unhealed.is_empty(),
        "the chaos run failed ({which}): problems {}; faults that did not heal {unhealed:?}",
        report["problems"]
    );
    assert_eq!(
        report["lost_writes"], 0,
        "acknowledged writes were lost ({which})"
    );
    assert_eq!(report["split_brain_windows"], 0, "split brain ({which})");
    assert_eq!(
        report["all_rejoined"], true,
        "an instance did not rejoin ({which})"
    );
    assert_eq!(
        report["converged"], true,
        "members did not converge ({which})"
    );
    assert_eq!(
        injected.len().to_string(),
        faults,
        "not every fault ran ({which})"
    );
    assert!(report["acknowledged_writes"].as_u64().unwrap_or(0) > 100);
    assert!(run.success(), "myset chaos failed ({which})");
}

/// Prints the kept logs when the test fails (dropped before the cluster, which then repeats the
/// failure's message last).
struct DumpOnFailure(std::path::PathBuf);

impl Drop for DumpOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            support::dump_logs_in(&self.0);
        }
    }
}
