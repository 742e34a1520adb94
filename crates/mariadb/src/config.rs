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
        line("gtid-strict-mode", &"ON");
        // Replication is started by the agent once it knows the primary.
        line("skip-slave-start", &"ON");
        line("skip-name-resolve", &"ON");
        // Every server starts read-only; the agent lifts it only on the instance the controller
        // names primary, so a restarted former primary can never take writes on its own.
        line("read-only", &"ON");
        line("sync-binlog", &1);
        line("innodb-flush-log-at-trx-commit", &1);
        // Semi-synchronous replication: the primary side is switched on at run time, and only on
        // the primary; a timeout of ~49 days means it never silently falls back to async.
        line("rpl-semi-sync-slave-enabled", &"ON");
        line("rpl-semi-sync-master-wait-point", &"AFTER_SYNC");
        line("rpl-semi-sync-master-timeout", &4_294_967_295u64);
        line("rpl-semi-sync-master-wait-no-slave", &"ON");
        // A silent primary makes replicas reconnect after 4 s (heartbeats come every second).
        line("slave-net-timeout", &4);
        if self.role == Role::Replica {
            // A crashed replica discards its relay log and refetches from its GTID position.
            line("relay-log-recovery", &"ON");
        }
        for group in ["client", "mariadb-backup"] {
            let _ = writeln!(s, "\n[{group}]");
            let _ = writeln!(s, "user = {}", self.admin_user);
            let _ = writeln!(s, "password = {}", self.admin_password);
            let _ = writeln!(s, "socket = {}", self.socket.display());
        }
        s
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
        }
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
    fn primary_has_no_relay_log_recovery_and_root_runs_as_root() {
        let mut c = config(Role::Primary);
        c.run_as_root = true;
        let text = c.render();
        assert!(!text.contains("relay-log-recovery"));
        assert!(text.contains("user = root"));
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
