//! TLS against real servers: a new cluster requires TLS, a client verifying with the CA from
//! `status` gets through rw and a plaintext or wrongly trusting one does not, replication
//! verifies the primary, a certificate rotation under a steady writer loses no write and new
//! connections get the new certificates, `--tls off` and a user's own CA work, and bad TLS
//! input gets one line.

mod support;

use mysql_async::prelude::Queryable;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::{block_on, wait_until, Cluster};

/// Connects with `opts`, and returns the session's `Ssl_version` and `Ssl_server_not_after`
/// (empty without TLS).
async fn session_tls(opts: mysql_async::OptsBuilder) -> Result<(String, String), String> {
    let connect = tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts));
    let mut conn = match connect.await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no connection within 10 s".into()),
    };
    let rows: Vec<(String, String)> = conn
        .query("SHOW STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_server_not_after')")
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    let value = |name: &str| {
        rows.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Ok((value("Ssl_version"), value("Ssl_server_not_after")))
}

fn password(cluster: &Cluster) -> String {
    std::fs::read_to_string(cluster.root().join("password"))
        .expect("password")
        .trim()
        .to_string()
}

fn opts(cluster: &Cluster, port: u16, ca: Option<&Path>) -> mysql_async::OptsBuilder {
    myset_mariadb::client::tcp_opts("127.0.0.1", port, "myset", &password(cluster), ca)
}

/// A CA of the test's own, written to `dir`: (certificate, key).
fn own_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let ca = myset_tls::Authority::generate(name, myset_tls::CA_VALIDITY).expect("a CA");
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    myset_tls::write_public(&cert, ca.cert_pem()).expect("write the CA");
    myset_tls::write_private(&key, &ca.key_pem()).expect("write the key");
    (cert, key)
}

/// Inserts ids 1, 2, ... through `opts` until `stop`; returns the acknowledged ids. A failed
/// insert ends it: a rotation must not break a connection.
fn steady_writer(opts: mysql_async::OptsBuilder, stop: &AtomicBool, acked: &AtomicU32) -> Vec<u32> {
    block_on(async {
        let mut done = Vec::new();
        let Ok(mut conn) = mysql_async::Conn::new(opts).await else {
            return done;
        };
        for id in 1.. {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let insert = conn.exec_drop("INSERT INTO app.t VALUES (?)", (id,));
            match tokio::time::timeout(Duration::from_secs(5), insert).await {
                Ok(Ok(())) => {
                    done.push(id);
                    acked.store(id, Ordering::SeqCst);
                }
                _ => break,
            }
        }
        done
    })
}

#[test]
fn a_new_cluster_requires_verified_tls_and_rotates_certificates_under_a_steady_writer() {
    let cluster = Cluster::new("tls");
    cluster.up(Some(3)).ok();
    let status = cluster.status();
    assert_eq!(status.tls.mode, myset_api::TlsMode::Required);
    let ca = PathBuf::from(
        status
            .tls
            .ca_file
            .clone()
            .expect("status names the CA file"),
    );
    assert!(ca.is_file(), "{} is the CA file", ca.display());

    // Verified TLS through rw with the CA from status; plaintext is refused, and so is a
    // client that trusts another CA.
    let (version, not_after_before) =
        block_on(session_tls(opts(&cluster, cluster.rw_port, Some(&ca))))
            .expect("a verified TLS session through rw");
    assert!(version.starts_with("TLSv1."), "{version:?}");
    let plain = block_on(session_tls(opts(&cluster, cluster.rw_port, None)));
    assert!(plain.is_err(), "a plaintext client got in: {plain:?}");
    let (stranger, _) = own_ca(cluster.scratch(), "stranger");
    let wrong = block_on(session_tls(opts(
        &cluster,
        cluster.rw_port,
        Some(&stranger),
    )));
    assert!(
        wrong.is_err(),
        "a client trusting another CA got in: {wrong:?}"
    );

    // Replication verifies the primary's certificate.
    for ordinal in [1, 2] {
        let port = Cluster::instance(&status, ordinal).port;
        let row: mysql_async::Row = block_on(async {
            let mut conn = mysql_async::Conn::new(opts(&cluster, port, Some(&ca)))
                .await
                .expect("connect");
            conn.query_first("SHOW SLAVE STATUS")
                .await
                .expect("slave status")
                .expect("a replica")
        });
        let field = |name: &str| row.get::<String, _>(name).unwrap_or_default();
        assert_eq!(field("Master_SSL_Allowed"), "Yes", "replica {ordinal}");
        assert_eq!(
            field("Master_SSL_Verify_Server_Cert"),
            "Yes",
            "replica {ordinal}"
        );
        assert_eq!(field("Slave_IO_Running"), "Yes", "replica {ordinal}");
    }

    // A rotation under a steady writer: no write lost, the writer's session lives on, and new
    // sessions get certificates valid until later than before.
    cluster
        .sql(
            "rw",
            "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY)",
        )
        .ok();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU32::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let opts = opts(&cluster, cluster.rw_port, Some(&ca));
        std::thread::spawn(move || steady_writer(opts, &stop, &acked))
    };
    assert!(
        wait_until(Duration::from_secs(30), || acked.load(Ordering::SeqCst)
            >= 20),
        "the writer made no progress"
    );
    let rotated = cluster.cmd(&["rotate-certs"]);
    let out = rotated.ok();
    assert!(out.contains("members 0, 1, 2"), "{out}");
    let at_rotation = acked.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(30), || acked.load(Ordering::SeqCst)
            >= at_rotation + 20),
        "the writer stopped after the rotation"
    );
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer");
    assert!(
        written.len() as u32 >= at_rotation + 20,
        "the writer's session broke"
    );
    let stored: std::collections::BTreeSet<u32> =
        support::column(&cluster.query("rw", "SELECT id FROM app.t"))
            .iter()
            .map(|v| v.parse().expect("an id"))
            .collect();
    for id in &written {
        assert!(stored.contains(id), "acknowledged write {id} is missing");
    }
    let status = cluster.status();
    for instance in &status.instances {
        let (_, not_after) = block_on(session_tls(opts(&cluster, instance.port, Some(&ca))))
            .expect("a verified session after the rotation");
        assert!(
            not_after != not_after_before,
            "{} still serves its old certificate (not after {not_after})",
            instance.name
        );
    }
    let events = cluster.events();
    assert!(events
        .iter()
        .any(|e| e.kind == myset_api::EventKind::CertificatesRenewed));
}

#[test]
fn tls_off_takes_plain_clients_and_has_nothing_to_rotate() {
    let cluster = Cluster::new("plain");
    cluster.up_with(&["--replicas", "1", "--tls", "off"]).ok();
    let status = cluster.status();
    assert_eq!(status.tls.mode, myset_api::TlsMode::Off);
    assert_eq!(status.tls.ca_file, None);
    let (version, _) =
        block_on(session_tls(opts(&cluster, cluster.rw_port, None))).expect("a plain session");
    assert_eq!(version, "", "no TLS was negotiated");
    let refused = cluster.cmd(&["rotate-certs"]);
    let line = refused.one_line_error();
    assert!(line.contains("without TLS"), "{line}");
    cluster.cmd(&["down"]).ok();
    let changed = cluster.up_with(&["--tls", "on"]);
    let line = changed.one_line_error();
    assert!(line.contains("fixed at creation"), "{line}");
}

#[test]
fn a_users_own_ca_issues_the_members_certificates() {
    let cluster = Cluster::new("ownca");
    let (cert, key) = own_ca(cluster.scratch(), "users-ca");
    let (cert_arg, key_arg) = (cert.display().to_string(), key.display().to_string());
    cluster
        .up_with(&[
            "--replicas",
            "1",
            "--tls-ca",
            &cert_arg,
            "--tls-ca-key",
            &key_arg,
        ])
        .ok();
    let (version, _) = block_on(session_tls(opts(&cluster, cluster.rw_port, Some(&cert))))
        .expect("a session verified by the user's own CA");
    assert!(version.starts_with("TLSv1."), "{version:?}");
    let text = std::fs::read_to_string(cluster.root().join("cluster.json")).expect("record");
    let state: myset_api::ClusterState = serde_json::from_str(&text).expect("a record");
    assert_eq!(state.tls.ca, myset_api::CaSource::Supplied);
}

#[test]
fn bad_tls_input_gets_one_line_and_creates_nothing() {
    let cluster = Cluster::new("badtls");
    let missing = cluster.scratch().join("nowhere.pem");
    let missing = missing.display().to_string();
    let run = cluster.up_with(&["--tls-ca", &missing, "--tls-ca-key", &missing]);
    let line = run.one_line_error();
    assert!(
        line.contains("--tls-ca") && line.contains("cannot read"),
        "{line}"
    );
    assert!(!cluster.root().exists(), "a refused up created the cluster");

    // A certificate that is not a CA: its own key does not make it one.
    let leaf_dir = cluster.scratch().join("leaf");
    let (ca_cert, ca_key) = own_ca(cluster.scratch(), "issuer");
    let issuer = myset_tls::Authority::load(&ca_cert, &ca_key).expect("the issuer");
    let leaf = issuer
        .issue(&myset_tls::CertRequest {
            common_name: "leaf".into(),
            dns_names: vec!["leaf".into()],
            ips: vec![],
            validity: myset_tls::MEMBER_CERT_VALIDITY,
        })
        .expect("a leaf");
    let files = myset_tls::CertFiles::in_dir(&leaf_dir);
    myset_tls::write_public(&files.cert(), &leaf.cert_pem).expect("write");
    myset_tls::write_private(&files.key(), &leaf.key_pem).expect("write");
    let (c, k) = (
        files.cert().display().to_string(),
        files.key().display().to_string(),
    );
    let run = cluster.up_with(&["--tls-ca", &c, "--tls-ca-key", &k]);
    let line = run.one_line_error();
    assert!(line.contains("not a CA certificate"), "{line}");
    assert!(
        !cluster.root().exists(),
        "a refused up left something behind"
    );

    // clap refuses a CA without its key.
    let run = cluster.up_with(&["--tls-ca", &c]);
    assert!(!run.success(), "{run:?}");
    assert!(
        !cluster.root().exists(),
        "a refused up left something behind"
    );
}
