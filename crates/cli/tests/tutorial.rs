//! The Kubernetes "Run a Replicated Stateful Application" (StatefulSet MySQL) tutorial, step by
//! step, against a real local cluster: one cluster, reused by every step, in one sequential test.

mod support;

use myset_api::{ClusterStatus, Role};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::{column, comm, mode, pid_alive, signal, wait_until, Cluster, ContinueOnDrop};

const ROWS: &str = "SELECT message FROM test.messages";

/// Prints how long each step took, to keep an eye on the suite's runtime.
struct Steps(Instant, Instant);

impl Steps {
    fn new() -> Steps {
        Steps(Instant::now(), Instant::now())
    }
    fn done(&mut self, what: &str) {
        let now = Instant::now();
        eprintln!("[{:>6.1?} +{:>6.1?}] {what}", now - self.0, now - self.1);
        self.1 = now;
    }
}

fn ordinals(status: &ClusterStatus) -> Vec<u32> {
    status.instances.iter().map(|i| i.ordinal).collect()
}

/// Every instance Ready, with the expected count, and the controller running.
fn converged(status: &ClusterStatus, replicas: u32) -> bool {
    status.running
        && status.replicas == replicas
        && status.instances.len() == replicas as usize
        && status.instances.iter().all(|i| i.ready)
}

/// Polls until `ordinal` answers `ROWS` with exactly `expected` (sorted).
#[track_caller]
fn wait_rows(c: &Cluster, target: &str, expected: &[&str], timeout: Duration) {
    let mut last = None;
    let ok = wait_until(timeout, || {
        last = c.try_query(target, ROWS).map(|rows| column(&rows));
        last.as_deref().is_some_and(|v| v == expected)
    });
    assert!(
        ok,
        "{target} should hold rows {expected:?}; last answer: {last:?}"
    );
}

/// Asserts every pid of the status is a live process of the right program.
#[track_caller]
fn assert_processes_alive(status: &ClusterStatus) {
    for i in &status.instances {
        let pid = i
            .pid
            .unwrap_or_else(|| panic!("{} has no mariadbd pid: {i:?}", i.name));
        let agent = i
            .agent_pid
            .unwrap_or_else(|| panic!("{} has no agent pid: {i:?}", i.name));
        assert!(pid_alive(pid), "mariadbd {pid} of {} is not alive", i.name);
        assert_eq!(
            comm(pid).as_deref(),
            Some("mariadbd"),
            "pid {pid} of {} is not mariadbd",
            i.name
        );
        assert!(pid_alive(agent), "agent {agent} of {} is not alive", i.name);
    }
}

#[test]
fn statefulset_tutorial() {
    let mut steps = Steps::new();
    let c = Cluster::new("demo");

    // --- Deploy: a StatefulSet of 3, ordinal 0 the primary, server-id 100 + ordinal.
    let up = c.up(Some(3));
    let out = up.ok();
    assert!(
        out.contains(&format!("127.0.0.1:{}", c.rw_port)),
        "up prints the rw endpoint: {out}"
    );
    assert!(
        out.contains(&format!("127.0.0.1:{}", c.ro_port)),
        "up prints the ro endpoint: {out}"
    );
    let s = c.status();
    assert!(converged(&s, 3), "after up: {s:#?}");
    assert_eq!(s.name, "demo");
    assert_eq!(s.primary, 0);
    assert_eq!(ordinals(&s), vec![0, 1, 2]);
    assert_eq!(s.endpoints.rw, format!("127.0.0.1:{}", c.rw_port));
    assert_eq!(s.endpoints.ro, format!("127.0.0.1:{}", c.ro_port));
    for i in &s.instances {
        assert_eq!(i.server_id, 100 + i.ordinal, "{i:?}");
        assert_eq!(i.name, format!("demo-{}", i.ordinal));
        let role = if i.ordinal == 0 {
            Role::Primary
        } else {
            Role::Replica
        };
        assert_eq!(i.role, role, "{i:?}");
        if role == Role::Replica {
            let r = i
                .replication
                .as_ref()
                .unwrap_or_else(|| panic!("replication of {i:?}"));
            assert!(
                r.io_running && r.sql_running,
                "replication threads of {}: {r:?}",
                i.name
            );
        }
    }
    assert_processes_alive(&s);
    assert_eq!(s.credentials.user, "myset");
    let password_file = std::path::PathBuf::from(&s.credentials.password_file);
    assert_eq!(password_file, c.root().join("password"));
    assert_eq!(mode(&password_file), 0o600, "password file mode");
    assert_eq!(
        mode(&c.root().join("secrets.json")),
        0o600,
        "secrets file mode"
    );
    assert_eq!(mode(&c.root().join("client.cnf")), 0o600, "client.cnf mode");
    // The printed connection help works with the stock client, as the tutorial's mysql-client pod.
    if std::path::Path::new("/usr/bin/mariadb").exists() {
        let client = std::process::Command::new("/usr/bin/mariadb")
            .arg(format!(
                "--defaults-extra-file={}",
                c.root().join("client.cnf").display()
            ))
            .args(["-h", "127.0.0.1", "-P", &c.rw_port.to_string(), "-N", "-B"])
            .args(["-e", "SELECT CURRENT_USER()"])
            .output()
            .expect("run the mariadb client");
        assert!(client.status.success(), "mariadb client: {client:?}");
        assert_eq!(String::from_utf8_lossy(&client.stdout).trim(), "myset@%");
    }
    let table = c.cmd(&["status"]);
    assert!(
        table.ok().contains("demo-2"),
        "status table: {}",
        table.stdout
    );
    steps.done("up 3");

    // --- Send client traffic: write to the primary, read through mysql-read.
    c.query(
        "rw",
        "CREATE DATABASE IF NOT EXISTS test; \
         CREATE TABLE test.messages (message VARCHAR(250)); \
         INSERT INTO test.messages VALUES ('hello')",
    );
    assert_eq!(column(&c.query("rw", ROWS)), ["hello"]);
    for target in ["1", "2", "ro"] {
        wait_rows(&c, target, &["hello"], Duration::from_secs(30));
    }
    steps.done("write via rw, read via ro");

    // mysql-read spreads new connections across every Ready member, primary included.
    let ids = c.ro_server_ids(30).expect("30 connections through ro");
    let seen: BTreeSet<u32> = ids.iter().copied().collect();
    assert_eq!(
        seen,
        BTreeSet::from([100, 101, 102]),
        "server_ids over 30 ro connections: {ids:?}"
    );
    steps.done("ro rotates over 100..102");

    // --- Fixes over the tutorial: replicas are read-only for the user, no superuser accounts.
    let write = c.sql(
        "1",
        "INSERT INTO test.messages VALUES ('written on a replica')",
    );
    let line = write.one_line_error();
    assert!(
        line.to_lowercase().contains("read-only"),
        "replica write must fail on read_only: {line}"
    );
    assert_eq!(
        column(&c.query("1", ROWS)),
        ["hello"],
        "the replica write must not land"
    );
    for target in ["rw", "1"] {
        let grants = c.query(target, "SHOW GRANTS").concat().join("\n");
        assert!(grants.contains("myset"), "grants on {target}: {grants}");
        for forbidden in ["READ ONLY ADMIN", "SUPER", "ALL PRIVILEGES"] {
            assert!(
                !grants.contains(forbidden),
                "user must not hold {forbidden} on {target}: {grants}"
            );
        }
    }
    for target in ["rw", "2"] {
        let accounts = c.query(target, "SELECT User, Host FROM mysql.user");
        let users: BTreeSet<&str> = accounts.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(
            users,
            BTreeSet::from(["mariadb.sys", "myset", "myset_admin", "myset_repl"]),
            "accounts on {target}: {accounts:?}"
        );
        assert!(
            !users.contains(""),
            "anonymous user on {target}: {accounts:?}"
        );
        assert!(
            !users.contains("root"),
            "root account on {target}: {accounts:?}"
        );
    }
    steps.done("replica read_only, grants, accounts");

    // --- Break readiness: hang instance 1's server; it leaves the ro pool, then returns.
    let hung_pid = Cluster::instance(&c.status(), 1)
        .pid
        .expect("pid of demo-1");
    let _continue = ContinueOnDrop(hung_pid);
    signal(hung_pid, Signal::SIGSTOP);
    let stopped_at = Instant::now();
    let mut last = None;
    let not_ready = wait_until(Duration::from_secs(5), || {
        last = c.try_status();
        last.as_ref()
            .is_some_and(|s| !Cluster::instance(s, 1).ready)
    });
    assert!(
        not_ready,
        "a hung demo-1 must turn not Ready within 5s: {last:#?}"
    );
    eprintln!(
        "demo-1 turned not Ready {:.1?} after SIGSTOP",
        stopped_at.elapsed()
    );
    let ids = c
        .ro_server_ids(30)
        .expect("ro must keep answering while demo-1 hangs");
    assert!(
        !ids.contains(&101),
        "ro must not route to hung demo-1: {ids:?}"
    );
    assert!(
        ids.contains(&100) && ids.contains(&102),
        "ro still spreads over 100 and 102: {ids:?}"
    );
    steps.done("hung demo-1 leaves ro");
    signal(hung_pid, Signal::SIGCONT);
    let ready = wait_until(Duration::from_secs(60), || {
        last = c.try_status();
        last.as_ref().is_some_and(|s| Cluster::instance(s, 1).ready)
    });
    assert!(ready, "demo-1 must be Ready again after SIGCONT: {last:#?}");
    let mut seen = Vec::new();
    let back = wait_until(Duration::from_secs(30), || {
        let ids = c.ro_server_ids(10).unwrap_or_default();
        seen.extend_from_slice(&ids);
        ids.contains(&101)
    });
    assert!(back, "ro must route to demo-1 again: {seen:?}");
    let pid_after = Cluster::instance(&c.status(), 1).pid;
    eprintln!("demo-1 mariadbd pid before the hang {hung_pid}, after {pid_after:?}");
    steps.done("demo-1 back in ro");

    // --- Delete a Pod: kill instance 2; it comes back from its own data, no re-clone.
    let before = Cluster::instance(&c.status(), 2).clone();
    let (old_pid, old_agent) = (
        before.pid.expect("pid"),
        before.agent_pid.expect("agent pid"),
    );
    let events_before = c.events().len();
    let killed = c.cmd(&["kill", "2"]);
    assert!(
        killed.ok().contains(&old_pid.to_string()),
        "kill names the server pid: {killed:?}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(old_pid)
            && !pid_alive(old_agent)),
        "kill must end mariadbd {old_pid} and agent {old_agent}"
    );
    let restarted = wait_until(Duration::from_secs(120), || {
        last = c.try_status();
        last.as_ref().is_some_and(|s| {
            let i = Cluster::instance(s, 2);
            i.ready && i.pid.is_some_and(|p| p != old_pid && pid_alive(p))
        })
    });
    assert!(
        restarted,
        "demo-2 must be Ready again with a new mariadbd: {last:#?}"
    );
    assert_processes_alive(last.as_ref().expect("status"));
    assert_eq!(
        column(&c.query("2", ROWS)),
        ["hello"],
        "demo-2 keeps its rows"
    );
    let messages = c.event_messages_since(events_before);
    assert!(
        messages
            .iter()
            .any(|m| m == "started demo-2 (from its own data)"),
        "demo-2 must restart from its own data: {messages:#?}"
    );
    assert!(
        !messages
            .iter()
            .any(|m| m.starts_with("started demo-2 (cloning")),
        "demo-2 must not be re-cloned: {messages:#?}"
    );
    let listed = c.cmd(&["events"]);
    assert!(
        listed.ok().contains("started demo-2 (from its own data)"),
        "myset events: {listed:?}"
    );
    steps.done("kill 2 -> restarted from its own data");

    // --- Scale up 3 -> 5: the new members clone the existing data.
    let events_before = c.events().len();
    c.scale(5, false).ok();
    let s = c.status();
    assert!(converged(&s, 5), "after scale 5: {s:#?}");
    assert_eq!(ordinals(&s), vec![0, 1, 2, 3, 4]);
    assert_processes_alive(&s);
    for o in [3, 4] {
        let i = Cluster::instance(&s, o);
        assert_eq!((i.server_id, i.role), (100 + o, Role::Replica), "{i:?}");
        assert_eq!(
            column(&c.query(&o.to_string(), ROWS)),
            ["hello"],
            "demo-{o} has the old rows"
        );
    }
    let messages = c.event_messages_since(events_before);
    for o in [3, 4] {
        // The clone event names the donor that served it.
        let cloned = |m: &String| {
            m.starts_with(&format!("demo-{o} is cloning from demo-"))
                || m.starts_with(&format!("demo-{o} was cloned from demo-"))
        };
        assert!(
            messages.iter().any(cloned),
            "demo-{o} must be cloned: {messages:#?}"
        );
        // Agents on one host: the donor's backup wrote the files straight into the new
        // member's dir, without the stream, and the receiver's proof file is gone.
        let log = std::fs::read_to_string(c.instance_dir(o).join("agent.log")).unwrap();
        assert!(
            log.lines()
                .any(|l| l.contains("clone complete") && l.contains("transfer=same-host")),
            "demo-{o} must be cloned by the same-host path: {log}"
        );
        assert!(
            !c.data_dir(o).join(".myset-clone-proof").exists(),
            "demo-{o} keeps no proof file"
        );
    }
    steps.done("scale 3 -> 5 (clones)");

    // --- Scale down 5 -> 3: the removed members' volumes are kept.
    c.query(
        "rw",
        "INSERT INTO test.messages VALUES ('before scale-down')",
    );
    wait_rows(
        &c,
        "4",
        &["before scale-down", "hello"],
        Duration::from_secs(30),
    );
    let removed: Vec<u32> = s
        .instances
        .iter()
        .filter(|i| i.ordinal >= 3)
        .flat_map(|i| [i.pid, i.agent_pid])
        .flatten()
        .collect();
    c.scale(3, false).ok();
    let s = c.status();
    assert!(converged(&s, 3), "after scale 3: {s:#?}");
    assert_eq!(ordinals(&s), vec![0, 1, 2]);
    assert_eq!(
        Cluster::alive(removed.clone()),
        Vec::<u32>::new(),
        "processes of 3 and 4 must stop: {removed:?}"
    );
    for o in [3, 4] {
        assert!(c.data_dir(o).is_dir(), "data dir of demo-{o} must be kept");
        c.sql(&o.to_string(), "SELECT 1")
            .error_containing(&["not a member"]);
    }
    let ids = c.ro_server_ids(12).expect("ro after scale-down");
    assert!(
        ids.iter().all(|id| (100..=102).contains(id)),
        "ro only routes to members: {ids:?}"
    );
    c.query("rw", "INSERT INTO test.messages VALUES ('while away')");
    steps.done("scale 5 -> 3 (volumes kept)");

    // --- Scale up again: 3 and 4 come back from their own data and catch up.
    let events_before = c.events().len();
    c.scale(5, false).ok();
    let s = c.status();
    assert!(converged(&s, 5), "after scale 5 again: {s:#?}");
    let messages = c.event_messages_since(events_before);
    for o in [3, 4] {
        let own = format!("started demo-{o} (from its own data)");
        assert!(
            messages.contains(&own),
            "demo-{o} must reuse its data: {messages:#?}"
        );
        let clone = format!("started demo-{o} (cloning");
        assert!(
            !messages.iter().any(|m| m.starts_with(&clone)),
            "demo-{o} must not be re-cloned: {messages:#?}"
        );
        wait_rows(
            &c,
            &o.to_string(),
            &["before scale-down", "hello", "while away"],
            Duration::from_secs(30),
        );
    }
    steps.done("scale 3 -> 5 again (own data, caught up)");

    // --- Scale down deleting the volumes.
    c.scale(3, true).ok();
    let s = c.status();
    assert!(converged(&s, 3), "after scale 3 --delete-data: {s:#?}");
    for o in [3, 4] {
        assert!(
            !c.data_dir(o).exists(),
            "data dir of demo-{o} must be deleted"
        );
    }
    for o in [0, 1, 2] {
        assert!(c.data_dir(o).is_dir(), "data dir of demo-{o} must stay");
    }
    steps.done("scale 5 -> 3 --delete-data");

    // --- down keeps the data; up brings every row back.
    let mut pids = c.recorded_pids();
    for i in &s.instances {
        pids.extend([i.pid, i.agent_pid].into_iter().flatten());
    }
    let controller = c
        .controller_pid()
        .expect("controller.json of a running cluster");
    pids.insert(controller);
    c.cmd_timeout(&["down"], support::SLOW).ok();
    assert_eq!(
        Cluster::alive(pids.clone()),
        Vec::<u32>::new(),
        "down must stop every process: {pids:?}"
    );
    assert_eq!(
        c.processes(),
        vec![],
        "nothing may run from the state dir after down"
    );
    for o in [0, 1, 2] {
        assert!(
            c.data_dir(o).is_dir(),
            "down keeps the data dir of demo-{o}"
        );
    }
    let s = c.status();
    assert!(!s.running, "status after down: {s:#?}");
    assert_eq!(ordinals(&s), vec![0, 1, 2]);
    assert!(
        s.instances
            .iter()
            .all(|i| !i.ready && i.pid.is_none() && i.agent_pid.is_none()),
        "{s:#?}"
    );
    c.cmd(&["status"]).ok();
    steps.done("down");

    // Restart with no options: the cluster keeps its size and ports.
    c.cmd_timeout(&["up", "--timeout", "280"], support::SLOW)
        .ok();
    let s = c.status();
    assert!(converged(&s, 3), "after up again: {s:#?}");
    assert_eq!(s.endpoints.rw, format!("127.0.0.1:{}", c.rw_port));
    assert_eq!(s.endpoints.ro, format!("127.0.0.1:{}", c.ro_port));
    assert_processes_alive(&s);
    let all = ["before scale-down", "hello", "while away"];
    for target in ["rw", "0", "1", "2", "ro"] {
        wait_rows(&c, target, &all, Duration::from_secs(30));
    }
    steps.done("up again: rows kept");

    // --- Clean up.
    let mut pids = c.recorded_pids();
    pids.extend(c.controller_pid());
    c.cmd_timeout(&["destroy"], support::SLOW).ok();
    assert!(!c.root().exists(), "destroy must delete the cluster dir");
    assert_eq!(
        Cluster::alive(pids.clone()),
        Vec::<u32>::new(),
        "destroy must stop every process: {pids:?}"
    );
    assert_eq!(
        c.processes(),
        vec![],
        "nothing may run from the state dir after destroy"
    );
    steps.done("destroy");
}

/// A donor that refuses the same-host path (here switched off in its environment, as a donor on
/// another host refuses it for want of the receiver's proof): the new member streams the clone
/// instead and holds the same rows.
#[test]
fn a_donor_refusing_the_same_host_path_is_cloned_by_stream() {
    let c = Cluster::new("streamed");
    c.up_with_env(&[], &[("MYSET_CLONE_SAME_HOST", Some("off".into()))])
        .ok();
    c.sql(
        "rw",
        "CREATE DATABASE test; CREATE TABLE test.messages (message VARCHAR(250)); \
         INSERT INTO test.messages VALUES ('hello')",
    )
    .ok();
    c.scale(2, false).ok();
    assert!(
        converged(&c.status(), 2),
        "after scale 2: {:#?}",
        c.status()
    );
    assert_eq!(column(&c.query("1", ROWS)), ["hello"]);
    let log = std::fs::read_to_string(c.instance_dir(1).join("agent.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("cannot write here") && l.contains("switched off")),
        "the refusal must be logged: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("clone complete") && l.contains("transfer=stream")),
        "streamed-1 must be cloned by the stream: {log}"
    );
}
