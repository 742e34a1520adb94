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
}

/// A connection used for administration, every operation bounded by `timeout`.
pub struct AdminClient {
    conn: Conn,
    timeout: Duration,
}

/// Where and as whom to connect.
pub enum Target<'a> {
    Tcp { host: &'a str, port: u16 },
    Socket(&'a Path),
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
        let base = OptsBuilder::default()
            .user(Some(user))
            .pass(Some(password))
            // Otherwise mysql_async silently switches a loopback connection to the socket.
            .prefer_socket(false);
        let opts = match target {
            Target::Tcp { host, port } => base.ip_or_hostname(host).tcp_port(port),
            Target::Socket(path) => base.socket(Some(path.to_string_lossy())),
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

    pub async fn ping(&mut self) -> Result<(), ClientError> {
        bounded(self.timeout, self.conn.ping()).await
    }

    /// GTID positions and whether the server is read-only.
    pub async fn positions(&mut self) -> Result<(GtidPositions, bool), ClientError> {
        let row: Option<(String, String, String, i64)> =
            bounded(self.timeout, self.conn.query_first(sql::GTID_POSITIONS)).await?;
        let (current, binlog, slave, read_only) = row.unwrap_or_default();
        Ok((
            GtidPositions {
                current,
                binlog,
                slave,
            },
            read_only != 0,
        ))
    }

    /// The replication threads, or None when the server is not configured as a replica.
    pub async fn replication(&mut self) -> Result<Option<ReplicationStatus>, ClientError> {
        let rows = self.rows(sql::REPLICA_STATUS).await?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let text = |name: &str| -> Option<String> {
            row.get_opt::<Option<String>, _>(name)
                .and_then(|r| r.ok())
                .flatten()
        };
        let io = text("Slave_IO_Running").unwrap_or_default();
        let sql_thread = text("Slave_SQL_Running").unwrap_or_default();
        let last_error = [text("Last_IO_Error"), text("Last_SQL_Error")]
            .into_iter()
            .flatten()
            .find(|e| !e.is_empty());
        let source = format!(
            "{}:{}",
            text("Master_Host").unwrap_or_default(),
            text("Master_Port").unwrap_or_default()
        );
        Ok(Some(ReplicationStatus {
            source,
            received: text("Gtid_IO_Pos").unwrap_or_default(),
            heartbeats: text("Slave_received_heartbeats")
                .and_then(|h| h.parse().ok())
                .unwrap_or_default(),
            io_running: io == "Yes",
            sql_running: sql_thread == "Yes",
            seconds_behind: text("Seconds_Behind_Master").and_then(|s| s.parse().ok()),
            last_error,
            sql_error: text("Last_SQL_Error").filter(|e| !e.is_empty()),
        }))
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
