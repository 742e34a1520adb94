//! Every SQL statement myset sends, in MariaDB's dialect.

use myset_api::{Address, Secrets};
use std::path::Path;

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
    let mut statements = accounts(secrets, "CREATE USER");
    statements.extend([
        "DELETE FROM mysql.db WHERE Db IN ('test', 'test\\\\_%')".into(),
        "DROP DATABASE IF EXISTS test".into(),
    ]);
    statements
}

/// Run on a restored data dir, over its socket, before it ever listens on TCP: myset's three
/// accounts get the new cluster's credentials (the backup holds the old cluster's). The
/// users' own accounts and databases are the restored data and stay as they are.
pub fn restored_accounts(secrets: &Secrets) -> Vec<String> {
    accounts(secrets, "CREATE OR REPLACE USER")
}

/// myset's three accounts, made with `create` (`CREATE USER` or `CREATE OR REPLACE USER`),
/// not written to the binlog.
fn accounts(secrets: &Secrets, create: &str) -> Vec<String> {
    let account = |user: &str| format!("{}@'%'", literal(user));
    vec![
        "SET SESSION sql_log_bin = 0".into(),
        format!(
            "{create} {} IDENTIFIED BY {}",
            account(&secrets.admin_user),
            literal(&secrets.admin_password)
        ),
        format!(
            "GRANT ALL PRIVILEGES ON *.* TO {} WITH GRANT OPTION",
            account(&secrets.admin_user)
        ),
        format!(
            "{create} {} IDENTIFIED BY {}",
            account(&secrets.repl_user),
            literal(&secrets.repl_password)
        ),
        format!(
            "GRANT REPLICATION SLAVE ON *.* TO {}",
            account(&secrets.repl_user)
        ),
        format!(
            "{create} {} IDENTIFIED BY {}",
            account(&secrets.user),
            literal(&secrets.user_password)
        ),
        format!(
            "GRANT {USER_PRIVILEGES} ON *.* TO {} WITH GRANT OPTION",
            account(&secrets.user)
        ),
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
/// The server's version string, e.g. `10.11.6-MariaDB-0+deb12u1-log`.
pub const SERVER_VERSION: &str = "SELECT VERSION()";

/// Local admin work on a replica must not be binlogged: it would become an errant GTID.
pub const NO_BINLOG: &str = "SET SESSION sql_log_bin = 0";

pub const SET_READ_ONLY: &str = "SET GLOBAL read_only = 1";
pub const SET_READ_WRITE: &str = "SET GLOBAL read_only = 0";
pub const STOP_REPLICA: &str = "STOP SLAVE";
pub const START_REPLICA: &str = "START SLAVE";
pub const RESET_REPLICA: &str = "RESET SLAVE ALL";
/// Replication status, one row per connection; myset uses only the default connection
/// (`Connection_name` ''). Not `SHOW SLAVE STATUS`: on 10.11 that lacks
/// `Slave_received_heartbeats`, so an idle primary would look silent.
pub const REPLICA_STATUS: &str = "SHOW ALL SLAVES STATUS";

/// The columns of [`REPLICA_STATUS`] myset reads, pinned by a test against a real 10.11
/// server's output (`tests/fixtures/`).
pub mod replica_status {
    pub const CONNECTION_NAME: &str = "Connection_name";
    pub const MASTER_HOST: &str = "Master_Host";
    pub const MASTER_PORT: &str = "Master_Port";
    pub const IO_RUNNING: &str = "Slave_IO_Running";
    pub const SQL_RUNNING: &str = "Slave_SQL_Running";
    pub const SECONDS_BEHIND: &str = "Seconds_Behind_Master";
    pub const LAST_IO_ERROR: &str = "Last_IO_Error";
    pub const LAST_SQL_ERROR: &str = "Last_SQL_Error";
    /// The GTID position received from the primary (relay log included).
    pub const RECEIVED: &str = "Gtid_IO_Pos";
    pub const HEARTBEATS: &str = "Slave_received_heartbeats";

    /// Every column above.
    pub const ALL: [&str; 10] = [
        CONNECTION_NAME,
        MASTER_HOST,
        MASTER_PORT,
        IO_RUNNING,
        SQL_RUNNING,
        SECONDS_BEHIND,
        LAST_IO_ERROR,
        LAST_SQL_ERROR,
        RECEIVED,
        HEARTBEATS,
    ];
}
pub const GTID_POSITIONS: &str =
    "SELECT @@GLOBAL.gtid_current_pos, @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos, @@GLOBAL.read_only";

pub const STOP_RECEIVING: &str = "STOP SLAVE IO_THREAD";
pub const START_RECEIVING: &str = "START SLAVE IO_THREAD";
/// The primary side of semi-sync in one row: whether commits wait for an acknowledgement
/// (0/1), how many replicas are connected as acknowledgers, and how many sessions are waiting
/// for one right now. A status subquery is NULL when the server lacks that variable.
pub const SEMISYNC_STATE: &str = "SELECT @@GLOBAL.rpl_semi_sync_master_enabled, \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
     WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
     WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_WAIT_SESSIONS')";

/// A Galera member's state: wsrep_local_state, wsrep_cluster_status, wsrep_cluster_size,
/// wsrep_last_committed, wsrep_cluster_state_uuid, wsrep_cluster_conf_id.
pub const GALERA_STATE: &str = "SELECT \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATUS'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LAST_COMMITTED'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_STATE_UUID'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_CONF_ID')";

/// Whether a running Galera member still takes part: wsrep_local_state, wsrep_cluster_size,
/// wsrep_evs_state (absent, NULL here, once its group communication is closed) and whether it
/// was asked to desync (`wsrep_desync`, 0 or 1).
pub const GALERA_LINK: &str = "SELECT \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_LOCAL_STATE'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_CLUSTER_SIZE'), \
    (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'WSREP_EVS_STATE'), \
    @@global.wsrep_desync";

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

/// Makes the server read its certificate files again, for new connections.
pub const FLUSH_SSL: &str = "FLUSH SSL";

/// Makes a Galera member's group communication read its certificate files again.
pub const GALERA_SSL_RELOAD: &str = "SET GLOBAL wsrep_provider_options = 'socket.ssl_reload=1'";

pub fn kill_session(id: u64) -> String {
    format!("KILL CONNECTION {id}")
}

/// Points a replica at `primary`, resuming from its own GTID position (`current_pos`, so a
/// former primary resumes after its own last transaction). With `tls_ca`, the replica connects
/// over TLS and verifies the primary's certificate and name by that CA file.
pub fn change_primary(primary: &Address, secrets: &Secrets, tls_ca: Option<&Path>) -> String {
    let tls = match tls_ca {
        Some(ca) => format!(
            "MASTER_SSL = 1, MASTER_SSL_CA = {}, MASTER_SSL_VERIFY_SERVER_CERT = 1",
            literal(&ca.to_string_lossy())
        ),
        None => "MASTER_SSL = 0, MASTER_SSL_VERIFY_SERVER_CERT = 0".to_string(),
    };
    format!(
        "CHANGE MASTER TO MASTER_HOST = {}, MASTER_PORT = {}, MASTER_USER = {}, \
         MASTER_PASSWORD = {}, MASTER_USE_GTID = current_pos, MASTER_CONNECT_RETRY = 1, \
         MASTER_HEARTBEAT_PERIOD = 1, {tls}",
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
/// (`file<TAB>position<TAB>gtid`). An empty or absent third field means the donor had written
/// nothing. None when the text is not of that form: the clone's position is then unknown, and
/// guessing it would replicate from the wrong place.
pub fn clone_gtid(binlog_info: &str) -> Option<String> {
    let line = binlog_info.lines().next()?;
    let mut fields = line.split('\t');
    fields.next().filter(|file| !file.trim().is_empty())?;
    fields.next()?.trim().parse::<u64>().ok()?;
    let gtid = fields.next().map(str::trim).unwrap_or("");
    if fields.next().is_some() {
        return None;
    }
    Some(gtid.to_string())
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
        let gtid = |info: &str| clone_gtid(info);
        assert_eq!(
            gtid("mysql-bin.000002\t1234\t0-100-7\n").as_deref(),
            Some("0-100-7")
        );
        assert_eq!(
            gtid("mysql-bin.000002\t1234\t0-100-7,1-101-3").as_deref(),
            Some("0-100-7,1-101-3")
        );
        assert_eq!(gtid("mysql-bin.000001\t329\n").as_deref(), Some(""));
        assert_eq!(gtid("mysql-bin.000001\t329\t\n").as_deref(), Some(""));
    }

    #[test]
    fn clone_gtid_refuses_what_is_not_a_binlog_info() {
        for garbled in [
            "",
            "\n",
            "mysql-bin.000001",
            "mysql-bin.000001\tx\t0-1-2",
            "\t329\t0-1-2",
        ] {
            assert_eq!(clone_gtid(garbled), None, "{garbled:?}");
        }
    }

    #[test]
    fn replica_status_reads_every_column_once() {
        let mut names = replica_status::ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), replica_status::ALL.len());
    }
}
