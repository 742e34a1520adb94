//! Backups in a real S3-compatible store: s3s-fs (crates.io `s3s-fs`, installed by
//! scripts/install-deps) on a free loopback port with one access key, so every request must
//! carry a valid SigV4 signature. A cluster keeps its base backups and binlog archive under an
//! `s3://` prefix; `backups`, `backup verify` and `restore` read them back from the bucket alone.
//! Bad store input (an endpoint nobody listens on, a wrong secret, an unknown key, an URL without
//! a bucket) gets one line and leaves nothing behind. Without `s3s-fs` the tests are skipped,
//! except under CI (`CI` set), where they fail.

mod support;

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{
    app_ids, insert_app_rows, restore_from, wait_archived, Cluster, Run, APP_SETUP, QUICK, SLOW,
};

const SERVER: &str = "s3s-fs";
const BUCKET: &str = "myset-backups";
const REGION: &str = "us-east-1";
const KEY_ID: &str = "MYSETTESTKEY";
const SECRET: &str = "myset-test-secret-key";

/// Whether the S3 server can run; false (after saying so) when a test should skip.
fn server_available() -> bool {
    let present = Command::new(SERVER)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    support::required_unless_ci(
        present,
        SERVER,
        "scripts/install-deps installs it: cargo install --locked --features binary s3s-fs@0.14.1",
    )
}

/// A running s3s-fs serving one bucket (a directory under its root) to one access key;
/// killed on drop.
struct S3 {
    child: Child,
    port: u16,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl S3 {
    /// Starts s3s-fs on a port the kernel picks (it says which in its log), over a root in
    /// `scratch` that holds the bucket.
    fn start(scratch: &Path) -> S3 {
        let root = scratch.join("s3");
        std::fs::create_dir_all(root.join(BUCKET)).expect("create the bucket's directory");
        let mut child = Command::new(SERVER)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", KEY_ID, "--secret-key", SECRET])
            .arg(&root)
            .env("RUST_LOG", "s3s_fs=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {SERVER}: {e}"));
        // Its log goes to a file (read on failure); the address it binds comes back here.
        let (tx, rx) = std::sync::mpsc::channel();
        let log_path = scratch.join("s3s-fs.log");
        for pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let tx = tx.clone();
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .expect("the server's log");
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                    if let Some(port) = line
                        .split("server is running at http://")
                        .nth(1)
                        .and_then(|addr| addr.trim().rsplit(':').next()?.parse::<u16>().ok())
                    {
                        let _ = tx.send(port);
                    }
                }
            });
        }
        let port = rx.recv_timeout(Duration::from_secs(30));
        let mut server = S3 { child, port: 0 };
        server.port = port.unwrap_or_else(|_| {
            panic!(
                "{SERVER} did not say where it listens (exit {:?}): {}",
                server.child.try_wait(),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            )
        });
        server
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The environment of a myset process using `endpoint` as `key_id` with `secret`.
    fn env_with(
        endpoint: &str,
        key_id: &str,
        secret: &str,
    ) -> Vec<(&'static str, Option<OsString>)> {
        vec![
            ("AWS_ENDPOINT_URL", Some(endpoint.into())),
            ("AWS_ENDPOINT", None),
            ("AWS_REGION", Some(REGION.into())),
            ("AWS_DEFAULT_REGION", None),
            ("AWS_ACCESS_KEY_ID", Some(key_id.into())),
            ("AWS_SECRET_ACCESS_KEY", Some(secret.into())),
            ("AWS_SESSION_TOKEN", None),
            ("AWS_PROFILE", None),
        ]
    }

    /// The environment of a myset process allowed to use this server.
    fn env(&self) -> Vec<(&'static str, Option<OsString>)> {
        Self::env_with(&self.endpoint(), KEY_ID, SECRET)
    }
}

/// `myset restore --from URL --name NAME` on fresh ports, with `env`.
fn restore(
    cluster: &Cluster,
    from: &str,
    name: &str,
    env: &[(&str, Option<OsString>)],
    timeout: Duration,
) -> Run {
    restore_from(cluster, &["--from", from], name, &[], env, timeout)
}

#[test]
fn backups_live_in_s3_and_restore_from_it_alone() {
    if !server_available() {
        return;
    }
    // The server (and its directory) outlives the cluster: locals drop in reverse order, so the
    // archiver never loses its store while it runs.
    let scratch = tempfile::tempdir().expect("a temp dir");
    let s3 = S3::start(scratch.path());
    let cluster = Cluster::new("s3src");
    let env = s3.env();
    let url = format!("s3://{BUCKET}/clusters/s3src");

    let (rw, ro) = (cluster.rw_port.to_string(), cluster.ro_port.to_string());
    let up = [
        "up",
        "--name",
        "s3src",
        "--replicas",
        "1",
        "--rw-port",
        &rw,
        "--ro-port",
        &ro,
        "--timeout",
        "280",
        "--backup-store",
        &url,
    ];
    cluster.run_with(&up, &env, SLOW).ok();
    cluster.sql("rw", APP_SETUP).ok();
    insert_app_rows(&cluster, 1..=3);
    let backup = cluster
        .run_with(&["backup", "--name", "s3src"], &env, SLOW)
        .ok()
        .trim()
        .to_string();
    assert!(backup.starts_with("20"), "a backup id: {backup}");
    insert_app_rows(&cluster, 4..=6);
    insert_app_rows(&cluster, 7..=9);
    wait_archived(&cluster);
    let status = cluster
        .status()
        .backup
        .expect("the cluster has a backup store");
    assert_eq!(status.store, url);
    assert_eq!(
        status.last_base_backup.map(|b| b.id).as_deref(),
        Some(backup.as_str())
    );

    // The objects are in the S3 server's bucket, not in a directory store of the state dir.
    let prefix = scratch
        .path()
        .join("s3")
        .join(BUCKET)
        .join("clusters/s3src");
    assert!(
        prefix.join("base").join(&backup).is_dir(),
        "the base backup is not in the bucket: {}",
        prefix.display()
    );
    assert!(
        std::fs::read_dir(prefix.join("archive")).is_ok_and(|mut d| d.next().is_some()),
        "the binlog archive is not in the bucket: {}",
        prefix.display()
    );
    assert!(!cluster.state_dir().join("backups").exists());

    // Everything below reads the bucket alone (no cluster record names it).
    let listed = cluster.run_with(&["backups", "--from", &url, "-o", "json"], &env, QUICK);
    let listed: serde_json::Value = serde_json::from_str(listed.ok()).expect("JSON");
    assert_eq!(listed["store"], url.as_str(), "{listed}");
    assert_eq!(listed["backups"][0]["id"], backup.as_str(), "{listed}");
    assert!(
        listed["broken"].as_array().is_some_and(|b| b.is_empty()),
        "{listed}"
    );
    assert!(listed["window"]["to"].is_string(), "{listed}");
    let table = cluster.run_with(&["backups", "--from", &url], &env, QUICK);
    assert!(table.ok().contains(&backup), "{table:?}");

    cluster
        .run_with(&["backup", "verify", &backup, "--from", &url], &env, SLOW)
        .ok();

    restore(&cluster, &url, "restored", &env, SLOW).ok();
    assert_eq!(
        app_ids(&cluster, "restored", "rw"),
        (1..=9).collect::<Vec<_>>()
    );
    // The restored cluster takes writes of its own; the source is untouched.
    cluster
        .run(&[
            "sql",
            "--name",
            "restored",
            "rw",
            "-e",
            "INSERT INTO app.t VALUES (100)",
        ])
        .ok();
    assert_eq!(app_ids(&cluster, "s3src", "rw").len(), 9);
    cluster.run(&["destroy", "--name", "restored"]).ok();
}

#[test]
fn bad_s3_stores_get_one_line_and_leave_nothing() {
    if !server_available() {
        return;
    }
    let cluster = Cluster::new("s3bad");
    let s3 = S3::start(cluster.scratch());
    let url = format!("s3://{BUCKET}/clusters/none");
    let nothing_left = |name: &str| {
        assert!(
            !cluster.state_dir().join(name).exists(),
            "{name} was left behind"
        )
    };

    // The server works with the right secret: the bucket is empty, so there is nothing to
    // restore, and the errors below are the store's.
    cluster
        .run_with(&["backups", "--from", &url], &s3.env(), QUICK)
        .ok();

    // An endpoint nobody listens on: object_store retries the connection a few times, well
    // within a minute, then gives up.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let nowhere = S3::env_with(&format!("http://127.0.0.1:{closed}"), KEY_ID, SECRET);
    let run = restore(&cluster, &url, "unreachable", &nowhere, SLOW);
    run.error_containing(&[&url, "Connection refused", "AWS_ENDPOINT_URL"]);
    assert!(run.elapsed < Duration::from_secs(90), "{run:?}");
    nothing_left("unreachable");

    // A wrong secret: the server refuses the signature.
    let wrong = S3::env_with(&s3.endpoint(), KEY_ID, "not-the-secret");
    let line = restore(&cluster, &url, "unauthorised", &wrong, SLOW).error_containing(&[
        &url,
        "403 Forbidden",
        "SignatureDoesNotMatch",
        "AWS_SECRET_ACCESS_KEY",
    ]);
    assert!(
        !line.contains("<?xml"),
        "the XML body is cut to its code: {line}"
    );
    nothing_left("unauthorised");
    cluster
        .run_with(&["backups", "--from", &url], &wrong, QUICK)
        .error_containing(&[&url, "SignatureDoesNotMatch", "AWS_SECRET_ACCESS_KEY"]);
    // A key the server does not know.
    let unknown = S3::env_with(&s3.endpoint(), "NOSUCHKEY", SECRET);
    restore(&cluster, &url, "unknown-key", &unknown, SLOW).error_containing(&[
        &url,
        "403 Forbidden",
        "AWS_ACCESS_KEY_ID",
    ]);
    nothing_left("unknown-key");

    // No bucket name.
    restore(&cluster, "s3://", "nobucket", &s3.env(), QUICK).error_containing(&[
        "\"s3://\"",
        "names no bucket",
        "s3://bucket",
    ]);
    nothing_left("nobucket");
    restore(&cluster, "s3:///prefix", "nobucket", &s3.env(), QUICK)
        .error_containing(&["names no bucket"]);
    nothing_left("nobucket");
    assert!(
        std::fs::read_dir(cluster.state_dir())
            .expect("the state dir")
            .next()
            .is_none(),
        "a failed restore leaves nothing in the state dir"
    );
}
