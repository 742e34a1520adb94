//! One agent started by hand the way a Kubernetes Pod starts it (`deploy/` and
//! `myset operator render`): no spec on disk, the API on `--listen`, the kubelet's probes on
//! `--probe-listen` without the token, the server bound apart from the host peers reach it at,
//! and the user's option files from `--server-options-dir`. The operator's side (`PUT /spec`)
//! is played by this test.

mod support;

use myset_api::{Address, InstanceSpec, Role, Secrets};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{mode, poll_for, processes_mentioning, wait_until, MYSET};

const TOKEN: &str = "k8s-mode-test-token";

/// `n` distinct free loopback ports, all held while they are picked.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// One HTTP/1.1 request; the status and body, or None when nothing answered.
fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Option<(u16, String)> {
    let addr = ("127.0.0.1", port);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()?
        .next()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method != "GET" {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    s.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

fn status(port: u16, method: &str, path: &str, token: Option<&str>) -> Option<u16> {
    http(port, method, path, token, None).map(|(s, _)| s)
}

/// The agent process; dropping it stops it (`POST /shutdown`, then a kill), and kills
/// anything still running from its instance dir, so a failed test leaves nothing behind.
struct Agent {
    child: Child,
    api: u16,
    instance_dir: PathBuf,
    log: PathBuf,
}

impl Agent {
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if !self.exited() {
            let _ = status(self.api, "POST", "/shutdown", Some(TOKEN));
            if !wait_until(Duration::from_secs(60), || self.exited()) {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        let needle = self.instance_dir.to_string_lossy().into_owned();
        for (pid, _) in processes_mentioning(&needle) {
            support::signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn an_agent_started_as_a_pod_waits_for_its_spec_and_serves_token_free_probes() {
    let tmp = tempfile::tempdir().unwrap();
    let instance_dir = tmp.path().join("instance");
    std::fs::create_dir_all(&instance_dir).unwrap();
    let options_dir = tmp.path().join("server.d");
    std::fs::create_dir_all(&options_dir).unwrap();
    std::fs::write(
        options_dir.join("all.cnf"),
        "[mariadbd]\nmax_connections = 123\n",
    )
    .unwrap();
    std::fs::write(options_dir.join("primary.cnf"), "[mariadbd]\n").unwrap();
    std::fs::write(options_dir.join("replica.cnf"), "[mariadbd]\n").unwrap();
    let secrets = Secrets {
        admin_user: "myset_admin".into(),
        admin_password: "admin-pw-k8s".into(),
        repl_user: "myset_repl".into(),
        repl_password: "repl-pw-k8s".into(),
        user: "app".into(),
        user_password: "app-pw-k8s".into(),
        api_token: TOKEN.into(),
    };
    let secrets_file = tmp.path().join("secrets.json");
    write_private(&secrets_file, &serde_json::to_string(&secrets).unwrap());

    let ports = free_ports(3);
    let (api, probes, mysql) = (ports[0], ports[1], ports[2]);
    let log = tmp.path().join("agent.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let path = format!(
        "{}:/usr/sbin",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
    );
    let child = Command::new(MYSET)
        .args(["agent", "--instance-dir"])
        .arg(&instance_dir)
        .arg("--secrets")
        .arg(&secrets_file)
        .args(["--await-spec", "--cluster", "kube", "--ordinal", "0"])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--probe-listen", &format!("127.0.0.1:{probes}")])
        .args(["--bind-host", "127.0.0.1"])
        .arg("--server-options-dir")
        .arg(&options_dir)
        .env("PATH", path)
        .env_remove("MYSET_STATE_DIR")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("start myset agent");
    let mut agent = Agent {
        child,
        api,
        instance_dir: instance_dir.clone(),
        log,
    };

    // Before any spec: live (it waits for the operator), not ready, and nothing else.
    assert!(
        wait_until(Duration::from_secs(30), || status(
            probes, "GET", "/healthz", None
        ) == Some(200)),
        "the probe port never answered /healthz; agent log:\n{}",
        agent.log()
    );
    let (code, body) = http(probes, "GET", "/readyz", None, None).unwrap();
    assert_eq!(code, 503);
    assert_eq!(body.trim(), "not ok", "a bare verdict, no reason");
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/ping"),
        ("PUT", "/spec"),
        ("POST", "/shutdown"),
        ("GET", "/clone"),
        ("POST", "/clone/into"),
        ("POST", "/healthz"),
    ] {
        for token in [None, Some(TOKEN)] {
            let code = status(probes, method, path, token).unwrap();
            assert!(
                code >= 400,
                "the probe port answered {method} {path} with {code}"
            );
        }
    }
    // The API requires the token for everything, probes included.
    for (method, path) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/status"),
        ("PUT", "/spec"),
        ("POST", "/shutdown"),
        ("POST", "/clone/into"),
    ] {
        assert_eq!(
            status(api, method, path, None),
            Some(401),
            "{method} {path}"
        );
        assert_eq!(
            status(api, method, path, Some("wrong")),
            Some(401),
            "{method} {path}"
        );
    }
    assert_eq!(status(api, "GET", "/status", Some(TOKEN)), Some(503));
    assert!(!instance_dir.join("spec.json").exists());

    // Peers reach the server as "localhost"; it binds 127.0.0.1.
    let mut spec = InstanceSpec {
        cluster: "kube".into(),
        ordinal: 0,
        server_id: 100,
        server: Address {
            host: "localhost".into(),
            port: mysql,
        },
        agent: Address {
            host: "localhost".into(),
            port: api,
        },
        role: Role::Primary,
        primary: None,
        bootstrap: true,
        donors: Vec::new(),
        term: 1,
        max_staleness_seconds: 10,
        semisync: false,
        peers: Vec::new(),
        isolation_fence_ms: 0,
        galera: None,
        settings: Default::default(),
    };
    spec.ordinal = 1;
    let other = serde_json::to_string(&spec).unwrap();
    let (code, body) = http(api, "PUT", "/spec", Some(TOKEN), Some(&other)).unwrap();
    assert_eq!(code, 409, "a spec of another member is refused: {body}");
    spec.ordinal = 0;
    let mine = serde_json::to_string(&spec).unwrap();
    let (code, body) = http(api, "PUT", "/spec", Some(TOKEN), Some(&mine)).unwrap();
    assert_eq!(code, 204, "{body}");
    assert_eq!(mode(&instance_dir.join("spec.json")), 0o600);

    assert!(
        wait_until(Duration::from_secs(240), || {
            assert!(!agent.exited(), "the agent exited; log:\n{}", agent.log());
            status(probes, "GET", "/readyz", None) == Some(200)
        }),
        "never Ready; agent log:\n{}",
        agent.log()
    );
    assert_eq!(status(probes, "GET", "/healthz", None), Some(200));
    let (code, body) = http(api, "GET", "/status", Some(TOKEN), None).unwrap();
    assert_eq!(code, 200, "{body}");
    let status_doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status_doc["live"], true);
    assert_eq!(status_doc["role"], "primary");

    // The user's all.cnf reached the server; myset's own settings held.
    let client_cnf = tmp.path().join("client.cnf");
    write_private(&client_cnf, "[client]\nuser = app\npassword = app-pw-k8s\n");
    let query = |sql: &str| {
        let out = Command::new("mariadb")
            .env(
                "PATH",
                format!("{}:/usr/sbin", std::env::var("PATH").unwrap_or_default()),
            )
            .arg(format!("--defaults-extra-file={}", client_cnf.display()))
            .args([
                "-h",
                "127.0.0.1",
                "-P",
                &mysql.to_string(),
                "-N",
                "-B",
                "-e",
            ])
            .arg(sql)
            .output()
            .expect("run the mariadb client");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(query("SELECT @@max_connections"), "123");
    assert_eq!(
        query("SELECT @@server_id, @@bind_address"),
        "100\t127.0.0.1"
    );

    // A clean stop, and nothing left running.
    assert_eq!(status(api, "POST", "/shutdown", Some(TOKEN)), Some(202));
    let exit = poll_for(Duration::from_secs(120), || {
        agent.child.try_wait().ok().flatten()
    });
    assert!(
        exit.is_some_and(|s| s.success()),
        "the agent did not stop cleanly ({exit:?}); log:\n{}",
        agent.log()
    );
    let needle = instance_dir.to_string_lossy().into_owned();
    assert!(
        wait_until(Duration::from_secs(30), || processes_mentioning(&needle)
            .is_empty()),
        "left running: {:?}",
        processes_mentioning(&needle)
    );
}
