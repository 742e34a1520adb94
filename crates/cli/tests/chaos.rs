//! The fault-injection harness in CI: at least 30 randomized faults, partitions included when
//! run as root (MYSET_CHAOS_FAULTS
//! overrides; MYSET_CHAOS_SEED replays a run) against a real cluster, with 0 acknowledged
//! writes lost, 0 split-brain windows, and every instance rejoined.

mod support;

use std::time::Duration;
use support::Cluster;

#[test]
fn randomized_faults_lose_no_acknowledged_write() {
    let faults = std::env::var("MYSET_CHAOS_FAULTS").unwrap_or_else(|_| "30".into());
    let seed = std::env::var("MYSET_CHAOS_SEED").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .subsec_nanos();
        nanos.to_string()
    });
    let cluster = Cluster::new("chaos");
    let report_file = cluster.scratch().join("chaos-report.json");
    let (rw, ro) = (cluster.rw_port.to_string(), cluster.ro_port.to_string());
    let report_arg = report_file.to_string_lossy().into_owned();
    let mut args = vec![
        "chaos",
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
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report_file).expect("the harness wrote its report"))
            .expect("the report is JSON");
    assert_eq!(
        report["lost_writes"], 0,
        "acknowledged writes were lost (seed {seed})"
    );
    assert_eq!(
        report["split_brain_windows"], 0,
        "split brain (seed {seed})"
    );
    assert_eq!(
        report["all_rejoined"], true,
        "an instance did not rejoin (seed {seed})"
    );
    assert_eq!(
        report["converged"], true,
        "replicas did not converge (seed {seed})"
    );
    let injected = report["faults"].as_array().expect("faults array");
    assert_eq!(
        injected.len().to_string(),
        faults,
        "not every fault ran (seed {seed})"
    );
    assert!(
        injected.iter().all(|f| f["ok"] == true),
        "a fault did not heal (seed {seed})"
    );
    assert!(report["acknowledged_writes"].as_u64().unwrap_or(0) > 100);
    assert!(run.success(), "myset chaos failed (seed {seed})");
}
