//! The controller's Prometheus metrics against a real cluster: served to the read-only metrics
//! token (and the API token) only, valid for `promtool check metrics`, and counting a real
//! failover. Also checks the shipped alert rules with `promtool check rules`. promtool comes
//! from Debian's prometheus package (scripts/install-deps); without it these tests skip, except
//! under CI.

mod support;

use nix::sys::signal::Signal;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    mode, poll_for, required_unless_ci, signal, wait_until, Cluster, ContinueOnDrop, QUICK, SLOW,
};

fn promtool_available() -> bool {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    required_unless_ci(
        found,
        "promtool",
        "scripts/install-deps installs Debian's prometheus package",
    )
}

/// Runs `promtool ARGS` with `input` on its stdin; fails the test with its output if it fails.
#[track_caller]
fn promtool(args: &[&str], input: &[u8]) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(input)
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `series` (name and labels exactly as written) in `body`.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_are_served_to_their_token_and_count_a_real_failover() {
    if !promtool_available() {
        return;
    }
    let cluster = Cluster::new("mx");
    cluster.up(Some(3)).ok();
    let status = cluster.wait_converged(SLOW).expect("the cluster converges");
    let url = status
        .metrics
        .clone()
        .expect("status names the metrics URL");
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/metrics"),
        "{url}"
    );

    // Prometheus finds it through file_sd, over HTTPS.
    let targets: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cluster.root().join("prometheus-targets.json")).expect("the targets file"),
    )
    .expect("the targets file is JSON");
    let address = url["https://".len()..].trim_end_matches("/metrics");
    assert_eq!(targets[0]["targets"][0], address, "{targets}");
    assert_eq!(targets[0]["labels"]["__scheme__"], "https", "{targets}");

    // The metrics token reads /metrics and nothing else; the API token reads it too.
    let token = cluster.metrics_token();
    assert_eq!(mode(&cluster.root().join("metrics-token")), 0o600);
    let scrape = |t: &str| cluster.controller_get(&url, "/metrics", t);
    assert_eq!(scrape("not-the-token").unwrap_err(), 401);
    assert_eq!(
        cluster.controller_get(&url, "/status", &token).unwrap_err(),
        401
    );
    let secrets: myset_api::Secrets = serde_json::from_str(
        &std::fs::read_to_string(cluster.root().join("secrets.json")).expect("secrets.json"),
    )
    .expect("secrets parse");
    scrape(&secrets.api_token).expect("the API token reads the metrics too");

    // A connection through rw is counted with its bytes; the write moves the GTID sequence.
    cluster.sql("rw", "CREATE DATABASE metrics_test").ok();
    let c = "cluster=\"mx\"";
    let primary_seq =
        format!("myset_instance_gtid_sequence{{{c},instance=\"mx-0\",ordinal=\"0\"}}");
    // The controller probes once a second: the write shows within a few.
    let body = poll_for(QUICK, || {
        scrape(&token)
            .ok()
            .filter(|b| value(b, &primary_seq) >= Some(1.0))
    })
    .expect("the primary's GTID sequence shows its write");
    promtool(&["check", "metrics"], body.as_bytes());
    let samples = body.lines().filter(|l| l.starts_with("myset_")).count();
    assert!(samples >= 10, "only {samples} samples:\n{body}");
    assert_eq!(
        value(&body, &format!("myset_instances_desired{{{c}}}")),
        Some(3.0)
    );
    assert_eq!(
        value(&body, &format!("myset_primary_ready{{{c}}}")),
        Some(1.0)
    );
    for o in 0..3 {
        let labels = format!("{c},instance=\"mx-{o}\",ordinal=\"{o}\"");
        assert_eq!(
            value(&body, &format!("myset_instance_up{{{labels}}}")),
            Some(1.0),
            "{body}"
        );
        assert_eq!(
            value(&body, &format!("myset_instance_ready{{{labels}}}")),
            Some(1.0)
        );
        let primary = format!("myset_instance_role{{{labels},role=\"primary\"}}");
        assert_eq!(value(&body, &primary), Some(if o == 0 { 1.0 } else { 0.0 }));
        assert!(value(&body, &format!("myset_instance_gtid_sequence{{{labels}}}")).is_some());
    }
    let clones = value(&body, &format!("myset_clone_duration_seconds_count{{{c}}}"));
    assert_eq!(clones, Some(2.0), "instances 1 and 2 were cloned:\n{body}");
    let rw = format!("{c},endpoint=\"rw\"");
    assert!(value(&body, &format!("myset_endpoint_connections_total{{{rw}}}")) >= Some(1.0));
    let sent = format!("myset_endpoint_transferred_bytes_total{{{rw},direction=\"to_client\"}}");
    assert!(value(&body, &sent) > Some(0.0), "{body}");
    let failovers = format!("myset_failovers_total{{{c}}}");
    assert_eq!(value(&body, &failovers), Some(0.0));
    let term = value(&body, &format!("myset_term{{{c}}}")).expect("the term");

    // Freeze the primary's agent and server: the controller fails over.
    let primary = Cluster::instance(&status, status.primary);
    let frozen = [
        primary.agent_pid.expect("the primary's agent pid"),
        primary.pid.expect("the primary's server pid"),
    ];
    let _thaw = frozen.map(ContinueOnDrop);
    for pid in frozen {
        signal(pid, Signal::SIGSTOP);
    }
    // The failover, the fence and the new term are separate events a few
    // milliseconds apart, so a scrape may land between them: wait for all three.
    let fences = format!("myset_fences_total{{{c}}}");
    let term_metric = format!("myset_term{{{c}}}");
    let mut last = String::new();
    let counted = wait_until(Duration::from_secs(60), || {
        last = scrape(&token).unwrap_or_default();
        value(&last, &failovers) >= Some(1.0)
            && value(&last, &fences) >= Some(1.0)
            && value(&last, &term_metric) > Some(term)
    });
    assert!(
        counted,
        "no failover, fence and new term were all counted within 60s:\n{last}"
    );
    promtool(&["check", "metrics"], last.as_bytes());
}

#[test]
fn the_shipped_alert_rules_pass_promtool() {
    if !promtool_available() {
        return;
    }
    let rules =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/monitoring/alerts.yaml");
    promtool(&["check", "rules", &rules.to_string_lossy()], b"");
}
