//! `backup`, `backup verify`, `backups` and `restore`.

use crate::args::{BackupSource, Output, RestoreArgs};
use crate::commands::start_and_wait;
use anyhow::{bail, Context};
use myset_api::ClusterState;
use myset_backup::base::Manifest;
use myset_backup::restore::{self, Catalog, RestoreTarget};
use myset_backup::{Store, StoreUrl};
use myset_local::layout::{backup_store_url, default_backup_store, restore_scratch};
use myset_local::{ClusterDir, ControllerInfo};
use std::path::Path;
use std::time::Duration;

/// Inside a new cluster's dir while a restore builds it; its presence without a cluster record
/// marks a restore that was interrupted.
const RESTORE_STAGING: &str = "restore-staging";

/// How long `myset backup` waits for the controller to store and check a base backup.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);

/// The store of a cluster (by its record, or its default place once it is destroyed) or the
/// one named by `--from`.
fn store_of(state_dir: &Path, source: &BackupSource) -> anyhow::Result<Store> {
    let url = match &source.from {
        Some(url) => StoreUrl::parse(url)?,
        None => cluster_store(state_dir, &source.cluster)?,
    };
    if let StoreUrl::Dir(path) = &url {
        if !path.is_dir() {
            bail!("backup store {} does not exist", path.display());
        }
    }
    // Reading needs no write access: the listing that follows is the access check.
    Store::open(&url)
}

fn cluster_store(state_dir: &Path, name: &str) -> anyhow::Result<StoreUrl> {
    myset_local::validate_name(name).map_err(|e| anyhow::anyhow!(e))?;
    let dir = ClusterDir::new(state_dir, name);
    if dir.state_file().exists() {
        return Ok(backup_store_url(state_dir, &dir.load_state()?)?);
    }
    let default = default_backup_store(state_dir, name);
    if default.is_dir() {
        return Ok(StoreUrl::Dir(default));
    }
    bail!(
        "no cluster {name} and no backups of it in {}; give --from URL for another store",
        default.display()
    )
}

/// `myset backup`: the controller takes it; this waits and prints its id.
pub async fn take(dir: &ClusterDir) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    if state.topology == myset_api::Topology::Galera {
        bail!("base backups of Galera clusters are not supported yet; see the README");
    }
    let Some(info) = ControllerInfo::find(dir) else {
        bail!(
            "cluster {} is not running: start it with `myset up --name {}`",
            dir.name(),
            dir.name()
        );
    };
    let client = crate::wait::api_client_with_timeout(dir, &info, BACKUP_TIMEOUT)?;
    let manifest: Manifest = client
        .call("/backups", &())
        .await
        .map_err(|e| crate::wait::controller_error(dir, e))?;
    say!("{}", manifest.id);
    eprintln!(
        "base backup {} of {} from {}: {} bytes, GTID {}, checked",
        manifest.id,
        dir.name(),
        state.instance_name(manifest.source_ordinal),
        manifest.stream.size,
        manifest.gtid
    );
    Ok(())
}

/// `myset backup verify ID`.
pub async fn verify(state_dir: &Path, source: &BackupSource, id: &str) -> anyhow::Result<()> {
    let store = store_of(state_dir, source)?;
    let scratch = restore_scratch(state_dir);
    std::fs::create_dir_all(&scratch)?;
    let binaries = myset_mariadb::Binaries::find()?;
    let manifest = myset_backup::base::verify(&store, id, &scratch, &binaries).await?;
    say!(
        "backup {} is sound: {} bytes, SHA-256 matches, extracts and prepares, GTID {}",
        manifest.id,
        manifest.stream.size,
        manifest.gtid
    );
    Ok(())
}

/// `myset backups`.
pub async fn list(state_dir: &Path, source: &BackupSource, output: Output) -> anyhow::Result<()> {
    let store = store_of(state_dir, source)?;
    let catalog = Catalog::load(&store).await?;
    let window = catalog.window();
    match output {
        Output::Json => {
            let json = serde_json::json!({
                "store": store.url().to_string(),
                "backups": catalog.backups,
                "broken": catalog.broken.iter().map(|(id, why)| serde_json::json!({"id": id, "error": why})).collect::<Vec<_>>(),
                "archive_segments": catalog.segments.len(),
                "window": window.map(|w| serde_json::json!({
                    "from": restore::rfc3339(w.from_time),
                    "to": restore::rfc3339(w.to_time),
                    "from_gtid_seq": w.from_seq,
                    "to_gtid_seq": w.to_seq,
                    "domain": w.domain,
                })),
            });
            say!("{}", serde_json::to_string_pretty(&json)?);
        }
        Output::Table => {
            say!("store {}", store.url());
            say!(
                "{:<22} {:<21} {:>14}  {:<8} GTID",
                "ID",
                "FINISHED",
                "BYTES",
                "SOURCE"
            );
            for b in &catalog.backups {
                say!(
                    "{:<22} {:<21} {:>14}  {:<8} {}",
                    b.id,
                    restore::rfc3339(b.finished_at),
                    b.stream.size,
                    b.source_ordinal,
                    b.gtid
                );
            }
            for (id, why) in &catalog.broken {
                say!("{id:<22} BROKEN: {why}");
            }
            match window {
                Some(w) => say!("recoverable window: {w}"),
                None => say!("no base backup: nothing can be restored yet"),
            }
        }
    }
    Ok(())
}

/// `myset restore`: a new cluster from a store, Ready on return.
pub async fn restore(state_dir: &Path, args: &RestoreArgs) -> anyhow::Result<()> {
    myset_local::validate_name(&args.name).map_err(|e| anyhow::anyhow!(e))?;
    let target = RestoreTarget::parse(args.to_time.as_deref(), args.to_gtid.as_deref())?;
    let dir = ClusterDir::new(state_dir, &args.name);
    let staging = dir.root().join(RESTORE_STAGING);
    if dir.exists() && !dir.state_file().exists() && staging.exists() {
        // An earlier restore into this name was interrupted before the cluster existed.
        std::fs::remove_dir_all(dir.root()).with_context(|| {
            format!(
                "cannot remove {}, left by an interrupted restore",
                dir.root().display()
            )
        })?;
        say!(
            "removed what an interrupted restore into {} left",
            args.name
        );
    }
    if dir.exists() {
        bail!(
            "cluster {} exists already; restore into a new name (--name), or destroy it first",
            args.name
        );
    }
    crate::commands::check_ports_free(args.rw_port, args.ro_port)?;
    let binaries = myset_mariadb::Binaries::find()?;
    let source = BackupSource {
        cluster: args.from_cluster.clone().unwrap_or_default(),
        from: args.from.clone(),
    };
    let store = store_of(state_dir, &source)?;
    let catalog = Catalog::load(&store).await?;
    let plan = restore::plan(
        &catalog,
        &store.url().to_string(),
        target,
        myset_backup::base::now_unix(),
    )?;
    say!(
        "restoring base backup {} (GTID {}) and {} archive segments into cluster {}",
        plan.base.id,
        plan.base.gtid,
        plan.replay.segments.len(),
        args.name
    );

    let mut new_state = ClusterState::new(
        &args.name,
        args.replicas,
        crate::commands::BIND_HOST,
        args.rw_port,
        args.ro_port,
    );
    crate::commands::set_endpoints(&mut new_state, args.endpoints)?;
    let supplied_ca = crate::commands::new_cluster_tls(&mut new_state, &args.tls)?;
    // Everything is built before the cluster record exists: a failed restore leaves nothing.
    let built = async {
        let secrets = dir.prepare_new(&new_state.tls, supplied_ca.as_ref())?;
        std::fs::create_dir_all(&staging)?;
        let data = staging.join("data");
        let gtid = restore::build_data_dir(
            &store,
            &plan,
            &data,
            &staging,
            &binaries,
            &secrets,
            ClusterState::server_id(0),
        )
        .await?;
        let final_data = dir.data_dir(0);
        std::fs::create_dir_all(final_data.parent().expect("an instance dir"))?;
        std::fs::rename(&data, &final_data)?;
        let mut state = new_state.clone();
        // The restored history's writers are the new cluster's own: their GTIDs are not
        // errant on its replicas.
        state
            .primary_server_ids
            .extend(gtid.iter().map(|g| g.server));
        dir.save_state(&state)?;
        // Last: until the record exists, the staging dir marks an unfinished restore.
        std::fs::remove_dir_all(&staging)?;
        anyhow::Ok((state, gtid))
    }
    .await;
    let (state, gtid) = match built {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_dir_all(dir.root());
            return Err(e.context(format!(
                "restore into {} failed; nothing was kept",
                args.name
            )));
        }
    };
    say!(
        "restored data holds GTID {gtid}; starting cluster {}",
        args.name
    );
    start_and_wait(state_dir, &dir, &state, args.timeout)
        .await
        .context("the restored cluster did not come up")
}

/// `destroy --delete-backups`: the cluster's store, emptied. The default store's directory
/// goes too; a user's own S3 prefix is emptied, not removed.
pub async fn delete_store(state_dir: &Path, state: &ClusterState) -> anyhow::Result<String> {
    let url = backup_store_url(state_dir, state)?;
    let store = Store::open(&url)?;
    for object in store.list("").await? {
        store.delete(&object.key).await?;
    }
    if let StoreUrl::Dir(path) = &url {
        if *path == default_backup_store(state_dir, &state.name) {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    Ok(url.to_string())
}
