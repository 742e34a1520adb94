//! Every SQL statement myset sends, in MariaDB's dialect.

use myset_api::{Address, Secrets};

/// Quotes a string as an SQL literal.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Privileges of the account handed to users: everything an application or a DBA doing schema
/// work needs, but not READ ONLY ADMIN or SUPER (which would let it write through `read_only`),
/// nor the replication, connection and shutdown controls myset itself relies on.
pub const USER_PRIVILEGES: &str = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, \
    INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, CREATE VIEW, SHOW VIEW, \
    CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, PROCESS, SHOW DATABASES, CREATE USER, \
    SLAVE MONITOR, BINLOG MONITOR, DELETE HISTORY";

/// Run once on the first primary, over its socket, before it ever listens on TCP.
///
/// Creates myset's three accounts and removes every other login account, which covers the
/// empty-password roots and anonymous users that `mariadb-install-db` creates, and the PUBLIC
/// grants on `test` / `test\_%`. Not written to the binlog: clones copy the grant tables.
pub fn bootstrap(secrets: &Secrets) -> Vec<String> {
    let account = |user: &str| format!("{}@'%'", literal(user));
    vec![
        "SET SESSION sql_log_bin = 0".into(),
        format!(
            "CREATE USER {} IDENTIFIED BY {}",
            account(&secrets.admin_user),
            literal(&secrets.admin_password)
        ),
        format!(
            "GRANT ALL PRIVILEGES ON *.* TO {} WITH GRANT OPTION",
            account(&secrets.admin_user)
        ),
        format!(
            "CREATE USER {} IDENTIFIED BY {}",
            account(&secrets.repl_user),
            literal(&secrets.repl_password)
        ),
        format!(
            "GRANT REPLICATION SLAVE ON *.* TO {}",
            account(&secrets.repl_user)
        ),
        format!(
            "CREATE USER {} IDENTIFIED BY {}",
            account(&secrets.user),
            literal(&secrets.user_password)
        ),
        format!(
            "GRANT {USER_PRIVILEGES} ON *.* TO {} WITH GRANT OPTION",
            account(&secrets.user)
        ),
        "DELETE FROM mysql.db WHERE Db IN ('test', 'test\\\\_%')".into(),
        "DROP DATABASE IF EXISTS test".into(),
    ]
}

/// Lists the accounts `bootstrap` must drop: everyone but myset's and MariaDB's own.
pub fn foreign_accounts(secrets: &Secrets) -> String {
    format!(
        "SELECT User, Host FROM mysql.user WHERE User NOT IN ({}, {}, {}, 'mariadb.sys')",
        literal(&secrets.admin_user),
        literal(&secrets.repl_user),
        literal(&secrets.user)
    )
}

pub fn drop_account(user: &str, host: &str) -> String {
    format!("DROP USER {}@{}", literal(user), literal(host))
}

pub const FLUSH_PRIVILEGES: &str = "FLUSH PRIVILEGES";

/// Local admin work on a replica must not be binlogged: it would become an errant GTID.
pub const NO_BINLOG: &str = "SET SESSION sql_log_bin = 0";

pub const SET_READ_ONLY: &str = "SET GLOBAL read_only = 1";
pub const SET_READ_WRITE: &str = "SET GLOBAL read_only = 0";
pub const STOP_REPLICA: &str = "STOP SLAVE";
pub const START_REPLICA: &str = "START SLAVE";
pub const RESET_REPLICA: &str = "RESET SLAVE ALL";
pub const REPLICA_STATUS: &str = "SHOW SLAVE STATUS";
pub const GTID_POSITIONS: &str =
    "SELECT @@GLOBAL.gtid_current_pos, @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos, @@GLOBAL.read_only";

pub const STOP_RECEIVING: &str = "STOP SLAVE IO_THREAD";
pub const SEMISYNC_STATE: &str = "SELECT @@GLOBAL.rpl_semi_sync_master_enabled";

/// Whether commits on this server wait for a replica's acknowledgement (primary side only).
pub fn set_semisync(enabled: bool) -> String {
    format!(
        "SET GLOBAL rpl_semi_sync_master_enabled = {}",
        if enabled { "ON" } else { "OFF" }
    )
}

/// The ids of the sessions of `user`, to cut them when the server stops taking writes.
pub fn sessions_of(user: &str) -> String {
    format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = {} AND ID <> CONNECTION_ID()",
        literal(user)
    )
}

pub fn kill_session(id: &str) -> String {
    format!("KILL CONNECTION {}", id.parse::<u64>().unwrap_or(0))
}

/// Points a replica at `primary`, resuming from its own GTID position (`current_pos`, so a
/// former primary resumes after its own last transaction).
pub fn change_primary(primary: &Address, secrets: &Secrets) -> String {
    format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, \
         MASTER_PASSWORD = {}, MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1, \
         MASTER_HEARTBEAT_PERIOD = 1",
        literal(&primary.host),
        primary.port,
        literal(&secrets.repl_user),
        literal(&secrets.repl_password)
    )
}

/// Sets where a freshly cloned replica starts replicating (the clone's GTID position).
pub fn set_replica_position(gtid: &str) -> String {
    format!("SET GLOBAL gtid_slave_pos = {}", literal(gtid))
}

/// Reads the GTID of a prepared clone from mariadb-backup's `xtrabackup_binlog_info`
/// (`file<TAB>position<TAB>gtid`). An empty or absent GTID means the donor had written nothing.
pub fn clone_gtid(binlog_info: &str) -> String {
    binlog_info
        .lines()
        .next()
        .and_then(|l| l.split('\t').nth(2))
        .map(|g| g.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn user_privileges_cannot_override_read_only() {
        assert!(!USER_PRIVILEGES.contains("READ ONLY ADMIN"));
        assert!(!USER_PRIVILEGES.contains("SUPER"));
        assert!(!USER_PRIVILEGES.contains("ALL"));
    }

    #[test]
    fn clone_gtid_reads_the_third_field() {
        assert_eq!(clone_gtid("mysql-bin.000002\t1234\t0-100-7\n"), "0-100-7");
        assert_eq!(
            clone_gtid("mysql-bin.000002\t1234\t0-100-7,1-101-3"),
            "0-100-7,1-101-3"
        );
        assert_eq!(clone_gtid("mysql-bin.000001\t329\n"), "");
        assert_eq!(clone_gtid(""), "");
    }
}
