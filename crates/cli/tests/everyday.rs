//! The everyday commands against one real two-instance cluster: list, shell, logs (and
//! --follow), completions, events --follow, sql from stdin, the client.cnf alone, status
//! right after a kill (with versions and restart counts), the clone's donor in the events,
//! and commands whose stdout reader goes away.

mod support;

use myset_api::{EventKind, InstanceState};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use support::{wait_until, Cluster, MYSET, QUICK, SLOW};

/// A long-running `myset ARGS --name NAME` (a `--follow`) whose stdout lines arrive on a
/// channel; killed when dropped.
struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Follower {
    fn start(c: &Cluster, args: &[&str]) -> Follower {
        let mut child = Command::new(MYSET)
            .args(args)
            .args(["--name", &c.name])
            .env("MYSET_STATE_DIR", c.state_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn myset");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower { child, lines }
    }

    /// Waits for a line satisfying `wanted`; returns it.
    fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if wanted(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no {what} in the followed output: {seen:#?}");
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `myset ARGS` with stdout a pipe whose reader is gone before anything is written;
/// returns the exit code (None: ended by a signal) and stderr.
fn with_closed_stdout(c: &Cluster, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let out = Command::new(MYSET)
        .args(args)
        .env("MYSET_STATE_DIR", c.state_dir())
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run myset");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn everyday_commands_on_a_running_cluster() {
    let c = Cluster::new("demo");
    let empty = c.run(&["list"]);
    assert!(empty.ok().starts_with("no clusters in "), "{empty:?}");
    assert_eq!(c.run(&["list", "-o", "json"]).ok().trim(), "[]");

    // `up` shows its progress as plain lines when stderr is not a terminal.
    let up = c.up(Some(2));
    up.ok();
    for step in ["demo-0: ready", "demo-1: ready"] {
        assert!(up.stderr.contains(step), "progress of up: {}", up.stderr);
    }

    // The clone event names the donor that served it.
    let clone = c
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::Cloning && e.ordinal == Some(1))
        .expect("a cloning event for demo-1");
    assert_eq!(clone.donor, Some(0), "{clone:?}");
    assert!(
        clone.message.starts_with("demo-1 ") && clone.message.ends_with(" from demo-0"),
        "{clone:?}"
    );
    // Clone progress is logged now and then, not on every chunk received.
    let agent_log = std::fs::read_to_string(c.instance_dir(1).join("agent.log")).unwrap();
    let progress = agent_log
        .lines()
        .filter(|l| l.contains("phase") && l.contains("cloning from"))
        .count();
    // The clone takes seconds; a line per chunk received would be hundreds.
    assert!(
        progress <= 8,
        "{progress} clone progress lines:\n{agent_log}"
    );

    // Status: each instance's server version and restart count.
    let status = c.status();
    for i in &status.instances {
        let version = i.version.as_deref().unwrap_or_default();
        assert!(version.contains("MariaDB"), "{i:?}");
        assert_eq!(i.restarts, 0, "{i:?}");
    }
    let table = c.cmd(&["status"]).ok().to_string();
    assert!(
        table.contains("RESTARTS") && table.contains("VERSION"),
        "{table}"
    );
    let short = status.instances[0]
        .version
        .as_deref()
        .unwrap()
        .split('-')
        .next()
        .unwrap()
        .to_string();
    assert!(table.contains(&short), "{table}");

    // list: the cluster, its state and endpoints.
    let rw = format!("127.0.0.1:{}", c.rw_port);
    let ro = format!("127.0.0.1:{}", c.ro_port);
    let list = c.run(&["list"]).ok().to_string();
    let line = list
        .lines()
        .find(|l| l.starts_with("demo "))
        .unwrap_or_else(|| panic!("{list}"));
    for word in ["running", "2/2", &rw, &ro] {
        assert!(line.contains(word), "{word} in {line:?}");
    }
    let listed: serde_json::Value =
        serde_json::from_str(c.run(&["list", "-o", "json"]).ok()).expect("list JSON");
    assert_eq!(listed[0]["name"], "demo");
    assert_eq!(listed[0]["state"], "running");
    assert_eq!(listed[0]["rw"], rw.as_str());

    // client.cnf alone reaches rw.
    let cnf = c.root().join("client.cnf");
    let alone = Command::new("mariadb")
        .arg(format!("--defaults-extra-file={}", cnf.display()))
        .args(["-N", "-B", "-e", "SELECT @@server_id, CURRENT_USER()"])
        .output()
        .expect("run the mariadb client");
    assert!(alone.status.success(), "{alone:?}");
    assert_eq!(
        String::from_utf8_lossy(&alone.stdout).trim(),
        "100\tmyset@%"
    );

    // sql reads a multi-statement dump from stdin; -v reports affected rows.
    let dump = "CREATE DATABASE shop;\nCREATE TABLE shop.t (v INT);\n\
                INSERT INTO shop.t VALUES (1), (2), (3);\n\
                UPDATE shop.t SET v = v + 10 WHERE v > 1;\nSELECT COUNT(*) FROM shop.t;\n";
    let loaded = c.cmd_input(&["sql", "rw", "-v"], dump);
    let out = loaded.ok();
    for wanted in [
        "Query OK, 3 rows affected",
        "Query OK, 2 rows affected",
        "Query OK, 1 row affected",
    ] {
        assert!(out.contains(wanted), "{wanted} in {out}");
    }
    assert!(out.lines().any(|l| l == "3"), "{out}");
    let quiet = c.cmd_input(&["sql", "rw"], "INSERT INTO shop.t VALUES (4)");
    assert_eq!(quiet.ok(), "", "without -v only rows are printed");
    c.cmd_input(&["sql", "rw"], "  \n")
        .error_containing(&["no SQL on stdin"]);

    // shell: the real mariadb client, SQL piped in, on rw, ro and an ordinal.
    let shell = c.cmd_input(&["shell"], "SELECT SUM(v) FROM shop.t;\n");
    assert!(shell.ok().contains("30"), "{shell:?}");
    assert!(
        wait_until(QUICK, || c
            .cmd_input(&["shell", "1"], "SELECT COUNT(*) FROM shop.t;\n")
            .stdout
            .contains('4')),
        "demo-1 through shell"
    );
    let ids = c.run(&[
        "shell",
        "--name",
        "demo",
        "ro",
        "--",
        "-N",
        "-B",
        "-e",
        "SELECT @@server_id",
    ]);
    assert!(["100", "101"].contains(&ids.ok().trim()), "{ids:?}");

    // logs: the controller's, an agent's, a server's; --follow prints appended lines.
    assert!(c.cmd(&["logs"]).ok().contains("INFO"), "controller log");
    assert!(c.cmd(&["logs", "1"]).ok().contains("cloning"), "agent log");
    assert!(
        c.cmd(&["logs", "1", "--server"])
            .ok()
            .contains("ready for connections"),
        "server log"
    );
    let follow_log = Follower::start(&c, &["logs", "--follow", "controller"]);
    let marker = "a line appended by the test";
    {
        use std::io::Write;
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(c.root().join("controller.log"))
            .unwrap();
        writeln!(log, "{marker}").unwrap();
    }
    follow_log.wait_for("appended log line", |l| l == marker);
    drop(follow_log);

    // events --follow streams what happens next; status is current right after a kill.
    let follow = Follower::start(&c, &["events", "--follow", "-o", "json"]);
    follow.wait_for("an old event", |l| l.contains("\"member-added\""));
    let before = Cluster::instance(&c.status(), 1).clone();
    c.cmd(&["kill", "1"]).ok();
    let after = c.status();
    let killed = Cluster::instance(&after, 1);
    assert!(
        !(killed.ready && killed.pid == before.pid),
        "demo-1 still shown Ready with its old pid after kill: {killed:?}"
    );
    assert_ne!(killed.pid, before.pid, "{killed:?}");
    assert!(
        matches!(
            killed.state,
            InstanceState::NotRunning | InstanceState::Unreachable
        ) || killed.agent_pid != before.agent_pid,
        "{killed:?}"
    );
    let restarted = follow.wait_for("the restart of demo-1", |l| {
        l.contains("\"agent-restarted\"") && l.contains("\"ordinal\":1")
    });
    serde_json::from_str::<myset_api::Event>(&restarted).expect("an event object");
    drop(follow);
    c.wait_converged(SLOW).expect("converged after the kill");

    // A crashed server restarted by its agent counts as a restart.
    let pid = Cluster::instance(&c.status(), 1)
        .pid
        .expect("demo-1's server pid");
    support::signal(pid, nix::sys::signal::Signal::SIGKILL);
    assert!(
        wait_until(SLOW, || c.try_status().is_some_and(|s| {
            let i = Cluster::instance(&s, 1);
            i.restarts == 1 && i.ready && i.version.is_some()
        })),
        "restart count: {:?}",
        c.try_status()
    );

    // completions for each shell.
    for shell in ["bash", "zsh", "fish"] {
        let script = c.run(&["completions", shell]);
        assert!(script.ok().contains("myset"), "{shell}");
        assert!(script.stdout.contains("shell"), "{shell}: subcommands");
    }

    // A reader that goes away ends the command quietly, never with a panic (exit 101).
    // SIGPIPE is ignored (see main.rs): every print must end quietly by itself.
    for args in [
        vec!["events", "--name", "demo"],
        vec!["status", "--name", "demo"],
        vec!["list"],
        vec!["backups", "--name", "demo"],
        vec!["completions", "bash"],
        vec!["sql", "--name", "demo", "ro", "-e", "SELECT 1"],
    ] {
        let (code, stderr) = with_closed_stdout(&c, &args);
        // Success, not a death by SIGPIPE (no code) nor a panic (101): what was asked for ran.
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
