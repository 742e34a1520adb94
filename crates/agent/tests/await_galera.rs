//! A Galera agent started as a Kubernetes Pod starts it (`--await-spec`), on a volume that
//! holds a stored spec telling it to form a new cluster: it starts no server, and reports the
//! member's position from the data dir over its real HTTP API to the controller's client
//! (`HttpAgents::galera_position`), which is how the operator reads positions after a full
//! outage.
//!
//! Needs MariaDB's programs on PATH (the agent looks them up at start); skipped without
//! them, except under CI.

use myset_api::{Address, GaleraPorts, GaleraSpec, GaleraStart, InstanceSpec, Role, Secrets};
use myset_core::galera::{ClusterUuid, MemberData, Position};
use myset_runtime::{AgentApi, AgentError, HttpAgents};
use std::time::Duration;

const UUID: &str = "5ee99582-bb8d-11f0-b3a4-6b0bdc7c1b7e";

fn secrets() -> Secrets {
    let s = |v: &str| v.to_string();
    Secrets {
        admin_user: s("admin"),
        admin_password: s("a"),
        repl_user: s("repl"),
        repl_password: s("r"),
        user: s("user"),
        user_password: s("u"),
        api_token: s("token"),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The spec a Galera member was given when its cluster was new.
fn stored_spec(agent: &Address) -> InstanceSpec {
    let here = |port| Address {
        host: "127.0.0.1".into(),
        port,
    };
    InstanceSpec {
        cluster: "g".into(),
        ordinal: 0,
        server_id: 100,
        server: here(free_port()),
        agent: agent.clone(),
        role: Role::Primary,
        primary: None,
        bootstrap: true,
        donors: Vec::new(),
        term: 1,
        max_staleness_seconds: 10,
        semisync: false,
        peers: Vec::new(),
        isolation_fence_ms: 0,
        galera: Some(GaleraSpec {
            cluster_name: "g".into(),
            ports: GaleraPorts {
                gcomm: free_port(),
                ist: free_port(),
                sst: free_port(),
            },
            members: vec![here(free_port())],
            start: GaleraStart::NewCluster,
            causal_reads: false,
        }),
        settings: Default::default(),
    }
}

#[tokio::test]
async fn a_galera_agent_in_a_pod_starts_no_server_from_its_stored_spec_and_reports_its_position() {
    if myset_mariadb::Binaries::find().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "MariaDB's programs are not on PATH (scripts/install-deps installs them)"
        );
        eprintln!("skipped: MariaDB's programs are not on PATH");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("instance");
    let agent = Address {
        host: "127.0.0.1".into(),
        port: free_port(),
    };
    std::fs::create_dir_all(instance.join("data")).unwrap();
    std::fs::write(
        instance.join("spec.json"),
        serde_json::to_vec(&stored_spec(&agent)).unwrap(),
    )
    .unwrap();
    // A clean stop left its position in grastate.dat.
    std::fs::write(
        instance.join("data/grastate.dat"),
        format!(
            "# GALERA saved state\nversion: 2.1\nuuid: {UUID}\nseqno: 17\nsafe_to_bootstrap: 1\n"
        ),
    )
    .unwrap();
    let secrets_file = dir.path().join("secrets.json");
    std::fs::write(&secrets_file, serde_json::to_vec(&secrets()).unwrap()).unwrap();

    let options = myset_agent::AgentOptions {
        listen: Some(format!("127.0.0.1:{}", agent.port).parse().unwrap()),
        await_spec: true,
        identity: Some(myset_agent::Identity {
            cluster: "g".into(),
            ordinal: 0,
        }),
        ..myset_agent::AgentOptions::local(instance.clone(), secrets_file)
    };
    let running = tokio::spawn(myset_agent::run(options));

    let agents = HttpAgents::new(myset_runtime::ApiAccess::plain("token"));
    let answered = myset_os::poll_until_async(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            !matches!(
                agents.galera_position(&agent, Duration::from_secs(5)).await,
                Err(AgentError::Unreachable { .. })
            )
        },
    )
    .await;
    assert!(answered, "the agent never answered");
    let position = agents
        .galera_position(&agent, Duration::from_secs(5))
        .await
        .expect("a position");
    assert_eq!(
        position,
        MemberData::At {
            position: Position {
                uuid: ClusterUuid::parse(UUID).unwrap(),
                seqno: 17
            },
            safe_to_bootstrap: true
        }
    );
    // It waits for the operator's spec: no status, no server.
    let status = agents.status(&agent, 1, Duration::from_secs(5)).await;
    assert!(
        matches!(&status, Err(AgentError::Refused { detail, .. }) if detail.contains("no spec yet")),
        "{status:?}"
    );
    assert!(!instance.join("run/mariadbd.pid").exists());
    assert!(!running.is_finished());
    running.abort();
}
