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
            c.cmd(&args).usage_error(&[&format!("'{value}'")]);
        }
    }
    for port in ["0", "65536", "http"] {
        c.cmd(&["up", "--rw-port", port, "--ro-port", &ro])
            .usage_error(&["--rw-port", port]);
        c.cmd(&["up", "--rw-port", &rw, "--ro-port", port])
            .usage_error(&["--ro-port", port]);
    }
    // Clap's whole message: what is missing, the usage line, "did you mean", allowed values.
    c.cmd(&["sql"]).usage_error(&[
        "required arguments were not provided",
        "<TARGET>",
        "Usage: myset sql",
    ]);
    c.run(&["sttaus"])
        .usage_error(&["'sttaus'", "similar subcommand exists: 'status'"]);
    c.run(&["status", "-o", "yaml"])
        .usage_error(&["'yaml'", "possible values: table, json"]);
    c.run(&["completions", "tcsh"])
        .usage_error(&["'tcsh'", "bash", "zsh", "fish"]);
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
    ] {
        c.cmd(&args)
            .error_containing(&["\"demo\" does not exist", "(no clusters there)"]);
    }
    // Nothing to destroy is not an invitation to create it.
    let line = c
        .cmd(&["destroy"])
        .error_containing(&["\"demo\" does not exist", "nothing to destroy"]);
    assert!(!line.contains("myset up"), "{line}");
    for args in [vec!["logs"], vec!["shell"]] {
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
    let up_on = |rw: &str, ro: &str| {
        c.cmd_timeout(
            &["up", "--replicas", "1", "--rw-port", rw, "--ro-port", ro],
            support::SLOW,
        )
    };
    let line = up_on(&port, &ro).error_containing(&[&port, "--rw-port"]);
    assert!(line.contains("in use"), "{line}");
    let line = up_on(&rw, &port).error_containing(&[&port, "--ro-port"]);
    assert!(line.contains("in use"), "{line}");
    up_on(&rw, &rw).error_containing(&[&rw]);
    // Both endpoints taken: both named in one line, not one per attempt.
    let held_too = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port_too = held_too.local_addr().expect("addr").port().to_string();
    up_on(&port, &port_too).error_containing(&[
        &format!("{port} (--rw-port), {port_too} (--ro-port)"),
        "in use",
    ]);
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
            c.cmd(&args).usage_error(&[&format!("'{value}'")]);
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
            .error_containing(&["\"nosuch\" does not exist", "(clusters there: demo)"]);
    }
    // Logs that do not exist name the ones that do.
    c.cmd(&["logs", "agent"])
        .error_containing(&["unknown log \"agent\": use controller or an instance ordinal (0)"]);
    c.cmd(&["logs", "4"])
        .error_containing(&["instance 4 has no logs", "(0)"]);
    c.cmd(&["shell", "4"])
        .error_containing(&["instance 4", "not a member"]);
    // Ordinals that are not members, and targets that are not targets.
    c.sql("9", "SELECT 1")
        .error_containing(&["instance 9", "not a member"]);
    c.cmd(&["kill", "9"])
        .error_containing(&["instance 9", "not a member"]);
    c.sql("primary", "SELECT 1")
        .error_containing(&["\"primary\""]);
    c.sql("-1", "SELECT 1").usage_error(&["'-1'"]);
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
    // Another count names the command that changes it.
    c.cmd_timeout(&["up", "--replicas", "5"], support::SLOW)
        .error_containing(&["already running", "myset scale --name demo --replicas 5"]);

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
    for target in ["rw", "ro", "0"] {
        c.sql(target, "SELECT 1")
            .error_containing(&["cluster demo is stopped", "myset up --name demo"]);
    }
    let line = c.cmd(&["status"]).ok().to_string();
    assert!(!line.contains("http://"), "{line}");
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

/// A stand-in for a Kubernetes API server, enough for `myset --kube`: a `MySet` `db` in
/// namespace `prod` (three members, primary 1), its Pods and its client Secret; anything
/// else is a 404 as the API server words it. Plain HTTP, one connection at a time.
struct FakeApiServer {
    port: u16,
}

impl FakeApiServer {
    fn start() -> FakeApiServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = Self::answer(stream);
            }
        });
        FakeApiServer { port }
    }

    fn answer(mut stream: std::net::TcpStream) -> std::io::Result<()> {
        use std::io::{BufRead, BufReader, Write};
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request = String::new();
        reader.read_line(&mut request)?;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 || header == "\r\n" {
                break;
            }
        }
        let path = request.split_whitespace().nth(1).unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        let (code, body) = Self::route(path);
        write!(
            stream,
            "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn route(path: &str) -> (u16, String) {
        use serde_json::json;
        let placements: serde_json::Map<String, serde_json::Value> = (0..3)
            .map(|o| {
                let host = format!("db-{o}.db.prod.svc");
                (
                    o.to_string(),
                    json!({"server": {"host": host, "port": 3306}, "agent": {"host": host, "port": 8080}}),
                )
            })
            .collect();
        let body = match path {
            "/apis/myset.dev/v1alpha1/namespaces/prod/mysets/db" => json!({
                "apiVersion": "myset.dev/v1alpha1", "kind": "MySet",
                "metadata": {"name": "db", "namespace": "prod", "uid": "u-1"},
                "spec": {"replicas": 3, "image": "myset:dev", "storage": {"size": "1Gi"}},
                "status": {
                    "primary": 1, "term": 2,
                    "instances": ([0, 1, 2].map(|o| json!({
                        "ordinal": o, "pod": format!("db-{o}"),
                        "role": if o == 1 { "primary" } else { "replica" }, "ready": true
                    }))),
                    "record": {
                        "format": "myset-cluster/v1", "name": "db", "replicas": 3,
                        "members": [0, 1, 2], "primary": 1, "term": 2, "initialized": true,
                        "bind_host": "0.0.0.0", "rw_port": 3306, "ro_port": 3306,
                        "max_staleness_seconds": 10, "placements": placements
                    }
                }
            }),
            "/api/v1/namespaces/prod/secrets/db-user" => json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "db-user", "namespace": "prod"},
                "data": {"username": "bXlzZXQ=", "password": "c2VjcmV0"}
            }),
            "/api/v1/namespaces/prod/pods" => json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {},
                "items": ([0, 1, 2].map(|o| json!({
                    "metadata": {"name": format!("db-{o}"), "namespace": "prod", "labels": {
                        "myset.dev/cluster": "db", "myset.dev/ordinal": o.to_string(),
                        "myset.dev/role": if o == 1 { "primary" } else { "replica" }
                    }},
                    "status": {"conditions": [{"type": "Ready", "status": "True"}]}
                })))
            }),
            _ => {
                let name = path.rsplit('/').next().unwrap_or("");
                let message = format!("mysets.myset.dev \"{name}\" not found");
                return (
                    404,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "message": message, "reason": "NotFound", "code": 404})
                    .to_string(),
                );
            }
        };
        (200, body.to_string())
    }

    /// A kubeconfig whose current context points here, in namespace `prod`.
    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster:
    server: http://127.0.0.1:{}
users:
- name: someone
  user:
    token: not-a-secret
contexts:
- name: fake
  context:
    cluster: fake
    user: someone
    namespace: prod
current-context: fake
",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

#[test]
fn kube_mode_bad_input() {
    let c = Cluster::new("db");
    let server = FakeApiServer::start();
    let kubeconfig = server.kubeconfig(c.scratch());
    let env = [("KUBECONFIG", Some(kubeconfig.clone().into_os_string()))];
    let kube = |args: &[&str]| c.run_with(args, &env, Duration::from_secs(30));

    // Local-only commands refuse --kube, MYSET_KUBE and the plugin, touching nothing.
    kube(&["--kube", "up"]).error_containing(&[
        "`myset up` runs a local cluster; on Kubernetes, apply a MySet (see deploy/example-myset.yaml)",
    ]);
    for args in [
        vec!["down", "--kube"],
        vec!["--kube", "destroy"],
        vec!["--kube", "kill", "0"],
    ] {
        kube(&args).error_containing(&["on Kubernetes"]);
    }
    c.run_with(
        &["destroy", "--name", "db"],
        &[("MYSET_KUBE", Some("1".into()))],
        Duration::from_secs(30),
    )
    .error_containing(&["on Kubernetes"]);
    assert_eq!(entries(c.state_dir()), Vec::<String>::new());

    // --namespace without --kube is a forgotten --kube, not a local cluster.
    kube(&["status", "--name", "db", "-n", "prod"]).error_containing(&["add --kube"]);
    // A MySet that does not exist, here or in another namespace.
    kube(&["--kube", "status", "--name", "nope"]).error_containing(&[
        "no MySet nope in namespace prod: mysets.myset.dev \"nope\" not found",
    ]);
    for args in [
        vec!["--kube", "-n", "other", "events", "--name", "db"],
        vec!["--kube", "--namespace", "other", "status", "--name", "db"],
        vec![
            "--kube", "-n", "other", "sql", "rw", "-e", "SELECT 1", "--name", "db",
        ],
        vec!["--kube", "-n", "other", "switchover", "--name", "db"],
        vec![
            "--kube",
            "-n",
            "other",
            "scale",
            "--replicas",
            "2",
            "--name",
            "db",
        ],
    ] {
        kube(&args).error_containing(&["no MySet db in namespace other: "]);
    }
    // An ordinal that is not a member, an unknown target.
    kube(&["--kube", "sql", "7", "-e", "SELECT 1", "--name", "db"]).error_containing(&[
        "instance 7 is not a member of cluster db (members: 0, 1, 2): pick one of those",
    ]);
    kube(&["--kube", "sql", "primary", "-e", "SELECT 1", "--name", "db"])
        .error_containing(&["unknown target \"primary\": use rw, ro or an instance ordinal"]);
    // This stand-in cannot port-forward (nor can any test here): the Pod is picked, then the
    // forward fails in one line.
    kube(&["--kube", "sql", "rw", "-e", "SELECT 1", "--name", "db"])
        .error_containing(&["cannot open a port-forward to rw (Pod db-1) port 3306"]);
    // No kubeconfig at all.
    c.run_with(
        &["--kube", "status", "--name", "db"],
        &[
            (
                "KUBECONFIG",
                Some(c.scratch().join("missing").into_os_string()),
            ),
            ("KUBERNETES_SERVICE_HOST", None),
        ],
        Duration::from_secs(30),
    )
    .error_containing(&["cannot reach a Kubernetes API server"]);

    // What works against it: status, the same table and JSON as locally.
    let table = kube(&["--kube", "status", "--name", "db"]).ok().to_string();
    assert!(
        table.starts_with("cluster db  running  primary db-1  term 2  replicas 3\n"),
        "{table}"
    );
    assert!(
        table.contains("rw db-rw.prod.svc:3306  ro db-ro.prod.svc:3306"),
        "{table}"
    );
    assert!(
        table.contains("password file Secret prod/db-user (key password)"),
        "{table}"
    );
    assert!(
        table.contains("db-1             primary  yes    db-1.db.prod.svc:3306"),
        "{table}"
    );
    let json = kube(&["--kube", "status", "--name", "db", "-o", "json"])
        .ok()
        .to_string();
    let status: myset_api::ClusterStatus = serde_json::from_str(&json).expect("status JSON");
    assert_eq!((status.primary, status.instances.len()), (1, 3));

    // As a kubectl plugin: the same binary under the name kubectl-myset implies --kube.
    let plugin = c.scratch().join("kubectl-myset");
    std::os::unix::fs::symlink(support::MYSET, &plugin).unwrap();
    let out = std::process::Command::new(&plugin)
        .args(["status", "--name", "db"])
        .env("KUBECONFIG", &kubeconfig)
        .env("MYSET_STATE_DIR", c.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), table);
    let out = std::process::Command::new(&plugin)
        .args(["up"])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("runs a local cluster"));
}
