//! One function per subcommand.

use crate::args::{
    BackupAction, BackupArgs, BackupInterval, Cli, Command, NameArg, OperatorCommand, Output,
    Switch, UpArgs,
};
use crate::{display, wait};
use anyhow::{bail, Context};
use myset_api::{ClusterState, ClusterStatus, ScaleRequest, SwitchoverRequest};
use myset_local::{ClusterDir, ControllerInfo};
use myset_mariadb::client::{StatementResult, Target};
use myset_mariadb::{AdminClient, ClientError};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

const DEFAULT_REPLICAS: u32 = 3;
const DEFAULT_RW_PORT: u16 = 13306;
const DEFAULT_RO_PORT: u16 = 13307;
pub(crate) const BIND_HOST: &str = "127.0.0.1";

/// `host_netns`: for an agent that entered a network namespace, the one it came from.
pub async fn run(cli: Cli, host_netns: Option<std::os::fd::OwnedFd>) -> anyhow::Result<()> {
    if let Command::Operator(command) = &cli.command {
        // No state dir: the operator keeps everything in the Kubernetes API.
        let mut command = command.clone();
        if let OperatorCommand::Run { namespace, .. } = &mut command {
            namespace.clone_from(&cli.namespace);
        }
        return crate::operator::run(&command).await;
    }
    if !cli.kube {
        if let Some(ns) = &cli.namespace {
            bail!("--namespace {ns} names a Kubernetes namespace: add --kube to work on a MySet there");
        }
    }
    // Daemons started by a local cluster are not concerned by --kube (or MYSET_KUBE).
    if cli.kube
        && !matches!(
            cli.command,
            Command::Agent { .. } | Command::Controller { .. }
        )
    {
        return crate::kube::run(cli).await;
    }
    if let Command::Completions { shell } = &cli.command {
        return crate::everyday::completions(*shell);
    }
    let state_dir = state_dir(cli.state_dir)?;
    match cli.command {
        Command::Up(args) => up(&state_dir, &args).await,
        Command::Chaos {
            name,
            faults,
            seed,
            topology,
            only,
            rw_port,
            ro_port,
            heal_timeout,
            interval,
            netns,
            report,
            keep_logs,
        } => {
            let name = NameArg { name };
            cluster(&state_dir, &name)?;
            check_ports_free(rw_port, ro_port)?;
            let options = myset_chaos::ChaosOptions {
                exe: std::env::current_exe()?,
                state_dir: state_dir.clone(),
                name: name.name,
                faults: faults as usize,
                seed: seed.unwrap_or_else(rand_seed),
                topology,
                only,
                netns,
                rw_port,
                ro_port,
                heal_timeout: Duration::from_secs(heal_timeout),
                interval: Duration::from_secs(interval),
                keep_logs,
            };
            crate::chaos::run(options, report).await
        }
        Command::RotateCerts { name } => rotate_certs(&cluster(&state_dir, &name)?).await,
        Command::Switchover { name, to } => switchover(&cluster(&state_dir, &name)?, to).await,
        Command::Config { action } => crate::settings::run(&state_dir, action).await,
        Command::Restart { name } => crate::settings::restart(&cluster(&state_dir, &name)?).await,
        Command::Status { name, output } => status(&cluster(&state_dir, &name)?, output).await,
        Command::Sql {
            name,
            target,
            execute,
            verbose,
            timeout,
        } => {
            let dir = cluster(&state_dir, &name)?;
            let statements = sql_text(execute).await?;
            let options = SqlOptions {
                timeout: Duration::from_secs(timeout),
                verbose,
            };
            sql(&dir, &target, &statements, options).await
        }
        Command::List { output } => crate::everyday::list(&state_dir, output).await,
        Command::Shell {
            name,
            target,
            client_args,
        } => crate::everyday::shell(&cluster(&state_dir, &name)?, &target, &client_args),
        Command::Logs {
            name,
            target,
            server,
            follow,
        } => crate::everyday::logs(&cluster(&state_dir, &name)?, &target, server, follow).await,
        Command::Completions { shell } => crate::everyday::completions(shell),
        Command::Scale {
            name,
            replicas,
            delete_data,
            timeout,
        } => scale(&cluster(&state_dir, &name)?, replicas, delete_data, timeout).await,
        Command::Kill { name, ordinal } => kill(&cluster(&state_dir, &name)?, ordinal),
        Command::Partition {
            name,
            ordinal,
            heal,
        } => partition(&cluster(&state_dir, &name)?, ordinal, heal),
        Command::Events {
            name,
            output,
            follow,
        } => {
            let dir = cluster(&state_dir, &name)?;
            dir.load_state()?;
            if follow {
                crate::everyday::follow_events(&dir, output).await
            } else {
                print_events(&dir.events(), output)
            }
        }
        Command::Down { name } => {
            let dir = cluster(&state_dir, &name)?;
            dir.load_state()?;
            down(&dir).await?;
            say!(
                "cluster {} stopped; its data is kept in {}",
                dir.name(),
                dir.root().display()
            );
            Ok(())
        }
        Command::Destroy {
            name,
            delete_backups,
            yes,
        } => {
            destroy(
                &state_dir,
                &cluster(&state_dir, &name)?,
                delete_backups,
                yes,
            )
            .await
        }
        Command::Backup { name, action } => match action {
            None => crate::backup::take(&cluster(&state_dir, &name)?).await,
            Some(BackupAction::Verify { id, source }) => {
                crate::backup::verify(&state_dir, &source, &id).await
            }
        },
        Command::Backups { source, output } => {
            crate::backup::list(&state_dir, &source, output).await
        }
        Command::Restore(args) => crate::backup::restore(&state_dir, &args).await,
        Command::Agent {
            instance_dir,
            secrets,
            cluster_dir,
            netns: _,
            listen,
            probe_listen,
            await_spec,
            cluster,
            ordinal,
            bind_host,
            server_options_dir,
            set_aside_data,
            tls_dir,
        } => {
            if let Some(root) = cluster_dir {
                keep_controller(root, &instance_dir, host_netns)?;
            }
            let identity = match (cluster, ordinal) {
                (Some(cluster), Some(ordinal)) => Some(myset_agent::Identity { cluster, ordinal }),
                _ => None,
            };
            myset_agent::run(myset_agent::AgentOptions {
                listen,
                probe_listen,
                await_spec,
                identity,
                bind_host,
                server_options_dir,
                set_aside_data,
                tls_dir,
                ..myset_agent::AgentOptions::local(instance_dir, secrets)
            })
            .await
        }
        Command::Operator(command) => crate::operator::run(&command).await,
        Command::Controller {
            name,
            cluster_dir,
            inherited_lock,
        } => {
            let dir = ClusterDir::new(&state_dir, &name.name);
            if dir.root() != cluster_dir {
                bail!(
                    "--cluster-dir {} does not match --state-dir and --name",
                    cluster_dir.display()
                );
            }
            myset_local::run_controller(dir, std::env::current_exe()?, inherited_lock).await
        }
    }
}

/// Starts the agent's watch over its cluster's controller (see `myset_local::keeper`).
/// `root` is `<state dir>/<name>`, as the controller passed it.
fn keep_controller(
    root: PathBuf,
    instance_dir: &std::path::Path,
    host_netns: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<()> {
    let (Some(state_dir), Some(name)) = (root.parent(), root.file_name().and_then(|n| n.to_str()))
    else {
        bail!("--cluster-dir {} is not <state dir>/<name>", root.display());
    };
    let who = instance_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    myset_local::Keeper {
        dir: ClusterDir::new(state_dir, name),
        exe: std::env::current_exe()?,
        state_dir: state_dir.to_path_buf(),
        netns: host_netns,
        who,
        policy: Default::default(),
    }
    .spawn()?;
    Ok(())
}

fn state_dir(flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = flag {
        if dir.as_os_str().is_empty() {
            bail!("--state-dir is empty: pass a directory path");
        }
        return Ok(std::path::absolute(dir)?);
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("myset"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
        "cannot pick a state dir: HOME is not set; pass --state-dir or set MYSET_STATE_DIR",
    )?;
    Ok(PathBuf::from(home).join(".local/state/myset"))
}

pub(crate) fn cluster(state_dir: &std::path::Path, name: &NameArg) -> anyhow::Result<ClusterDir> {
    myset_local::validate_name(&name.name).map_err(anyhow::Error::msg)?;
    Ok(ClusterDir::new(state_dir, &name.name))
}

async fn up(state_dir: &std::path::Path, args: &UpArgs) -> anyhow::Result<()> {
    let UpArgs {
        name,
        replicas,
        rw_port,
        ro_port,
        ha,
        topology,
        force_bootstrap,
        causal_reads,
        netns,
        endpoints,
        backup,
        tls,
        timeout,
    } = args.clone();
    let name = &name;
    let ha = &ha;
    let dir = cluster(state_dir, name)?;
    myset_mariadb::Binaries::find()?;
    let state = if dir.exists() {
        let mut state = dir.load_state()?;
        if let Some(info) = ControllerInfo::find(&dir) {
            let name = dir.name();
            match replicas.filter(|&r| r != state.replicas) {
                Some(r) => bail!(
                    "cluster {name} is already running with {} instance(s): change that with `myset scale --name {name} --replicas {r}`",
                    state.replicas
                ),
                None => bail!(
                    "cluster {name} is already running (controller pid {}): see `myset status --name {name}`",
                    info.pid
                ),
            }
        }
        if netns && state.netns.is_none() {
            bail!(
                "cluster {} was created without --netns; it cannot move into namespaces",
                dir.name()
            );
        }
        if let Some(ordinal) = force_bootstrap {
            if state.topology != myset_api::Topology::Galera {
                bail!(
                    "--force-bootstrap is for Galera clusters; cluster {} uses the {} topology",
                    dir.name(),
                    state.topology
                );
            }
            if !state.members.contains(&ordinal) {
                let members: Vec<String> = state.members.iter().map(u32::to_string).collect();
                bail!(
                    "--force-bootstrap {ordinal}: not a member of cluster {} (members: {})",
                    dir.name(),
                    members.join(", ")
                );
            }
            eprintln!(
                "warning: member {ordinal} will bootstrap the cluster; writes newer than its own on other members are lost"
            );
            state.galera_force_bootstrap = Some(ordinal);
        }
        if tls.tls.is_some_and(|t| t.is_on() != state.tls.enabled()) || tls.tls_ca.is_some() {
            bail!(
                "cluster {} was created with TLS {}; TLS is fixed at creation: drop --tls/--tls-ca, or create another cluster (--name)",
                dir.name(),
                state.tls.mode
            );
        }
        if topology.is_some_and(|t| t != state.topology) {
            bail!(
                "cluster {} uses the {} topology, which cannot change; create another cluster (--name) for {}",
                dir.name(),
                state.topology,
                topology.unwrap_or_default()
            );
        }
        state.replicas = replicas.unwrap_or(state.replicas);
        state.durability = ha.durability.unwrap_or(state.durability);
        state.failover_delay_ms = ha.failover_delay_ms().unwrap_or(state.failover_delay_ms);
        state.max_staleness_seconds = ha.max_read_staleness.unwrap_or(state.max_staleness_seconds);
        state.rw_port = rw_port.unwrap_or(state.rw_port);
        state.ro_port = ro_port.unwrap_or(state.ro_port);
        state.causal_reads = causal_reads.map_or(state.causal_reads, Switch::is_on);
        let mode = endpoints.unwrap_or(state.endpoints);
        set_endpoints(&mut state, mode)?;
        apply_backup_args(&mut state, &backup, false)?;
        check_topology(&state)?;
        check_ports(&dir, &state)?;
        dir.save_state(&state)?;
        state
    } else {
        let mut state = ClusterState::new(
            dir.name(),
            replicas.unwrap_or(DEFAULT_REPLICAS),
            BIND_HOST,
            rw_port.unwrap_or(DEFAULT_RW_PORT),
            ro_port.unwrap_or(DEFAULT_RO_PORT),
        );
        state.durability = ha.durability.unwrap_or_default();
        state.topology = topology.unwrap_or_default();
        state.causal_reads = causal_reads.is_some_and(Switch::is_on);
        set_endpoints(&mut state, endpoints.unwrap_or_default())?;
        if force_bootstrap.is_some() {
            bail!(
                "--force-bootstrap recovers an existing Galera cluster; cluster {} does not exist yet",
                dir.name()
            );
        }
        if let Some(seconds) = ha.max_read_staleness {
            state.max_staleness_seconds = seconds;
        }
        if let Some(delay) = ha.failover_delay_ms() {
            state.failover_delay_ms = delay;
        }
        apply_backup_args(&mut state, &backup, true)?;
        let supplied_ca = new_cluster_tls(&mut state, &tls)?;
        check_topology(&state)?;
        check_ports(&dir, &state)?;
        if let Some(url) = &state.backup.store {
            // A store given by the user must take writes before a cluster relies on it.
            let store = myset_backup::Store::open(&myset_backup::StoreUrl::parse(url)?)?;
            store.check_access().await?;
        }
        if netns {
            myset_local::netns::require_root()?;
            state.netns = Some(myset_local::netns::claim_subnet()?);
        }
        if let Err(e) = dir.create(&state, supplied_ca.as_ref()) {
            if let Some(index) = state.netns {
                myset_local::netns::remove_bridge(index);
            }
            // Nothing of a cluster that was never created stays behind.
            let _ = std::fs::remove_dir_all(dir.root());
            return Err(e.into());
        }
        state
    };
    start_and_wait(state_dir, &dir, &state, timeout).await
}

/// Sets a new cluster's TLS from `up`'s or `restore`'s flags (on unless `--tls off`), and
/// returns the user's CA to issue from, checked readable before anything is created.
pub(crate) fn new_cluster_tls(
    state: &mut ClusterState,
    args: &crate::args::TlsArgs,
) -> anyhow::Result<Option<myset_local::tls::SuppliedCa>> {
    use myset_api::{CaSource, TlsMode, TlsSettings};
    if args.tls.is_some_and(|t| !t.is_on()) {
        state.tls = TlsSettings {
            mode: TlsMode::Off,
            ca: CaSource::Generated,
        };
        return Ok(None);
    }
    let supplied = match (&args.tls_ca, &args.tls_ca_key) {
        (Some(cert), Some(key)) => {
            let supplied = myset_local::tls::SuppliedCa {
                cert: cert.clone(),
                key: key.clone(),
            };
            supplied.check()?;
            Some(supplied)
        }
        _ => None,
    };
    state.tls = TlsSettings {
        mode: TlsMode::Required,
        ca: if supplied.is_some() {
            CaSource::Supplied
        } else {
            CaSource::Generated
        },
    };
    Ok(supplied)
}

/// Starts the cluster's controller and waits until every instance is Ready, then prints how
/// to connect.
pub(crate) async fn start_and_wait(
    state_dir: &std::path::Path,
    dir: &ClusterDir,
    state: &ClusterState,
    timeout: u64,
) -> anyhow::Result<()> {
    // The user wants it running again: agents may restart its controller from now on.
    remove_stop_marker(dir)?;
    // Follows the record (the rw port may have changed), and a cluster made by an older
    // myset gets the rw endpoint in it too.
    dir.write_client_config(&dir.load_secrets()?, state)?;
    let exe = std::env::current_exe()?;
    let pid = myset_local::spawn_controller(dir, &exe, state_dir)?;
    let api = wait::controller_started(dir, pid).await?;
    let mut status = wait::converged(dir, &api, Duration::from_secs(timeout), |s| {
        s.instances.len() == state.replicas as usize
    })
    .await?;
    status.tls.ca_file = myset_local::tls::client_ca(dir, state).map(|p| p.display().to_string());
    display::connection_help(&status, dir);
    Ok(())
}

/// Applies `up`'s backup flags to the record. The store is chosen at creation only: the
/// archive's history lives in it.
fn apply_backup_args(
    state: &mut ClusterState,
    args: &BackupArgs,
    creating: bool,
) -> anyhow::Result<()> {
    if let Some(url) = &args.backup_store {
        let parsed = myset_backup::StoreUrl::parse(url)?;
        if !creating && state.backup.store.as_deref() != Some(&parsed.to_string()) {
            bail!(
                "cluster {} keeps its backups where it was created; --backup-store is for a new cluster",
                state.name
            );
        }
        state.backup.store = Some(parsed.to_string());
    }
    match args.backup_schedule {
        Some(BackupInterval::Off) => state.backup.every_seconds = None,
        Some(BackupInterval::Every(seconds)) => state.backup.every_seconds = Some(seconds),
        None => {}
    }
    if let Some(keep) = args.backup_keep {
        state.backup.keep = keep;
    }
    if state.topology == myset_api::Topology::Galera
        && (state.backup.every_seconds.is_some() || args.backup_store.is_some())
    {
        bail!("backups of Galera clusters are not supported yet; drop --backup-schedule and --backup-store");
    }
    Ok(())
}

fn check_topology(state: &ClusterState) -> anyhow::Result<()> {
    if state.causal_reads && state.topology != myset_api::Topology::Galera {
        bail!(
            "--causal-reads is for Galera clusters; cluster {} uses the {} topology, whose reads through ro are bounded by --max-read-staleness instead",
            state.name,
            state.topology
        );
    }
    if state.topology == myset_api::Topology::Galera {
        myset_core::galera::check_size(state.replicas).map_err(anyhow::Error::msg)?;
        if !std::path::Path::new(myset_mariadb::galera::PROVIDER).exists() {
            bail!(
                "the Galera provider {} is missing: apt-get install galera-4 (and socat, for state transfers)",
                myset_mariadb::galera::PROVIDER
            );
        }
    }
    Ok(())
}

/// Every port the cluster is about to listen on is free: the endpoints, and the ports of each
/// instance that is not running (a running one holds its own). All taken ones are named in one
/// line, so the user frees them in one go.
fn check_ports(dir: &ClusterDir, state: &ClusterState) -> anyhow::Result<()> {
    if state.netns.is_some() {
        // Instances listen on addresses of their own.
        return check_ports_free(state.rw_port, state.ro_port);
    }
    let mut wanted = endpoint_ports(state.rw_port, state.ro_port)?;
    let offline = display::offline_status(dir, state).ok();
    for (&ordinal, placement) in &state.placements {
        let running = offline.as_ref().is_some_and(|s| {
            s.instances
                .iter()
                .any(|i| i.ordinal == ordinal && (i.agent_pid.is_some() || i.pid.is_some()))
        });
        if running || !state.members.contains(&ordinal) {
            continue;
        }
        let name = state.instance_name(ordinal);
        wanted.push((placement.server.port, format!("{name}'s server")));
        wanted.push((placement.agent.port, format!("{name}'s agent")));
        if let Some(g) = placement.galera {
            for port in [g.gcomm, g.ist, g.sst] {
                wanted.push((port, format!("{name}'s Galera")));
            }
        }
    }
    ports_free(&wanted)
}

pub(crate) fn check_ports_free(rw_port: u16, ro_port: u16) -> anyhow::Result<()> {
    ports_free(&endpoint_ports(rw_port, ro_port)?)
}

fn endpoint_ports(rw_port: u16, ro_port: u16) -> anyhow::Result<Vec<(u16, String)>> {
    if rw_port == ro_port {
        bail!("--rw-port and --ro-port are both {rw_port}: give them different ports");
    }
    Ok(vec![
        (rw_port, "--rw-port".to_string()),
        (ro_port, "--ro-port".to_string()),
    ])
}

/// Fails naming every port of `wanted` (port, what uses it) that is taken.
fn ports_free(wanted: &[(u16, String)]) -> anyhow::Result<()> {
    let taken: Vec<&(u16, String)> = wanted
        .iter()
        .filter(|(port, _)| !myset_os::port_free(BIND_HOST, *port))
        .collect();
    if let Some(message) = ports_in_use_message(&taken) {
        bail!("{message}");
    }
    Ok(())
}

/// One line naming every taken port and what needs it, and the fix; None when none is taken.
fn ports_in_use_message(taken: &[&(u16, String)]) -> Option<String> {
    if taken.is_empty() {
        return None;
    }
    let list: Vec<String> = taken
        .iter()
        .map(|(port, what)| format!("{port} ({what})"))
        .collect();
    let endpoints_only = taken.iter().all(|(_, what)| what.starts_with("--"));
    let fix = if endpoints_only {
        "choose others with --rw-port / --ro-port"
    } else {
        "stop what holds them (an instance keeps its ports across restarts), or choose others for the endpoints with --rw-port / --ro-port"
    };
    let noun = if taken.len() == 1 { "port" } else { "ports" };
    Some(format!(
        "{noun} already in use on {BIND_HOST}: {}; {fix}",
        list.join(", ")
    ))
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
}

/// The controller's API client, or an error telling the user to start the cluster.
fn controller(dir: &ClusterDir) -> anyhow::Result<myset_http::Client> {
    controller_waiting(dir, Duration::from_secs(10))
}

/// The running controller's API, with calls bounded by `timeout`.
pub(crate) fn controller_waiting(
    dir: &ClusterDir,
    timeout: Duration,
) -> anyhow::Result<myset_http::Client> {
    dir.load_state()?;
    let Some(info) = ControllerInfo::find(dir) else {
        bail!(
            "cluster {} is not running: start it with `myset up --name {}`",
            dir.name(),
            dir.name()
        );
    };
    wait::api_client_with_timeout(dir, &info, timeout)
}

async fn status(dir: &ClusterDir, output: Output) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    let mut status = match ControllerInfo::find(dir) {
        Some(info) => wait::api_client(dir, &info)?
            .get::<ClusterStatus>("/status")
            .await
            .map_err(|e| wait::controller_error(dir, e))?,
        None => display::offline_status(dir, &state)?,
    };
    status.tls.ca_file = myset_local::tls::client_ca(dir, &state).map(|p| p.display().to_string());
    print_status(&status, output)
}

/// `status` as a table or as JSON (the same for a local cluster and on Kubernetes).
pub fn print_status(status: &ClusterStatus, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(status)?),
        Output::Table => display::status_table(status),
    }
    Ok(())
}

/// `events` as a table or as JSON, one event per line.
pub fn print_events(events: &[myset_api::Event], output: Output) -> anyhow::Result<()> {
    match output {
        Output::Table => display::events(events),
        Output::Json => {
            for event in events {
                say!("{}", serde_json::to_string(event)?);
            }
        }
    }
    Ok(())
}

/// How long `myset sql` waits for a TCP connection, then for the server's greeting, then for
/// the login: each takes milliseconds on a healthy server, so waiting longer only hides a hang.
pub const SQL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How `myset sql` runs its statements.
#[derive(Debug, Clone, Copy)]
pub struct SqlOptions {
    /// How long the statements may take, all together.
    pub timeout: Duration,
    /// Report the rows each statement without a result set affected, as `mariadb -vv`.
    pub verbose: bool,
}

/// The SQL to run: `-e`'s, else all of stdin (`myset sql rw < dump.sql`). A terminal on stdin
/// would wait for typing, which `myset shell` serves better.
pub async fn sql_text(execute: Option<String>) -> anyhow::Result<String> {
    use std::io::{IsTerminal, Read};
    if let Some(statements) = execute {
        return Ok(statements);
    }
    if std::io::stdin().is_terminal() {
        bail!("no SQL given: pass -e 'STATEMENTS' or pipe them in (myset sql rw < dump.sql); for an interactive client use `myset shell`");
    }
    let text = tokio::task::spawn_blocking(|| {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    })
    .await?
    .context("cannot read SQL from stdin")?;
    if text.trim().is_empty() {
        bail!(
            "no SQL on stdin: pipe statements in (myset sql rw < dump.sql) or pass -e 'STATEMENTS'"
        );
    }
    Ok(text)
}

/// Where `target` (rw, ro or an ordinal) of the cluster listens, and its name in messages.
pub(crate) fn sql_address(
    dir: &ClusterDir,
    state: &ClusterState,
    target: &str,
) -> anyhow::Result<(String, String, u16)> {
    Ok(match target {
        "rw" => ("rw".to_string(), state.bind_host.clone(), state.rw_port),
        "ro" => ("ro".to_string(), state.bind_host.clone(), state.ro_port),
        ordinal => {
            let o: u32 = ordinal.parse().map_err(|_| {
                anyhow::anyhow!("unknown target {ordinal:?}: use rw, ro or an instance ordinal")
            })?;
            if !state.members.contains(&o) {
                let members: Vec<String> = state.members.iter().map(u32::to_string).collect();
                bail!(
                    "instance {o} is not a member of cluster {} (members: {}): pick one of those",
                    dir.name(),
                    members.join(", ")
                );
            }
            let Some(placement) = state.placements.get(&o) else {
                bail!(
                    "{} has no placement in {}: restore that file from a backup",
                    state.instance_name(o),
                    dir.state_file().display()
                );
            };
            let server = &placement.server;
            (format!("instance {o}"), server.host.clone(), server.port)
        }
    })
}

async fn sql(
    dir: &ClusterDir,
    target: &str,
    statement: &str,
    options: SqlOptions,
) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    let secrets = dir.load_secrets()?;
    let (what, host, port) = sql_address(dir, &state, target)?;
    ensure_not_stopped(dir, &state)?;
    let what = format!("{what} ({host}:{port})");
    let server = greeted_connection(dir, &state, &what, &host, port).await?;
    sql_over(
        server,
        &what,
        &secrets.user,
        &secrets.user_password,
        statement,
        options,
        myset_local::tls::client_ca(dir, &state).as_deref(),
    )
    .await
}

/// Fails, saying how to start it, when nothing of the cluster runs.
pub(crate) fn ensure_not_stopped(dir: &ClusterDir, state: &ClusterState) -> anyhow::Result<()> {
    if cluster_stopped(dir, state) {
        bail!(
            "cluster {name} is stopped: start it with `myset up --name {name}`",
            name = dir.name()
        );
    }
    Ok(())
}

/// Neither its controller nor any of its agents runs: nothing serves the cluster.
pub(crate) fn cluster_stopped(dir: &ClusterDir, state: &ClusterState) -> bool {
    ControllerInfo::find(dir).is_none() && !agents_run(dir, state)
}

fn agents_run(dir: &ClusterDir, state: &ClusterState) -> bool {
    display::offline_status(dir, state)
        .is_ok_and(|s| s.instances.iter().any(|i| i.agent_pid.is_some()))
}

/// Logs in as `user` over `server` (a stream on which the server's greeting has begun to
/// arrive: a TCP connection locally, a port-forward on Kubernetes), runs `statement` and
/// prints its rows. `what` names the target in errors. With `ca`, over TLS verified by that
/// CA: the stream is relayed through a loopback port, and every local member's certificate
/// names 127.0.0.1, the endpoints' host.
pub async fn sql_over<S>(
    server: S,
    what: &str,
    user: &str,
    password: &str,
    statement: &str,
    options: SqlOptions,
    ca: Option<&std::path::Path>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeout = options.timeout;
    let relay = relay(server).await?;
    let relay_host = relay.ip().to_string();
    let login = AdminClient::connect(
        Target::Tcp {
            host: &relay_host,
            port: relay.port(),
            ca,
        },
        user,
        password,
        timeout,
    );
    let mut client = match tokio::time::timeout(SQL_CONNECT_TIMEOUT, login).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => bail!("{what} greeted but the login failed: {e}"),
        Err(_) => bail!(
            "{what} greeted but did not complete the login within {}s",
            SQL_CONNECT_TIMEOUT.as_secs()
        ),
    };
    let results = client.results(statement).await.map_err(|e| match e {
        ClientError::Timeout(_) => anyhow::anyhow!(
            "{what} did not finish the statement within {}s (--timeout)",
            timeout.as_secs()
        ),
        other => anyhow::anyhow!("SQL failed on {what}: {other}"),
    })?;
    client.disconnect().await;
    for result in &results {
        match result {
            StatementResult::Rows(rows) => display::rows(rows),
            StatementResult::Affected(n) if options.verbose => display::affected(*n),
            StatementResult::Affected(_) => {}
        }
    }
    Ok(())
}

/// Records how a new or changed cluster's endpoints are to be carried, refusing in one line a
/// mode this host cannot give (`kernel` without root or a usable `nft`).
pub fn set_endpoints(
    state: &mut ClusterState,
    mode: myset_api::EndpointsMode,
) -> anyhow::Result<()> {
    state.endpoints = mode;
    myset_local::endpoints::path_for(state).map_err(anyhow::Error::msg)?;
    Ok(())
}

/// A TCP connection to `host:port` on which the server's greeting has begun to arrive, or an
/// error saying which step did not happen: nothing listening, no connection, no greeting.
async fn greeted_connection(
    dir: &ClusterDir,
    state: &ClusterState,
    what: &str,
    host: &str,
    port: u16,
) -> anyhow::Result<TcpStream> {
    let secs = SQL_CONNECT_TIMEOUT.as_secs();
    let stream =
        match tokio::time::timeout(SQL_CONNECT_TIMEOUT, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                bail!(
                    "cannot connect to {what}: nothing listens there; {}",
                    controller_hint(dir, state)
                )
            }
            Ok(Err(e)) => bail!(
                "cannot connect to {what}: {e}; {}",
                controller_hint(dir, state)
            ),
            Err(_) => bail!("cannot connect to {what}: no TCP connection within {secs}s"),
        };
    // Peeking leaves the greeting in place for the client library.
    let mut first = [0u8; 1];
    match tokio::time::timeout(SQL_CONNECT_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => Ok(stream),
        Ok(Ok(_)) => bail!(
            "{what} accepted the connection and closed it without a server greeting (no server \
             behind it answered); see `myset status --name {}`",
            dir.name()
        ),
        Ok(Err(e)) => bail!("{what} accepted the connection, then failed: {e}"),
        Err(_) => bail!("connected to {what} but no server greeting arrived within {secs}s"),
    }
}

/// What runs of the cluster, for an error about something that did not answer.
fn controller_hint(dir: &ClusterDir, state: &ClusterState) -> String {
    let name = dir.name();
    if let Some(info) = ControllerInfo::find(dir) {
        return format!(
            "the controller runs (pid {}); see `myset status --name {name}`",
            info.pid
        );
    }
    if agents_run(dir, state) {
        format!(
            "the controller of cluster {name} is not running, but its instances' agents are and \
             start a new one; retry shortly, or see `myset status --name {name}`"
        )
    } else {
        format!("cluster {name} is not running: start it with `myset up --name {name}`")
    }
}

/// Hands a connected server stream to the MariaDB client library, which only connects by
/// itself, through a one-shot loopback relay. Connecting to the target a second time instead
/// would cost another server connection and, through ro, skip a member of the rotation (and
/// a port-forward cannot be reached any other way).
async fn relay<S>(server: S) -> anyhow::Result<std::net::SocketAddr>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Ok((mut local, _)) = listener.accept().await {
            let mut server = server;
            let _ = tokio::io::copy_bidirectional(&mut local, &mut server).await;
        }
    });
    Ok(addr)
}

async fn scale(
    dir: &ClusterDir,
    replicas: u32,
    delete_data: bool,
    timeout: u64,
) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    check_topology(&ClusterState { replicas, ..state })?;
    let api = controller(dir)?;
    api.put(
        "/scale",
        &ScaleRequest {
            replicas,
            delete_data,
        },
    )
    .await
    .map_err(|e| wait::controller_error(dir, e))?;
    let status = wait::converged(dir, &api, Duration::from_secs(timeout), |s| {
        s.replicas == replicas && s.instances.len() == replicas as usize
    })
    .await?;
    display::status_table(&status);
    Ok(())
}

async fn switchover(dir: &ClusterDir, to: Option<u32>) -> anyhow::Result<()> {
    let api = controller(dir)?;
    let before: ClusterStatus = api
        .get("/status")
        .await
        .map_err(|e| wait::controller_error(dir, e))?;
    let status: ClusterStatus = api
        .call("/switchover", &SwitchoverRequest { to })
        .await
        .map_err(|e| wait::controller_error(dir, e).context("switchover refused"))?;
    display::switchover(&status.name, before.primary, status.primary, status.term);
    Ok(())
}

async fn rotate_certs(dir: &ClusterDir) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    if !state.tls.enabled() {
        bail!(
            "cluster {} runs without TLS (created with --tls off); it has no certificates to rotate",
            dir.name()
        );
    }
    let rotation: myset_api::CertRotation = controller(dir)?
        .call(myset_api::TLS_ROTATE_PATH, &())
        .await
        .map_err(|e| anyhow::anyhow!("certificate rotation failed: {e}"))?;
    display::rotation(&rotation);
    Ok(())
}

fn kill(dir: &ClusterDir, ordinal: u32) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    if !state.members.contains(&ordinal) {
        bail!(
            "instance {ordinal} is not a member of cluster {}: see `myset status`",
            dir.name()
        );
    }
    let marker = dir.instance_dir(ordinal).to_string_lossy().into_owned();
    // Both found before any is signalled: the first group kill takes the server too.
    let found: Vec<(&str, u32)> = [
        ("agent", dir.agent_pid_file(ordinal)),
        ("mariadbd", dir.server_pid_file(ordinal)),
    ]
    .into_iter()
    .filter_map(|(what, file)| Some((what, myset_os::owned_pid(&file, &marker)?)))
    .collect();
    let mut killed = Vec::new();
    for (what, pid) in found {
        // With its process group, as a Pod's death takes every process of the container
        // (a state transfer's helpers would outlive the server otherwise).
        myset_os::kill_group_of(pid);
        myset_os::signal(pid, nix::sys::signal::Signal::SIGKILL);
        killed.push(format!("{what} {pid}"));
    }
    if killed.is_empty() {
        bail!(
            "instance {} is not running: nothing to kill",
            state.instance_name(ordinal)
        );
    }
    say!(
        "killed {} of {}",
        killed.join(" and "),
        state.instance_name(ordinal)
    );
    Ok(())
}

fn remove_stop_marker(dir: &ClusterDir) -> anyhow::Result<()> {
    match std::fs::remove_file(dir.stop_marker()) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.stop_marker().display()))
        }
        _ => Ok(()),
    }
}

/// Stops the controller (which stops every instance), then anything it left behind. The stop
/// marker goes first, so no agent restarts the controller meanwhile; the leftovers are stopped
/// while holding the controller lock, so no controller can start again under our feet.
async fn down(dir: &ClusterDir) -> anyhow::Result<()> {
    myset_os::write_atomic(&dir.stop_marker(), b"stopped by myset down\n", 0o600)
        .with_context(|| format!("cannot write {}", dir.stop_marker().display()))?;
    let lock = stop_controller(dir).await?;
    // Agents or servers left running by a controller that died.
    for ordinal in wait::instance_ordinals(dir) {
        let marker = dir.instance_dir(ordinal).to_string_lossy().into_owned();
        for file in [dir.agent_pid_file(ordinal), dir.server_pid_file(ordinal)] {
            if let Some(pid) = myset_os::owned_pid(&file, &marker) {
                myset_os::terminate(pid, Duration::from_secs(90)).await;
            }
        }
    }
    remove_namespaces(dir);
    remove_kernel_endpoints(dir);
    drop(lock);
    Ok(())
}

/// Removes the cluster's nftables table, which a controller that was killed leaves behind.
/// Where nftables cannot be changed (not root), no table can have been made.
fn remove_kernel_endpoints(dir: &ClusterDir) {
    let Ok(state) = dir.load_state() else {
        return;
    };
    if myset_local::endpoints::kernel_availability(&state).is_ok() {
        if let Err(e) = myset_local::endpoints::remove_table(dir) {
            eprintln!("warning: {e:#}");
        }
    }
}

/// Asks the running controller (if any) to shut down, and returns holding the controller
/// lock. A controller an agent was starting at that moment sees the stop marker and exits.
async fn stop_controller(dir: &ClusterDir) -> anyhow::Result<myset_local::ControllerLock> {
    let limit = Duration::from_secs(300);
    let lock = myset_os::poll_for(limit, Duration::from_millis(50), || async {
        if let Some(info) = ControllerInfo::find(dir) {
            let api = wait::api_client(dir, &info)?;
            if let Err(e) = api.post("/shutdown").await {
                tracing::warn!("shutdown request failed ({e}); stopping the controller by signal");
                myset_os::terminate(info.pid, Duration::from_secs(10)).await;
            }
            wait::process_gone(info.pid, limit).await?;
        }
        Ok::<_, anyhow::Error>(myset_local::ControllerLock::try_acquire(dir)?)
    })
    .await?;
    lock.ok_or_else(|| {
        anyhow::anyhow!(
            "a controller of cluster {} holds its lock and does not stop; see {}",
            dir.name(),
            dir.controller_log().display()
        )
    })
}

/// Namespaces hold no data; they are made again at the next `up`. The bridge stays: it is the
/// cluster's claim on its test subnet until `destroy`.
fn remove_namespaces(dir: &ClusterDir) {
    let Some(index) = dir.load_state().ok().and_then(|s| s.netns) else {
        return;
    };
    let prefix = myset_local::netns::namespace_prefix(index, dir.name());
    if let Ok(entries) = std::fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(ordinal) = name.strip_prefix(&prefix).and_then(|o| o.parse().ok()) {
                myset_local::netns::remove(index, dir.name(), ordinal);
            }
        }
    }
}

fn partition(dir: &ClusterDir, ordinal: u32, heal: bool) -> anyhow::Result<()> {
    let state = dir.load_state()?;
    let Some(index) = state.netns else {
        bail!(
            "cluster {} does not run in network namespaces: create it with `myset up --netns`",
            dir.name()
        );
    };
    if !state.members.contains(&ordinal) {
        bail!(
            "instance {ordinal} is not a member of cluster {}: see `myset status`",
            dir.name()
        );
    }
    myset_local::netns::set_connected(index, ordinal, heal)?;
    let what = if heal {
        "reconnected"
    } else {
        "cut off from the network"
    };
    say!("{} {what}", state.instance_name(ordinal));
    Ok(())
}

async fn destroy(
    state_dir: &std::path::Path,
    dir: &ClusterDir,
    delete_backups: bool,
    yes: bool,
) -> anyhow::Result<()> {
    if !dir.exists() {
        bail!(
            "cluster {:?} does not exist in {}{}: nothing to destroy",
            dir.name(),
            state_dir.display(),
            myset_local::store::existing_clusters(&myset_local::store::cluster_names(state_dir))
        );
    }
    if !dir.state_file().exists() {
        bail!(
            "{} is not a myset cluster (no cluster.json): refusing to delete it",
            dir.root().display()
        );
    }
    // A person at a terminal confirms; scripts (no terminal) and --yes go ahead.
    if !yes && crate::everyday::interactive() {
        let what = if delete_backups {
            "all its data and its backups"
        } else {
            "all its data (its backups are kept)"
        };
        let question = format!(
            "destroy cluster {} and delete {what} in {}?",
            dir.name(),
            dir.root().display()
        );
        if !crate::everyday::confirm(&question)? {
            bail!(
                "cluster {} not destroyed (answer y, or pass --yes)",
                dir.name()
            );
        }
    }
    down(dir).await?;
    let state = dir.load_state().ok();
    if let Some(index) = state.as_ref().and_then(|s| s.netns) {
        myset_local::netns::remove_bridge(index);
    }
    let backups = match (&state, delete_backups) {
        (Some(state), true) => Some(crate::backup::delete_store(state_dir, state).await?),
        _ => None,
    };
    std::fs::remove_dir_all(dir.root())
        .with_context(|| format!("cannot delete {}", dir.root().display()))?;
    match (backups, state) {
        (Some(store), _) => say!(
            "cluster {} destroyed; its data and its backups in {store} are deleted",
            dir.name()
        ),
        (None, Some(state)) => say!(
            "cluster {} destroyed; its data is deleted, its backups are kept in {} (destroy --delete-backups removes them)",
            dir.name(),
            myset_local::layout::backup_store_url(state_dir, &state)
                .map(|u| u.to_string())
                .unwrap_or_default()
        ),
        (None, None) => say!("cluster {} destroyed; its data is deleted", dir.name()),
    }
    Ok(())
}
