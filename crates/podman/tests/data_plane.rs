//! The Kubernetes operator's data plane, for real: the shared controller (the operator's brain)
//! drives the Pods `myset_operator::render` makes, run by podman from the image that
//! `deploy/image/build` makes, each Pod's agent as PID 1 waiting for its spec. It proves a
//! primary and a replica Pod replicating, a third member cloned from a donor Pod, a killed
//! primary Pod coming back, a frozen primary failed over and rejoined, and a scale-down that
//! deletes a member's volume, through SQL on the Pods and what the controller really did (its
//! events).
//!
//! Needs root and podman (`scripts/install-deps`); skipped with a reason without them, except
//! under CI, where it fails. The image build reuses the root filesystem cached under
//! `target/image-cache`; the first build debootstraps it (about a minute here).

use myset_api::{ClusterState, Durability, Event, EventKind, Secrets};
use myset_controller::{Controller, Timing};
use myset_podman::{Podman, PodmanRuntime};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/myset:dev";
/// A Pod's first start: container, bootstrap or clone, replication caught up.
const READY_LIMIT: Duration = Duration::from_secs(180);
/// A killed primary's Pod replaced (or failed over) and every member Ready again.
const RECOVERY_LIMIT: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(500);

type Brain = Arc<Controller<PodmanRuntime>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_replicate_clone_and_bring_a_killed_primary_back() {
    if let Some(why) = Podman::unavailable() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set, and the podman data-plane test cannot run: {why}"
        );
        eprintln!("skipped: {why}");
        return;
    }
    let began = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    build_image(tmp.path());
    println!("image {IMAGE} ready after {:.1?}", began.elapsed());

    let name = format!("dp{:06x}", rand::random::<u32>() & 0xff_ffff);
    let secrets = myset_operator::generate_credentials();
    let myset = myset(&name);
    let mut state = ClusterState::new(&name, myset.spec.replicas, "127.0.0.1", 0, 0);
    // What the operator takes from the MySet.
    state.durability = myset.spec.durability;
    state.failover_delay_ms = u64::from(myset.spec.failover_delay_seconds) * 1000;
    let runtime = PodmanRuntime::create(myset, secrets.clone(), tmp.path())
        .await
        .unwrap();
    let controller = Controller::new(runtime.clone(), state, secrets.clone(), Timing::default());
    // The reconcile loop without the local rw/ro endpoints, as the operator runs it (on
    // Kubernetes, Services route clients).
    let looping = tokio::spawn(controller.clone().run_loop());

    let outcome = tokio::spawn(scenario(controller.clone(), runtime.clone(), secrets)).await;
    // Stops after the pass in flight: no Pod is being started when the cleanup runs.
    controller.request_stop();
    let _ = looping.await;
    if outcome.is_err() {
        diagnose(&runtime);
    }
    let leftovers = runtime.cleanup();
    println!("cleaned up; total {:.1?}", began.elapsed());
    match outcome {
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the scenario did not finish: {e}"),
        Ok(()) => {}
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

async fn scenario(controller: Brain, runtime: PodmanRuntime, secrets: Secrets) {
    let began = Instant::now();

    // 1. A primary and a replica Pod, replicating.
    wait_ready(&controller, 2, READY_LIMIT).await;
    println!("2 Pods Ready after {:.1?}", began.elapsed());
    assert_eq!(controller.state().primary, 0);
    for o in [0, 1] {
        assert_eq!(probe(&runtime.pod_ip(o), "/readyz").await, "200");
    }
    let mut primary = connect(&runtime, &secrets, 0).await.unwrap();
    primary
        .query_drop(
            "CREATE DATABASE dp; \
             CREATE TABLE dp.notes (id INT PRIMARY KEY, note VARCHAR(64)); \
             INSERT INTO dp.notes VALUES (1, 'written on the primary Pod')",
        )
        .await
        .unwrap();
    drop(primary);
    wait_row(&runtime, &secrets, 1, 1).await;
    let mut replica = connect(&runtime, &secrets, 1).await.unwrap();
    let refused = replica
        .query_drop("INSERT INTO dp.notes VALUES (9, 'nope')")
        .await;
    assert!(refused.is_err(), "a replica Pod took a write");
    drop(replica);
    println!(
        "write on {} read on {} after {:.1?}",
        runtime.pod_name(0),
        runtime.pod_name(1),
        began.elapsed()
    );

    // 2. A third member, cloned from a donor Pod.
    controller.request_scale(3, false).await.unwrap();
    wait_ready(&controller, 3, READY_LIMIT).await;
    let events = runtime.events();
    let started = find(&events, EventKind::AgentStarted, 2);
    assert!(
        started.message.contains("cloning from"),
        "ordinal 2 was not cloned: {}",
        started.message
    );
    wait_row(&runtime, &secrets, 2, 1).await;
    println!(
        "{} ({}) Ready with the data after {:.1?}",
        runtime.pod_name(2),
        started.message,
        began.elapsed()
    );

    // 3. The primary's Pod killed: every process of it SIGKILLed at once.
    let seen = runtime.events().len();
    let killed_at = Instant::now();
    runtime
        .podman()
        .run(&["pod", "kill", &runtime.pod_name(0)])
        .await
        .unwrap();
    // Back when every member is Ready again and the primary, whoever it is now, takes a write.
    let writable = myset_os::poll_until_async(RECOVERY_LIMIT, POLL, || {
        let (controller, runtime, secrets) = (&controller, &runtime, &secrets);
        async move {
            let state = controller.state();
            if ready_count(controller) != 3 {
                return false;
            }
            let Ok(mut conn) = connect(runtime, secrets, state.primary).await else {
                return false;
            };
            let write = conn.query_drop(
                "INSERT INTO dp.notes VALUES (2, 'written after the kill') \
                 ON DUPLICATE KEY UPDATE note = VALUES(note)",
            );
            matches!(
                tokio::time::timeout(Duration::from_secs(5), write).await,
                Ok(Ok(()))
            )
        }
    })
    .await;
    assert!(
        writable,
        "no writable primary with 3 Ready members after the kill"
    );
    println!(
        "after the kill: 3 Ready and a write on the primary after {:.1?}",
        killed_at.elapsed()
    );
    for o in 0..3 {
        wait_row(&runtime, &secrets, o, 1).await;
        wait_row(&runtime, &secrets, o, 2).await;
    }

    // What the controller did, from its events.
    let events: Vec<Event> = runtime.events().split_off(seen);
    let state = controller.state();
    if state.primary == 0 {
        // Its Pod came back within the failover delay: restarted from its own data.
        let restarted = find(&events, EventKind::AgentRestarted, 0);
        assert!(restarted.message.contains("from its own data"));
        assert!(!events.iter().any(|e| e.kind == EventKind::Failover));
        println!(
            "the controller restarted the primary's Pod: {}",
            restarted.message
        );
    } else {
        // A failover: a replica promoted at a new term, the old primary rejoined as a replica
        // (semi-synchronous replication: nothing it acknowledged was lost, so no re-clone).
        let failover = find(&events, EventKind::Failover, 0);
        let promoted = find(&events, EventKind::Promoted, state.primary);
        assert_eq!((promoted.from, promoted.to), (Some(0), Some(state.primary)));
        find(&events, EventKind::Rejoined, 0);
        assert!(!events.iter().any(|e| e.kind == EventKind::Errant));
        println!("the controller failed over: {}", failover.message);
    }
    print_events(&events);

    // 4. The primary's Pod frozen (every process stopped by the cgroup freezer): its agent
    //    still runs, so nothing restarts it, but nobody hears from it. After the failover
    //    delay the controller fails over, deletes the frozen Pod (forced), and the Pod it
    //    recreates rejoins as a replica.
    let old = controller.state().primary;
    let seen = runtime.events().len();
    let frozen_at = Instant::now();
    runtime
        .podman()
        .run(&["pod", "pause", &runtime.pod_name(old)])
        .await
        .unwrap();
    let moved = myset_os::poll_until(RECOVERY_LIMIT, POLL, || {
        controller.state().primary != old && ready_count(&controller) == 3
    })
    .await;
    assert!(
        moved,
        "no failover with 3 Ready members after freezing the primary"
    );
    let new = controller.state().primary;
    let mut conn = connect(&runtime, &secrets, new).await.unwrap();
    conn.query_drop("INSERT INTO dp.notes VALUES (3, 'written after the failover')")
        .await
        .unwrap();
    drop(conn);
    for o in 0..3 {
        wait_row(&runtime, &secrets, o, 3).await;
    }
    println!(
        "after freezing {}: failed over to {} and all 3 Ready after {:.1?}",
        runtime.pod_name(old),
        runtime.pod_name(new),
        frozen_at.elapsed()
    );
    let events: Vec<Event> = runtime.events().split_off(seen);
    find(&events, EventKind::Failover, old);
    let promoted = find(&events, EventKind::Promoted, new);
    assert_eq!((promoted.from, promoted.to), (Some(old), Some(new)));
    // The frozen Pod was deleted (its processes killed), recreated, held, then let back in as
    // a replica (semi-synchronous replication: it had nothing the new primary lacked).
    find(&events, EventKind::Fenced, old);
    find(&events, EventKind::AgentRestarted, old);
    find(&events, EventKind::Rejoined, old);
    assert!(!events.iter().any(|e| e.kind == EventKind::Errant));
    print_events(&events);

    // 5. Scale down with the data deleted: the highest non-primary member's Pod is stopped
    //    gracefully and its volume removed.
    let victim = (0..3).rev().find(|&o| o != new).unwrap();
    controller.request_scale(2, true).await.unwrap();
    let removed = myset_os::poll_until(RECOVERY_LIMIT, POLL, || {
        controller.state().members.len() == 2
    })
    .await;
    assert!(removed, "{} was not removed", runtime.pod_name(victim));
    find(&runtime.events(), EventKind::MemberRemoved, victim);
    let volume = myset_operator::render::names::pvc(runtime.cluster(), victim);
    let podman = runtime.podman();
    assert!(podman.run(&["volume", "exists", &volume]).await.is_err());
    let pod = runtime.pod_name(victim);
    assert!(podman.run(&["pod", "exists", &pod]).await.is_err());
    wait_ready(&controller, 2, READY_LIMIT).await;
    println!("scaled down: {pod} stopped, volume {volume} deleted");
}

fn print_events(events: &[Event]) {
    for e in events {
        println!("  event {:>16} {}", e.kind.to_string(), e.message);
    }
}

/// Builds the image with the myset binary of this build (`MYSET_BINARY` overrides it).
fn build_image(tmp: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let binary = match std::env::var_os("MYSET_BINARY") {
        Some(b) => PathBuf::from(b),
        None => build_binary(&repo),
    };
    let podman = Podman::configure(tmp).unwrap();
    let status = std::process::Command::new(repo.join("deploy/image/build"))
        .arg("--binary")
        .arg(&binary)
        .arg("--tag")
        .arg(IMAGE)
        .env("CONTAINERS_CONF", podman.conf())
        .status()
        .unwrap();
    assert!(status.success(), "deploy/image/build failed: {status}");
}

/// `cargo build -p myset-cli`: this crate cannot depend on a binary, so the test builds it
/// (a no-op when it is current) and takes it from the target dir it runs from.
fn build_binary(repo: &Path) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", "myset-cli", "--bin", "myset"])
        .current_dir(repo)
        .status()
        .unwrap();
    assert!(status.success(), "cargo build -p myset-cli failed");
    // This test runs as target/<profile>/deps/data_plane-<hash>.
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("myset"))
        .expect("the test runs inside a target dir")
}

fn myset(name: &str) -> myset_operator::MySet {
    let text = format!(
        "apiVersion: myset.dev/v1alpha1
kind: MySet
metadata:
  name: {name}
  namespace: default
spec:
  replicas: 2
  durability: semisync
  failoverDelaySeconds: 3
  image: {IMAGE}
  storage:
    size: 1Gi
  server:
    all:
      innodb-buffer-pool-size: 32M
"
    );
    let mut myset = myset_operator::parse_manifest(&text).unwrap();
    assert_eq!(myset.spec.durability, Durability::Semisync);
    myset.metadata.uid = Some(format!("{name}-uid"));
    myset
}

fn ready_count(controller: &Brain) -> usize {
    controller
        .status()
        .instances
        .iter()
        .filter(|i| i.ready)
        .count()
}

async fn wait_ready(controller: &Brain, count: usize, limit: Duration) {
    let ready = myset_os::poll_until(limit, POLL, || ready_count(controller) == count).await;
    assert!(
        ready,
        "not {count} Ready within {limit:?}: {:#?}",
        controller.status().instances
    );
}

async fn connect(runtime: &PodmanRuntime, secrets: &Secrets, ordinal: u32) -> anyhow::Result<Conn> {
    let opts = OptsBuilder::default()
        .ip_or_hostname(runtime.pod_ip(ordinal))
        .tcp_port(3306)
        .user(Some(secrets.user.clone()))
        .pass(Some(secrets.user_password.clone()))
        .prefer_socket(false);
    Ok(tokio::time::timeout(Duration::from_secs(3), Conn::new(opts)).await??)
}

/// Waits until the row `id` is visible on the ordinal's server.
async fn wait_row(runtime: &PodmanRuntime, secrets: &Secrets, ordinal: u32, id: u32) {
    let seen = myset_os::poll_until_async(READY_LIMIT, POLL, || async move {
        let Ok(mut conn) = connect(runtime, secrets, ordinal).await else {
            return false;
        };
        let query = format!("SELECT note FROM dp.notes WHERE id = {id}");
        matches!(conn.query_first::<String, _>(query).await, Ok(Some(_)))
    })
    .await;
    assert!(
        seen,
        "row {id} never showed on {}",
        runtime.pod_name(ordinal)
    );
}

fn find(events: &[Event], kind: EventKind, ordinal: u32) -> Event {
    events
        .iter()
        .rev()
        .find(|e| e.kind == kind && e.ordinal == Some(ordinal))
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} event for ordinal {ordinal}: {events:#?}"))
}

/// The status code of `GET path` on the Pod's probe port (the kubelet's view; podman does not
/// run the probes itself).
async fn probe(ip: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, 8081)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

/// On failure: what the controller did and what each Pod logged.
fn diagnose(runtime: &PodmanRuntime) {
    for e in runtime.events() {
        eprintln!("event {} {}", e.kind, e.message);
    }
    for o in 0..3 {
        let container = format!("{}-myset", runtime.pod_name(o));
        // The agent logs to both streams.
        let logs = std::process::Command::new("podman")
            .args(["logs", "--tail", "40", &container])
            .env("CONTAINERS_CONF", runtime.podman().conf())
            .output();
        match logs {
            Ok(o) => eprintln!(
                "--- {container}:\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("--- {container}: {e}"),
        }
    }
}
