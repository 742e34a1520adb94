//! Shared helpers of the end-to-end tests: run the real `myset` binary against a private state
//! dir, read what it leaves on disk, and clean up after it even when a test panics.
//!
//! Every wait in these tests polls a condition with a deadline ([`wait_until`]); none sleeps as a
//! stand-in for a condition.

#![allow(dead_code)] // Each test binary uses a different subset.

use myset_api::{ClusterStatus, Event, InstanceStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const MYSET: &str = env!("CARGO_BIN_EXE_myset");

/// How long a command that should answer at once may take before it counts as hung.
pub const QUICK: Duration = Duration::from_secs(30);
/// How long `up`/`scale`/`down` may take (they wait for the cluster to converge).
pub const SLOW: Duration = Duration::from_secs(300);
/// How often [`wait_until`] re-checks its condition.
const POLL: Duration = Duration::from_millis(100);

/// Whether Debian's galera-4 is installed; the Galera tests skip without it, except under CI,
/// where its absence fails them (scripts/install-deps installs it).
pub fn galera_available() -> bool {
    let found = Path::new("/usr/lib/galera/libgalera_smm.so").exists();
    required_unless_ci(found, "galera-4", "scripts/install-deps installs it")
}

/// A test's outside dependency, `what`, is `found` or not: without it the test skips (after
/// saying so), except under CI, where its absence fails the test; `how` says how to get it.
pub fn required_unless_ci(found: bool, what: &str, how: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{what} is missing under CI ({how})"
        );
        eprintln!("skipped: {what} is not installed ({how})");
    }
    found
}

/// Runs `f` to completion on a runtime of its own.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Polls `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `probe` until it yields a value or `timeout` passes.
pub fn poll_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let mut found = None;
    wait_until(timeout, || {
        found = probe();
        found.is_some()
    });
    found
}

/// Runs `check` over and over for `duration`: for what must hold throughout a period (that
/// nothing happens while a fault lasts), not for waiting on a condition.
pub fn throughout(duration: Duration, mut check: impl FnMut()) {
    let end = Instant::now() + duration;
    loop {
        check();
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(POLL.min(left));
    }
}

/// Two distinct free loopback ports (both held while the second is picked).
pub fn free_ports() -> (u16, u16) {
    let a = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    /// The exit code; `None` when the process died by a signal or was killed for hanging.
    pub code: Option<i32>,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn describe(&self) -> String {
        format!(
            "myset {:?}: exit {:?}{} after {:.1?}\n--- stdout\n{}--- stderr\n{}---",
            self.args,
            self.code,
            if self.timed_out {
                " (killed: hung)"
            } else {
                ""
            },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }

    /// Asserts the command succeeded without a panic; returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(self.success(), "expected success: {}", self.describe());
        assert!(
            !self.stderr.contains("panicked"),
            "panic: {}",
            self.describe()
        );
        &self.stdout
    }

    /// Asserts the command failed the way every myset error must: a non-zero exit code (not a
    /// signal, not a hang), no panic, and exactly one line on stderr starting with "error: ".
    /// Returns that line.
    #[track_caller]
    pub fn one_line_error(&self) -> String {
        assert!(!self.timed_out, "hung: {}", self.describe());
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a non-zero exit code: {}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "panic: {}",
            self.describe()
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one line on stderr: {}",
            self.describe()
        );
        assert!(
            lines[0].starts_with("error: "),
            "the error line must start with \"error: \": {}",
            self.describe()
        );
        eprintln!("myset {:?} -> {}", self.args, lines[0]);
        lines[0].to_string()
    }

    /// Asserts the command line was refused the way clap words it, in full: exit code 2, no
    /// panic, stderr starting with "error: " and pointing at --help, and containing every one
    /// of `needles`. Returns stderr.
    #[track_caller]
    pub fn usage_error(&self, needles: &[&str]) -> String {
        assert!(!self.timed_out, "hung: {}", self.describe());
        assert_eq!(
            self.code,
            Some(2),
            "expected exit code 2: {}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "panic: {}",
            self.describe()
        );
        assert!(
            self.stderr.starts_with("error: ") && self.stderr.contains("--help"),
            "expected clap's message: {}",
            self.describe()
        );
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "the error should mention {needle:?}: {}",
                self.describe()
            );
        }
        self.stderr.clone()
    }

    /// [`Run::one_line_error`] plus: the line contains every one of `needles`.
    #[track_caller]
    pub fn error_containing(&self, needles: &[&str]) -> String {
        let line = self.one_line_error();
        for needle in needles {
            assert!(
                line.contains(needle),
                "the error should mention {needle:?}: {}",
                self.describe()
            );
        }
        line
    }
}

/// Runs the binary with `args`, extra environment `env` (a `None` value removes the variable),
/// and kills it if it runs longer than `timeout`.
pub fn run_myset(args: &[&str], env: &[(&str, Option<OsString>)], timeout: Duration) -> Run {
    run_myset_input(args, env, None, timeout)
}

/// [`run_myset`] with `input` on stdin (closed after it) instead of nothing.
pub fn run_myset_input(
    args: &[&str],
    env: &[(&str, Option<OsString>)],
    input: Option<&[u8]>,
    timeout: Duration,
) -> Run {
    let mut command = Command::new(MYSET);
    command
        .args(args)
        .env_remove("MYSET_LOG")
        .env_remove("MYSET_STATE_DIR")
        .env_remove("RUST_BACKTRACE")
        .env("MYSET_ENDPOINTS", endpoints_mode())
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        match value {
            Some(v) => command.env(key, v),
            None => command.env_remove(key),
        };
    }
    let started = Instant::now();
    let mut child = command.spawn().expect("spawn myset");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A writer of its own, so a child that does not read cannot block the test.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = stdin.write_all(&input);
        });
    }
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
        rx
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let mut status = None;
    let finished = wait_until(timeout, || {
        status = child.try_wait().expect("wait for myset");
        status.is_some()
    });
    if !finished {
        let _ = child.kill();
        status = child.wait().ok();
    }
    // A daemon that inherited a pipe would keep it open; do not wait on it forever.
    let collect = |rx: std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| "<output pipe still held open by another process>".into())
    };
    Run {
        args: args.iter().map(|a| a.to_string()).collect(),
        code: if finished {
            status.and_then(|s| s.code())
        } else {
            None
        },
        signal: status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
        timed_out: !finished,
        stdout: collect(out),
        stderr: collect(err),
        elapsed: started.elapsed(),
    }
}

/// The endpoint mode clusters are made with (`up --endpoints`, through `MYSET_ENDPOINTS`,
/// which `myset chaos` passes on to its own `up`): `ENDPOINTS=kernel|userspace|auto`, userspace
/// by default, so a test run as root keeps the proxy's behaviour unless asked. A test's own
/// `--endpoints` wins.
pub fn endpoints_mode() -> String {
    std::env::var("ENDPOINTS").unwrap_or_else(|_| "userspace".into())
}

/// Whether a process with this pid exists (a zombie counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// The short command name of a live process.
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn signal(pid: u32, sig: Signal) {
    let pid = i32::try_from(pid).expect("pid fits i32");
    let _ = kill(Pid::from_raw(pid), sig);
}

/// Every live process whose command line mentions `needle`, with that command line.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && pid_alive(pid))
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmdline.contains(needle).then_some((pid, cmdline))
        })
        .collect()
}

/// Sends SIGCONT to a process when dropped, so a test that SIGSTOPs a server never leaves it
/// stopped, even when an assertion fails in between.
pub struct ContinueOnDrop(pub u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGCONT);
    }
}

/// A cluster in a private state dir. Creating it starts nothing; dropping it runs
/// `myset destroy` and then kills anything still running from its state dir.
pub struct Cluster {
    pub name: String,
    pub rw_port: u16,
    pub ro_port: u16,
    state_dir: PathBuf,
    // Last field: dropped after `Drop::drop` has stopped every process.
    tmp: tempfile::TempDir,
}

impl Cluster {
    /// A cluster named `name` in a fresh state dir, with free rw/ro ports.
    pub fn new(name: &str) -> Cluster {
        remember_panics();
        let tmp = tempfile::Builder::new()
            .prefix("myset-e2e-")
            .tempdir()
            .expect("create a temp dir");
        let state_dir = tmp.path().join("state");
        std::fs::create_dir(&state_dir).expect("create the state dir");
        let (rw_port, ro_port) = free_ports();
        Cluster {
            name: name.to_string(),
            rw_port,
            ro_port,
            state_dir,
            tmp,
        }
    }

    /// The temp dir holding the state dir (scratch space for a test).
    pub fn scratch(&self) -> &Path {
        self.tmp.path()
    }
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }
    pub fn root(&self) -> PathBuf {
        self.state_dir.join(&self.name)
    }
    pub fn state_file(&self) -> PathBuf {
        self.root().join("cluster.json")
    }
    pub fn instance_dir(&self, ordinal: u32) -> PathBuf {
        self.root()
            .join("instances")
            .join(format!("{}-{ordinal}", self.name))
    }
    pub fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.instance_dir(ordinal).join("data")
    }

    /// Runs `myset ARGS` with this cluster's state dir (via MYSET_STATE_DIR) and nothing else.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], QUICK)
    }

    pub fn run_with(
        &self,
        args: &[&str],
        env: &[(&str, Option<OsString>)],
        timeout: Duration,
    ) -> Run {
        let mut env = env.to_vec();
        env.push((
            "MYSET_STATE_DIR",
            Some(self.state_dir.clone().into_os_string()),
        ));
        run_myset(args, &env, timeout)
    }

    /// Runs `myset ARGS --name NAME` with `input` on stdin.
    pub fn cmd_input(&self, args: &[&str], input: &str) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--name", self.name.as_str()]);
        let env = [(
            "MYSET_STATE_DIR",
            Some(self.state_dir.clone().into_os_string()),
        )];
        run_myset_input(&all, &env, Some(input.as_bytes()), QUICK)
    }

    /// Runs `myset ARGS --name NAME`.
    pub fn cmd(&self, args: &[&str]) -> Run {
        self.cmd_timeout(args, QUICK)
    }

    pub fn cmd_timeout(&self, args: &[&str], timeout: Duration) -> Run {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--name", self.name.as_str()]);
        self.run_with(&all, &[], timeout)
    }

    /// `myset up` on this cluster's ports.
    pub fn up(&self, replicas: Option<u32>) -> Run {
        let replicas = replicas.map(|r| r.to_string());
        let mut extra = Vec::new();
        if let Some(r) = &replicas {
            extra.extend(["--replicas", r.as_str()]);
        }
        self.up_with(&extra)
    }

    /// `myset up` on this cluster's ports, with `extra` arguments.
    pub fn up_with(&self, extra: &[&str]) -> Run {
        self.up_with_env(extra, &[])
    }

    /// `myset up` on this cluster's ports, with `extra` arguments and `env` set for it (and so
    /// for the controller and agents it starts).
    pub fn up_with_env(&self, extra: &[&str], env: &[(&str, Option<OsString>)]) -> Run {
        let (rw, ro) = (self.rw_port.to_string(), self.ro_port.to_string());
        let mut args = vec!["up", "--rw-port", &rw, "--ro-port", &ro, "--timeout", "280"];
        args.extend_from_slice(extra);
        args.extend(["--name", self.name.as_str()]);
        self.run_with(&args, env, SLOW)
    }

    /// Waits until the cluster is converged (every instance Ready); returns that status.
    pub fn wait_converged(&self, timeout: Duration) -> Option<ClusterStatus> {
        poll_for(timeout, || self.try_status().filter(|s| s.converged()))
    }

    pub fn scale(&self, replicas: u32, delete_data: bool) -> Run {
        let r = replicas.to_string();
        let mut args = vec!["scale", "--replicas", &r, "--timeout", "280"];
        if delete_data {
            args.push("--delete-data");
        }
        self.cmd_timeout(&args, SLOW)
    }

    /// `myset status -o json`, parsed; panics when it fails.
    #[track_caller]
    pub fn status(&self) -> ClusterStatus {
        let run = self.cmd(&["status", "-o", "json"]);
        let out = run.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("status JSON: {e}\n{out}"))
    }

    /// `myset status -o json` when it answers; `None` otherwise (for polling).
    pub fn try_status(&self) -> Option<ClusterStatus> {
        let run = self.cmd(&["status", "-o", "json"]);
        run.success()
            .then(|| serde_json::from_str(&run.stdout).ok())
            .flatten()
    }

    /// One instance of a status, by ordinal.
    #[track_caller]
    pub fn instance(status: &ClusterStatus, ordinal: u32) -> &InstanceStatus {
        status
            .instances
            .iter()
            .find(|i| i.ordinal == ordinal)
            .unwrap_or_else(|| panic!("no instance {ordinal} in {status:#?}"))
    }

    /// `myset sql TARGET -e SQL`.
    pub fn sql(&self, target: &str, sql: &str) -> Run {
        self.cmd(&["sql", target, "-e", sql])
    }

    /// Runs SQL as the user account from inside instance `ordinal`'s network namespace, where a
    /// client cut off with a partitioned primary would be.
    pub fn sql_inside(&self, ordinal: u32, sql: &str) -> Result<String, String> {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.state_file()).expect("self.json"))
                .expect("self.json is JSON");
        let index = state["netns"].as_u64().expect("a --netns cluster");
        let host = state["placements"][ordinal.to_string()]["server"]["host"]
            .as_str()
            .expect("placement host")
            .to_string();
        let password = std::fs::read_to_string(self.root().join("password")).expect("password");
        let namespace = format!("myset{index}-{}-{ordinal}", self.name);
        let out = Command::new("ip")
            .args(["netns", "exec", &namespace, "mariadb", "-N", "-B"])
            .args(["-h", &host, "-P", "3306", "-u", "myset"])
            .arg(format!("-p{}", password.trim()))
            .args(
                self.ca_file()
                    .map(|ca| {
                        [
                            format!("--ssl-ca={}", ca.display()),
                            "--ssl-verify-server-cert".to_string(),
                        ]
                    })
                    .into_iter()
                    .flatten(),
            )
            .args(["--connect-timeout", "5", "-e", sql])
            .output()
            .expect("run mariadb in the namespace");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The CA file clients verify the servers by, when the cluster has TLS (the default).
    pub fn ca_file(&self) -> Option<PathBuf> {
        let state: myset_api::ClusterState =
            serde_json::from_slice(&std::fs::read(self.state_file()).expect("cluster.json"))
                .expect("cluster.json is a cluster record");
        state
            .tls
            .enabled()
            .then(|| self.root().join("tls").join("ca.pem"))
    }

    /// Connection options of the user's account to `port` on loopback (rw, ro or an
    /// instance), over TLS verified by the cluster's CA when it has TLS.
    pub fn user_opts(&self, port: u16) -> mysql_async::OptsBuilder {
        let password = std::fs::read_to_string(self.root().join("password")).expect("password");
        myset_mariadb::client::tcp_opts(
            "127.0.0.1",
            port,
            "myset",
            password.trim(),
            self.ca_file().as_deref(),
        )
    }

    /// Rows of a query that must succeed, each row split on tabs.
    #[track_caller]
    pub fn query(&self, target: &str, sql: &str) -> Vec<Vec<String>> {
        parse_rows(self.sql(target, sql).ok())
    }

    /// Rows of a query, or `None` when it fails (for polling).
    pub fn try_query(&self, target: &str, sql: &str) -> Option<Vec<Vec<String>>> {
        let run = self.sql(target, sql);
        run.success().then(|| parse_rows(&run.stdout))
    }

    /// `@@server_id` over `n` new connections through ro; stops at the first failure.
    pub fn ro_server_ids(&self, n: usize) -> Result<Vec<u32>, String> {
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let run = self.sql("ro", "SELECT @@server_id");
            if !run.success() {
                return Err(format!("{run:?}"));
            }
            let id = run
                .stdout
                .trim()
                .parse::<u32>()
                .map_err(|e| format!("{e}: {run:?}"))?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Every recorded event (events.jsonl), oldest first.
    pub fn events(&self) -> Vec<Event> {
        std::fs::read_to_string(self.root().join("events.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line {l:?}: {e}")))
            .collect()
    }

    /// Messages of the events recorded after the first `skip`.
    pub fn event_messages_since(&self, skip: usize) -> Vec<String> {
        self.events()
            .into_iter()
            .skip(skip)
            .map(|e| e.message)
            .collect()
    }

    /// The read-only token of the controller's `/metrics`.
    pub fn metrics_token(&self) -> String {
        let path = self.root().join("metrics-token");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.trim().to_string()
    }

    /// `GET path` on the controller whose metrics are at `metrics_url` (from `status`), with
    /// `token`, over HTTPS verified by the cluster's CA when it has TLS: the body of a success,
    /// or the HTTP status of an error answer (0: no answer).
    pub fn controller_get(
        &self,
        metrics_url: &str,
        path: &str,
        token: &str,
    ) -> Result<String, u16> {
        let address = metrics_url
            .strip_suffix(myset_api::METRICS_PATH)
            .and_then(|base| base.split_once("://"))
            .map(|(_, address)| address)
            .unwrap_or_else(|| {
                panic!(
                    "{metrics_url} is not a URL ending in {}",
                    myset_api::METRICS_PATH
                )
            });
        let access = match self.ca_file() {
            Some(ca) => {
                myset_http::ApiAccess::verified_by(token, &ca).expect("the cluster's CA loads")
            }
            None => myset_http::ApiAccess::plain(token),
        };
        let client = access.client(address, QUICK);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime
            .block_on(client.text(path))
            .map_err(|e| e.status().unwrap_or(0))
    }

    /// The controller's pid, from controller.json, if that file exists.
    pub fn controller_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.root().join("controller.json")).ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value.get("pid")?.as_u64().map(|p| p as u32)
    }

    /// Pids written in the cluster's pid files (controller, agents, servers), alive or not.
    pub fn recorded_pids(&self) -> BTreeSet<u32> {
        let mut pids: BTreeSet<u32> = self.controller_pid().into_iter().collect();
        if let Ok(entries) = std::fs::read_dir(self.root().join("instances")) {
            for dir in entries.filter_map(|e| e.ok()).map(|e| e.path()) {
                for file in [dir.join("agent.pid"), dir.join("run").join("mariadbd.pid")] {
                    if let Some(pid) = std::fs::read_to_string(file)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                    {
                        pids.insert(pid);
                    }
                }
            }
        }
        pids
    }

    /// Live processes started from this cluster's state dir (controller, agents, servers, clones).
    pub fn processes(&self) -> Vec<(u32, String)> {
        processes_mentioning(&self.state_dir.to_string_lossy())
    }

    /// Pids that are alive among `pids`.
    pub fn alive(pids: impl IntoIterator<Item = u32>) -> Vec<u32> {
        pids.into_iter().filter(|&p| pid_alive(p)).collect()
    }
}

impl Cluster {
    /// The last lines of the cluster's logs and events, for the output of a failed test (the
    /// cluster and its logs are destroyed right after).
    fn dump_logs(&self) {
        dump_logs_in(&self.root());
        // Again after the logs: CI keeps only the end of a long output, and the reason is
        // what a reader needs first.
        if let Some(message) = LAST_PANIC.with(|last| last.borrow_mut().take()) {
            eprintln!("---- the test failed: {message}");
        }
    }
}

/// Prints the last lines of the logs and events in a cluster's directory (or a copy of it, such
/// as the one `myset chaos --keep-logs` makes).
pub fn dump_logs_in(root: &Path) {
    if !root.exists() {
        return;
    }
    // The reason before the logs as well as after them: CI shows only a part of a long
    // output, and that part may hold neither end.
    if let Some(message) = LAST_PANIC.with(|last| last.borrow().clone()) {
        eprintln!(
            "---- the test failed: {message}; the logs of {}:",
            root.display()
        );
    }
    fn tail(path: &Path, lines: usize) {
        if let Ok(text) = std::fs::read_to_string(path) {
            let all: Vec<&str> = text.lines().collect();
            eprintln!("---- last {lines} lines of {}", path.display());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }
    tail(&root.join("events.jsonl"), 60);
    tail(&root.join("controller.log"), 60);
    if let Ok(instances) = std::fs::read_dir(root.join("instances")) {
        for instance in instances.flatten() {
            tail(&instance.path().join("agent.log"), 30);
            tail(&instance.path().join("logs").join("mariadbd.log"), 30);
        }
    }
}

thread_local! {
    /// The message of this thread's latest panic, for `dump_logs` to repeat.
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once per test binary) a panic hook that keeps each panic's message for
/// `dump_logs`, then prints it as usual.
fn remember_panics() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic without a message".into());
            let location = info
                .location()
                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                .unwrap_or_default();
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(format!("{message}{location}")));
            default_hook(info);
        }));
    });
}

impl Cluster {
    /// The names of the other clusters recorded in this cluster's state dir.
    fn other_clusters(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.state_dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.path().join("cluster.json").exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| *name != self.name)
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        if self.state_file().exists() {
            let run = self.cmd_timeout(&["destroy"], Duration::from_secs(120));
            if !run.success() {
                eprintln!("cleanup: destroy failed: {run:?}");
            }
        }
        // Clusters the test made beside this one (a restore's, say) go the same way: killed
        // by the sweep below instead, a kernel-mode cluster would leave its nftables table
        // behind, rewriting connections to ports a later test may be handed.
        for other in self.other_clusters() {
            let run = self.run_with(
                &["destroy", "--name", other.as_str()],
                &[],
                Duration::from_secs(120),
            );
            if !run.success() {
                eprintln!("cleanup: destroy of {other} failed: {run:?}");
            }
        }
        // Last resort: the pids in the pid files, and anything else still running from this
        // state dir. A pid counts only if its command line names the state dir, so a recycled
        // pid of an unrelated process is never signalled.
        let needle = self.state_dir.to_string_lossy().into_owned();
        let running = processes_mentioning(&needle);
        let mut leftovers: BTreeSet<u32> = self
            .recorded_pids()
            .into_iter()
            .filter(|p| running.iter().any(|(q, _)| q == p))
            .collect();
        leftovers.extend(running.iter().map(|(p, _)| *p));
        if !leftovers.is_empty() {
            eprintln!("cleanup: killing leftover processes {leftovers:?}");
            for &pid in &leftovers {
                signal(pid, Signal::SIGCONT);
                signal(pid, Signal::SIGKILL);
            }
            wait_until(Duration::from_secs(10), || {
                leftovers.iter().all(|&p| !pid_alive(p))
            });
        }
    }
}

/// One cluster at a time within a test binary, for tests that are timing-sensitive or take
/// ports by chance (an instance's port comes from the ephemeral range, where a neighbouring
/// test's client connection can take it while the instance is down).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Splits `myset sql` output into rows of tab-separated fields.
pub fn parse_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

/// The single-column values of `rows`, sorted.
pub fn column(rows: &[Vec<String>]) -> Vec<String> {
    let mut values: Vec<String> = rows.iter().map(|r| r[0].clone()).collect();
    values.sort();
    values
}

/// Unix permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The table the backup tests write: `app.t (id INT PRIMARY KEY)`.
pub const APP_SETUP: &str = "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)";

/// A steady writer through rw into `app.t` (see [`APP_SETUP`]): ids 1, 2, ... one insert at
/// a time, each recorded with when its acknowledgement arrived. An insert that fails or times
/// out has an unknown outcome: its id is skipped, never retried, and the writer reconnects
/// (rw moves on a switchover), so the acknowledged ids are exactly those that must survive.
pub struct SteadyWriter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acked: std::sync::Arc<std::sync::Mutex<Vec<(u32, Instant)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SteadyWriter {
    pub fn start(cluster: &Cluster) -> SteadyWriter {
        // Verified TLS when the cluster has it.
        let opts = cluster.user_opts(cluster.rw_port).db_name(Some("app"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || write_steadily(opts, &stop, &acked))
        };
        SteadyWriter {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    pub fn acked_count(&self) -> usize {
        self.acked.lock().expect("acked lock").len()
    }

    /// The longest time between two consecutive acknowledgements from `from` on.
    pub fn longest_gap_since(&self, from: Instant) -> Duration {
        let acked = self.acked.lock().expect("acked lock");
        let start = acked.iter().rposition(|(_, t)| *t <= from).unwrap_or(0);
        acked[start..]
            .windows(2)
            .map(|w| w[1].1 - w[0].1)
            .max()
            .unwrap_or_default()
    }

    /// Stops writing; returns every acknowledged id with when it was acknowledged.
    pub fn stop(mut self) -> Vec<(u32, Instant)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        std::mem::take(&mut *self.acked.lock().expect("acked lock"))
    }
}

impl Drop for SteadyWriter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

fn write_steadily(
    opts: mysql_async::OptsBuilder,
    stop: &std::sync::atomic::AtomicBool,
    acked: &std::sync::Mutex<Vec<(u32, Instant)>>,
) {
    use mysql_async::prelude::Queryable;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut conn = None;
        let mut id = 0u32;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Some(c) = conn.as_mut() else {
                let connect = mysql_async::Conn::new(opts.clone());
                match tokio::time::timeout(Duration::from_secs(1), connect).await {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                continue;
            };
            id += 1;
            let insert = c.query_drop(format!("INSERT INTO app.t VALUES ({id})"));
            match tokio::time::timeout(Duration::from_secs(5), insert).await {
                Ok(Ok(())) => acked.lock().expect("acked lock").push((id, Instant::now())),
                _ => conn = None,
            }
        }
    })
}

/// Inserts `ids` into `app.t` through rw, one transaction (one GTID) each.
pub fn insert_app_rows(cluster: &Cluster, ids: std::ops::RangeInclusive<u32>) {
    for id in ids {
        cluster
            .sql("rw", &format!("INSERT INTO app.t VALUES ({id})"))
            .ok();
    }
}

/// The ids in `app.t` of cluster `name` (in the same state dir), through `target`.
pub fn app_ids(cluster: &Cluster, name: &str, target: &str) -> Vec<u32> {
    let run = cluster.run(&[
        "sql",
        "--name",
        name,
        target,
        "-e",
        "SELECT id FROM app.t ORDER BY id",
    ]);
    run.ok()
        .lines()
        .map(|l| l.trim().parse().expect("an id"))
        .collect()
}

/// Waits until the binlog archive holds the primary's whole binlog position.
#[track_caller]
pub fn wait_archived(cluster: &Cluster) {
    let pos = cluster.query("rw", "SELECT @@gtid_binlog_pos")[0][0].clone();
    assert!(
        wait_until(Duration::from_secs(30), || cluster
            .try_status()
            .and_then(|s| s.backup?.archive?.last_gtid)
            .is_some_and(|g| g == pos)),
        "the archive never reached {pos}: {:?}",
        cluster.try_status().map(|s| s.backup)
    );
}

/// `myset restore SOURCE... --name NAME --replicas 1` on fresh ports, with `extra` arguments
/// and `env`.
pub fn restore_from(
    cluster: &Cluster,
    source: &[&str],
    name: &str,
    extra: &[&str],
    env: &[(&str, Option<OsString>)],
    timeout: Duration,
) -> Run {
    let (rw, ro) = free_ports();
    let (rw, ro) = (rw.to_string(), ro.to_string());
    let mut args = vec!["restore"];
    args.extend_from_slice(source);
    args.extend([
        "--name",
        name,
        "--replicas",
        "1",
        "--rw-port",
        &rw,
        "--ro-port",
        &ro,
        "--timeout",
        "200",
    ]);
    args.extend_from_slice(extra);
    cluster.run_with(&args, env, timeout)
}
