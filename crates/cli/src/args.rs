//! The command line.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Most instances a cluster may have; far beyond what one machine should run.
pub const MAX_REPLICAS: u32 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "myset",
    version,
    about = "A replicated MariaDB cluster with stable ordinal identities"
)]
pub struct Cli {
    /// Where clusters live [default: $XDG_STATE_HOME/myset or ~/.local/state/myset]
    #[arg(long, global = true, env = "MYSET_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Work on a MySet on Kubernetes (status, sql, switchover, scale, events) through the
    /// current kubeconfig, or the Pod's service account, instead of a local cluster; --name
    /// names the MySet. Implied when run as `kubectl myset` (a `kubectl-myset` link)
    #[arg(
        long,
        global = true,
        env = "MYSET_KUBE",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue
    )]
    pub kube: bool,
    /// Kubernetes namespace of the MySet [default: the kubeconfig context's namespace, else
    /// default]; for `operator run`, watch this namespace only [default: every namespace]
    #[arg(long, short = 'n', global = true, value_name = "NS")]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct NameArg {
    /// Cluster name
    #[arg(long, default_value = "demo")]
    pub name: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a cluster (or restart a stopped one from its data) and wait until every instance is Ready
    Up(UpArgs),
    /// Show the cluster's instances, roles, readiness and endpoints
    Status {
        #[command(flatten)]
        name: NameArg,
        /// Output format
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Run SQL through rw, ro or one instance; rows are printed tab-separated without a header
    Sql {
        #[command(flatten)]
        name: NameArg,
        /// rw, ro, or an instance ordinal
        target: String,
        /// The statement(s) to run [default: read them from stdin, e.g. `myset sql rw <
        /// dump.sql`; several statements separated by `;` are sent together]
        #[arg(short = 'e', long = "execute")]
        execute: Option<String>,
        /// After each statement that returns no rows, print "Query OK, N rows affected" as
        /// `mariadb -vv` does
        #[arg(short = 'v', long)]
        verbose: bool,
        /// Give up on the statement(s) after this many seconds (connecting has its own bound
        /// of a few seconds)
        #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
    },
    /// Change the number of instances and wait until the cluster converges
    Scale {
        #[command(flatten)]
        name: NameArg,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_REPLICAS as i64))]
        replicas: u32,
        /// Delete the data dirs of removed instances instead of keeping them for a later scale-up
        #[arg(long)]
        delete_data: bool,
        /// Give up waiting after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Move the primary to another instance (planned; no acknowledged write is lost)
    Switchover {
        #[command(flatten)]
        name: NameArg,
        /// The ordinal to promote [default: the most advanced Ready replica]
        #[arg(long)]
        to: Option<u32>,
    },
    /// Server settings, like the tutorial's ConfigMap (primary.cnf, replica.cnf): show them,
    /// or change them on every server of a role (dynamic ones live, static ones by a rolling
    /// restart)
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Restart every server one at a time: the replicas, a switchover, then the old primary
    /// (after upgrading the MariaDB packages, say); writes pause only for the switchover
    Restart {
        #[command(flatten)]
        name: NameArg,
    },
    /// Fault-injection harness: create a cluster, write and read through it while injecting
    /// random faults, then check that no acknowledged write was lost and nothing split
    Chaos {
        /// Name of the cluster the harness creates (and destroys at the end)
        #[arg(long, default_value = "chaos")]
        name: String,
        /// How many faults to inject
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        faults: u64,
        /// Seed of the fault sequence [default: random, printed for reproduction]
        #[arg(long)]
        seed: Option<u64>,
        /// Topology of the cluster the harness creates; it decides the faults drawn
        #[arg(long, value_enum, default_value_t = myset_api::Topology::Replication)]
        topology: myset_api::Topology,
        /// Inject only this fault. Replication: kill-primary-server, kill-primary-instance,
        /// freeze-primary, kill-replica, kill-controller, kill-controller-during-failover,
        /// restart-cluster, switchover, rolling-restart, partition-primary. Galera: kill-primary-server (of the
        /// member rw routes to), kill-member, freeze-member, partition-member, kill-all-members,
        /// crash-members-in-turn, kill-controller, restart-cluster
        #[arg(long)]
        only: Option<myset_chaos::Fault>,
        #[arg(long, default_value_t = 13316, value_parser = clap::value_parser!(u16).range(1..))]
        rw_port: u16,
        #[arg(long, default_value_t = 13317, value_parser = clap::value_parser!(u16).range(1..))]
        ro_port: u16,
        /// Seconds a fault may take to heal before the run fails
        #[arg(long, default_value_t = 120)]
        heal_timeout: u64,
        /// Run the instances in network namespaces (root only); adds partitions to the faults
        #[arg(long)]
        netns: bool,
        /// At least this many seconds between two faults
        #[arg(long, default_value_t = 0)]
        interval: u64,
        /// Also write the report as JSON to this file
        #[arg(long)]
        report: Option<PathBuf>,
        /// Before destroying the cluster, copy its logs and events into this directory, with
        /// every failed read and the report
        #[arg(long, value_name = "DIR")]
        keep_logs: Option<PathBuf>,
    },
    /// Cut one instance off from the network, or reconnect it (clusters made with --netns)
    Partition {
        #[command(flatten)]
        name: NameArg,
        ordinal: u32,
        /// Reconnect it instead
        #[arg(long)]
        heal: bool,
    },
    /// SIGKILL one instance's agent and server, as if its Pod died
    Kill {
        #[command(flatten)]
        name: NameArg,
        ordinal: u32,
    },
    /// List what the controller did and why
    Events {
        #[command(flatten)]
        name: NameArg,
        /// Output format (json: one event object per line, with its structured fields)
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
        /// After the events so far, keep printing new ones as they happen, until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// List every cluster in the state dir with its state (running, degraded, stopped) and
    /// endpoints
    List {
        /// Output format (json: an array of objects)
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Open the `mariadb` client on rw, ro or one instance, logged in as the cluster's user
    /// (credentials from the cluster's 0600 client.cnf, never on the command line)
    Shell {
        #[command(flatten)]
        name: NameArg,
        /// rw, ro, or an instance ordinal
        #[arg(default_value = "rw")]
        target: String,
        /// More arguments for the mariadb client, after `--` (e.g. `-- -e "SELECT 1"`)
        #[arg(last = true, value_name = "MARIADB_ARGS")]
        client_args: Vec<String>,
    },
    /// Print a log: the controller's, an instance's agent log (ORDINAL), or its server's
    /// error log (ORDINAL --server)
    Logs {
        #[command(flatten)]
        name: NameArg,
        /// controller, or an instance ordinal
        #[arg(default_value = "controller")]
        target: String,
        /// For an instance: mariadbd's error log instead of the agent's log (which tells what
        /// the agent did: bootstrap, clone, starts, role changes)
        #[arg(long)]
        server: bool,
        /// After the log so far, keep printing lines as they are appended, until interrupted
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print a shell completion script, e.g. `myset completions bash > /etc/bash_completion.d/myset`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Issue new certificates to every member and the controller now, from the cluster's CA,
    /// and have them served at once without a restart (they are also renewed a month before
    /// they end without being asked)
    RotateCerts {
        #[command(flatten)]
        name: NameArg,
    },
    /// Stop every process of the cluster; all data is kept
    Down {
        #[command(flatten)]
        name: NameArg,
    },
    /// Stop every process of the cluster and delete all its data; its backups are kept
    /// unless --delete-backups
    Destroy {
        #[command(flatten)]
        name: NameArg,
        /// Also delete the base backups and binlog archive in the cluster's backup store
        #[arg(long)]
        delete_backups: bool,
        /// Do not ask for confirmation (it is asked only on a terminal)
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Take a base backup now (from a Ready replica), store it, check it, and print its id;
    /// `backup verify ID` checks a stored one
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        #[command(flatten)]
        name: NameArg,
        #[command(subcommand)]
        action: Option<BackupAction>,
    },
    /// List the base backups, their size and GTID position, and the recoverable window
    Backups {
        #[command(flatten)]
        source: BackupSource,
        /// Output format
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Create a new cluster from a backup store: the latest base backup before the target,
    /// then the binlog archive replayed up to it
    Restore(RestoreArgs),
    /// Kubernetes: print the MySet CRD, or the objects the operator creates for a MySet
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Run one instance's agent (started by the controller)
    #[command(hide = true)]
    Agent {
        #[arg(long)]
        instance_dir: PathBuf,
        #[arg(long)]
        secrets: PathBuf,
        /// The cluster's directory: the agent restarts the cluster's controller when it dies
        #[arg(long)]
        cluster_dir: Option<PathBuf>,
        /// Run in this network namespace (a name under /run/netns)
        #[arg(long)]
        netns: Option<String>,
        /// Serve the API at ADDR:PORT instead of the spec's agent address
        #[arg(long, value_name = "ADDR:PORT")]
        listen: Option<std::net::SocketAddr>,
        /// Also serve GET /healthz and GET /readyz at ADDR:PORT, without the API token and
        /// with a bare verdict (for the kubelet's probes)
        #[arg(long, value_name = "ADDR:PORT")]
        probe_listen: Option<std::net::SocketAddr>,
        /// When the instance dir has no spec.json, serve the API and wait for the first spec
        /// (PUT /spec) naming --cluster and --ordinal, instead of failing
        #[arg(long, requires_all = ["listen", "cluster", "ordinal"])]
        await_spec: bool,
        /// The cluster this agent belongs to; a spec naming another is refused
        #[arg(long, requires = "ordinal")]
        cluster: Option<String>,
        /// The ordinal this agent runs; a spec naming another is refused
        #[arg(long, requires = "cluster")]
        ordinal: Option<u32>,
        /// Bind mariadbd (and the API, without --listen) to HOST instead of the spec's
        /// hosts, which peers keep using to reach them
        #[arg(long, value_name = "HOST")]
        bind_host: Option<String>,
        /// Include DIR/all.cnf and DIR/<role>.cnf in the server's options, before the
        /// settings myset decides (a role change applies at the server's next start)
        #[arg(long, value_name = "DIR")]
        server_options_dir: Option<PathBuf>,
        /// The instance's TLS files (ca.pem, cert.pem, key.pem): the server requires TLS of TCP
        /// clients, replication verifies the primary, and the API is served over HTTPS
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// Before anything else, move an existing data dir aside to data.LABEL in the
        /// instance dir (once per LABEL), so the instance starts empty and clones
        #[arg(long, value_name = "LABEL", value_parser = parse_set_aside_label)]
        set_aside_data: Option<String>,
    },
    /// Run a cluster's controller (started by `up`)
    #[command(hide = true)]
    Controller {
        #[command(flatten)]
        name: NameArg,
        #[arg(long)]
        cluster_dir: PathBuf,
        /// The controller lock was taken by the agent that started this controller and is
        /// open on descriptor 3
        #[arg(long)]
        inherited_lock: bool,
    },
}

/// `myset config ...`
#[derive(Subcommand, Debug, Clone)]
pub enum ConfigAction {
    /// Set server variables (KEY=VALUE, `-` and `_` alike); returns once every server of the
    /// role runs them, or changes nothing and says why
    Set {
        #[command(flatten)]
        name: NameArg,
        /// The servers the settings apply to; a role's own settings override `all`'s
        #[arg(long, value_enum, default_value_t = myset_api::SettingsRole::All)]
        role: myset_api::SettingsRole,
        /// KEY=VALUE, for example max_connections=500
        #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_assignment)]
        assignments: Vec<(String, String)>,
    },
    /// Show the settings in the cluster's record, by role
    Show {
        #[command(flatten)]
        name: NameArg,
        /// Output format
        #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// `KEY=VALUE`, split at the first `=`; the controller checks both.
fn parse_assignment(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE, for example max_connections=500, got {s:?}"
        )),
    }
}

/// `myset backup ...`
#[derive(Subcommand, Debug, Clone)]
pub enum BackupAction {
    /// Check a stored base backup as a restore would: checksum, extraction, prepare, GTID
    Verify {
        /// The backup's id (see `myset backups`)
        id: String,
        #[command(flatten)]
        source: BackupSource,
    },
}

/// Whose backups: a cluster's (by name, even once destroyed), or a store's address.
#[derive(Args, Debug, Clone)]
pub struct BackupSource {
    /// The cluster whose backups to use; its backup store is found from its record, or under
    /// the state dir once it is destroyed
    #[arg(
        long = "name",
        alias = "from-cluster",
        value_name = "NAME",
        default_value = "demo",
        conflicts_with = "from"
    )]
    pub cluster: String,
    /// A backup store's address instead: an absolute directory or s3://bucket/prefix
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
}

/// Arguments of `restore`.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    /// The cluster whose backups to restore (its store is found from its record, or under the
    /// state dir once it is destroyed)
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "from",
        conflicts_with = "from"
    )]
    pub from_cluster: Option<String>,
    /// A backup store's address instead: an absolute directory or s3://bucket/prefix
    #[arg(long, value_name = "URL")]
    pub from: Option<String>,
    /// The new cluster's name; it must not exist
    #[arg(long)]
    pub name: String,
    /// Restore the state as of this time (RFC 3339, e.g. 2026-11-22T12:00:05Z; exact to the
    /// second): every transaction that committed before it, none at or after it
    #[arg(long, value_name = "TIME", conflicts_with = "to_gtid")]
    pub to_time: Option<String>,
    /// Restore up to and including this GTID (domain-server-sequence)
    #[arg(long, value_name = "GTID")]
    pub to_gtid: Option<String>,
    /// Number of instances of the new cluster
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=MAX_REPLICAS as i64))]
    pub replicas: u32,
    /// Port of the new cluster's rw endpoint
    #[arg(long, default_value_t = 13306, value_parser = clap::value_parser!(u16).range(1..))]
    pub rw_port: u16,
    /// Port of the new cluster's ro endpoint
    #[arg(long, default_value_t = 13307, value_parser = clap::value_parser!(u16).range(1..))]
    pub ro_port: u16,
    /// How the new cluster's rw and ro carry connections, as for `up --endpoints`
    #[arg(long, value_enum, env = "MYSET_ENDPOINTS", default_value_t)]
    pub endpoints: myset_api::EndpointsMode,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Give up waiting for readiness after this many seconds
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// `myset operator ...`
#[derive(Subcommand, Debug, Clone)]
pub enum OperatorCommand {
    /// Print the MySet CustomResourceDefinition as YAML (deploy/crd.yaml is this output)
    Crd,
    /// Print every object the operator would create for a MySet, as a multi-document YAML
    /// stream (like `helm template`), with freshly generated credentials
    Render {
        /// The MySet manifest (YAML)
        #[arg(short = 'f', long = "filename", value_name = "CLUSTER.yaml")]
        file: PathBuf,
    },
    /// Run the operator: watch MySets and drive each one (in a Pod: its service account;
    /// elsewhere: the current kubeconfig)
    Run {
        /// Watch MySets in this namespace only: the global --namespace [default: every
        /// namespace]
        #[arg(skip)]
        namespace: Option<String>,
        /// The namespace of the operator's Lease (one active operator at a time)
        #[arg(long, env = "POD_NAMESPACE", default_value = "myset-system")]
        lease_namespace: String,
        /// This operator replica's name in the Lease [default: the host name]
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
    },
}

/// The name under which `kubectl` finds this binary as a plugin (`kubectl myset ...`).
pub const KUBECTL_PLUGIN: &str = "kubectl-myset";

/// Whether the binary was started as `kubectl-myset` (argv[0]'s file name), as `kubectl`
/// starts a plugin: then it works on Kubernetes, as `myset --kube` does.
pub fn invoked_as_kubectl_plugin(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == KUBECTL_PLUGIN || n == "kubectl-myset.exe")
}

impl Cli {
    /// Parses the command line `args` (argv[0] first), applying the kubectl plugin rule.
    pub fn parse_args(args: Vec<std::ffi::OsString>) -> Result<Cli, clap::Error> {
        use clap::{CommandFactory, FromArgMatches};
        let plugin = args
            .first()
            .is_some_and(|argv0| invoked_as_kubectl_plugin(argv0));
        let mut command = Cli::command();
        if plugin {
            command = command.bin_name("kubectl myset");
        }
        let matches = command.try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.kube |= plugin;
        Ok(cli)
    }
}

/// A setting turned on or off.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// High-availability settings of `up`.
#[derive(Args, Debug, Clone)]
pub struct HaArgs {
    /// semisync: a commit returns once a replica has it (no acknowledged write is lost on
    /// failover); async: faster commits, a failover may lose the last ones [default: semisync]
    #[arg(long, value_enum)]
    pub durability: Option<myset_api::Durability>,
    /// Seconds the primary must look dead before an automatic failover (0.5 to 600) [default: 3]
    #[arg(long, value_parser = parse_delay)]
    pub failover_delay: Option<f64>,
    /// Seconds a replica's data may be stale and still serve reads through ro: behind a
    /// connected primary, or since it last heard from an unreachable one (1 to 3600)
    /// [default: 10]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub max_read_staleness: Option<u64>,
}

impl HaArgs {
    pub fn failover_delay_ms(&self) -> Option<u64> {
        self.failover_delay.map(|s| (s * 1000.0).round() as u64)
    }
}

fn parse_delay(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if (0.5..=600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("{seconds} is outside 0.5 to 600 seconds"))
    }
}

/// Arguments of `up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    #[command(flatten)]
    pub name: NameArg,
    /// Number of instances [default: 3 for a new cluster, unchanged for an existing one]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=MAX_REPLICAS as i64))]
    pub replicas: Option<u32>,
    /// Port of the rw endpoint (the primary) [default: 13306 for a new cluster]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub rw_port: Option<u16>,
    /// Port of the ro endpoint (every Ready instance) [default: 13307 for a new cluster]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub ro_port: Option<u16>,
    #[command(flatten)]
    pub ha: HaArgs,
    /// How the members replicate, for a new cluster: one primary and replicas, or Galera
    /// (every member writable; at least 3 members) [default: replication]
    #[arg(long, value_enum)]
    pub topology: Option<myset_api::Topology>,
    /// Galera, after a full outage that myset refuses to recover by itself (too few members'
    /// positions known): bootstrap the cluster from this member. Writes newer than its own on
    /// other members are lost
    #[arg(long, value_name = "ORDINAL")]
    pub force_bootstrap: Option<u32>,
    /// Galera: every read on the user's connections first waits until its member has applied
    /// all the cluster committed before it (wsrep_sync_wait = 1), so reads through ro see every
    /// acknowledged write, at the cost of a round trip to the group per read [default: off;
    /// unchanged for an existing cluster]
    #[arg(long, value_enum)]
    pub causal_reads: Option<Switch>,
    /// Run each instance in its own network namespace with its own address, as if on its
    /// own host (root only; for testing partitions with `myset partition`)
    #[arg(long)]
    pub netns: bool,
    /// How rw and ro carry connections: kernel (nftables destination rewrites, no extra hop;
    /// root only), userspace (the controller's proxy), or auto (kernel when root with a usable
    /// nft, else userspace) [default: auto for a new cluster, unchanged for an existing one]
    #[arg(long, value_enum, env = "MYSET_ENDPOINTS")]
    pub endpoints: Option<myset_api::EndpointsMode>,
    #[command(flatten)]
    pub backup: BackupArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Give up waiting for readiness after this many seconds
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

/// TLS of a new cluster (`up`, `restore`); fixed once the cluster exists.
#[derive(Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// TLS for every client, replication and control API connection, with certificates from
    /// the cluster's own CA [default: on]. Off leaves every connection in plain text
    #[arg(long, value_enum, value_name = "on|off")]
    pub tls: Option<Switch>,
    /// Your own CA certificate (PEM) to issue the members' certificates from, instead of a
    /// generated CA; needs --tls-ca-key
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_ca_key",
        conflicts_with = "tls"
    )]
    pub tls_ca: Option<PathBuf>,
    /// The private key (PEM) of --tls-ca
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    pub tls_ca_key: Option<PathBuf>,
}

/// Backup settings of `up`.
#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// Where base backups and the binlog archive go, for a new cluster: an absolute directory
    /// or s3://bucket/prefix (endpoint, region and credentials from the AWS_* environment)
    /// [default: <state dir>/backups/<name>]
    #[arg(long, value_name = "URL")]
    pub backup_store: Option<String>,
    /// Take a base backup this often, e.g. 6h, 30m, 1d; `off` for none [default: off;
    /// unchanged for an existing cluster]
    #[arg(long, value_name = "INTERVAL", value_parser = parse_backup_interval)]
    pub backup_schedule: Option<BackupInterval>,
    /// How many base backups to keep; older ones, and the archive only they need, are pruned
    /// [default: 7; unchanged for an existing cluster]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub backup_keep: Option<u32>,
}

/// `--backup-schedule`: every so many seconds, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupInterval {
    Off,
    Every(u64),
}

fn parse_backup_interval(text: &str) -> Result<BackupInterval, String> {
    if text == "off" {
        return Ok(BackupInterval::Off);
    }
    let bad = || {
        format!(
            "{text:?} is not an interval: write a number with m, h or d (e.g. 30m, 6h, 1d), or off"
        )
    };
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if seconds < 60 {
        return Err(format!(
            "{text:?} is too short: base backups at most every minute (1m)"
        ));
    }
    Ok(BackupInterval::Every(seconds))
}

/// A set-aside label becomes part of a file name: letters, digits, `-`, `_` and `.` only.
fn parse_set_aside_label(label: &str) -> Result<String, String> {
    let ok = !label.is_empty()
        && !label.starts_with('.')
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(label.to_string())
    } else {
        Err(format!(
            "{label:?} is not a usable label: use letters, digits, '-', '_' and '.' (not first)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn parse(args: &[&str]) -> Cli {
        Cli::parse_args(args.iter().map(OsString::from).collect()).expect("valid arguments")
    }

    #[test]
    fn kubectl_plugin_is_recognised_by_its_file_name() {
        for argv0 in [
            "kubectl-myset",
            "/home/u/.local/bin/kubectl-myset",
            "./kubectl-myset",
            "kubectl-myset.exe",
        ] {
            assert!(invoked_as_kubectl_plugin(argv0.as_ref()), "{argv0}");
        }
        for argv0 in [
            "myset",
            "/usr/bin/myset",
            "kubectl",
            "kubectl-myset2",
            "/opt/kubectl-myset/myset",
            "",
        ] {
            assert!(!invoked_as_kubectl_plugin(argv0.as_ref()), "{argv0}");
        }
    }

    #[test]
    fn the_plugin_works_on_kubernetes() {
        let cli = parse(&["/x/kubectl-myset", "status", "--name", "db", "-n", "prod"]);
        assert!(cli.kube);
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        assert!(matches!(cli.command, Command::Status { ref name, .. } if name.name == "db"));
        let cli = parse(&["myset", "status"]);
        assert!(!cli.kube);
        assert_eq!(cli.namespace, None);
        let cli = parse(&["myset", "--kube", "--namespace", "prod", "events"]);
        assert!(cli.kube);
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
    }

    #[test]
    fn operator_run_takes_the_global_namespace() {
        let cli = parse(&["myset", "operator", "run", "--namespace", "prod"]);
        assert_eq!(cli.namespace.as_deref(), Some("prod"));
        assert!(matches!(
            cli.command,
            Command::Operator(OperatorCommand::Run {
                namespace: None,
                ..
            })
        ));
    }

    #[test]
    fn backup_intervals_parse_strictly() {
        assert_eq!(parse_backup_interval("off"), Ok(BackupInterval::Off));
        assert_eq!(
            parse_backup_interval("30m"),
            Ok(BackupInterval::Every(1800))
        );
        assert_eq!(
            parse_backup_interval("6h"),
            Ok(BackupInterval::Every(21_600))
        );
        assert_eq!(
            parse_backup_interval("1d"),
            Ok(BackupInterval::Every(86_400))
        );
        for bad in ["", "h", "6", "6x", "-1h", "0m", "1.5h"] {
            assert!(parse_backup_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
