//! Kernel-path endpoints (`up --endpoints kernel`): rw and ro as nftables destination
//! rewrites. A verified TLS connection through rw reaches the primary and through ro each
//! member; a switchover moves rw and cuts the connections to the old primary (its sessions by
//! its agent, the rest by conntrack), and a partitioned primary's local clients are cut too;
//! `down`, `destroy` and a SIGKILLed cluster followed by
//! `up` leave no stale table. `auto` without a usable nft falls back to the proxy, and
//! `kernel` without it is one line. Needs root and nft; skipped otherwise (not under CI).

mod support;

use mysql_async::prelude::Queryable;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{block_on, poll_for, wait_until, Cluster, SLOW};

/// Whether this test process may program nftables: root (CI runs as root) and a usable nft.
fn kernel_available() -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: kernel endpoints need root");
        return false;
    }
    let nft = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .is_ok_and(|o| o.status.success());
    support::required_unless_ci(nft, "nft", "scripts/install-deps installs nftables")
}

/// The names of the nftables tables of `cluster` (`myset_<name>_<hash>`), from the JSON
/// listing.
fn cluster_tables(cluster: &Cluster) -> Vec<String> {
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()
        .expect("run nft");
    assert!(out.status.success(), "{out:?}");
    let listing: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft JSON");
    let prefix = format!("myset_{}_", cluster.name.replace('-', "_"));
    listing["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|item| item["table"]["name"].as_str())
        .filter(|name| name.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// `@@server_id` over a new verified TLS connection to `port`.
fn server_id(cluster: &Cluster, port: u16) -> Result<u32, String> {
    block_on(async {
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            mysql_async::Conn::new(cluster.user_opts(port)),
        )
        .await
        .map_err(|_| "no connection within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
        let id: Option<u32> = conn
            .query_first("SELECT @@server_id")
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.disconnect().await;
        id.ok_or_else(|| "no row".to_string())
    })
}

fn primary_server_id(cluster: &Cluster) -> u32 {
    100 + cluster.status().primary
}

#[test]
fn kernel_endpoints_route_to_members_and_follow_a_switchover() {
    let _serial = support::serial();
    if !kernel_available() {
        return;
    }
    let cluster = Cluster::new("kern-route");
    cluster.up_with(&["--endpoints", "kernel"]).ok();
    let status = cluster.status();
    assert_eq!(
        status.endpoints.mode,
        Some(myset_api::EndpointPath::Kernel),
        "{:?}",
        status.endpoints
    );
    assert_eq!(status.endpoints.asked, myset_api::EndpointsMode::Kernel);
    assert_eq!(cluster_tables(&cluster).len(), 1);
    let table = cluster.cmd(&["status"]);
    assert!(table.ok().contains("endpoints kernel"), "{table:?}");

    // rw reaches the primary; ro spreads new connections over every Ready member.
    assert_eq!(
        server_id(&cluster, cluster.rw_port),
        Ok(primary_server_id(&cluster))
    );
    let ids: std::collections::BTreeSet<u32> = (0..6)
        .map(|_| server_id(&cluster, cluster.ro_port).expect("a read through ro"))
        .collect();
    assert_eq!(ids, [100, 101, 102].into(), "ro reaches every member");

    // An authenticated session through rw, and a connection that only got its greeting (no
    // account, so the agent's session cut cannot see it: conntrack must).
    let old = primary_server_id(&cluster);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut session = rt
        .block_on(mysql_async::Conn::new(cluster.user_opts(cluster.rw_port)))
        .expect("a session through rw");
    let mut greeted = greeted_connection(cluster.rw_port, Duration::from_secs(5));
    let since_greeting = Instant::now();

    cluster.cmd_timeout(&["switchover"], SLOW).ok();
    let new = primary_server_id(&cluster);
    assert_ne!(new, old);
    assert!(
        wait_until(Duration::from_secs(10), || server_id(
            &cluster,
            cluster.rw_port
        ) == Ok(new)),
        "rw reaches the new primary"
    );
    let after: Result<Option<u32>, _> = rt.block_on(session.query_first("SELECT @@server_id"));
    assert!(
        after.is_err(),
        "the session to the old primary is cut: {after:?}"
    );
    // The old primary would answer these bytes (a bad handshake) before its 10 s connect
    // timeout; with the connection's conntrack entry gone they reach the new primary instead,
    // which resets the connection.
    assert!(
        since_greeting.elapsed() < Duration::from_secs(8),
        "the switchover took too long to tell a cut from the server's connect timeout"
    );
    let _ = greeted.write_all(&[1, 0, 0, 1, 0]);
    let mut buf = [0u8; 64];
    let read = greeted.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the old primary answered a connection rw no longer routes to it: {:?}",
        read.map(|n| buf[..n].to_vec())
    );
}

/// A connection through `port` that has read the server's greeting and nothing more; its
/// reads give up after `read_timeout`.
fn greeted_connection(port: u16, read_timeout: Duration) -> TcpStream {
    let mut greeted = TcpStream::connect(("127.0.0.1", port)).expect("connect rw");
    greeted.set_read_timeout(Some(read_timeout)).unwrap();
    let mut header = [0u8; 4];
    greeted.read_exact(&mut header).expect("the primary greets");
    let mut greeting = vec![0u8; u32::from_le_bytes([header[0], header[1], header[2], 0]) as usize];
    greeted
        .read_exact(&mut greeting)
        .expect("the whole greeting");
    greeted
}

/// A partitioned primary can send nothing, not even the reset that would end its clients'
/// connections, so deleting their conntrack entries leaves each client waiting on its own
/// timeout. At the failover the local clients' sockets are aborted instead, as the userspace
/// proxy closes its client side.
#[test]
fn kernel_endpoints_cut_the_clients_of_a_partitioned_primary() {
    let _serial = support::serial();
    if !kernel_available() {
        return;
    }
    let cluster = Cluster::new("kern-part");
    cluster.up_with(&["--endpoints", "kernel", "--netns"]).ok();
    let old = cluster.status().primary;
    let mut waiting = greeted_connection(cluster.rw_port, Duration::from_secs(60));
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let read = waiting.read(&mut buf).map_err(|e| e.kind());
        (read, Instant::now())
    });
    cluster.cmd(&["partition", &old.to_string()]).ok();
    let partitioned_at = Instant::now();
    let failed_over = poll_for(Duration::from_secs(60), || {
        (cluster.status().primary != old).then(Instant::now)
    });
    assert!(
        failed_over.is_some(),
        "no failover of the partitioned primary"
    );
    let (read, returned_at) = reader.join().expect("the reader thread");
    cluster.cmd(&["partition", "--heal", &old.to_string()]).ok();
    assert!(
        matches!(read, Ok(0) | Err(std::io::ErrorKind::ConnectionAborted)),
        "the client of the partitioned primary was not cut: {read:?}"
    );
    // Cut at the failover, long before the read's own timeout.
    assert!(returned_at > partitioned_at);
    assert!(
        returned_at.duration_since(partitioned_at) < Duration::from_secs(30),
        "cut {:?} after the partition",
        returned_at.duration_since(partitioned_at)
    );
}

#[test]
fn kernel_tables_do_not_outlive_down_destroy_or_a_killed_cluster() {
    let _serial = support::serial();
    if !kernel_available() {
        return;
    }
    let cluster = Cluster::new("kern-clean");
    cluster.up_with(&["--endpoints", "kernel"]).ok();
    assert_eq!(cluster_tables(&cluster).len(), 1);

    // A SIGKILLed controller leaves its table (rw keeps working meanwhile); the controller
    // an agent starts again replaces it.
    let killed = cluster.controller_pid().expect("controller pid");
    support::signal(killed, nix::sys::signal::Signal::SIGKILL);
    let restarted = poll_for(Duration::from_secs(30), || {
        cluster.controller_pid().filter(|&p| p != killed)
    });
    assert!(restarted.is_some(), "an agent restarts the controller");
    assert_eq!(cluster_tables(&cluster).len(), 1);
    assert!(wait_until(Duration::from_secs(20), || server_id(
        &cluster,
        cluster.rw_port
    )
    .is_ok()));

    cluster.cmd_timeout(&["down"], SLOW).ok();
    assert_eq!(cluster_tables(&cluster), Vec::<String>::new(), "down");

    // Every process killed at once: the table stays behind, stale, until `up` replaces it.
    cluster.up_with(&["--endpoints", "kernel"]).ok();
    let stale = cluster_tables(&cluster);
    assert_eq!(stale.len(), 1);
    let pids: Vec<u32> = cluster.processes().into_iter().map(|(p, _)| p).collect();
    for &pid in &pids {
        support::signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
    assert!(wait_until(Duration::from_secs(10), || Cluster::alive(
        pids.iter().copied()
    )
    .is_empty()));
    assert_eq!(cluster_tables(&cluster), stale, "nothing removed it");
    cluster.up_with(&["--endpoints", "kernel"]).ok();
    assert_eq!(cluster_tables(&cluster), stale, "replaced, not duplicated");
    assert_eq!(
        server_id(&cluster, cluster.rw_port),
        Ok(primary_server_id(&cluster))
    );

    cluster.cmd_timeout(&["destroy"], SLOW).ok();
    assert_eq!(cluster_tables(&cluster), Vec::<String>::new(), "destroy");
}

/// A directory holding an `nft` that always fails, as on a host where nftables may not be
/// changed, put first on `PATH`.
fn failing_nft(dir: &Path) -> std::ffi::OsString {
    let nft = dir.join("nft");
    std::fs::write(
        &nft,
        "#!/bin/sh\necho 'Error: Operation not permitted' >&2\nexit 1\n",
    )
    .expect("write the fake nft");
    std::fs::set_permissions(&nft, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the fake nft");
    let mut path = dir.as_os_str().to_owned();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

#[test]
fn without_a_usable_nft_auto_takes_the_proxy_and_kernel_is_refused() {
    let _serial = support::serial();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: as a non-root user, auto never tries the kernel");
        return;
    }
    let cluster = Cluster::new("kern-none");
    let path = failing_nft(cluster.scratch());
    let env = [("PATH", Some(path))];
    let (rw, ro) = (cluster.rw_port.to_string(), cluster.ro_port.to_string());
    let name = cluster.name.clone();
    let up = |mode: &str| {
        cluster.run_with(
            &[
                "up",
                "--name",
                &name,
                "--rw-port",
                &rw,
                "--ro-port",
                &ro,
                "--endpoints",
                mode,
            ],
            &env,
            SLOW,
        )
    };
    let refused = up("kernel");
    let line = refused.one_line_error();
    assert!(
        line.contains("--endpoints kernel cannot be used")
            && line.contains("Operation not permitted")
            && line.contains("--endpoints userspace"),
        "{line}"
    );
    assert!(!cluster.state_file().exists(), "nothing was created");

    up("auto").ok();
    let status = cluster.status();
    assert_eq!(
        status.endpoints.mode,
        Some(myset_api::EndpointPath::Userspace)
    );
    assert_eq!(
        server_id(&cluster, cluster.rw_port),
        Ok(primary_server_id(&cluster))
    );
}

/// Whether a closed connection still holds 127.0.0.1:`port` (/proc/net/tcp: FIN_WAIT1 04,
/// FIN_WAIT2 05, TIME_WAIT 06, CLOSE 07, LAST_ACK 09 or CLOSING 0B).
fn closed_connection_lingers_on(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(1) == Some(&local.as_str())
            && fields
                .get(3)
                .is_some_and(|state| ["04", "05", "06", "07", "09", "0B"].contains(state))
    })
}

#[test]
fn kernel_endpoints_take_the_ports_where_a_stopped_proxy_s_connections_linger() {
    let _serial = support::serial();
    if !kernel_available() {
        return;
    }
    let cluster = Cluster::new("kern-reuse");
    cluster.up_with(&["--endpoints", "userspace"]).ok();
    // A client idle through the proxy when the cluster goes: the proxy closes first, so its
    // side of the connection, on the rw port, lingers (FIN_WAIT2, then TIME_WAIT) for a minute.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let session = rt
        .block_on(mysql_async::Conn::new(cluster.user_opts(cluster.rw_port)))
        .expect("a session through rw");
    cluster.cmd_timeout(&["destroy"], SLOW).ok();
    assert!(
        closed_connection_lingers_on(cluster.rw_port),
        "the proxy's side of the closed session lingers on the rw port"
    );
    drop(session);

    // A new cluster on the same ports, carried by the kernel, starts all the same.
    cluster.up_with(&["--endpoints", "kernel"]).ok();
    assert_eq!(
        cluster.status().endpoints.mode,
        Some(myset_api::EndpointPath::Kernel)
    );
    assert_eq!(
        server_id(&cluster, cluster.rw_port),
        Ok(primary_server_id(&cluster))
    );
}
