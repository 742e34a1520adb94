//! The archiver against real `mariadbd` servers: rows written are archived within a couple of
//! seconds and replay into a fresh server; a change of source continues the archive without a
//! duplicate or a gap; purged binlogs are reported as a gap.

use myset_backup::archive::{ArchiveEvent, ArchiveStatus, Archiver, GapKind, Source, Timings};
use myset_backup::segment::{self, PlanError, SegmentKey};
use myset_backup::{Store, StoreUrl};
use mysql_async::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const REPL_USER: &str = "repl";
const REPL_PASSWORD: &str = "repl-pw";
const DUMP_SERVER_ID: u32 = 4_000_000_001;

/// A datadir made once by mariadb-install-db (kept in the target directory, reused by later
/// runs); every server starts from a copy.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let root = tmp.join("archive-test-template");
        if !root.exists() {
            // Built aside and renamed into place: a concurrent run sees all of it or nothing.
            let build = tempfile::tempdir_in(&tmp).unwrap();
            let out = Command::new("mariadb-install-db")
                .args([
                    "--no-defaults",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--user=root",
                    "--innodb-log-file-size=8M",
                ])
                .arg(format!("--datadir={}", build.path().join("data").display()))
                .output()
                .expect("mariadb-install-db runs");
            assert!(
                out.status.success(),
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let built = build.keep();
            if std::fs::rename(&built, &root).is_err() {
                std::fs::remove_dir_all(&built).unwrap();
            }
        }
        root.join("data")
    })
}

/// A running mariadbd in a temp dir; killed on drop, even when the test fails.
struct Server {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    server_id: u32,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    async fn start(server_id: u32) -> Server {
        Self::start_with(server_id, &[]).await
    }

    async fn start_with(server_id: u32, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let status = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(&data)
            .status()
            .unwrap();
        assert!(status.success());
        let port = free_port();
        let child = Command::new("/usr/sbin/mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.path().join("sock").display()))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .arg(format!(
                "--log-error={}",
                dir.path().join("err.log").display()
            ))
            .arg(format!("--port={port}"))
            .arg(format!("--server-id={server_id}"))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--log-bin=mysql-bin",
                "--log-slave-updates",
                "--binlog-format=ROW",
                "--gtid-strict-mode=ON",
                "--sync-binlog=1",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--skip-innodb-adaptive-hash-index",
                "--performance-schema=OFF",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        let mut server = Server {
            child,
            dir,
            port,
            server_id,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut conn) = mysql_async::Conn::new(server.admin_opts()).await {
                // Setup that must not become a GTID of its own.
                conn.query_drop("SET SESSION sql_log_bin=0").await.unwrap();
                conn.query_drop("DELETE FROM mysql.global_priv WHERE user=''")
                    .await
                    .unwrap();
                conn.query_drop(format!(
                    "CREATE USER '{REPL_USER}'@'%' IDENTIFIED BY '{REPL_PASSWORD}'"
                ))
                .await
                .unwrap();
                conn.query_drop(format!(
                    "GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'%'"
                ))
                .await
                .unwrap();
                conn.query_drop("FLUSH PRIVILEGES").await.unwrap();
                conn.disconnect().await.unwrap();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "mariadbd exited with {status}: {}",
                    std::fs::read_to_string(server.dir.path().join("err.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "mariadbd did not start in 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }

    fn admin_opts(&self) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .socket(Some(self.socket().display().to_string()))
            .user(Some("root"))
            .into()
    }

    async fn admin(&self) -> mysql_async::Conn {
        mysql_async::Conn::new(self.admin_opts()).await.unwrap()
    }

    fn source(&self) -> Source {
        Source {
            host: "127.0.0.1".into(),
            port: self.port,
            user: REPL_USER.into(),
            password: REPL_PASSWORD.into(),
            ca: None,
        }
    }

    /// Runs `sql`, returns the GTID seq_no it wrote (domain 0).
    async fn write(&self, sql: &str) -> u64 {
        let mut conn = self.admin().await;
        conn.query_drop(sql).await.unwrap();
        let last: String = conn
            .query_first("SELECT @@last_gtid")
            .await
            .unwrap()
            .unwrap();
        conn.disconnect().await.unwrap();
        last.rsplit('-').next().unwrap().parse().unwrap()
    }

    async fn rows(&self) -> Vec<(i64, String)> {
        let mut conn = self.admin().await;
        let rows = conn
            .query("SELECT id, v FROM d.t ORDER BY id")
            .await
            .unwrap();
        conn.disconnect().await.unwrap();
        rows
    }

    async fn gtid_binlog_pos(&self) -> String {
        let mut conn = self.admin().await;
        let pos: String = conn
            .query_first("SELECT @@global.gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap();
        conn.disconnect().await.unwrap();
        pos
    }

    /// Replays archived segments (`mariadb-binlog seg... | mariadb`).
    fn replay(&self, files: &[PathBuf]) {
        self.replay_with(files, "")
    }

    /// Replays with extra mariadb-binlog options; every event's CRC32 is checked.
    fn replay_with(&self, files: &[PathBuf], options: &str) {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let script = format!(
            "set -o pipefail; mariadb-binlog --verify-binlog-checksum {options} {} | mariadb --no-defaults --socket={} -uroot",
            files.join(" "),
            self.socket().display()
        );
        let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Running {
    source: watch::Sender<Option<Source>>,
    stop: CancellationToken,
    events: mpsc::Receiver<ArchiveEvent>,
    status: watch::Receiver<ArchiveStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(store: &Store, source: Option<Source>) -> Running {
        let archiver = Archiver::new(store.clone(), DUMP_SERVER_ID).with_timings(Timings {
            backoff: Duration::from_millis(200),
            heartbeat: Duration::from_millis(250),
            ..Timings::default()
        });
        let status = archiver.status();
        let (source_tx, source_rx) = watch::channel(source);
        let stop = CancellationToken::new();
        let (events_tx, events) = mpsc::channel(256);
        let task = tokio::spawn(archiver.run(source_rx, stop.clone(), events_tx));
        Running {
            source: source_tx,
            stop,
            events,
            status,
            task,
        }
    }

    async fn stop(self) -> Vec<ArchiveEvent> {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the archiver stops")
            .unwrap();
        let mut events = self.events;
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        seen
    }
}

async fn archived_keys(store: &Store) -> Vec<SegmentKey> {
    store
        .list(segment::PREFIX)
        .await
        .unwrap()
        .iter()
        .map(|l| SegmentKey::parse(&l.key).unwrap())
        .collect()
}

/// Waits (polling the store and the status) until domain 0 is archived up to `seq`; returns how
/// long it took.
async fn wait_archived(
    store: &Store,
    seq: u64,
    status: &watch::Receiver<ArchiveStatus>,
) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(10);
    loop {
        let keys = archived_keys(store).await;
        let in_store = segment::archived_position(&keys)
            .get(&0)
            .is_some_and(|g| g.seq >= seq);
        // The status follows each upload a moment after the store has it; the tests read both.
        let in_status = status
            .borrow()
            .position
            .iter()
            .any(|g| g.domain == 0 && g.seq >= seq);
        if in_store && in_status {
            return start.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "seq_no {seq} not archived in 10 s: {keys:?}; {:?}",
            *status.borrow()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The archived segment files of domain 0, checked against their keys, in replay order.
async fn segment_files(store: &Store, root: &Path) -> Vec<PathBuf> {
    let keys = archived_keys(store).await;
    let plan = segment::plan_replay(&keys, 0, 0, None).expect("a contiguous archive");
    for k in &plan.segments {
        let bytes = store.get(&k.to_key()).await.unwrap();
        assert_eq!(myset_backup::store::sha256_hex(&bytes), k.sha256);
        assert_eq!(&bytes[..4], &segment::BINLOG_MAGIC);
    }
    plan.segments
        .iter()
        .map(|k| root.join(k.to_key()))
        .collect()
}

fn store_in(dir: &Path) -> Store {
    Store::open(&StoreUrl::Dir(dir.to_path_buf())).unwrap()
}

async fn schema(server: &Server) {
    server.write("CREATE DATABASE d").await;
    server
        .write("CREATE TABLE d.t (id BIGINT PRIMARY KEY, v VARCHAR(40)) ENGINE=InnoDB")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_written_are_archived_within_seconds_and_replay() {
    let (a, fresh, partial) = tokio::join!(Server::start(1), Server::start(3), Server::start(4));
    let root = tempfile::tempdir().unwrap();
    let store = store_in(root.path());
    schema(&a).await;
    let run = Running::start(&store, Some(a.source()));
    let mut worst = Duration::ZERO;
    for i in 1..=5 {
        let seq = a
            .write(&format!("INSERT INTO d.t VALUES ({i}, 'row {i}')"))
            .await;
        worst = worst.max(wait_archived(&store, seq, &run.status).await);
    }
    // A burst: transactions share segments.
    let mut mid = (0, Vec::new());
    for i in 100..120 {
        let seq = a
            .write(&format!("INSERT INTO d.t VALUES ({i}, 'burst')"))
            .await;
        if i == 110 {
            mid = (seq, a.rows().await);
        }
    }
    // A multi-statement transaction and an update.
    let seq = a
        .write(
            "BEGIN; INSERT INTO d.t VALUES (6, 'six'); INSERT INTO d.t VALUES (7, 'seven'); COMMIT",
        )
        .await;
    worst = worst.max(wait_archived(&store, seq, &run.status).await);
    let seq = a.write("UPDATE d.t SET v = 'updated' WHERE id = 2").await;
    worst = worst.max(wait_archived(&store, seq, &run.status).await);
    eprintln!("slowest write-to-archive: {worst:?}");
    assert!(worst < Duration::from_secs(5), "archiving took {worst:?}");

    // An idle source keeps the session alive with heartbeats: 2.5 s of silence is more than
    // the 2 s after which a session without them is given up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = run.status.borrow().clone();
    assert!(status.gaps.is_empty(), "{status:?}");
    assert_eq!(status.position[0].seq, seq);
    assert!(status.connected.is_some());
    let events = run.stop().await;
    assert!(
        matches!(events.first(), Some(ArchiveEvent::Started { .. })),
        "{events:?}"
    );
    let started = events
        .iter()
        .filter(|e| matches!(e, ArchiveEvent::Started { .. }));
    assert_eq!(started.count(), 1, "one session throughout: {events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, ArchiveEvent::Gap(_))),
        "{events:?}"
    );

    let keys = archived_keys(&store).await;
    assert!(
        keys.len() < seq as usize,
        "some segments hold several transactions: {keys:?}"
    );
    fresh.replay(&segment_files(&store, root.path()).await);
    assert_eq!(fresh.rows().await, a.rows().await);
    assert_eq!(fresh.gtid_binlog_pos().await, a.gtid_binlog_pos().await);

    // Up to a GTID inside a segment: the plan's segments, cut by --stop-position.
    let (mid_seq, mid_rows) = mid;
    let plan = segment::plan_replay(&keys, 0, 0, Some(segment::Target::Seq(mid_seq))).unwrap();
    let files: Vec<PathBuf> = plan
        .segments
        .iter()
        .map(|k| root.path().join(k.to_key()))
        .collect();
    partial.replay_with(&files, &format!("--stop-position=0-1-{mid_seq}"));
    assert_eq!(partial.rows().await, mid_rows);
    assert_eq!(partial.gtid_binlog_pos().await, format!("0-1-{mid_seq}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_source_continues_without_duplicate_or_gap() {
    let (a, b, fresh) = tokio::join!(Server::start(1), Server::start(2), Server::start(3));
    let mut conn = b.admin().await;
    conn.query_drop(format!(
        "CHANGE MASTER TO master_host='127.0.0.1', master_port={}, master_user='{REPL_USER}', \
         master_password='{REPL_PASSWORD}', master_use_gtid=slave_pos",
        a.port
    ))
    .await
    .unwrap();
    conn.query_drop("START SLAVE").await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let store = store_in(root.path());
    schema(&a).await;
    let run = Running::start(&store, Some(a.source()));
    let mut seq = 0;
    for i in 1..=3 {
        seq = a
            .write(&format!("INSERT INTO d.t VALUES ({i}, 'on A')"))
            .await;
    }
    wait_archived(&store, seq, &run.status).await;
    // Switchover: B has everything A wrote, stops replicating and takes writes.
    let a_pos = a.gtid_binlog_pos().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.gtid_binlog_pos().await != a_pos {
        assert!(Instant::now() < deadline, "B did not catch up with A");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    conn.query_drop("STOP SLAVE").await.unwrap();
    conn.query_drop("RESET SLAVE ALL").await.unwrap();
    conn.disconnect().await.unwrap();
    run.source.send(Some(b.source())).unwrap();
    for i in 4..=6 {
        seq = b
            .write(&format!("INSERT INTO d.t VALUES ({i}, 'on B')"))
            .await;
    }
    wait_archived(&store, seq, &run.status).await;
    let status = run.status.borrow().clone();
    assert!(status.gaps.is_empty(), "{status:?}");
    assert_eq!(status.position[0].server, b.server_id);
    let events = run.stop().await;
    let started: Vec<u16> = events
        .iter()
        .filter_map(|e| match e {
            ArchiveEvent::Started { source, .. } => Some(source.port),
            _ => None,
        })
        .collect();
    assert_eq!(started, [a.port, b.port], "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, ArchiveEvent::Gap(_))),
        "{events:?}"
    );
    // Contiguous, each seq_no once.
    let keys = archived_keys(&store).await;
    let mut next = 1;
    for k in &keys {
        assert_eq!(k.first_seq, next, "{keys:?}");
        next = k.last_seq + 1;
    }
    assert_eq!(next, seq + 1);

    fresh.replay(&segment_files(&store, root.path()).await);
    assert_eq!(fresh.rows().await, b.rows().await);
    assert_eq!(b.rows().await.len(), 6);
    assert_eq!(fresh.gtid_binlog_pos().await, b.gtid_binlog_pos().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_binlogs_are_reported_as_a_gap() {
    let a = Server::start(1).await;
    let root = tempfile::tempdir().unwrap();
    let store = store_in(root.path());
    schema(&a).await;
    let run = Running::start(&store, Some(a.source()));
    let archived = a.write("INSERT INTO d.t VALUES (1, 'archived')").await;
    wait_archived(&store, archived, &run.status).await;
    run.stop().await;

    // While the archiver is down, two transactions are written and their binlog purged.
    a.write("INSERT INTO d.t VALUES (2, 'lost')").await;
    a.write("INSERT INTO d.t VALUES (3, 'lost')").await;
    let mut conn = a.admin().await;
    conn.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let current: mysql_async::Row = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .unwrap();
    let file: String = current.get(0).unwrap();
    // The stopped archiver's dump thread keeps its binlog "in use" (unpurgeable) until the
    // server notices the closed connection; purge until the old files are gone.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        conn.query_drop(format!("PURGE BINARY LOGS TO '{file}'"))
            .await
            .unwrap();
        let logs: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await.unwrap();
        if logs.len() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the old binlogs stay in use");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    conn.disconnect().await.unwrap();

    let mut run = Running::start(&store, Some(a.source()));
    let after = a.write("INSERT INTO d.t VALUES (4, 'after')").await;
    wait_archived(&store, after, &run.status).await;
    let status = run.status.borrow().clone();
    assert!(
        status
            .gaps
            .iter()
            .any(|g| matches!(g.kind, GapKind::NotInSource { code: 1236, .. })),
        "{status:?}"
    );
    assert!(
        status.gaps.iter().any(|g| matches!(
            g.kind,
            GapKind::Jump { expected_seq, received, .. }
                if expected_seq == archived + 1 && received.seq == after
        )),
        "{status:?}"
    );
    let mut gaps = 0;
    while let Ok(e) = run.events.try_recv() {
        gaps += matches!(e, ArchiveEvent::Gap(_)) as usize;
    }
    assert!(gaps >= 1);
    eprintln!("gaps: {:#?}", status.gaps);
    run.stop().await;

    // The restore plan names the hole.
    let keys = archived_keys(&store).await;
    match segment::plan_replay(&keys, 0, 0, None) {
        Err(PlanError::Hole { from, to, .. }) => {
            assert_eq!((from, to), (archived + 1, after - 1))
        }
        other => panic!("expected a hole, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_binlog_checksums_is_archived_too() {
    let (a, fresh) = tokio::join!(
        Server::start_with(1, &["--binlog-checksum=NONE"]),
        Server::start(3)
    );
    let root = tempfile::tempdir().unwrap();
    let store = store_in(root.path());
    schema(&a).await;
    let run = Running::start(&store, Some(a.source()));
    a.write("INSERT INTO d.t VALUES (1, 'one')").await;
    let seq = a.write("INSERT INTO d.t VALUES (2, 'two')").await;
    wait_archived(&store, seq, &run.status).await;
    let events = run.stop().await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ArchiveEvent::Gap(_) | ArchiveEvent::SourceLost { .. })),
        "{events:?}"
    );
    fresh.replay(&segment_files(&store, root.path()).await);
    assert_eq!(fresh.rows().await, a.rows().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_source_without_the_archived_history_is_reported() {
    // B never replicated from A: its own transactions carry A's seq_nos.
    let (a, b) = tokio::join!(Server::start(1), Server::start(2));
    let root = tempfile::tempdir().unwrap();
    let store = store_in(root.path());
    schema(&a).await;
    let run = Running::start(&store, Some(a.source()));
    let archived = a.write("INSERT INTO d.t VALUES (1, 'on A')").await;
    wait_archived(&store, archived, &run.status).await;
    schema(&b).await;
    let forked = b.write("INSERT INTO d.t VALUES (1, 'on B')").await;
    assert_eq!(forked, archived);
    run.source.send(Some(b.source())).unwrap();
    let next = b.write("INSERT INTO d.t VALUES (2, 'on B')").await;
    wait_archived(&store, next, &run.status).await;
    let status = run.status.borrow().clone();
    let kinds: Vec<&GapKind> = status.gaps.iter().map(|g| &g.kind).collect();
    assert!(
        matches!(kinds[..], [GapKind::NotInSource { code: 1236, .. }, GapKind::Duplicate { archived: a, received: r }]
            if a.seq == archived && a.server == 1 && r.seq == archived && r.server == 2),
        "{kinds:#?}"
    );
    assert!(status.gaps.iter().all(|g| g.source.port == b.port));
    run.stop().await;
}
