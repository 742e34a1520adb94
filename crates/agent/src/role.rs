//! Converging a running server's replication and read-only state to the spec.

use crate::layout::InstanceLayout;
use crate::state::{ServerOps, Shared};
use anyhow::Context;
use myset_api::Role;
use myset_core::GtidPos;
use myset_mariadb::client::{GaleraLink, Target};
use myset_mariadb::{sql, AdminClient, ClientError};
use std::path::Path;
use std::time::Duration;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn admin(shared: &Shared) -> anyhow::Result<AdminClient> {
    let spec = shared.spec();
    let host = shared.overrides.server_local_host(&spec);
    let s = &shared.secrets;
    let ca = shared.tls_ca();
    let target = Target::Tcp {
        host: &host,
        port: spec.server.port,
        ca: ca.as_deref(),
    };
    Ok(AdminClient::connect(target, &s.admin_user, &s.admin_password, ADMIN_TIMEOUT).await?)
}

/// How a running Galera member takes part in its cluster
/// ([`myset_mariadb::client::galera_link_of`]); None when it cannot be asked.
pub async fn galera_link(shared: &Shared) -> Option<GaleraLink> {
    let mut c = admin(shared).await.ok()?;
    let link = c.galera_link().await;
    c.disconnect().await;
    link.ok()
}

/// Idempotent: does nothing when the server already matches the spec.
pub async fn converge(shared: &Shared, ops: &ServerOps<'_>) -> anyhow::Result<()> {
    let mut c = admin(shared).await?;
    let result = converge_with(shared, ops, &mut c).await;
    c.disconnect().await;
    result
}

async fn converge_with(
    shared: &Shared,
    ops: &ServerOps<'_>,
    c: &mut AdminClient,
) -> anyhow::Result<()> {
    let spec = shared.spec();
    if spec.galera.is_some() {
        // Every Galera member is writable; wsrep replicates, nothing to configure.
        let (_, read_only) = c.positions().await?;
        if read_only {
            c.exec(sql::SET_READ_WRITE).await?;
        }
        return Ok(());
    }
    // Nothing this session does may reach the binlog: on a replica it would be an errant GTID.
    c.exec(sql::NO_BINLOG).await?;
    let (_, read_only) = c.positions().await?;
    let replication = c.replication().await?;
    let fencing = shared.fencing();
    let semisync = c.semisync().await?.enabled;
    match spec.role {
        Role::Primary => {
            if replication.is_some() {
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(sql::RESET_REPLICA).await?;
            }
            if fencing.self_fenced.is_some() {
                if !read_only || semisync {
                    stop_writes(shared, ops, c).await?;
                }
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
                stop_writes(shared, ops, c).await?;
            }
            if fencing.fence_term > spec.term {
                // Fenced for a change of primary: receive nothing until the new spec arrives.
                return Ok(());
            }
            let Some(primary) = &spec.primary else {
                // Held: a former primary waits for the controller to check its data.
                if replication.is_some() {
                    c.exec(sql::STOP_REPLICA).await?;
                }
                return Ok(());
            };
            let marker = shared.layout.clone_marker();
            if let Some(gtid) = read_clone_marker(&marker).await? {
                // First start after a clone: replicate from the clone's position.
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(&sql::set_replica_position(&gtid.to_string()))
                    .await?;
                c.exec(&sql::change_primary(
                    primary,
                    &shared.secrets,
                    shared.tls_ca().as_deref(),
                ))
                .await?;
                c.exec(sql::START_REPLICA).await?;
                tokio::fs::remove_file(&marker)
                    .await
                    .with_context(|| format!("cannot remove {}", marker.display()))?;
                tracing::info!(%gtid, %primary, "replicating from the clone's position");
            } else if replication.as_ref().map(|r| r.source.as_str())
                != Some(primary.to_string().as_str())
            {
                c.exec(sql::STOP_REPLICA).await?;
                c.exec(&sql::change_primary(
                    primary,
                    &shared.secrets,
                    shared.tls_ca().as_deref(),
                ))
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
    Ok(())
}

/// The GTID a fresh clone starts replicating from, or None when the data dir is not a clone
/// waiting for its first start (no marker). A marker that cannot be read or does not hold a
/// GTID position is an error: guessing would replicate from the wrong place.
pub async fn read_clone_marker(marker: &Path) -> anyhow::Result<Option<GtidPos>> {
    let datadir = marker.parent().unwrap_or(marker);
    let fix = || {
        format!(
            "write the GTID position from {} (its third field) into it, or remove {} so the \
             instance is cloned again",
            datadir.join("xtrabackup_binlog_info").display(),
            datadir.display()
        )
    };
    let bytes = match tokio::fs::read(marker).await {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!(
            "cannot read the clone marker {}: {e}; {}",
            marker.display(),
            fix()
        ),
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "the clone marker {} is not text; {}",
            marker.display(),
            fix()
        )
    })?;
    let gtid = GtidPos::parse(text.trim()).map_err(|e| {
        anyhow::anyhow!("the clone marker {} holds {e}; {}", marker.display(), fix())
    })?;
    Ok(Some(gtid))
}

/// Writes the marker of a clone being built in `datadir`.
pub async fn write_clone_marker(datadir: &Path, gtid: &GtidPos) -> std::io::Result<()> {
    crate::blocking::write_atomic(
        InstanceLayout::clone_marker_in(datadir),
        gtid.to_string().into_bytes(),
        0o600,
    )
    .await
}

/// Makes the server refuse writes from every account myset hands out. The user sessions are cut
/// first, so a commit released below acknowledges nobody; then semi-sync waiting is switched off
/// (on an isolated primary it would hold those commits, and SET read_only behind them, forever);
/// then read_only is set.
pub async fn stop_writes(
    shared: &Shared,
    _ops: &ServerOps<'_>,
    c: &mut AdminClient,
) -> Result<(), ClientError> {
    cut_user_sessions(shared, c).await?;
    c.exec(&sql::set_semisync(false)).await?;
    c.exec(sql::SET_READ_ONLY).await
}

/// Cuts the sessions of the account handed to users, so clients reconnect through rw.
async fn cut_user_sessions(shared: &Shared, c: &mut AdminClient) -> Result<(), ClientError> {
    for row in c.text_rows(&sql::sessions_of(&shared.secrets.user)).await? {
        let id = row.into_iter().next().flatten();
        match id.as_deref().map(str::parse::<u64>) {
            // A session may end by itself before it is killed.
            Some(Ok(id)) => {
                let _ = c.exec(&sql::kill_session(id)).await;
            }
            _ => tracing::warn!(?id, "PROCESSLIST gave a session id that is not a number"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_clone_marker_is_absent_valid_or_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let marker = InstanceLayout::clone_marker_in(dir.path());
        assert!(read_clone_marker(&marker).await.unwrap().is_none());

        let gtid = GtidPos::parse("0-100-7,1-101-3").unwrap();
        write_clone_marker(dir.path(), &gtid).await.unwrap();
        assert_eq!(read_clone_marker(&marker).await.unwrap(), Some(gtid));

        // A donor that had written nothing: an empty position, which is valid.
        std::fs::write(&marker, "\n").unwrap();
        assert_eq!(
            read_clone_marker(&marker).await.unwrap(),
            Some(GtidPos::default())
        );

        for garbled in [&b"0-100-x"[..], b"\xff\xfe", b"mysql-bin.000001\t329"] {
            std::fs::write(&marker, garbled).unwrap();
            let err = read_clone_marker(&marker).await.unwrap_err().to_string();
            assert!(err.contains(&marker.display().to_string()), "{err}");
            assert!(err.contains("cloned again"), "{err}");
        }

        // Unreadable: a directory where the file should be.
        std::fs::remove_file(&marker).unwrap();
        std::fs::create_dir(&marker).unwrap();
        let err = read_clone_marker(&marker).await.unwrap_err().to_string();
        assert!(err.contains("cannot read the clone marker"), "{err}");
    }
}
