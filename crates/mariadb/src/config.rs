//! Rendering a server's option file from its ordinal and role.

use myset_api::Role;
use std::fmt::Write;
use std::path::PathBuf;

/// Everything that varies between servers' option files.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub server_id: u32,
    pub role: Role,
    pub bind_address: String,
    pub port: u16,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    pub pid_file: PathBuf,
    pub error_log: PathBuf,
    /// mariadbd refuses to run as root unless told to.
    pub run_as_root: bool,
    /// The admin account, for mariadb-backup and local clients reading this file.
    pub admin_user: String,
    pub admin_password: String,
    /// Option files of the user's own (on Kubernetes, the operator's ConfigMap: `all.cnf` and
    /// the file of the server's role), included where they can tune the server but never
    /// override what myset sets itself. Empty locally.
    pub includes: Vec<PathBuf>,
    /// The user's settings for this server's role (`myset config set`), checked by
    /// `myset_core::settings`: tunable, so they go with the defaults, before what myset decides.
    pub settings: std::collections::BTreeMap<String, String>,
    /// A Galera member's wsrep settings; None for the replication topology.
    pub galera: Option<GaleraConfig>,
    /// The server's certificate files; None with TLS off.
    pub tls: Option<ServerTls>,
}

/// Where a server's TLS files are. With them, every TCP client must use TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a Galera member's option file needs beyond the common settings.
#[derive(Debug, Clone)]
pub struct GaleraConfig {
    pub cluster_name: String,
    /// The address peers reach this member on (group communication, IST, SST).
    pub node_host: String,
    pub ports: myset_api::GaleraPorts,
    /// Every member's group-communication address (`host:port`), this one included.
    pub members: Vec<String>,
    /// The account a donor's mariadb-backup uses for a state transfer.
    pub sst_user: String,
    pub sst_password: String,
    /// Causal reads for the user's sessions (`wsrep_sync_wait = 1` through `init_connect`,
    /// which skips accounts with CONNECTION ADMIN: myset's own probes stay unaffected and
    /// keep working on a member outside the Primary component).
    pub causal_reads: bool,
}

impl ServerConfig {
    /// The option file. It holds a password, so the caller writes it with mode 0600.
    pub fn render(&self) -> String {
        // mariadb-backup reads [mariadbd] for the datadir, so server options live there.
        let mut s = String::from("[mariadbd]\n");
        let line = |s: &mut String, k: &str, v: &dyn std::fmt::Display| {
            let _ = writeln!(s, "{k} = {v}");
        };
        // Defaults a user may tune. When an option occurs more than once, MariaDB keeps the
        // last occurrence, so these come before the user's files and everything myset must
        // decide comes after them.
        line(&mut s, "innodb-buffer-pool-size", &"128M");
        line(&mut s, "character-set-server", &"utf8mb4");
        line(&mut s, "max-connections", &300);
        for (key, value) in &self.settings {
            line(&mut s, key, value);
        }
        // An included file's groups end with it: what follows is in [mariadbd] again. A
        // missing file is skipped by MariaDB.
        for file in &self.includes {
            let _ = writeln!(s, "!include {}", file.display());
        }
        let mut line = |k: &str, v: &dyn std::fmt::Display| line(&mut s, k, v);
        line("datadir", &self.datadir.display());
        line("port", &self.port);
        line("bind-address", &self.bind_address);
        line("socket", &self.socket.display());
        line("pid-file", &self.pid_file.display());
        line("log-error", &self.error_log.display());
        if self.run_as_root {
            line("user", &"root");
        }
        line("server-id", &self.server_id);
        line("log-bin", &"mysql-bin");
        line("relay-log", &"relay-bin");
        line("binlog-format", &"ROW");
        line("log-slave-updates", &"ON");
        line("skip-name-resolve", &"ON");
        // Durable commits on every topology: Galera's own advice of 0 loses acknowledged
        // commits when members crash in sequence (Jepsen, 2026).
        line("sync-binlog", &1);
        line("innodb-flush-log-at-trx-commit", &1);
        if let Some(tls) = &self.tls {
            line("ssl-ca", &tls.ca.display());
            line("ssl-cert", &tls.cert.display());
            line("ssl-key", &tls.key.display());
            // Local clients on the socket are exempt: the socket is not a network transport.
            line("require-secure-transport", &"ON");
            line("tls-version", &"TLSv1.2,TLSv1.3");
        }
        if let Some(g) = &self.galera {
            render_galera(&mut line, g, self.tls.as_ref());
        } else {
            self.render_replication(&mut line);
        }
        for group in ["client", "mariadb-backup"] {
            let _ = writeln!(s, "\n[{group}]");
            let _ = writeln!(s, "user = {}", self.admin_user);
            let _ = writeln!(s, "password = {}", self.admin_password);
            let _ = writeln!(s, "socket = {}", self.socket.display());
        }
        if self.galera.is_some() && self.tls.is_some() {
            // State transfers over TLS (socat with OpenSSL) with the server's own files, the
            // peer's certificate checked against the cluster's CA (chain only: socat cannot
            // match an IP SAN).
            let _ = writeln!(s, "\n[sst]\nssl-mode = VERIFY_CA");
        }
        s
    }

    fn render_replication(&self, line: &mut impl FnMut(&str, &dyn std::fmt::Display)) {
        line("gtid-strict-mode", &"ON");
        // Replication is started by the agent once it knows the primary.
        line("skip-slave-start", &"ON");
        // Every server starts read-only; the agent lifts it only on the instance the controller
        // names primary, so a restarted former primary can never take writes on its own.
        line("read-only", &"ON");
        // Semi-synchronous replication: the primary side is switched on at run time, and only on
        // the primary; a timeout of ~49 days means it never silently falls back to async.
        line("rpl-semi-sync-slave-enabled", &"ON");
        line("rpl-semi-sync-master-wait-point", &"AFTER_SYNC");
        line("rpl-semi-sync-master-timeout", &4_294_967_295u64);
        line("rpl-semi-sync-master-wait-no-slave", &"ON");
        // A silent primary makes replicas reconnect after 4 s (heartbeats come every second).
        line("slave-net-timeout", &4);
        line(
            "rpl-semi-sync-slave-kill-conn-timeout",
            &SEMISYNC_KILL_CONN_TIMEOUT_SECONDS,
        );
        if self.role == Role::Replica {
            // A crashed replica discards its relay log and refetches from its GTID position.
            line("relay-log-recovery", &"ON");
        }
    }
}

/// How long a replica's `STOP SLAVE IO_THREAD` may spend, after its IO thread has already
/// stopped reading, connecting to the primary to `KILL` the primary's end of the semi-sync
/// stream (MariaDB's default is 5 s; 0 means no limit). The fence of a failover is that
/// statement: against a partitioned primary the connection can never succeed, so the fence
/// used to take as long as the attempt (about 2 s measured here, until the address stopped
/// resolving; up to 5 s elsewhere). The kill is a courtesy to the primary and not part of the
/// fence: by then the IO thread has exited and receives and acknowledges nothing, and when the
/// kill fails MariaDB just closes its own end, as it does after the timeout. So a shorter limit
/// changes what the fence guarantees in no way, only how soon it reports it. 1 s is the
/// shortest limit MariaDB takes.
pub const SEMISYNC_KILL_CONN_TIMEOUT_SECONDS: u32 = 1;
// 0 would mean no limit at all.
const _: () = assert!(SEMISYNC_KILL_CONN_TIMEOUT_SECONDS > 0);

/// Galera's failure detection. After an abrupt death the survivors hold every commit until
/// they evict the dead member: `evs.suspect_timeout` (5 s by default) plus up to one
/// `evs.inactive_check_period`. At 1 s, bench/galera.sh measured rw's write gap after a
/// SIGKILL of its member at a median of 2.2 s (p95 3.9 s) against 7.1 s (p95 10.1 s) with
/// Galera's defaults, 20 kills each in one run on 2 cores (BENCHMARKS.md). Galera requires
/// keepalive_period <= suspect_timeout / 3 and inactive_check_period <= suspect_timeout / 2.
/// inactive_timeout keeps its 15 s default, and with it the install timeout (7.5 s): at 3 s
/// (install 1.5 s) the survivors fell apart into non-Primary singletons while admitting a
/// restarted member, 6 times in 20 kills. Members kept one view through 6 minutes of sysbench
/// writes on the saturated machine; a host that stalls a member's process for over a second
/// would now see it evicted, and it rejoins by IST. A slow joiner is suspected sooner too, so
/// a restarted member's admission churns more: the tail is no better than the defaults' (one
/// 15 s stall in 10 kills, the survivors non-Primary meanwhile).
const EVS_TIMERS: &str =
    "evs.keepalive_period=PT0.3S;evs.inactive_check_period=PT0.3S;evs.suspect_timeout=PT1S";

/// The wsrep settings of a Galera member: every member writable, state transfers by
/// mariadb-backup (rsync fails as root), a gcache that survives restarts so a member that was
/// away briefly catches up by IST, and no `pc.recovery`: myset alone decides who bootstraps
/// after an outage (from every member's position). With it, a member whose saved view
/// (gvwstate.dat) held only itself promoted itself to a Primary component of one on restart,
/// a second cluster beside the real one.
fn render_galera(
    line: &mut impl FnMut(&str, &dyn std::fmt::Display),
    g: &GaleraConfig,
    tls: Option<&ServerTls>,
) {
    // Group communication and IST over TLS, peers verified by the cluster's CA.
    let socket_tls = tls
        .map(|t| {
            format!(
                ";socket.ssl=YES;socket.ssl_ca={};socket.ssl_cert={};socket.ssl_key={}",
                t.ca.display(),
                t.cert.display(),
                t.key.display()
            )
        })
        .unwrap_or_default();
    line("wsrep-on", &"ON");
    line("wsrep-provider", &crate::galera::PROVIDER);
    line("wsrep-cluster-name", &g.cluster_name);
    line(
        "wsrep-cluster-address",
        &format!("gcomm://{}", g.members.join(",")),
    );
    line(
        "wsrep-node-address",
        &format!("{}:{}", g.node_host, g.ports.gcomm),
    );
    line(
        "wsrep-provider-options",
        &format!(
            "\"gmcast.listen_addr=tcp://{host}:{gcomm};ist.recv_addr={host}:{ist};gcache.size=256M;gcache.recover=yes;pc.recovery=FALSE;{EVS_TIMERS}{socket_tls}\"",
            host = g.node_host,
            gcomm = g.ports.gcomm,
            ist = g.ports.ist
        ),
    );
    line("wsrep-sst-method", &"mariabackup");
    line(
        "wsrep-sst-receive-address",
        &format!("{}:{}", g.node_host, g.ports.sst),
    );
    line(
        "wsrep-sst-auth",
        &format!("{}:{}", g.sst_user, g.sst_password),
    );
    line("innodb-autoinc-lock-mode", &2);
    line("read-only", &"OFF");
    if g.causal_reads {
        line("init-connect", &"\"SET SESSION wsrep_sync_wait = 1\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(role: Role) -> ServerConfig {
        ServerConfig {
            server_id: 102,
            role,
            bind_address: "127.0.0.1".into(),
            port: 4000,
            datadir: "/s/d".into(),
            socket: "/s/run/m.sock".into(),
            pid_file: "/s/run/m.pid".into(),
            error_log: "/s/logs/e.log".into(),
            run_as_root: false,
            admin_user: "admin".into(),
            admin_password: "pw".into(),
            includes: Vec::new(),
            tls: None,
            settings: Default::default(),
            galera: None,
        }
    }

    #[test]
    fn the_users_settings_override_the_defaults_but_not_what_myset_decides() {
        let mut c = config(Role::Replica);
        c.includes = vec!["/etc/o/all.cnf".into()];
        c.settings = [
            ("max_connections".to_string(), "333".to_string()),
            ("innodb_log_buffer_size".to_string(), "33554432".to_string()),
        ]
        .into();
        let text = c.render();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in\n{text}"))
        };
        assert!(at("max-connections = 300") < at("max_connections = 333"));
        assert!(at("innodb_log_buffer_size = 33554432") < at("!include /etc/o/all.cnf"));
        assert!(at("max_connections = 333") < at("server-id = 102"));
    }

    #[test]
    fn a_galera_member_is_writable_durable_and_transfers_state_with_mariadb_backup() {
        let mut c = config(Role::Replica);
        c.galera = Some(GaleraConfig {
            cluster_name: "g".into(),
            node_host: "10.0.0.2".into(),
            ports: myset_api::GaleraPorts {
                gcomm: 4567,
                ist: 4568,
                sst: 4444,
            },
            members: vec!["10.0.0.1:4567".into(), "10.0.0.2:4567".into()],
            sst_user: "admin".into(),
            sst_password: "pw".into(),
            causal_reads: false,
        });
        let text = c.render();
        for expected in [
            "wsrep-on = ON",
            "wsrep-cluster-address = gcomm://10.0.0.1:4567,10.0.0.2:4567",
            "gmcast.listen_addr=tcp://10.0.0.2:4567;ist.recv_addr=10.0.0.2:4568",
            "gcache.recover=yes",
            // myset alone decides who bootstraps after an outage: Galera's own recovery from
            // gvwstate.dat let a member whose saved view held only itself promote itself to a
            // Primary component of one, a second cluster (a CI rehearsal's chaos run).
            "pc.recovery=FALSE",
            // Short failure detection, in the order Galera requires (see EVS_TIMERS).
            "evs.keepalive_period=PT0.3S;evs.inactive_check_period=PT0.3S;evs.suspect_timeout=PT1S\"",
            "wsrep-sst-method = mariabackup",
            "wsrep-sst-receive-address = 10.0.0.2:4444",
            "read-only = OFF",
            "innodb-flush-log-at-trx-commit = 1",
            "sync-binlog = 1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        for absent in [
            "read-only = ON",
            "rpl-semi-sync",
            "relay-log-recovery",
            "init-connect",
        ] {
            assert!(!text.contains(absent), "{absent:?} in\n{text}");
        }
        // The install timeout follows inactive_timeout: shorter, live members split apart.
        assert!(!text.contains("evs.inactive_timeout"), "{text}");
        // Causal reads: the user's sessions wait for the group before each read.
        c.galera.as_mut().unwrap().causal_reads = true;
        assert!(c
            .render()
            .contains("init-connect = \"SET SESSION wsrep_sync_wait = 1\""));
    }

    #[test]
    fn renders_identity_and_replication_settings() {
        let text = config(Role::Replica).render();
        assert!(text.starts_with("[mariadbd]\n"));
        for expected in [
            "server-id = 102",
            "port = 4000",
            "bind-address = 127.0.0.1",
            "gtid-strict-mode = ON",
            "log-slave-updates = ON",
            "read-only = ON",
            "relay-log-recovery = ON",
            "[mariadb-backup]",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("user = root"));
    }

    #[test]
    fn a_fence_does_not_wait_long_for_an_unreachable_primary() {
        // Both roles: a primary becomes a replica that may be fenced.
        for role in [Role::Primary, Role::Replica] {
            let text = config(role).render();
            let expected = format!(
                "rpl-semi-sync-slave-kill-conn-timeout = {SEMISYNC_KILL_CONN_TIMEOUT_SECONDS}"
            );
            assert!(text.contains(&expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn primary_has_no_relay_log_recovery_and_root_runs_as_root() {
        let mut c = config(Role::Primary);
        c.run_as_root = true;
        let text = c.render();
        assert!(!text.contains("relay-log-recovery"));
        assert!(text.contains("user = root"));
    }

    #[test]
    fn with_tls_files_every_tcp_client_must_use_tls_and_a_user_file_cannot_undo_it() {
        let plain = config(Role::Primary).render();
        assert!(!plain.contains("ssl") && !plain.contains("secure-transport"));
        let mut c = config(Role::Primary);
        c.includes = vec!["/etc/o/all.cnf".into()];
        c.tls = Some(ServerTls {
            ca: "/s/tls/ca.pem".into(),
            cert: "/s/tls/cert.pem".into(),
            key: "/s/tls/key.pem".into(),
        });
        let text = c.render();
        let include = text.find("!include").unwrap();
        for expected in [
            "ssl-ca = /s/tls/ca.pem",
            "ssl-cert = /s/tls/cert.pem",
            "ssl-key = /s/tls/key.pem",
            "require-secure-transport = ON",
        ] {
            let at = text
                .find(expected)
                .unwrap_or_else(|| panic!("missing {expected:?} in\n{text}"));
            assert!(
                include < at,
                "{expected:?} must come after the user's files"
            );
        }
    }

    #[test]
    fn user_files_come_after_tunable_defaults_and_before_what_myset_decides() {
        let mut c = config(Role::Primary);
        c.includes = vec!["/etc/o/all.cnf".into(), "/etc/o/primary.cnf".into()];
        let text = c.render();
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("missing {needle:?} in\n{text}"))
        };
        let all = at("!include /etc/o/all.cnf\n");
        let role = at("!include /etc/o/primary.cnf\n");
        assert!(all < role);
        // The last occurrence of an option wins: a user's max-connections overrides the
        // default, and nothing the user writes overrides server-id or read-only.
        assert!(at("max-connections = 300") < all);
        assert!(role < at("server-id = 102"));
        assert!(role < at("read-only = ON"));
        assert!(role < at("bind-address"));
        assert!(role < at("[client]"));
        assert!(!config(Role::Primary).render().contains("!include"));
    }
}
