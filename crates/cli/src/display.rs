//! What the CLI prints.

use myset_api::{ClusterState, ClusterStatus, Condition, Credentials, Event, InstanceStatus};
use myset_local::ClusterDir;

/// Writes one line to stdout (what `say!` expands to). See [`write_out`].
pub fn print_line(args: std::fmt::Arguments<'_>) {
    let mut line = args.to_string();
    line.push('\n');
    write_out(line.as_bytes());
}

/// Writes to stdout, the one way the CLI does. A reader that went away (`myset events |
/// head`, a closed terminal) ends the process quietly with success: what it read was printed,
/// and nobody is left to read the rest. `println!` would panic there instead, since SIGPIPE is
/// ignored (see main.rs).
pub fn write_out(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// An error as one line: each cause in the chain once. A cause whose words the line already
/// holds (an error that prints its source, wrapped again) is not repeated.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string().replace('\n', " ");
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

pub fn connection_help(status: &ClusterStatus, dir: &ClusterDir) {
    let primary = format!("{}-{}", status.name, status.primary);
    say!(
        "cluster {} is up: {} instances Ready, primary {primary}",
        status.name,
        status.instances.len()
    );
    say!("  rw (the primary):        {}", status.endpoints.rw);
    say!("  ro (every Ready member): {}", status.endpoints.ro);
    say!(
        "  user {}, password in {}",
        status.credentials.user,
        status.credentials.password_file
    );
    if let Some(ca) = &status.tls.ca_file {
        say!("  TLS required; servers verify with the CA in {ca}");
    }
    let (ro_host, ro_port) = split(&status.endpoints.ro);
    let cnf = dir.client_config();
    say!("connect with `myset shell` (rw) or `myset shell ro`, or the mariadb client:");
    say!("  mariadb --defaults-extra-file={}", cnf.display());
    say!(
        "  mariadb --defaults-extra-file={} -h {ro_host} -P {ro_port}",
        cnf.display()
    );
}

fn split(address: &str) -> (&str, &str) {
    address.rsplit_once(':').unwrap_or((address, ""))
}

pub fn status_table(s: &ClusterStatus) {
    let running = match s.controller_pid {
        Some(pid) if s.running => format!("running (controller pid {pid})"),
        _ if s.running => "running".to_string(),
        _ => "stopped".to_string(),
    };
    say!(
        "cluster {}  {running}  primary {}-{}  term {}  replicas {}",
        s.name,
        s.name,
        s.primary,
        s.term,
        s.replicas
    );
    let guarantee = match s.topology {
        myset_api::Topology::Galera => format!(
            "topology galera (every member writable; rw goes to one Ready member; causal reads {})",
            if s.causal_reads { "on" } else { "off" }
        ),
        myset_api::Topology::Replication if s.durability_in_force == s.durability => {
            format!("durability {}", s.durability)
        }
        myset_api::Topology::Replication => format!(
            "durability {} (asked {})",
            s.durability_in_force, s.durability
        ),
    };
    let carried = match s.endpoints.mode {
        Some(mode) if s.endpoints.asked == myset_api::EndpointsMode::Auto => {
            format!("  endpoints {mode} (auto)")
        }
        Some(mode) => format!("  endpoints {mode}"),
        None => String::new(),
    };
    say!(
        "rw {}  ro {}{carried}  {guarantee}",
        s.endpoints.rw,
        s.endpoints.ro
    );
    for c in &s.conditions {
        say!("warning: {}", condition(c, &s.name));
    }
    if let Some(c) = &s.last_primary_change {
        say!(
            "last primary change: {} at {}, term {}, {}-{} -> {}-{}: {}",
            c.kind,
            utc(c.at_ms as f64 / 1000.0),
            c.term,
            s.name,
            c.from,
            s.name,
            c.to,
            c.reason
        );
    }
    say!(
        "user {}  password file {}",
        s.credentials.user,
        s.credentials.password_file
    );
    match &s.tls.ca_file {
        Some(ca) => say!("tls {}  ca {ca}", s.tls.mode),
        None => say!("tls {}", s.tls.mode),
    }
    if let Some(url) = &s.metrics {
        say!("metrics {url}");
    }
    if let Some(b) = &s.backup {
        backup_lines(b);
    }
    say!(
        "{:<16} {:<8} {:<6} {:<22} {:<9} {:<8} {:<9} {:<8} {:<12} STATE",
        "NAME",
        "ROLE",
        "READY",
        "ADDRESS",
        "SERVER_ID",
        "PID",
        "AGENT_PID",
        "RESTARTS",
        "VERSION"
    );
    let opt = |v: Option<u32>| v.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
    for i in &s.instances {
        let mut state = i.state.to_string();
        if let Some(g) = &i.galera {
            state.push_str(&format!(
                ", wsrep {}, {} component of {}, seqno {}",
                g.state,
                if g.primary_component {
                    "primary"
                } else {
                    "non-primary"
                },
                g.cluster_size,
                g.seqno
            ));
        }
        if let Some(reason) = i.reason.as_ref().filter(|_| !i.ready) {
            state.push_str(&format!(" ({reason})"));
        }
        // Galera members are all writable: the role column names rw's member instead.
        let role = match s.topology {
            myset_api::Topology::Galera if i.ordinal == s.primary => "rw".to_string(),
            myset_api::Topology::Galera => "member".to_string(),
            myset_api::Topology::Replication => i.role.to_string(),
        };
        say!(
            "{:<16} {:<8} {:<6} {:<22} {:<9} {:<8} {:<9} {:<8} {:<12} {state}",
            i.name,
            role,
            if i.ready { "yes" } else { "no" },
            format!("{}:{}", i.host, i.port),
            i.server_id,
            opt(i.pid),
            opt(i.agent_pid),
            i.restarts,
            short_version(i.version.as_deref()),
        );
    }
}

/// The version number alone (`10.11.6` of `10.11.6-MariaDB-0+deb12u1-log`); `-` while unknown.
fn short_version(version: Option<&str>) -> &str {
    match version {
        Some(v) => v.split('-').next().unwrap_or(v),
        None => "-",
    }
}

/// The backup store, the last base backup and the archive, in words.
fn backup_lines(b: &myset_api::BackupStatus) {
    let schedule = match b.every_seconds {
        Some(every) => format!("a base backup every {}", duration(every)),
        None => "base backups on demand".to_string(),
    };
    say!("backups {}  {schedule}, keep {}", b.store, b.keep);
    match &b.last_base_backup {
        Some(l) => say!(
            "last base backup {} at {}, {} bytes, GTID {}",
            l.id,
            utc(l.finished_at as f64),
            l.bytes,
            l.gtid
        ),
        None => say!("last base backup: none yet (myset backup takes one)"),
    }
    let Some(a) = &b.archive else { return };
    let behind = a
        .behind_transactions
        .map_or_else(|| "unknown".into(), |n| n.to_string());
    say!(
        "binlog archive from {}: last GTID {}, last event {}, {behind} transactions behind",
        a.source.as_deref().unwrap_or("(not connected)"),
        a.last_gtid.as_deref().unwrap_or("-"),
        a.last_event_at
            .map_or_else(|| "-".into(), |t| utc(t as f64)),
    );
    for gap in &a.gaps {
        say!(
            "warning: archive gap at {}: expected {}, got {}; a restore cannot reach past it",
            utc(gap.at as f64),
            gap.expected,
            gap.received
        );
    }
    if let Some(e) = &a.last_error {
        say!("warning: binlog archive: {e}");
    }
}

fn duration(seconds: u64) -> String {
    match seconds {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s => format!("{}m", s / 60),
    }
}

/// One condition in words, with times as people read them.
fn condition(c: &Condition, cluster: &str) -> String {
    match c {
        Condition::CommitsWaiting { ordinal, since_ms } => format!(
            "commits on {cluster}-{ordinal} have been waiting for a replica's acknowledgement since {}",
            utc(*since_ms as f64 / 1000.0)
        ),
        Condition::NoFailoverCandidate { reason } => {
            format!("no replica to fail over to: {reason}")
        }
        Condition::DurabilityDegraded {
            asked,
            in_force,
            reason,
        } => format!("durability {in_force} in force, {asked} asked: {reason}"),
    }
}

/// Status from the records alone, when no controller runs.
pub fn offline_status(dir: &ClusterDir, state: &ClusterState) -> anyhow::Result<ClusterStatus> {
    let secrets = dir.load_secrets()?;
    let alive = |file: std::path::PathBuf, o: u32| {
        myset_os::read_pid(&file)
            .filter(|&p| myset_os::pid_matches(p, &dir.instance_dir(o).to_string_lossy()))
    };
    let instances = state
        .members
        .iter()
        .map(|&o| InstanceStatus {
            pid: alive(dir.server_pid_file(o), o),
            agent_pid: alive(dir.agent_pid_file(o), o),
            ..InstanceStatus::from_state(state, o)
        })
        .collect();
    Ok(ClusterStatus::from_state(
        state,
        false,
        Credentials {
            user: secrets.user,
            password_file: dir.password_file().display().to_string(),
        },
        instances,
    ))
}

/// Rows as `mariadb -N -B` prints them: tab-separated, NULL spelled out, specials escaped.
pub fn rows(rows: &[Vec<Option<String>>]) {
    let mut text = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .map(|v| match v {
                None => "NULL".to_string(),
                Some(s) => escape(s),
            })
            .collect();
        text.push_str(&line.join("\t"));
        text.push('\n');
    }
    write_out(text.as_bytes());
}

/// What `mariadb -vv` prints after a statement that returns no rows.
pub fn affected(rows: u64) {
    let noun = if rows == 1 { "row" } else { "rows" };
    say!("Query OK, {rows} {noun} affected");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\0', "\\0")
}

/// What `rotate-certs` did: the members serving new certificates, and those that take them up
/// at their next start.
pub fn rotation(rotation: &myset_api::CertRotation) {
    let list = |ordinals: &[u32]| {
        ordinals
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!(
        "renewed certificates; serving them now: members {}",
        list(&rotation.renewed)
    );
    if !rotation.pending.is_empty() {
        say!(
            "members {} have new certificates but did not answer; they use them from their next start",
            list(&rotation.pending)
        );
    }
}

/// The line a successful switchover prints.
pub fn switchover(cluster: &str, from: u32, to: u32, term: u64) {
    say!("primary moved from {cluster}-{from} to {cluster}-{to} (term {term})");
}

pub fn events(events: &[Event]) {
    for e in events {
        say!("{}  {:<26} {}", utc(e.at), e.kind.to_string(), e.message);
    }
}

/// Formats Unix seconds as an ISO 8601 UTC timestamp with milliseconds.
fn utc(at: f64) -> String {
    let millis = (at * 1000.0).round() as i64;
    let (secs, ms) = (millis.div_euclid(1000), millis.rem_euclid(1000));
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(1_795_219_200.5), "2026-11-21T00:00:00.500Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn versions_are_shown_by_their_number() {
        assert_eq!(
            short_version(Some("10.11.6-MariaDB-0+deb12u1-log")),
            "10.11.6"
        );
        assert_eq!(short_version(Some("11.4.2")), "11.4.2");
        assert_eq!(short_version(None), "-");
    }

    #[test]
    fn an_error_chain_is_one_line_without_repeats() {
        let inner = anyhow::anyhow!("connection refused");
        let e = inner
            .context("cannot reach the controller: connection refused")
            .context("status failed");
        assert_eq!(
            error_line(&e),
            "status failed: cannot reach the controller: connection refused"
        );
        let e = anyhow::anyhow!("line one\nline two");
        assert_eq!(error_line(&e), "line one line two");
    }

    #[test]
    fn escaping_matches_the_batch_client() {
        assert_eq!(escape("a\tb\nc\\d"), "a\\tb\\nc\\\\d");
    }
}
