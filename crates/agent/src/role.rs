//! Converging a running server's replication and read-only state to the spec.

use crate::state::Shared;
use myset_api::Role;
use myset_mariadb::client::Target;
use myset_mariadb::{sql, AdminClient, ClientError};
use std::time::Duration;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn admin(shared: &Shared) -> anyhow::Result<AdminClient> {
    let spec = shared.spec();
    let s = &shared.secrets;
    let target = Target::Tcp {
        host: &spec.server.host,
        port: spec.server.port,
    };
    Ok(AdminClient::connect(target, &s.admin_user, &s.admin_password, ADMIN_TIMEOUT).await?)
}

/// Idempotent: does nothing when the server already matches the spec.
pub async fn converge(shared: &Shared) -> anyhow::Result<()> {
    let spec = shared.spec();
    let mut c = admin(shared).await?;
    // Nothing this session does may reach the binlog: on a replica it would be an errant GTID.
    c.exec(sql::NO_BINLOG).await?;
    let (_, read_only) = c.positions().await?;
    let replication = c.replication().await?;
    let fencing = shared.fencing();
    let semisync = c.scalar(sql::SEMISYNC_STATE).await?.as_deref() == Some("1");
    match spec.role {
        Role::Primary => {
            if replication.is_some() {
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(sql::RESET_REPLICA).await?;
            }
            if fencing.self_fenced.is_some() {
                if !read_only || semisync {
                    stop_writes(shared, &mut c).await?;
                }
                c.disconnect().await;
                return Ok(());
            }
            if semisync != spec.semisync {
                c.exec(&sql::set_semisync(spec.semisync)).await?;
            }
            if read_only {
                c.exec(sql::SET_READ_WRITE).await?;
                tracing::info!(
                    term = spec.term,
                    "writes enabled: this instance is the primary"
                );
            }
        }
        Role::Replica => {
            if !read_only || semisync {
                stop_writes(shared, &mut c).await?;
            }
            if fencing.fence_term > spec.term {
                // Fenced for a change of primary: receive nothing until the new spec arrives.
                c.disconnect().await;
                return Ok(());
            }
            let Some(primary) = &spec.primary else {
                // Held: a former primary waits for the controller to check its data.
                if replication.is_some() {
                    c.exec(sql::STOP_REPLICA).await?;
                }
                c.disconnect().await;
                return Ok(());
            };
            let marker = shared.layout.clone_marker();
            if let Ok(gtid) = std::fs::read_to_string(&marker) {
                // First start after a clone: replicate from the clone's position.
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(&sql::set_replica_position(gtid.trim())).await?;
                c.exec(&sql::change_primary(primary, &shared.secrets))
                    .await?;
                c.exec(sql::START_REPLICA).await?;
                std::fs::remove_file(&marker)?;
                tracing::info!(gtid = gtid.trim(), %primary, "replicating from the clone's position");
            } else if replication.as_ref().map(|r| r.source.as_str())
                != Some(primary.to_string().as_str())
            {
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(&sql::change_primary(primary, &shared.secrets))
                    .await?;
                c.exec(sql::START_REPLICA).await?;
                tracing::info!(%primary, "replicating from the primary");
            } else if let Some(r) = replication {
                // START SLAVE starts whichever thread is stopped: after a restart (both) or
                // after a fence was lifted (IO only).
                // A connection error (for example from a fence or a restarting primary) is
                // retried; an applier error needs a human and is left for status to show.
                if (!r.io_running || !r.sql_running) && r.sql_error.is_none() {
                    c.exec(sql::START_REPLICA).await?;
                }
            }
        }
    }
    c.disconnect().await;
    Ok(())
}

/// Makes the server refuse writes from every account myset hands out. The user sessions are cut
/// first, so a commit released below acknowledges nobody; then semi-sync waiting is switched off
/// (on an isolated primary it would hold those commits, and SET read_only behind them, forever);
/// then read_only is set.
pub async fn stop_writes(shared: &Shared, c: &mut AdminClient) -> Result<(), ClientError> {
    cut_user_sessions(shared, c).await?;
    c.exec(&sql::set_semisync(false)).await?;
    c.exec(sql::SET_READ_ONLY).await
}

/// Cuts the sessions of the account handed to users, so clients reconnect through rw.
pub async fn cut_user_sessions(shared: &Shared, c: &mut AdminClient) -> Result<(), ClientError> {
    for row in c.text_rows(&sql::sessions_of(&shared.secrets.user)).await? {
        if let Some(Some(id)) = row.into_iter().next() {
            let _ = c.exec(&sql::kill_session(&id)).await;
        }
    }
    Ok(())
}
