//! Bad input: every mistake gets one line on stderr starting with "error: ", a non-zero exit
//! code, no panic, and leaves any existing cluster exactly as it was.

mod support;

use std::net::TcpListener;
use std::time::Duration;
use support::{column, pid_alive, wait_until, Cluster};

const BAD_REPLICAS: [&str; 4] = ["0", "-1", "abc", "100000"];
const BAD_NAMES: [&str; 3] = ["../x", "a b", "a/b"];

/// `--replicas V` in both spellings (`-1` as a separate word looks like a flag to a parser).
fn replicas_forms(value: &str) -> [Vec<String>; 2] {
    [
        vec!["--replicas".into(), value.into()],
        vec![format!("--replicas={value}")],
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Names of the entries of a directory.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn bad_arguments_without_a_cluster() {
    let c = Cluster::new("demo");
    let (rw, ro) = (c.rw_port.to_string(), c.ro_port.to_string());

    for value in BAD_REPLICAS {
        for form in replicas_forms(value) {
            let mut args = vec!["up", "--rw-port", &rw, "--ro-port", &ro];
            args.extend(strs(&form));
            c.cmd(&args).one_line_error();
        }
    }
    for port in ["0", "65536", "http"] {
        c.cmd(&["up", "--rw-port", port, "--ro-port", &ro])
            .one_line_error();
        c.cmd(&["up", "--rw-port", &rw, "--ro-port", port])
            .one_line_error();
    }
    for name in BAD_NAMES {
        let line = c
            .run(&["up", "--name", name, "--rw-port", &rw, "--ro-port", &ro])
            .one_line_error();
        assert!(line.contains("invalid cluster name"), "{line}");
        for args in [
            vec!["status", "--name", name],
            vec!["sql", "rw", "-e", "SELECT 1", "--name", name],
            vec!["destroy", "--name", name],
        ] {
            c.run(&args).error_containing(&["invalid cluster name"]);
        }
    }
    assert!(
        !c.scratch().join("x").exists(),
        "--name ../x must not escape the state dir"
    );

    // A cluster that does not exist.
    for args in [
        vec!["status"],
        vec!["status", "-o", "json"],
        vec!["sql", "rw", "-e", "SELECT 1"],
        vec!["sql", "0", "-e", "SELECT 1"],
        vec!["scale", "--replicas", "2"],
        vec!["kill", "0"],
        vec!["down"],
        vec!["events"],
        vec!["destroy"],
    ] {
        c.cmd(&args).error_containing(&["\"demo\" does not exist"]);
    }
    assert_eq!(
        entries(c.state_dir()),
        Vec::<String>::new(),
        "failed commands must create nothing"
    );
    assert_eq!(c.processes(), vec![]);
}

#[test]
fn rw_port_in_use() {
    let c = Cluster::new("demo");
    let held = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port().to_string();
    let ro = c.ro_port.to_string();
    let rw = c.rw_port.to_string();
    let line = c
        .cmd_timeout(
            &[
                "up",
                "--replicas",
                "1",
                "--rw-port",
                &port,
                "--ro-port",
                &ro,
            ],
            support::SLOW,
        )
        .error_containing(&[&port, "--rw-port"]);
    assert!(line.contains("in use"), "{line}");
    let line = c
        .cmd_timeout(
            &[
                "up",
                "--replicas",
                "1",
                "--rw-port",
                &rw,
                "--ro-port",
                &port,
            ],
            support::SLOW,
        )
        .error_containing(&[&port, "--ro-port"]);
    assert!(line.contains("in use"), "{line}");
    c.cmd(&["up", "--replicas", "1", "--rw-port", &rw, "--ro-port", &rw])
        .error_containing(&[&rw]);
    assert!(
        !c.root().exists(),
        "a refused up must not create the cluster"
    );
    assert_eq!(c.processes(), vec![]);
    drop(held);
}

#[test]
fn mariadbd_missing_from_path() {
    let c = Cluster::new("demo");
    // PATH without any directory holding mariadbd; everything else stays reachable.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path)
        .filter(|d| !d.join("mariadbd").exists())
        .chain(["/usr/bin".into(), "/bin".into()])
        .filter(|d| !d.join("mariadbd").exists())
        .collect();
    let path = std::env::join_paths(dirs).expect("join PATH");
    let (rw, ro) = (c.rw_port.to_string(), c.ro_port.to_string());
    let run = c.run_with(
        &[
            "up",
            "--name",
            "demo",
            "--replicas",
            "1",
            "--rw-port",
            &rw,
            "--ro-port",
            &ro,
        ],
        &[("PATH", Some(path))],
        support::SLOW,
    );
    run.error_containing(&["mariadbd", "mariadb-server"]);
    assert!(
        !c.root().exists(),
        "up without mariadbd must not create the cluster"
    );
    assert_eq!(c.processes(), vec![]);
}

#[test]
fn foreign_directory_is_left_alone() {
    let c = Cluster::new("demo");
    std::fs::create_dir(c.root()).expect("mkdir");
    let precious = c.root().join("precious.txt");
    std::fs::write(&precious, "not myset's\n").expect("write");
    let (rw, ro) = (c.rw_port.to_string(), c.ro_port.to_string());
    let line = c
        .cmd_timeout(
            &["up", "--replicas", "1", "--rw-port", &rw, "--ro-port", &ro],
            support::SLOW,
        )
        .error_containing(&["not a myset cluster"]);
    assert!(line.contains(&c.root().display().to_string()), "{line}");
    for args in [vec!["destroy"], vec!["down"], vec!["status"]] {
        c.cmd(&args).error_containing(&["not a myset cluster"]);
    }
    assert_eq!(
        std::fs::read_to_string(&precious).expect("still there"),
        "not myset's\n"
    );
    assert_eq!(
        entries(&c.root()),
        ["precious.txt"],
        "nothing may be added to a foreign dir"
    );
    assert_eq!(c.processes(), vec![]);
}

/// The values of test.t, read through `target`.
fn rows(c: &Cluster, target: &str) -> Vec<String> {
    column(&c.query(target, "SELECT v FROM test.t"))
}

/// Bad input against a running one-instance cluster, then a corrupt state file on a stopped copy.
#[test]
fn running_cluster_survives_bad_input() {
    let c = Cluster::new("demo");
    c.up(Some(1)).ok();
    c.query("rw", "CREATE DATABASE IF NOT EXISTS test; CREATE TABLE test.t (v INT); INSERT INTO test.t VALUES (1)");
    let before = c.status();
    assert!(
        before.running && before.instances.len() == 1 && before.instances[0].ready,
        "{before:#?}"
    );
    let controller = c.controller_pid().expect("controller pid");
    let state_before = std::fs::read(c.state_file()).expect("state");

    // Replica counts the parser refuses.
    for value in BAD_REPLICAS {
        for form in replicas_forms(value) {
            let mut args = vec!["scale"];
            args.extend(strs(&form));
            c.cmd(&args).one_line_error();
        }
    }
    // Names that are not names, and clusters that do not exist, next to a running one.
    for name in BAD_NAMES {
        c.run(&["scale", "--name", name, "--replicas", "2"])
            .error_containing(&["invalid cluster name"]);
        c.run(&["kill", "--name", name, "0"])
            .error_containing(&["invalid cluster name"]);
    }
    for mut args in [
        vec!["status"],
        vec!["sql", "rw", "-e", "SELECT 1"],
        vec!["scale", "--replicas", "2"],
        vec!["kill", "0"],
        vec!["down"],
    ] {
        args.extend(["--name", "nosuch"]);
        c.run(&args)
            .error_containing(&["\"nosuch\" does not exist"]);
    }
    // Ordinals that are not members, and targets that are not targets.
    c.sql("9", "SELECT 1")
        .error_containing(&["instance 9", "not a member"]);
    c.cmd(&["kill", "9"])
        .error_containing(&["instance 9", "not a member"]);
    c.sql("primary", "SELECT 1")
        .error_containing(&["\"primary\""]);
    c.sql("-1", "SELECT 1").one_line_error();
    // Errors from the server reach the user.
    c.sql("rw", "SELEC 1")
        .error_containing(&["error in your SQL syntax"]);
    c.sql("rw", "SELECT * FROM test.nosuch")
        .error_containing(&["test.nosuch", "doesn't exist"]);
    c.sql("0", "INSERT INTO test.t VALUES ('x')")
        .error_containing(&["Incorrect integer value"]);
    // A second up of a running cluster, whatever its options.
    let (rw, ro) = (c.rw_port.to_string(), c.ro_port.to_string());
    for extra in [vec![], vec!["--replicas", "1"], vec!["--replicas", "2"]] {
        let mut args = vec!["up", "--rw-port", &rw, "--ro-port", &ro];
        args.extend(extra);
        c.cmd_timeout(&args, support::SLOW)
            .error_containing(&["already running"]);
    }

    // The cluster is untouched: same processes, same intent, same data, still serving.
    let after = c.status();
    assert_eq!(after.replicas, 1, "{after:#?}");
    assert_eq!(after.instances.len(), 1, "{after:#?}");
    assert_eq!(
        after.instances[0].pid, before.instances[0].pid,
        "mariadbd must not be restarted"
    );
    assert_eq!(
        after.instances[0].agent_pid, before.instances[0].agent_pid,
        "agent must not be restarted"
    );
    assert!(after.running && after.instances[0].ready, "{after:#?}");
    assert_eq!(
        c.controller_pid(),
        Some(controller),
        "the controller must not change"
    );
    assert!(pid_alive(controller));
    assert_eq!(
        std::fs::read(c.state_file()).expect("state"),
        state_before,
        "cluster.json must not change"
    );
    assert_eq!(rows(&c, "rw"), ["1"]);
    assert_eq!(rows(&c, "ro"), ["1"]);
    assert!(!c.state_dir().join("nosuch").exists());

    // A stopped cluster refuses what needs it running, and says so.
    c.cmd_timeout(&["down"], support::SLOW).ok();
    c.cmd(&["kill", "0"]).error_containing(&["not running"]);
    c.cmd(&["scale", "--replicas", "2"])
        .error_containing(&["not running"]);
    c.sql("rw", "SELECT 1")
        .error_containing(&["cannot connect"]);
    c.cmd(&["events"]).ok();

    // A corrupt state file, on a copy of the stopped cluster's records.
    let copy = Cluster::new("demo");
    std::fs::create_dir(copy.root()).expect("mkdir copy");
    for name in ["secrets.json", "password", "client.cnf", "events.jsonl"] {
        std::fs::copy(c.root().join(name), copy.root().join(name)).expect("copy");
    }
    let file = copy.state_file().display().to_string();
    let (rw2, ro2) = (copy.rw_port.to_string(), copy.ro_port.to_string());
    let refused = |contents: &[u8], what: &str| {
        std::fs::write(copy.state_file(), contents).expect("write the state file");
        for args in [
            vec!["status"],
            vec!["status", "-o", "json"],
            vec!["up", "--rw-port", &rw2, "--ro-port", &ro2],
            vec!["scale", "--replicas", "2"],
            vec!["sql", "rw", "-e", "SELECT 1"],
            vec!["kill", "0"],
            vec!["events"],
            vec!["down"],
        ] {
            let line = copy
                .cmd_timeout(&args, support::SLOW)
                .error_containing(&[&file]);
            assert!(
                line.contains("corrupt"),
                "{what}: {args:?} must call {file} corrupt: {line}"
            );
        }
        let now = std::fs::read(copy.state_file()).expect("read the state file");
        assert_eq!(
            now, contents,
            "{what}: a corrupt state file must be left untouched"
        );
        assert_eq!(copy.processes(), vec![], "{what}: nothing may start");
    };
    refused(b"this is not a cluster record\n", "text garbage");
    refused(b"", "an empty file");
    refused(
        &state_before[..state_before.len() / 2],
        "a truncated record",
    );
    let mut foreign: serde_json::Value = serde_json::from_slice(&state_before).expect("state JSON");
    foreign["name"] = "other".into();
    refused(
        &serde_json::to_vec(&foreign).expect("json"),
        "another cluster's record",
    );

    // The original, stopped cluster still starts with its data.
    c.cmd_timeout(&["up", "--timeout", "280"], support::SLOW)
        .ok();
    let ok = wait_until(Duration::from_secs(30), || {
        c.try_query("ro", "SELECT v FROM test.t").is_some()
    });
    assert!(ok, "ro after restart");
    assert_eq!(rows(&c, "rw"), ["1"]);

    // Bytes that are not even UTF-8 are just as corrupt, not an access problem.
    refused(b"\xff\xfe\x00 not text at all", "binary garbage");
}
