//! A small admin client over mysql_async, with a deadline on every call so a hung server can
//! never block its caller.

use crate::sql;
use myset_api::{GtidPositions, ReplicationStatus};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Sql(#[from] mysql_async::Error),
    /// The server answered, but not in the shape myset relies on (a column or row missing, a
    /// value that does not parse): reading on would act on a guess.
    #[error("unexpected answer to {statement:?}: {problem}")]
    Unexpected {
        statement: &'static str,
        problem: String,
    },
}

/// Why a server just started never took a connection.
#[derive(Debug, thiserror::Error)]
pub enum StartingServerError {
    #[error("mariadbd exited with {0}")]
    Exited(std::process::ExitStatus),
    #[error("mariadbd never answered: {0}")]
    NeverAnswered(ClientError),
    #[error("cannot watch mariadbd: {0}")]
    Io(#[from] std::io::Error),
}

/// How often a starting server's socket is tried. A refused connection on a local socket costs
/// nothing, and a new cluster's first server is on the path of `myset up`.
const STARTING_SERVER_POLL: Duration = Duration::from_millis(20);

/// Connects as `root` without a password over `socket` to `server`, a mariadbd this process
/// just started on its socket only (before its accounts exist, or with grants skipped):
/// retried until it answers, exits, or `limit` passes.
pub async fn connect_starting_server(
    server: &mut tokio::process::Child,
    socket: &Path,
    limit: Duration,
) -> Result<AdminClient, StartingServerError> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = server.try_wait()? {
            return Err(StartingServerError::Exited(status));
        }
        match AdminClient::connect(Target::Socket(socket), "root", "", Duration::from_secs(5)).await
        {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() > deadline => {
                return Err(StartingServerError::NeverAnswered(e))
            }
            Err(_) => tokio::time::sleep(STARTING_SERVER_POLL).await,
        }
    }
}

/// The primary side of semi-synchronous replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SemisyncState {
    /// Commits wait for a replica's acknowledgement.
    pub enabled: bool,
    /// Replicas connected as acknowledgers.
    pub clients: u32,
    /// Sessions waiting for an acknowledgement right now.
    pub waiting_sessions: u32,
}

/// A connection used for administration, every operation bounded by `timeout`.
pub struct AdminClient {
    conn: Conn,
    timeout: Duration,
}

/// What one statement gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementResult {
    /// A result set, as text.
    Rows(Vec<Vec<Option<String>>>),
    /// No result set: the rows it inserted, changed or deleted.
    Affected(u64),
}

/// Where and as whom to connect.
pub enum Target<'a> {
    /// Over TCP; with `ca`, over TLS, the server verified by that CA's certificate file.
    Tcp {
        host: &'a str,
        port: u16,
        ca: Option<&'a Path>,
    },
    Socket(&'a Path),
}

/// Options for a TCP connection to `host:port` as `user`. With `ca` (a CA certificate file),
/// the connection uses TLS and verifies the server's certificate and name by that CA alone.
/// Every TCP connection myset opens to a server is built here.
pub fn tcp_opts(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    ca: Option<&Path>,
) -> OptsBuilder {
    let opts = OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user.to_string()))
        .pass(Some(password.to_string()))
        // Otherwise mysql_async silently switches a loopback connection to the socket.
        .prefer_socket(false);
    match ca {
        Some(ca) => {
            myset_tls::install_crypto_provider();
            opts.ssl_opts(Some(
                mysql_async::SslOpts::default()
                    .with_root_certs(vec![ca.to_path_buf().into()])
                    .with_disable_built_in_roots(true),
            ))
        }
        None => opts,
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, ClientError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ClientError::Timeout(timeout)),
    }
}

impl AdminClient {
    pub async fn connect(
        target: Target<'_>,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let opts = match target {
            Target::Tcp { host, port, ca } => tcp_opts(host, port, user, password, ca),
            Target::Socket(path) => OptsBuilder::default()
                .user(Some(user))
                .pass(Some(password))
                .socket(Some(path.to_string_lossy())),
        };
        let conn = bounded(timeout, Conn::new(opts)).await?;
        Ok(AdminClient { conn, timeout })
    }

    pub async fn exec(&mut self, statement: &str) -> Result<(), ClientError> {
        bounded(self.timeout, self.conn.query_drop(statement)).await
    }

    pub async fn rows(&mut self, statement: &str) -> Result<Vec<Row>, ClientError> {
        bounded(self.timeout, self.conn.query(statement)).await
    }

    /// Runs `statement` (one or more, `;`-separated) and returns the rows of every result set
    /// as text, NULL as None, the way the `mariadb` client prints them.
    pub async fn text_rows(
        &mut self,
        statement: &str,
    ) -> Result<Vec<Vec<Option<String>>>, ClientError> {
        let timeout = self.timeout;
        let conn = &mut self.conn;
        bounded(timeout, async move {
            let mut result = conn.query_iter(statement).await?;
            let mut out = Vec::new();
            while !result.is_empty() {
                let rows: Vec<Row> = result.collect().await?;
                out.extend(rows.into_iter().map(row_text));
            }
            Ok(out)
        })
        .await
    }

    /// Runs `statement` (one or more, `;`-separated) and returns what each one gave: its rows
    /// as text (NULL as None), or, for a statement without a result set, the rows it affected.
    pub async fn results(&mut self, statement: &str) -> Result<Vec<StatementResult>, ClientError> {
        let timeout = self.timeout;
        let conn = &mut self.conn;
        bounded(timeout, async move {
            let mut result = conn.query_iter(statement).await?;
            let mut out = Vec::new();
            // `columns` is None once no result is pending; an empty list marks a statement
            // that returns no rows (an OK packet with its affected-rows count).
            while let Some(columns) = result.columns() {
                let affected = result.affected_rows();
                let rows: Vec<Row> = result.collect().await?;
                out.push(if columns.is_empty() {
                    StatementResult::Affected(affected)
                } else {
                    StatementResult::Rows(rows.into_iter().map(row_text).collect())
                });
            }
            Ok(out)
        })
        .await
    }

    pub async fn ping(&mut self) -> Result<(), ClientError> {
        bounded(self.timeout, self.conn.ping()).await
    }

    /// GTID positions and whether the server is read-only.
    pub async fn positions(&mut self) -> Result<(GtidPositions, bool), ClientError> {
        let row: Option<(String, String, String, i64)> =
            bounded(self.timeout, self.conn.query_first(sql::GTID_POSITIONS)).await?;
        let Some((current, binlog, slave, read_only)) = row else {
            return Err(ClientError::Unexpected {
                statement: sql::GTID_POSITIONS,
                problem: "no row".into(),
            });
        };
        Ok((
            GtidPositions {
                current,
                binlog,
                slave,
            },
            read_only != 0,
        ))
    }

    /// The default connection's replication threads, or None when the server is not
    /// configured as a replica.
    pub async fn replication(&mut self) -> Result<Option<ReplicationStatus>, ClientError> {
        let timeout = self.timeout;
        let conn = &mut self.conn;
        let rows: Vec<Row> = bounded(timeout, conn.query(sql::REPLICA_STATUS)).await?;
        for row in rows {
            let columns = named_text(row);
            let column = |name: &str| {
                columns
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            let unexpected = |problem| ClientError::Unexpected {
                statement: sql::REPLICA_STATUS,
                problem,
            };
            let name = column(sql::replica_status::CONNECTION_NAME)
                .ok_or_else(|| unexpected("no Connection_name column".into()))?;
            if name.as_deref() == Some("") {
                return parse_replica_status(column).map(Some).map_err(unexpected);
            }
        }
        Ok(None)
    }

    /// Semi-sync on the primary side; bounded like every call.
    pub async fn semisync(&mut self) -> Result<SemisyncState, ClientError> {
        self.parsed_row(sql::SEMISYNC_STATE, parse_semisync).await
    }

    /// A Galera member's wsrep state.
    pub async fn galera(&mut self) -> Result<myset_api::GaleraStatus, ClientError> {
        self.parsed_row(sql::GALERA_STATE, parse_galera).await
    }

    /// How this running Galera member takes part in its cluster (see [`galera_link_of`]).
    pub async fn galera_link(&mut self) -> Result<GaleraLink, ClientError> {
        self.parsed_row(sql::GALERA_LINK, galera_link_of).await
    }

    /// The first row of `statement` (empty when there is none), read by `parse`.
    async fn parsed_row<T>(
        &mut self,
        statement: &'static str,
        parse: impl FnOnce(&[Option<String>]) -> Result<T, String>,
    ) -> Result<T, ClientError> {
        let row = self
            .text_rows(statement)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        parse(&row).map_err(|problem| ClientError::Unexpected { statement, problem })
    }

    /// One scalar value of the first row, as text.
    pub async fn scalar(&mut self, statement: &str) -> Result<Option<String>, ClientError> {
        Ok(self
            .text_rows(statement)
            .await?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next().flatten()))
    }

    pub async fn disconnect(self) {
        let _ = tokio::time::timeout(self.timeout, self.conn.disconnect()).await;
    }
}

/// Reads one row of [`sql::REPLICA_STATUS`]. `column` looks a column up by name: None when the
/// server's output has no such column, `Some(None)` for NULL. A missing column is an error,
/// never a default: a column read as 0 because it does not exist is how a replica once counted
/// no heartbeats from a live primary.
pub fn parse_replica_status(
    column: impl Fn(&str) -> Option<Option<String>>,
) -> Result<ReplicationStatus, String> {
    use sql::replica_status as col;
    let nullable = |name: &str| column(name).ok_or_else(|| format!("no {name} column"));
    let text = |name: &str| nullable(name)?.ok_or_else(|| format!("{name} is NULL"));
    let number = |name: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| format!("{name} is {value:?}, not a number"))
    };
    let error = |name: &str| -> Result<Option<String>, String> {
        Ok(nullable(name)?.filter(|e| !e.is_empty()))
    };
    let port = text(col::MASTER_PORT)?;
    number(col::MASTER_PORT, &port)?;
    let heartbeats = text(col::HEARTBEATS)?;
    let seconds_behind = match nullable(col::SECONDS_BEHIND)? {
        Some(s) => Some(number(col::SECONDS_BEHIND, &s)?),
        None => None,
    };
    let io_error = error(col::LAST_IO_ERROR)?;
    let sql_error = error(col::LAST_SQL_ERROR)?;
    Ok(ReplicationStatus {
        source: format!("{}:{port}", text(col::MASTER_HOST)?),
        received: text(col::RECEIVED)?,
        heartbeats: number(col::HEARTBEATS, &heartbeats)?,
        // Anything but "Yes" ("No", "Connecting", "Preparing") means not receiving/applying.
        io_running: text(col::IO_RUNNING)? == "Yes",
        sql_running: text(col::SQL_RUNNING)? == "Yes",
        seconds_behind,
        last_error: io_error.or(sql_error.clone()),
        sql_error,
    })
}

/// Reads the row of [`sql::SEMISYNC_STATE`].
pub fn parse_semisync(row: &[Option<String>]) -> Result<SemisyncState, String> {
    let [enabled, clients, waiting] = row else {
        return Err(format!("expected 3 values, got {}", row.len()));
    };
    let number = |what: &str, v: &Option<String>| -> Result<u32, String> {
        let v = v.as_deref().ok_or_else(|| format!("{what} is missing"))?;
        v.parse()
            .map_err(|_| format!("{what} is {v:?}, not a number"))
    };
    Ok(SemisyncState {
        enabled: number("rpl_semi_sync_master_enabled", enabled)? != 0,
        clients: number("Rpl_semi_sync_master_clients", clients)?,
        waiting_sessions: number("Rpl_semi_sync_master_wait_sessions", waiting)?,
    })
}

pub fn parse_galera(row: &[Option<String>]) -> Result<myset_api::GaleraStatus, String> {
    let [state, component, size, seqno, uuid, conf_id] = row else {
        return Err(format!("expected 6 values, got {}", row.len()));
    };
    let text = |what: &str, v: &Option<String>| -> Result<String, String> {
        v.clone()
            .ok_or_else(|| format!("{what} is missing (is wsrep on?)"))
    };
    let number = |what: &str, v: &Option<String>| -> Result<i64, String> {
        let v = text(what, v)?;
        v.parse()
            .map_err(|_| format!("{what} is {v:?}, not a number"))
    };
    Ok(myset_api::GaleraStatus {
        state: myset_api::WsrepState::from_code(number("wsrep_local_state", state)?.max(0) as u32),
        primary_component: text("wsrep_cluster_status", component)? == "Primary",
        cluster_size: number("wsrep_cluster_size", size)?.max(0) as u32,
        seqno: number("wsrep_last_committed", seqno)?,
        cluster_uuid: text("wsrep_cluster_state_uuid", uuid)?,
        conf_id: conf_id_of(&text("wsrep_cluster_conf_id", conf_id)?)?,
    })
}

/// How a running Galera member takes part in its cluster, as far as a restart could change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaleraLink {
    /// In a view, Primary or not: a member cut off from its peers keeps a non-Primary view of
    /// itself, with its group communication open, and rejoins when the network heals.
    InAView,
    /// In no view at all; such a member never joins again by itself. Two ways it shows:
    /// - its group communication is closed: no `wsrep_evs_state`. After "IST didn't contain
    ///   all write sets ... node restart required", mariadbd 10.11 keeps running like that,
    ///   still reporting the stale non-Primary view of its last moment (a size of 2, "joining");
    /// - wsrep reports it initializing with a cluster size of 0.
    OutsideAnyView,
    /// Donor/Desynced without having been asked to desync (`wsrep_desync` off): a donor, or a
    /// donor whose state transfer ended while its state did not (a known Galera fault: the
    /// member then refuses queries, 1047, until restarted). Only the absence of a running
    /// transfer script tells the second apart.
    Donor,
}

impl std::fmt::Display for GaleraLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GaleraLink::InAView => "in a view",
            GaleraLink::OutsideAnyView => "outside any Galera view",
            GaleraLink::Donor => "a donor",
        })
    }
}

/// `wsrep_local_state` of a Donor/Desynced member.
const DONOR_DESYNCED: i64 = 2;

/// Reads a row of [`sql::GALERA_LINK`].
pub fn galera_link_of(row: &[Option<String>]) -> Result<GaleraLink, String> {
    let [state, size, evs_state, desync] = row else {
        return Err(format!("expected 4 values, got {}", row.len()));
    };
    let number = |what: &str, v: &Option<String>| -> Result<i64, String> {
        let v = v
            .as_deref()
            .ok_or_else(|| format!("{what} is missing (is wsrep on?)"))?;
        v.parse()
            .map_err(|_| format!("{what} is {v:?}, not a number"))
    };
    let state = number("wsrep_local_state", state)?;
    let size = number("wsrep_cluster_size", size)?;
    let desync_asked = number("wsrep_desync", desync)? != 0;
    Ok(if evs_state.is_none() || (size == 0 && state == 0) {
        GaleraLink::OutsideAnyView
    } else if state == DONOR_DESYNCED && !desync_asked {
        GaleraLink::Donor
    } else {
        GaleraLink::InAView
    })
}

/// `wsrep_cluster_conf_id`, which reads 18446744073709551615 (-1 as unsigned) outside any
/// component: no view, 0.
fn conf_id_of(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(u64::MAX) => Ok(0),
        Ok(n) => Ok(n),
        Err(_) if text == "-1" => Ok(0),
        Err(_) => Err(format!("wsrep_cluster_conf_id is {text:?}, not a number")),
    }
}

/// A row's values as text, each with its column name.
fn named_text(row: Row) -> Vec<(String, Option<String>)> {
    let names: Vec<String> = row
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    names.into_iter().zip(row_text(row)).collect()
}

fn row_text(row: Row) -> Vec<Option<String>> {
    row.unwrap().into_iter().map(value_text).collect()
}

fn value_text(v: mysql_async::Value) -> Option<String> {
    use mysql_async::Value;
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const CONNECTED: &str = include_str!("../tests/fixtures/show_all_slaves_status_10.11.txt");
    const PRIMARY_GONE: &str =
        include_str!("../tests/fixtures/show_all_slaves_status_primary_gone_10.11.txt");

    /// The first row of the `mariadb` client's vertical (`\G`) output, NULL as None.
    fn vertical_row(output: &str) -> BTreeMap<String, Option<String>> {
        output
            .lines()
            .filter(|l| !l.starts_with('#'))
            .skip_while(|l| !l.contains(". row ***"))
            .skip(1)
            .take_while(|l| !l.contains(". row ***"))
            .map(|l| {
                let (name, value) = l.trim_start().split_once(':').expect("name: value");
                let value = value.strip_prefix(' ').unwrap_or(value);
                (
                    name.to_string(),
                    (value != "NULL").then(|| value.to_string()),
                )
            })
            .collect()
    }

    fn parse(row: &BTreeMap<String, Option<String>>) -> Result<ReplicationStatus, String> {
        parse_replica_status(|name| row.get(name).cloned())
    }

    #[test]
    fn a_galera_member_outside_any_view_is_told_from_one_cut_off_or_donating() {
        use GaleraLink::*;
        let row =
            |v: [Option<&str>; 4]| v.iter().map(|s| s.map(str::to_string)).collect::<Vec<_>>();
        // Synced in a Primary view of 3.
        assert_eq!(
            galera_link_of(&row([Some("4"), Some("3"), Some("OPERATIONAL"), Some("0")])),
            Ok(InAView)
        );
        // Cut off: a non-Primary view of itself, group communication open.
        assert_eq!(
            galera_link_of(&row([Some("1"), Some("1"), Some("GATHER"), Some("0")])),
            Ok(InAView)
        );
        // After a failed IST: the stale view of 2, group communication closed.
        assert_eq!(
            galera_link_of(&row([Some("1"), Some("2"), None, Some("0")])),
            Ok(OutsideAnyView)
        );
        // Initializing in no cluster.
        assert_eq!(
            galera_link_of(&row([Some("0"), Some("0"), Some("CLOSED"), Some("0")])),
            Ok(OutsideAnyView)
        );
        // Donor/Desynced: a donor, unless someone asked it to desync.
        assert_eq!(
            galera_link_of(&row([Some("2"), Some("3"), Some("OPERATIONAL"), Some("0")])),
            Ok(Donor)
        );
        assert_eq!(
            galera_link_of(&row([Some("2"), Some("3"), Some("OPERATIONAL"), Some("1")])),
            Ok(InAView)
        );
        // wsrep off: an error, never a verdict.
        assert!(galera_link_of(&row([None, None, None, None])).is_err());
        assert!(galera_link_of(&row([Some("4"), Some("x"), None, Some("0")])).is_err());
        assert!(galera_link_of(&[]).is_err());
    }

    #[test]
    fn galera_state_is_read_strictly() {
        let row = |v: [&str; 6]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        let g = parse_galera(&row([
            "4",
            "Primary",
            "3",
            "20",
            "ae55ea56-e63e-11f1-a8ff-abe18b21bcd3",
            "7",
        ]))
        .unwrap();
        assert_eq!(g.state, myset_api::WsrepState::Synced);
        assert!(g.primary_component);
        assert_eq!((g.cluster_size, g.seqno, g.conf_id), (3, 20, 7));
        let minority = parse_galera(&row(["1", "non-Primary", "1", "-1", "x", "-1"])).unwrap();
        assert_eq!(minority.state, myset_api::WsrepState::Joining);
        assert!(!minority.primary_component);
        assert_eq!(minority.conf_id, 0);
        // What mariadbd really reports outside any component.
        let outside = row(["0", "Disconnected", "0", "-1", "x", "18446744073709551615"]);
        assert_eq!(parse_galera(&outside).unwrap().conf_id, 0);
        assert!(
            parse_galera(&[None, None, None, None, None, None]).is_err(),
            "wsrep off"
        );
        assert!(parse_galera(&row(["synced", "Primary", "3", "1", "u", "1"])).is_err());
        assert!(
            parse_galera(&row(["4", "Primary", "3", "20", "u", "1"])[..5]).is_err(),
            "a row from an older query"
        );
    }

    #[test]
    fn a_real_10_11_server_has_every_column_myset_reads() {
        for fixture in [CONNECTED, PRIMARY_GONE] {
            let row = vertical_row(fixture);
            for name in sql::replica_status::ALL {
                assert!(row.contains_key(name), "no {name} in the fixture");
            }
        }
        let row = vertical_row(CONNECTED);
        assert_eq!(row["Connection_name"].as_deref(), Some(""));
    }

    #[test]
    fn a_replica_of_an_idle_primary_counts_its_heartbeats() {
        let r = parse(&vertical_row(CONNECTED)).unwrap();
        assert_eq!(
            r,
            ReplicationStatus {
                source: "127.0.0.1:38683".into(),
                received: "0-100-6".into(),
                heartbeats: 21,
                io_running: true,
                sql_running: true,
                seconds_behind: Some(0),
                last_error: None,
                sql_error: None,
            }
        );
    }

    #[test]
    fn a_replica_whose_primary_is_gone_shows_a_connection_error() {
        let r = parse(&vertical_row(PRIMARY_GONE)).unwrap();
        assert!(!r.io_running);
        assert!(r.sql_running);
        assert_eq!(r.seconds_behind, None);
        assert_eq!(r.heartbeats, 22);
        assert!(r.last_error.unwrap().contains("Connection refused"));
        assert_eq!(r.sql_error, None);
    }

    #[test]
    fn a_missing_or_garbled_column_is_an_error_not_a_default() {
        let mut row = vertical_row(CONNECTED);
        // What SHOW SLAVE STATUS returns on 10.11: no heartbeat count.
        row.remove("Slave_received_heartbeats");
        assert!(parse(&row)
            .unwrap_err()
            .contains("Slave_received_heartbeats"));
        let mut row = vertical_row(CONNECTED);
        row.insert("Seconds_Behind_Master".into(), Some("soon".into()));
        assert!(parse(&row).unwrap_err().contains("Seconds_Behind_Master"));
        let mut row = vertical_row(CONNECTED);
        row.insert("Gtid_IO_Pos".into(), None);
        assert!(parse(&row).unwrap_err().contains("Gtid_IO_Pos"));
    }

    #[test]
    fn semisync_state_is_read_strictly() {
        let row = |v: [&str; 3]| v.map(|s| Some(s.to_string())).to_vec();
        assert_eq!(
            parse_semisync(&row(["1", "2", "0"])).unwrap(),
            SemisyncState {
                enabled: true,
                clients: 2,
                waiting_sessions: 0
            }
        );
        assert!(parse_semisync(&row(["1", "x", "0"])).is_err());
        assert!(parse_semisync(&[Some("1".into()), None, Some("0".into())]).is_err());
        assert!(parse_semisync(&[]).is_err());
    }
}
