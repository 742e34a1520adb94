//! Certificates of a local cluster. The CA lives in the cluster's `tls` dir with the
//! controller's own certificate; each member's certificate, and a copy of the CA's, live in
//! its instance's `tls` dir, which its agent is started with.

use crate::layout::ClusterDir;
use anyhow::Context;
use myset_api::{CaSource, ClusterState};
use myset_tls::{Authority, CertFiles, CertRequest};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// A CA the user brings (`up --tls-ca FILE --tls-ca-key FILE`).
#[derive(Debug, Clone)]
pub struct SuppliedCa {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl SuppliedCa {
    /// Checks, before anything is created, that the files are a CA and its key.
    pub fn check(&self) -> anyhow::Result<()> {
        check_readable(&self.cert, "--tls-ca")?;
        check_readable(&self.key, "--tls-ca-key")?;
        self.load().map(drop)
    }

    fn load(&self) -> anyhow::Result<Authority> {
        Authority::load(&self.cert, &self.key).with_context(|| {
            "--tls-ca and --tls-ca-key must be a CA certificate and its private key, both PEM"
        })
    }
}

/// Creates the cluster's CA: generated, or the user's copied in (after checking the key is
/// the certificate's). Returns where the CA came from.
pub fn create_authority(
    dir: &ClusterDir,
    supplied: Option<&SuppliedCa>,
) -> anyhow::Result<CaSource> {
    let files = dir.tls();
    let (authority, source) = match supplied {
        Some(ca) => (ca.load()?, CaSource::Supplied),
        None => (
            Authority::generate(&format!("myset {} CA", dir.name()), myset_tls::CA_VALIDITY)?,
            CaSource::Generated,
        ),
    };
    myset_tls::write_public(&files.ca(), authority.cert_pem())?;
    myset_tls::write_private(&files.ca_key(), &authority.key_pem())?;
    Ok(source)
}

/// What a member's certificate names: the member by its instance name, and every address a
/// client may reach it at and verify it by (its own, and the rw/ro endpoints' host, which
/// route to it).
pub fn member_request(instance_name: &str, hosts: &[&str]) -> CertRequest {
    request(instance_name, &[instance_name, "localhost"], hosts)
}

/// What the controller's API certificate names.
pub fn controller_request(cluster: &str, endpoint_host: &str) -> CertRequest {
    let name = format!("{cluster}-controller");
    request(
        &name,
        &[name.as_str(), "localhost"],
        &[endpoint_host, "127.0.0.1"],
    )
}

fn request(common_name: &str, dns: &[&str], hosts: &[&str]) -> CertRequest {
    let mut ips: Vec<IpAddr> = hosts.iter().filter_map(|h| h.parse().ok()).collect();
    ips.sort();
    ips.dedup();
    let mut dns_names: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
    // A host given by name (not an address) is named as such.
    dns_names.extend(
        hosts
            .iter()
            .filter(|h| h.parse::<IpAddr>().is_err())
            .map(|h| h.to_string()),
    );
    dns_names.dedup();
    CertRequest {
        common_name: common_name.to_string(),
        dns_names,
        ips,
        validity: myset_tls::MEMBER_CERT_VALIDITY,
    }
}

/// Whether the certificate in `files` can stay: it exists, is from the CA in `ca_pem`, names
/// everything `request` asks for, and is not nearing its end.
fn current(files: &CertFiles, ca_pem: &str, request: &CertRequest, now: SystemTime) -> bool {
    let Ok(parsed) = myset_tls::inspect(&files.cert()) else {
        return false;
    };
    let same_ca = std::fs::read_to_string(files.ca()).is_ok_and(|held| held == ca_pem);
    same_ca
        && files.key().exists()
        && !myset_tls::needs_renewal(parsed.not_before, parsed.not_after, now)
        && request.ips.iter().all(|ip| parsed.ips.contains(ip))
        && request
            .dns_names
            .iter()
            .all(|d| parsed.dns_names.contains(d))
}

/// Issues a certificate into `files` unless the one there can stay (always with `force`).
/// Returns whether it issued.
fn ensure(
    cluster_tls: &CertFiles,
    files: &CertFiles,
    request: &CertRequest,
    force: bool,
) -> anyhow::Result<bool> {
    let ca_pem = std::fs::read_to_string(cluster_tls.ca()).with_context(|| {
        format!(
            "cannot read the cluster's CA {}",
            cluster_tls.ca().display()
        )
    })?;
    if !force && current(files, &ca_pem, request, SystemTime::now()) {
        return Ok(false);
    }
    let authority = Authority::load(&cluster_tls.ca(), &cluster_tls.ca_key())?;
    let issued = authority.issue(request)?;
    // The key first: a reader pairing a new certificate with the old key would fail.
    myset_tls::write_private(&files.key(), &issued.key_pem)?;
    myset_tls::write_public(&files.cert(), &issued.cert_pem)?;
    if files.ca() != cluster_tls.ca() {
        myset_tls::write_public(&files.ca(), &ca_pem)?;
    }
    Ok(true)
}

/// The member's certificate files, issued or renewed as needed. Blocking.
pub fn ensure_member(
    dir: &ClusterDir,
    ordinal: u32,
    hosts: &[&str],
    force: bool,
) -> anyhow::Result<bool> {
    let name = format!("{}-{ordinal}", dir.name());
    ensure(
        &dir.tls(),
        &dir.instance_tls(ordinal),
        &member_request(&name, hosts),
        force,
    )
}

/// The controller's API certificate, issued or renewed as needed. Blocking.
pub fn ensure_controller(
    dir: &ClusterDir,
    endpoint_host: &str,
    force: bool,
) -> anyhow::Result<bool> {
    let files = dir.tls();
    ensure(
        &files,
        &files,
        &controller_request(dir.name(), endpoint_host),
        force,
    )
}

/// The controller's TLS from the cluster dir, its API certificate issued if it has none yet.
pub fn controller_tls(
    dir: &ClusterDir,
    state: &ClusterState,
) -> anyhow::Result<(
    myset_controller::tls::ControllerTls,
    Arc<myset_tls::ReloadingCert>,
)> {
    myset_tls::install_crypto_provider();
    ensure_controller(dir, &state.bind_host, false)?;
    let cert = myset_tls::ReloadingCert::load(dir.tls())?;
    let api_server = Arc::new(myset_tls::server_config(cert.clone())?);
    Ok((
        myset_controller::tls::ControllerTls {
            api_server,
            ca: dir.tls().ca(),
        },
        cert,
    ))
}

/// How a CLI or test reaches this cluster's controller and agents.
pub fn api_access(
    dir: &ClusterDir,
    state: &ClusterState,
    token: &str,
) -> anyhow::Result<myset_http::ApiAccess> {
    Ok(if state.tls.enabled() {
        myset_http::ApiAccess::verified_by(token, &dir.tls().ca())?
    } else {
        myset_http::ApiAccess::plain(token)
    })
}

/// The CA file clients verify this cluster's servers by; None with TLS off.
pub fn client_ca(dir: &ClusterDir, state: &ClusterState) -> Option<PathBuf> {
    state.tls.enabled().then(|| dir.tls().ca())
}

/// Whether `path` holds a file (for a clear error before anything is created).
fn check_readable(path: &Path, flag: &str) -> anyhow::Result<()> {
    std::fs::metadata(path)
        .map(drop)
        .with_context(|| format!("{flag} {}: cannot read it; give a PEM file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_is_named_by_its_instance_name_and_every_address_it_is_reached_at() {
        let r = member_request(
            "demo-1",
            &["127.0.0.1", "10.231.0.3", "127.0.0.1", "db.example"],
        );
        assert_eq!(r.common_name, "demo-1");
        assert_eq!(r.dns_names, ["demo-1", "localhost", "db.example"]);
        assert_eq!(
            r.ips,
            [
                "10.231.0.3".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn a_certificate_is_reissued_when_missing_forced_from_another_ca_or_missing_a_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        create_authority(&dir, None).unwrap();
        let hosts = ["127.0.0.1"];
        assert!(
            ensure_member(&dir, 0, &hosts, false).unwrap(),
            "missing: issued"
        );
        assert!(
            !ensure_member(&dir, 0, &hosts, false).unwrap(),
            "current: kept"
        );
        assert!(
            ensure_member(&dir, 0, &hosts, true).unwrap(),
            "forced: issued"
        );
        assert!(
            ensure_member(&dir, 0, &["127.0.0.1", "10.231.0.2"], false).unwrap(),
            "a new address: issued"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.instance_tls(0).key())
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        create_authority(&dir, None).unwrap();
        assert!(
            ensure_member(&dir, 0, &hosts, false).unwrap(),
            "another CA: issued"
        );
        assert_eq!(
            std::fs::read_to_string(dir.instance_tls(0).ca()).unwrap(),
            std::fs::read_to_string(dir.tls().ca()).unwrap()
        );
    }

    #[test]
    fn a_supplied_ca_issues_and_a_bad_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let user = Authority::generate("user CA", myset_tls::CA_VALIDITY).unwrap();
        let (cert, key) = (tmp.path().join("ca.pem"), tmp.path().join("ca.key"));
        myset_tls::write_public(&cert, user.cert_pem()).unwrap();
        myset_tls::write_private(&key, &user.key_pem()).unwrap();
        let dir = ClusterDir::new(tmp.path(), "demo");
        let supplied = SuppliedCa {
            cert: cert.clone(),
            key: key.clone(),
        };
        assert_eq!(
            create_authority(&dir, Some(&supplied)).unwrap(),
            CaSource::Supplied
        );
        ensure_member(&dir, 0, &["127.0.0.1"], false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.instance_tls(0).ca()).unwrap(),
            user.cert_pem()
        );
        let backwards = SuppliedCa {
            cert: key,
            key: cert,
        };
        let e = format!(
            "{:#}",
            create_authority(&dir, Some(&backwards)).unwrap_err()
        );
        assert!(e.contains("--tls-ca and --tls-ca-key"), "{e}");
    }
}
