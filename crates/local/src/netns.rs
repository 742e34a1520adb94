//! Instances as separate hosts: each in its own network namespace with its own address,
//! joined by a bridge in the root namespace where the controller runs. Root only. Lets tests
//! cut one instance off from the others and from the controller.

use anyhow::{bail, Context};
use std::process::Command;

/// The subnet 10.231.<index>.0/24 is the cluster's private test network; the bridge is .1 and
/// ordinal N is .(10 + N). Nothing outside the namespaces myset creates is ever addressed.
pub fn subnet_host(index: u8, last: u32) -> String {
    format!("10.231.{index}.{last}")
}

pub fn instance_address(index: u8, ordinal: u32) -> String {
    subnet_host(index, 10 + ordinal)
}

/// The subnet index is part of the name, so clusters of the same name in different state
/// dirs never share a namespace.
pub fn namespace(index: u8, cluster: &str, ordinal: u32) -> String {
    format!("myset{index}-{cluster}-{ordinal}")
}

/// The prefix of every namespace of a cluster.
pub fn namespace_prefix(index: u8, cluster: &str) -> String {
    format!("myset{index}-{cluster}-")
}

fn bridge(index: u8) -> String {
    format!("msbr{index}")
}

/// The host side of an instance's cable; taking it down partitions the instance.
pub fn host_link(index: u8, ordinal: u32) -> String {
    format!("msv{index}-{ordinal}")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip` (install the Debian package iproute2)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn exists(kind: &str, name: &str) -> bool {
    match kind {
        "netns" => std::path::Path::new("/run/netns").join(name).exists(),
        _ => std::path::Path::new("/sys/class/net").join(name).exists(),
    }
}

/// Claims a test subnet by creating its bridge: the kernel refuses a second bridge of the same
/// name, so two clusters created at once never get the same subnet. The bridge lives until the
/// cluster is destroyed (`ensure` makes it again after a reboot).
pub fn claim_subnet() -> anyhow::Result<u8> {
    for index in 1..=250u8 {
        if exists("link", &bridge(index)) {
            continue;
        }
        if ip(&["link", "add", &bridge(index), "type", "bridge"]).is_ok() {
            let address = format!("{}/24", subnet_host(index, 1));
            ip(&["addr", "add", &address, "dev", &bridge(index)])?;
            return Ok(index);
        }
    }
    bail!("no free 10.231.x.0/24 test subnet left: destroy a --netns cluster")
}

pub fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("--netns needs root (it creates network namespaces): run as root or drop --netns");
    }
    Ok(())
}

/// Creates (idempotently) the bridge and the instance's namespace, cable and address.
pub fn ensure(cluster: &str, index: u8, ordinal: u32) -> anyhow::Result<()> {
    let br = bridge(index);
    if !exists("link", &br) {
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", subnet_host(index, 1)),
            "dev",
            &br,
        ])?;
    }
    ip(&["link", "set", &br, "up"])?;
    let ns = namespace(index, cluster, ordinal);
    if !exists("netns", &ns) {
        ip(&["netns", "add", &ns])?;
    }
    ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    let host = host_link(index, ordinal);
    // A namespace deleted by `down` takes its end of the cable with it, but the kernel removes
    // the host end a moment later: a host end without its peer is stale, and is replaced.
    let has_cable = ip(&["-n", &ns, "link", "show", "eth0"]).is_ok();
    if !has_cable && exists("link", &host) {
        // It may vanish on its own meanwhile: a failed delete is fine, the add below says.
        let _ = ip(&["link", "del", &host]);
    }
    if !has_cable {
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &host, "master", &br])?;
        let address = format!("{}/24", instance_address(index, ordinal));
        ip(&["-n", &ns, "addr", "add", &address, "dev", "eth0"])?;
    }
    ip(&["link", "set", &host, "up"])?;
    ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
    Ok(())
}

/// Lets connections from 127.0.0.1 that the kernel endpoints rewrote leave through the
/// cluster's own bridge (`route_localnet`, as kube-proxy sets for localhost node ports); they
/// are masqueraded on the way out. Only this bridge's setting changes.
pub fn allow_loopback_sources(index: u8) -> anyhow::Result<()> {
    let path = format!("/proc/sys/net/ipv4/conf/{}/route_localnet", bridge(index));
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(&path, "1").with_context(|| format!("cannot set {path}"))
}

/// Cuts (`connected` false) or restores the instance's only link.
pub fn set_connected(index: u8, ordinal: u32, connected: bool) -> anyhow::Result<()> {
    ip(&[
        "link",
        "set",
        &host_link(index, ordinal),
        if connected { "up" } else { "down" },
    ])
}

/// Whether the instance's link is up (it can be reached over the network).
pub fn connected(index: u8, ordinal: u32) -> bool {
    let operstate = format!("/sys/class/net/{}/operstate", host_link(index, ordinal));
    std::fs::read_to_string(operstate).is_ok_and(|s| s.trim() != "down")
}

/// Removes the instance's namespace (its cable goes with it).
pub fn remove(index: u8, cluster: &str, ordinal: u32) {
    let ns = namespace(index, cluster, ordinal);
    if exists("netns", &ns) {
        if let Err(e) = ip(&["netns", "del", &ns]) {
            tracing::warn!("{e:#}");
        }
    }
}

/// Removes the bridge once no instance uses it.
pub fn remove_bridge(index: u8) {
    let br = bridge(index);
    if exists("link", &br) {
        if let Err(e) = ip(&["link", "del", &br]) {
            tracing::warn!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_interface_limits() {
        assert!(host_link(250, 63).len() <= 15);
        assert!(bridge(250).len() <= 15);
        assert_eq!(instance_address(3, 2), "10.231.3.12");
    }
}
