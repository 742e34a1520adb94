//! A Galera member's position, read from a real data dir: a one-member cluster of real
//! `mariadbd` with Debian's galera-4 on loopback, killed with SIGKILL, its position recovered
//! with `mariadbd --wsrep-recover`, then restarted from it under the same UUID.
//!
//! Needs mariadbd (mariadb-server) and galera-4; skipped without them, except under CI.

use myset_core::galera::MemberData;
use myset_mariadb::client::Target;
use myset_mariadb::galera::{member_data, start_position_arg, PROVIDER};
use myset_mariadb::{AdminClient, Binaries};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// A server process killed when dropped, also when the test fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Member {
    dir: PathBuf,
    binaries: Binaries,
}

impl Member {
    fn datadir(&self) -> PathBuf {
        self.dir.join("data")
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("mariadbd.sock")
    }
    fn options(&self) -> PathBuf {
        self.dir.join("my.cnf")
    }

    /// A one-member cluster's option file; ports from the kernel, so tests never collide.
    fn write_options(&self) {
        let port = |_: &str| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        let root = if nix_is_root() { "user = root\n" } else { "" };
        let text = format!(
            "[mariadbd]\n{root}datadir = {data}\nsocket = {sock}\nport = {sql}\nbind-address = 127.0.0.1\n\
             pid-file = {dir}/mariadbd.pid\nlog-error = {dir}/error.log\n\
             binlog_format = ROW\ninnodb_autoinc_lock_mode = 2\ninnodb_flush_log_at_trx_commit = 1\n\
             wsrep_on = ON\nwsrep_provider = {PROVIDER}\nwsrep_cluster_address = gcomm://\n\
             wsrep_cluster_name = position-test\nwsrep_node_address = 127.0.0.1\n\
             wsrep_provider_options = \"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};gcache.size=32M;gcache.recover=yes\"\n",
            data = self.datadir().display(),
            sock = self.socket().display(),
            dir = self.dir.display(),
            sql = port("sql"),
            gcomm = port("gcomm"),
            ist = port("ist"),
        );
        std::fs::write(self.options(), text).unwrap();
    }

    fn install(&self) {
        let mut cmd = Command::new(&self.binaries.install_db);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.datadir().display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix_is_root() {
            cmd.arg("--user=root");
        }
        assert!(cmd.status().unwrap().success(), "mariadb-install-db failed");
    }

    /// Bootstraps the one-member cluster, from `start` when given.
    async fn bootstrap(&self, start: Option<String>) -> Server {
        let mut cmd = Command::new(&self.binaries.mariadbd);
        cmd.arg(format!("--defaults-file={}", self.options().display()))
            .arg("--wsrep-new-cluster")
            .args(start)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let server = Server(cmd.spawn().expect("start mariadbd"));
        let synced = myset_os::poll_until_async(
            Duration::from_secs(60),
            Duration::from_millis(200),
            || async {
                self.status("wsrep_local_state_comment").await.as_deref() == Some("Synced")
            },
        )
        .await;
        assert!(
            synced,
            "the member did not become Synced; see {}/error.log",
            self.dir.display()
        );
        server
    }

    async fn client(&self) -> Option<AdminClient> {
        AdminClient::connect(Target::Socket(&self.socket()), "root", "", TIMEOUT)
            .await
            .ok()
    }

    async fn status(&self, name: &str) -> Option<String> {
        let mut c = self.client().await?;
        let rows = c
            .text_rows(&format!("SHOW GLOBAL STATUS LIKE '{name}'"))
            .await
            .ok()?;
        c.disconnect().await;
        rows.first()?.get(1).cloned().flatten()
    }

    async fn sql(&self, statement: &str) {
        let mut c = self.client().await.expect("connect");
        c.exec(statement).await.expect(statement);
        c.disconnect().await;
    }

    async fn position(&self) -> MemberData {
        member_data(
            &self.binaries.mariadbd,
            &self.options(),
            &self.datadir(),
            &self.dir.join("recover.log"),
        )
        .await
        .expect("the position")
    }
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn prerequisites() -> Option<Binaries> {
    let found = Binaries::find()
        .ok()
        .filter(|_| Path::new(PROVIDER).exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "mariadbd or galera-4 is missing (scripts/install-deps installs them)"
        );
        eprintln!("skipped: mariadbd or galera-4 ({PROVIDER}) is not installed");
    }
    found
}

#[tokio::test]
async fn a_crashed_members_position_is_recovered_and_its_history_continues() {
    let Some(binaries) = prerequisites() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let member = Member {
        dir: dir.path().to_path_buf(),
        binaries,
    };
    assert_eq!(
        member.position().await,
        MemberData::Empty,
        "no data dir yet"
    );
    member.write_options();
    member.install();
    assert_eq!(
        member.position().await,
        MemberData::Empty,
        "never joined a cluster"
    );

    let server = member.bootstrap(None).await;
    member
        .sql("CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY); INSERT INTO t.x VALUES (1), (2), (3)")
        .await;
    let committed: u64 = member
        .status("wsrep_last_committed")
        .await
        .and_then(|s| s.parse().ok())
        .expect("wsrep_last_committed");
    let uuid = member
        .status("wsrep_cluster_state_uuid")
        .await
        .expect("a UUID");
    drop(server); // SIGKILL: grastate.dat keeps seqno -1

    let grastate = std::fs::read_to_string(member.datadir().join("grastate.dat")).unwrap();
    assert!(grastate.contains("seqno:   -1"), "{grastate}");
    let MemberData::At { position, .. } = member.position().await else {
        panic!("a crashed member with data has a position");
    };
    assert_eq!(position.uuid.to_string(), uuid);
    assert_eq!(position.seqno, committed, "recovered from InnoDB");

    // Started from its recovered position, it keeps its cluster's UUID and history.
    let server = member.bootstrap(Some(start_position_arg(&position))).await;
    assert_eq!(
        member.status("wsrep_cluster_state_uuid").await.as_deref(),
        Some(uuid.as_str())
    );
    member.sql("INSERT INTO t.x VALUES (4)").await;
    let next: u64 = member
        .status("wsrep_last_committed")
        .await
        .and_then(|s| s.parse().ok())
        .unwrap();
    // The history goes on past the recovered seqno (a new history would restart near 1).
    assert!(next > committed, "seqno {next} after {committed}");

    // A clean stop writes the position into grastate.dat: no recovery needed.
    let mut admin = member.client().await.unwrap();
    let _ = admin.exec("SHUTDOWN").await;
    let mut server = server;
    let stopped = myset_os::poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        matches!(server.0.try_wait(), Ok(Some(_)))
    })
    .await;
    assert!(stopped, "the server did not stop");
    let _ = std::fs::remove_file(member.dir.join("recover.log"));
    match member.position().await {
        MemberData::At {
            position,
            safe_to_bootstrap,
        } => {
            assert_eq!(position.seqno, next);
            assert!(safe_to_bootstrap, "the last member to leave cleanly");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        !member.dir.join("recover.log").exists(),
        "a clean stop's position comes from grastate.dat alone"
    );
}
