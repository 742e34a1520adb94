//! Backups and point-in-time restore against real servers: restores to a time and to a GTID
//! hold exactly what came before the target, a restore spans a switchover and a failover, a
//! disaster restore holds every write acknowledged a second before every process was killed,
//! corruption is caught, and bad input gets one line and leaves nothing behind.

mod support;

use myset_api::EventKind;
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{
    app_ids, free_ports, insert_app_rows, restore_from, serial, wait_archived, wait_until, Cluster,
    ContinueOnDrop, Run, SteadyWriter, APP_SETUP, SLOW,
};

fn up(cluster: &Cluster, replicas: u32) {
    cluster.up_with(&["--replicas", &replicas.to_string()]).ok();
}

fn binlog_pos(cluster: &Cluster) -> String {
    cluster.query("rw", "SELECT @@gtid_binlog_pos")[0][0].clone()
}

fn take_backup(cluster: &Cluster) -> String {
    let run = cluster.cmd_timeout(&["backup"], SLOW);
    run.ok().trim().to_string()
}

/// `myset restore --from-cluster` of `cluster` into `name` with `extra` arguments.
fn restore(cluster: &Cluster, name: &str, extra: &[&str]) -> Run {
    let source = ["--from-cluster", cluster.name.as_str()];
    restore_from(cluster, &source, name, extra, &[], SLOW)
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
}

#[test]
fn restores_to_a_time_and_to_a_gtid_hold_exactly_what_came_before() {
    let _serial = serial();
    let cluster = Cluster::new("src");
    up(&cluster, 2);
    cluster.sql("rw", APP_SETUP).ok();
    insert_app_rows(&cluster, 1..=3);
    let backup = take_backup(&cluster);
    assert!(backup.starts_with("20"), "a backup id: {backup}");

    // Batch A after the base backup, so the restore replays the archive.
    insert_app_rows(&cluster, 4..=10);
    let after_7 = {
        insert_app_rows(&cluster, 11..=11);
        binlog_pos(&cluster)
    };
    insert_app_rows(&cluster, 12..=15);
    let end_of_a = SystemTime::now();
    assert!(
        wait_until(Duration::from_secs(3), || unix_secs(SystemTime::now())
            > unix_secs(end_of_a)),
        "the clock did not pass a second boundary"
    );
    let t = rfc3339(SystemTime::now());
    insert_app_rows(&cluster, 16..=25);
    wait_archived(&cluster);

    let listed = cluster.cmd(&["backups", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_str(listed.ok()).expect("JSON");
    assert_eq!(listed["backups"][0]["id"], backup.as_str());
    assert!(listed["window"]["to"].is_string(), "{listed}");

    restore(&cluster, "at-time", &["--to-time", &t]).ok();
    assert_eq!(
        app_ids(&cluster, "at-time", "rw"),
        (1..=15).collect::<Vec<_>>(),
        "a restore to {t} holds exactly the rows written before it"
    );

    restore(&cluster, "at-gtid", &["--to-gtid", &after_7]).ok();
    assert_eq!(
        app_ids(&cluster, "at-gtid", "rw"),
        (1..=11).collect::<Vec<_>>(),
        "a restore to {after_7} holds exactly the transactions up to it"
    );

    restore(&cluster, "latest", &[]).ok();
    assert_eq!(
        app_ids(&cluster, "latest", "rw"),
        (1..=25).collect::<Vec<_>>()
    );
    // The restored cluster is a cluster: it takes writes and its data is its own.
    cluster
        .run(&[
            "sql",
            "--name",
            "latest",
            "rw",
            "-e",
            "INSERT INTO app.t VALUES (100)",
        ])
        .ok();
    assert_eq!(app_ids(&cluster, "src", "rw").len(), 25);
    let taken = cluster
        .events()
        .iter()
        .any(|e| e.kind == EventKind::BackupTaken);
    assert!(taken, "the backup is recorded as an event");
}

#[test]
fn a_restore_spans_a_switchover_and_a_failover() {
    let _serial = serial();
    let cluster = Cluster::new("moves");
    up(&cluster, 3);
    cluster.sql("rw", APP_SETUP).ok();
    take_backup(&cluster);
    insert_app_rows(&cluster, 1..=5);
    cluster.cmd(&["switchover", "--to", "2"]).ok();
    insert_app_rows(&cluster, 6..=10);
    // The primary's host hangs (server and agent frozen): the controller fails over.
    let status = cluster.status();
    let primary = Cluster::instance(&status, 2);
    let frozen: Vec<ContinueOnDrop> = [primary.pid, primary.agent_pid]
        .into_iter()
        .flatten()
        .map(|pid| {
            support::signal(pid, Signal::SIGSTOP);
            ContinueOnDrop(pid)
        })
        .collect();
    assert!(
        wait_until(Duration::from_secs(60), || cluster
            .try_status()
            .is_some_and(|s| s.primary != 2)),
        "no failover away from the frozen primary"
    );
    // Acknowledged writes on the new primary: retried until rw reaches it.
    for id in 11..=15 {
        assert!(
            wait_until(Duration::from_secs(30), || cluster
                .sql("rw", &format!("INSERT INTO app.t VALUES ({id})"))
                .success()),
            "write {id} was never acknowledged"
        );
    }
    wait_archived(&cluster);
    let archive = cluster
        .status()
        .backup
        .and_then(|b| b.archive)
        .expect("archive");
    assert!(
        archive.gaps.is_empty(),
        "no gap across the changes: {archive:?}"
    );
    drop(frozen);

    restore(&cluster, "after-moves", &[]).ok();
    assert_eq!(
        app_ids(&cluster, "after-moves", "rw"),
        (1..=15).collect::<Vec<_>>()
    );
}

#[test]
fn a_disaster_restore_holds_every_write_acknowledged_a_second_before_the_kill() {
    let _serial = serial();
    let cluster = Cluster::new("doomed");
    up(&cluster, 2);
    cluster.sql("rw", APP_SETUP).ok();
    take_backup(&cluster);

    // A steady writer through rw, recording when each insert was acknowledged.
    let writer = SteadyWriter::start(&cluster);
    // The disaster strikes after a few seconds of steady writing.
    let writing = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || {
            writing.elapsed() > Duration::from_secs(4) && writer.acked_count() >= 20
        }),
        "the writer made no progress"
    );
    // Every process, at once, with SIGKILL; then the cluster is destroyed.
    let killed_at = Instant::now();
    kill_everything(&cluster);
    let acknowledged = writer.stop();
    cluster.cmd(&["destroy"]).ok();
    assert!(!cluster.root().exists(), "the cluster is gone");

    restore(&cluster, "rescued", &[]).ok();
    let restored: std::collections::BTreeSet<u32> =
        app_ids(&cluster, "rescued", "rw").into_iter().collect();
    let must_have: Vec<u32> = acknowledged
        .iter()
        .filter(|(_, at)| killed_at.duration_since(*at) > Duration::from_secs(1))
        .map(|(id, _)| *id)
        .collect();
    assert!(
        !must_have.is_empty(),
        "the writer acknowledged nothing early enough"
    );
    let lost: Vec<u32> = must_have
        .iter()
        .copied()
        .filter(|id| !restored.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} writes acknowledged over a second before the kill are missing: {lost:?}",
        lost.len(),
        must_have.len()
    );
}

/// SIGKILLs every process of the cluster (controller, agents, servers) until none is left.
fn kill_everything(cluster: &Cluster) {
    use nix::sys::signal::{kill, Signal};
    assert!(
        wait_until(Duration::from_secs(20), || {
            let left = cluster.processes();
            for (pid, _) in &left {
                let _ = kill(nix::unistd::Pid::from_raw(*pid as i32), Signal::SIGKILL);
            }
            left.is_empty()
        }),
        "processes survived SIGKILL: {:?}",
        cluster.processes()
    );
}

/// The one base backup's stream file in a directory store.
fn stream_file(store: &Path) -> PathBuf {
    let base = store.join("base");
    let id = std::fs::read_dir(&base)
        .expect("base dir")
        .next()
        .expect("a backup")
        .expect("entry")
        .file_name();
    base.join(id).join("backup.xbstream")
}

fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut byte = [0u8];
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.read_exact(&mut byte).expect("read");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(&[byte[0] ^ 0xff]).expect("write");
}

#[test]
fn corruption_is_caught_by_verify_and_by_restore() {
    let _serial = serial();
    let cluster = Cluster::new("fragile");
    up(&cluster, 1);
    cluster.sql("rw", APP_SETUP).ok();
    insert_app_rows(&cluster, 1..=3);
    let id = take_backup(&cluster);
    insert_app_rows(&cluster, 4..=6);
    wait_archived(&cluster);
    cluster.cmd(&["backup", "verify", &id]).ok();

    let store = cluster.state_dir().join("backups").join(&cluster.name);
    // A corrupt archive segment the restore needs (the newest: keys sort by GTID) is refused.
    let segment = walk(&store.join("archive"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "binlog"))
        .max()
        .expect("an archive segment");
    let pristine_segment = std::fs::read(&segment).expect("segment");
    flip_byte(&segment, pristine_segment.len() as u64 / 2);
    restore(&cluster, "from-bad-archive", &[]).error_containing(&["archive segment", "corrupt"]);
    assert!(!cluster.state_dir().join("from-bad-archive").exists());
    std::fs::write(&segment, &pristine_segment).expect("restore the segment");

    // A flipped byte in the base backup.
    let stream = stream_file(&store);
    let size = std::fs::metadata(&stream).expect("stream").len();
    flip_byte(&stream, size / 2);
    cluster
        .cmd(&["backup", "verify", &id])
        .error_containing(&[&id, "corrupt"]);
    restore(&cluster, "from-bad-base", &[]).error_containing(&[&id, "corrupt"]);
    assert!(
        !cluster.state_dir().join("from-bad-base").exists(),
        "a failed restore leaves no cluster behind"
    );

    // A truncated one.
    flip_byte(&stream, size / 2);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&stream)
        .expect("open")
        .set_len(size / 3)
        .expect("truncate");
    cluster
        .cmd(&["backup", "verify", &id])
        .error_containing(&[&id, "corrupt"]);
}

#[test]
fn the_controller_takes_scheduled_backups_and_prunes_old_ones() {
    let _serial = serial();
    let cluster = Cluster::new("sched");
    cluster
        .up_with(&[
            "--replicas",
            "1",
            "--backup-schedule",
            "1m",
            "--backup-keep",
            "1",
        ])
        .ok();
    let listed = || -> Vec<String> {
        let run = cluster.cmd(&["backups", "-o", "json"]);
        let json: serde_json::Value = serde_json::from_str(run.ok()).expect("JSON");
        json["backups"]
            .as_array()
            .expect("a list")
            .iter()
            .map(|b| b["id"].as_str().expect("an id").to_string())
            .collect()
    };
    // The first scheduled backup is due at once: there is none yet.
    assert!(
        wait_until(Duration::from_secs(60), || listed().len() == 1),
        "no scheduled backup: {:?}",
        cluster.events()
    );
    let scheduled = listed();
    let manual = take_backup(&cluster);
    assert_ne!(scheduled[0], manual);
    assert_eq!(
        listed(),
        std::slice::from_ref(&manual),
        "retention keeps the newest one"
    );
    let kinds: Vec<EventKind> = cluster.events().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::BackupPruned), "{kinds:?}");
    let status = cluster.status().backup.expect("backup status");
    assert_eq!(status.every_seconds, Some(60));
    assert_eq!(status.last_base_backup.map(|b| b.id), Some(manual));

    // destroy keeps the store; with --delete-backups it goes too.
    let store = cluster.state_dir().join("backups").join(&cluster.name);
    assert!(store.join("base").is_dir());
    cluster
        .cmd_timeout(&["destroy", "--delete-backups"], SLOW)
        .ok();
    assert!(!store.exists(), "the store was deleted");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn bad_restore_input_gets_one_line_and_leaves_nothing() {
    let _serial = serial();
    let cluster = Cluster::new("origin");
    up(&cluster, 1);
    cluster.sql("rw", APP_SETUP).ok();
    take_backup(&cluster);
    insert_app_rows(&cluster, 1..=2);
    wait_archived(&cluster);

    let nothing_left = |name: &str| {
        assert!(
            !cluster.state_dir().join(name).exists(),
            "{name} was left behind"
        )
    };
    restore(&cluster, "early", &["--to-time", "2001-01-01T00:00:00Z"])
        .error_containing(&["before the first base backup", "recoverable window"]);
    nothing_left("early");
    restore(&cluster, "later", &["--to-time", "2999-01-01T00:00:00Z"])
        .error_containing(&["in the future", "recoverable window"]);
    nothing_left("later");
    restore(&cluster, "garbled", &["--to-time", "yesterday"]).error_containing(&["RFC 3339"]);
    restore(&cluster, "garbled", &["--to-gtid", "0-1"]).error_containing(&["GTID"]);
    nothing_left("garbled");
    // What an interrupted restore left (no cluster record, its staging dir) is cleared.
    std::fs::create_dir_all(cluster.state_dir().join("leftover/restore-staging/data"))
        .expect("mkdir");
    restore(&cluster, "leftover", &["--to-time", "2999-01-01T00:00:00Z"])
        .error_containing(&["in the future"]);
    nothing_left("leftover");
    restore(&cluster, "origin", &[]).error_containing(&["exists already"]);
    assert_eq!(
        app_ids(&cluster, "origin", "rw"),
        [1, 2],
        "the existing cluster is untouched"
    );

    let (rw, ro) = free_ports();
    let unknown = cluster.run_with(
        &[
            "restore",
            "--from-cluster",
            "nosuch",
            "--name",
            "copy",
            "--rw-port",
            &rw.to_string(),
            "--ro-port",
            &ro.to_string(),
        ],
        &[],
        SLOW,
    );
    unknown.error_containing(&["nosuch"]);
    nothing_left("copy");
    // A cluster is not created over a store it cannot write to.
    let (rw, ro) = free_ports();
    let (rw, ro) = (rw.to_string(), ro.to_string());
    let up = |store: &str, env: &[(&str, Option<std::ffi::OsString>)]| {
        cluster.run_with(
            &[
                "up",
                "--name",
                "nostore",
                "--replicas",
                "1",
                "--rw-port",
                &rw,
                "--ro-port",
                &ro,
                "--backup-store",
                store,
            ],
            env,
            SLOW,
        )
    };
    up("relative/dir", &[]).error_containing(&["relative/dir", "absolute"]);
    let closed = free_ports().0;
    let unreachable = [
        (
            "AWS_ENDPOINT_URL",
            Some(format!("http://127.0.0.1:{closed}").into()),
        ),
        ("AWS_ACCESS_KEY_ID", Some("k".into())),
        ("AWS_SECRET_ACCESS_KEY", Some("s".into())),
    ];
    up("s3://bucket/prefix", &unreachable).error_containing(&["s3://bucket/prefix", "not usable"]);
    nothing_left("nostore");

    let missing_dir = cluster.run_with(&["backups", "--from", "/nonexistent/store"], &[], SLOW);
    missing_dir.error_containing(&["/nonexistent/store", "does not exist"]);
}
