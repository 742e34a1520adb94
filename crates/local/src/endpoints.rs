//! Kernel-path endpoints: rw and ro as destination rewrites in nftables, as kube-proxy's
//! nftables mode does for Services. Each cluster has a table of its own, replaced whole in one
//! `nft -f -` transaction at each change; nothing else is ever touched.
//!
//! What the rules are is [`render`], a pure function of the ports and the servers the
//! controller routes to; running `nft` and `conntrack` is [`KernelEndpoints`].

use crate::layout::ClusterDir;
use anyhow::{bail, Context};
use myset_api::{Address, ClusterState, EndpointPath, EndpointsMode};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

/// Why the kernel cannot carry the endpoints here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelUnavailable {
    NotRoot,
    /// `nft` is missing or may not change the ruleset; with what it said.
    NoNft(String),
    /// An address the rules would need is not IPv4 (the table is `ip` only).
    NotIpv4(String),
}

impl std::fmt::Display for KernelUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelUnavailable::NotRoot => f.write_str("it needs root (it programs nftables)"),
            KernelUnavailable::NoNft(why) => write!(f, "`nft` is not usable ({why})"),
            KernelUnavailable::NotIpv4(host) => {
                write!(f, "{host} is not an IPv4 address (the rules are IPv4 only)")
            }
        }
    }
}

/// The path `asked` comes to, given whether the kernel can carry the endpoints: `auto` takes
/// the kernel when it can; `kernel` that cannot is an error naming why and the fix.
pub fn choose(
    asked: EndpointsMode,
    kernel: Result<(), KernelUnavailable>,
) -> Result<EndpointPath, String> {
    match (asked, kernel) {
        (EndpointsMode::Userspace, _) => Ok(EndpointPath::Userspace),
        (EndpointsMode::Auto | EndpointsMode::Kernel, Ok(())) => Ok(EndpointPath::Kernel),
        (EndpointsMode::Auto, Err(_)) => Ok(EndpointPath::Userspace),
        (EndpointsMode::Kernel, Err(why)) => Err(format!(
            "--endpoints kernel cannot be used: {why}; run as root with nftables installed (scripts/install-deps), or pass --endpoints userspace"
        )),
    }
}

/// Whether this process can program nftables for `state`'s endpoints.
pub fn kernel_availability(state: &ClusterState) -> Result<(), KernelUnavailable> {
    if !nix::unistd::geteuid().is_root() {
        return Err(KernelUnavailable::NotRoot);
    }
    if state.bind_host.parse::<Ipv4Addr>().is_err() {
        return Err(KernelUnavailable::NotIpv4(state.bind_host.clone()));
    }
    let listed = Command::new("nft")
        .args(["list", "tables"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| KernelUnavailable::NoNft(format!("cannot run it: {e}")))?;
    if !listed.status.success() {
        return Err(KernelUnavailable::NoNft(
            String::from_utf8_lossy(&listed.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// The path the cluster's endpoints take when its controller starts here.
pub fn path_for(state: &ClusterState) -> Result<EndpointPath, String> {
    let kernel = match state.endpoints {
        // No need to probe what will not be used.
        EndpointsMode::Userspace => Ok(()),
        _ => kernel_availability(state),
    };
    choose(state.endpoints, kernel)
}

/// The cluster's own table: its name and a hash of its directory, so clusters of the same
/// name in different state dirs never share one. Table names take no `-`.
pub fn table_name(dir: &ClusterDir) -> String {
    let root = std::fs::canonicalize(dir.root()).unwrap_or_else(|_| dir.root().to_path_buf());
    let hash = fnv1a(root.as_os_str().as_encoded_bytes());
    format!("myset_{}_{hash:08x}", dir.name().replace('-', "_"))
}

/// 32-bit FNV-1a: stable across builds (unlike std's hasher), which a name kept in the
/// kernel across controller restarts needs.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// What the cluster's table routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub table: String,
    /// Where clients connect: the endpoints' address (0.0.0.0: any local address).
    pub listen: Ipv4Addr,
    pub rw_port: u16,
    pub ro_port: u16,
    /// The server rw goes to; none: no rule, so connections reach the controller's proxy on
    /// the same port, which holds them until a server appears.
    pub rw: Option<SocketAddrV4>,
    /// The servers ro spreads new connections over, in turn; empty: no rule, as for rw.
    pub ro: Vec<SocketAddrV4>,
}

/// The `nft -f` script that replaces the table with `rules` in one transaction (creating it
/// first makes the delete valid when it does not exist yet).
///
/// - `output` rewrites connections made on this host, `prerouting` those arriving from
///   elsewhere (a network namespace); both jump to `endpoints`.
/// - ro takes the next server in turn for each new connection (`numgen inc`); replies and
///   later packets follow the connection's conntrack entry, so a connection stays put.
/// - `postrouting` masquerades rewritten connections from a loopback address that leave
///   through another interface (servers in network namespaces): the kernel would otherwise
///   drop packets with a loopback source on the wire.
pub fn render(rules: &Rules) -> String {
    let t = &rules.table;
    let daddr = if rules.listen.is_unspecified() {
        "fib daddr type local".to_string()
    } else {
        format!("ip daddr {}", rules.listen)
    };
    let mut endpoints = String::new();
    if let Some(rw) = rules.rw {
        let _ = writeln!(
            endpoints,
            "\t\t{daddr} tcp dport {} dnat ip to {rw}",
            rules.rw_port
        );
    }
    match rules.ro.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(
                endpoints,
                "\t\t{daddr} tcp dport {} dnat ip to {one}",
                rules.ro_port
            );
        }
        many => {
            let map: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{i} : {} . {}", s.ip(), s.port()))
                .collect();
            let _ = writeln!(
                endpoints,
                "\t\t{daddr} tcp dport {} dnat ip to numgen inc mod {} map {{ {} }}",
                rules.ro_port,
                many.len(),
                map.join(", ")
            );
        }
    }
    let original_daddr = if rules.listen.is_unspecified() {
        String::new()
    } else {
        format!("ct original ip daddr {} ", rules.listen)
    };
    format!(
        "table ip {t}\n\
         delete table ip {t}\n\
         table ip {t} {{\n\
         \tchain endpoints {{\n\
         {endpoints}\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tjump endpoints\n\
         \t}}\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tjump endpoints\n\
         \t}}\n\
         \tchain postrouting {{\n\
         \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr 127.0.0.0/8 oifname != \"lo\" ct status dnat {original_daddr}meta l4proto tcp ct original proto-dst {{ {}, {} }} masquerade\n\
         \t}}\n\
         }}\n",
        rules.rw_port, rules.ro_port
    )
}

/// The script that removes the table, and succeeds when there is none.
pub fn render_removal(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

/// A server address as the rules need it.
fn ipv4(server: &Address) -> anyhow::Result<SocketAddrV4> {
    let ip: Ipv4Addr = server.host.parse().with_context(|| {
        format!(
            "{} is not an IPv4 address; kernel endpoints need one",
            server.host
        )
    })?;
    Ok(SocketAddrV4::new(ip, server.port))
}

/// Runs `nft -f -` with `script`: one atomic transaction.
fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `nft` (install the Debian package nftables)")?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(script.as_bytes())
        .context("cannot write to `nft`")?;
    let out = child.wait_with_output().context("`nft` did not finish")?;
    if !out.status.success() {
        bail!(
            "nft refused the endpoint rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Removes the cluster's table, if any (`down`, `destroy`, or a controller's stop).
pub fn remove_table(dir: &ClusterDir) -> anyhow::Result<()> {
    nft(&render_removal(&table_name(dir)))
}

/// The local runtime's endpoint publisher: the cluster's nftables table, and conntrack to cut
/// connections rw no longer routes.
pub struct KernelEndpoints {
    table: String,
    listen: Ipv4Addr,
    rw_port: u16,
    ro_port: u16,
    /// The test subnet's index, for a cluster whose servers are in network namespaces.
    netns: Option<u8>,
}

impl KernelEndpoints {
    pub fn new(dir: &ClusterDir, state: &ClusterState) -> anyhow::Result<Self> {
        Ok(KernelEndpoints {
            table: table_name(dir),
            listen: state
                .bind_host
                .parse()
                .with_context(|| format!("{} is not an IPv4 address", state.bind_host))?,
            rw_port: state.rw_port,
            ro_port: state.ro_port,
            netns: state.netns,
        })
    }
}

impl myset_controller::EndpointPublisher for KernelEndpoints {
    fn path(&self) -> EndpointPath {
        EndpointPath::Kernel
    }

    fn publish(&self, rw: Option<&Address>, ro: &[Address]) -> anyhow::Result<()> {
        if let Some(index) = self.netns {
            // Rewritten connections from 127.0.0.1 leave through the cluster's own bridge.
            crate::netns::allow_loopback_sources(index)?;
        }
        let rules = Rules {
            table: self.table.clone(),
            listen: self.listen,
            rw_port: self.rw_port,
            ro_port: self.ro_port,
            rw: rw.map(ipv4).transpose()?,
            ro: ro.iter().map(ipv4).collect::<anyhow::Result<_>>()?,
        };
        nft(&render(&rules))
    }

    fn cut(&self, server: &Address) -> anyhow::Result<()> {
        let server = ipv4(server)?;
        let mut command = Command::new("conntrack");
        command.args(["-D", "-o", "xml", "-p", "tcp"]);
        if !self.listen.is_unspecified() {
            command.args(["--orig-dst", &self.listen.to_string()]);
        }
        command.args([
            "--orig-port-dst",
            &self.rw_port.to_string(),
            "--reply-src",
            &server.ip().to_string(),
            "--reply-port-src",
            &server.port().to_string(),
        ]);
        let out = command
            .stdin(Stdio::null())
            .output()
            .context("cannot run `conntrack` (install the Debian package conntrack)")?;
        // conntrack exits 1 both when no connection matched and when it failed, so a failure
        // is only logged: the old primary's agent cuts its client sessions anyway.
        tracing::info!(
            %server,
            success = out.status.success(),
            "conntrack: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let clients = crate::conntrack::client_ends(&String::from_utf8_lossy(&out.stdout))?;
        for filter in crate::conntrack::socket_filters(self.listen, self.rw_port, &clients) {
            let out = Command::new("ss")
                .args(["-K", "-t", "-n", "-H", &filter])
                .stdin(Stdio::null())
                .output()
                .context("cannot run `ss` (install the Debian package iproute2)")?;
            if !out.status.success() {
                anyhow::bail!(
                    "ss -K could not cut the clients of {server}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        if !clients.is_empty() {
            tracing::info!(%server, clients = clients.len(), "cut the rw clients of the old primary");
        }
        Ok(())
    }

    fn withdraw(&self) -> anyhow::Result<()> {
        nft(&render_removal(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(rw: Option<&str>, ro: &[&str]) -> Rules {
        Rules {
            table: "myset_demo_0000abcd".into(),
            listen: Ipv4Addr::LOCALHOST,
            rw_port: 13306,
            ro_port: 13307,
            rw: rw.map(|a| a.parse().unwrap()),
            ro: ro.iter().map(|a| a.parse().unwrap()).collect(),
        }
    }

    /// The rule lines of the `endpoints` chain.
    fn endpoint_rules(script: &str) -> Vec<String> {
        let start = script.find("chain endpoints {").expect("endpoints chain");
        let body = &script[start..];
        let end = body.find("\t}").expect("chain end");
        body[..end]
            .lines()
            .skip(1)
            .map(|l| l.trim().to_string())
            .collect()
    }

    #[test]
    fn rw_goes_to_the_primary_and_ro_takes_the_members_in_turn() {
        let script = render(&rules(
            Some("127.0.0.1:14000"),
            &["127.0.0.1:14000", "127.0.0.1:14001", "127.0.0.1:14002"],
        ));
        assert_eq!(
            endpoint_rules(&script),
            vec![
                "ip daddr 127.0.0.1 tcp dport 13306 dnat ip to 127.0.0.1:14000",
                "ip daddr 127.0.0.1 tcp dport 13307 dnat ip to numgen inc mod 3 map { 0 : 127.0.0.1 . 14000, 1 : 127.0.0.1 . 14001, 2 : 127.0.0.1 . 14002 }",
            ]
        );
    }

    #[test]
    fn nobody_eligible_means_no_rule_so_connections_fall_to_the_proxy() {
        assert!(endpoint_rules(&render(&rules(None, &[]))).is_empty());
        let one = render(&rules(Some("10.231.1.10:3306"), &["10.231.1.11:3306"]));
        assert_eq!(
            endpoint_rules(&one)[1],
            "ip daddr 127.0.0.1 tcp dport 13307 dnat ip to 10.231.1.11:3306"
        );
    }

    #[test]
    fn the_table_is_replaced_whole_and_only_it() {
        let script = render(&rules(Some("127.0.0.1:1"), &[]));
        let t = "myset_demo_0000abcd";
        assert!(script.starts_with(&format!(
            "table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n"
        )));
        // Every table the script names is the cluster's own.
        for line in script.lines().filter(|l| l.contains("table ")) {
            assert!(line.contains(t), "{line}");
        }
        assert_eq!(
            render_removal(t),
            format!("table ip {t}\ndelete table ip {t}\n")
        );
    }

    #[test]
    fn both_hooks_are_rewritten_and_only_loopback_sources_leaving_are_masqueraded() {
        let script = render(&rules(Some("10.231.1.10:3306"), &[]));
        assert!(script.contains("type nat hook output priority -100;"));
        assert!(script.contains("type nat hook prerouting priority dstnat;"));
        assert!(script.contains(
            "ip saddr 127.0.0.0/8 oifname != \"lo\" ct status dnat ct original ip daddr 127.0.0.1 meta l4proto tcp ct original proto-dst { 13306, 13307 } masquerade"
        ));
        let mut any = rules(None, &[]);
        any.listen = Ipv4Addr::UNSPECIFIED;
        any.rw = Some("127.0.0.1:1".parse().unwrap());
        assert_eq!(
            endpoint_rules(&render(&any))[0],
            "fib daddr type local tcp dport 13306 dnat ip to 127.0.0.1:1"
        );
    }

    #[test]
    fn auto_takes_the_kernel_when_it_can_and_kernel_says_why_it_cannot() {
        use EndpointsMode::*;
        assert_eq!(choose(Auto, Ok(())), Ok(EndpointPath::Kernel));
        assert_eq!(
            choose(Auto, Err(KernelUnavailable::NotRoot)),
            Ok(EndpointPath::Userspace)
        );
        assert_eq!(choose(Kernel, Ok(())), Ok(EndpointPath::Kernel));
        assert_eq!(choose(Userspace, Ok(())), Ok(EndpointPath::Userspace));
        let refused = choose(Kernel, Err(KernelUnavailable::NotRoot)).unwrap_err();
        assert!(refused.contains("needs root"), "{refused}");
        assert!(refused.contains("--endpoints userspace"), "{refused}");
        assert!(!refused.contains('\n'));
    }

    #[test]
    fn table_names_are_the_clusters_own() {
        let a = ClusterDir::new(std::path::Path::new("/nonexistent/a"), "my-demo");
        let b = ClusterDir::new(std::path::Path::new("/nonexistent/b"), "my-demo");
        assert!(table_name(&a).starts_with("myset_my_demo_"));
        assert_ne!(table_name(&a), table_name(&b));
        assert_eq!(table_name(&a), table_name(&a.clone()));
    }

    /// The rendered script is what nft accepts (checked, not applied), where nft runs.
    #[test]
    fn nft_accepts_the_rendered_rules() {
        let state = ClusterState::new("t", 1, "127.0.0.1", 1, 2);
        if let Err(why) = kernel_availability(&state) {
            eprintln!("skipped: kernel endpoints unavailable here: {why}");
            return;
        }
        for r in [
            rules(None, &[]),
            rules(Some("127.0.0.1:1"), &["127.0.0.1:1"]),
            rules(Some("127.0.0.1:1"), &["127.0.0.1:1", "10.231.1.11:3306"]),
        ] {
            let mut child = Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("nft");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(render(&r).as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}\n{}",
                render(&r),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
