//! The rustls configurations of the control APIs: a server whose certificate can be replaced
//! while it runs, and clients that trust only the cluster's CA.

use crate::{files, CertFiles, TlsError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// A server certificate read from its files, and read again on [`ReloadingCert::reload`]: a
/// renewed certificate takes effect for new connections without a restart.
#[derive(Debug)]
pub struct ReloadingCert {
    files: CertFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    pub fn load(files: CertFiles) -> Result<Arc<Self>, TlsError> {
        let current = RwLock::new(certified_key(&files.cert(), &files.key())?);
        Ok(Arc::new(ReloadingCert { files, current }))
    }

    /// Reads the files again. On an error the previous certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = certified_key(&self.files.cert(), &self.files.key())?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = files::read(path)?;
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Unparsable {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Unparsable {
            path: path.display().to_string(),
            problem: "no certificate in it".into(),
        });
    }
    Ok(certs)
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(cert)?;
    let pem = files::read(key)?;
    let unparsable = |problem: String| TlsError::Unparsable {
        path: key.display().to_string(),
        problem,
    };
    let key_der =
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| unparsable(e.to_string()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| unparsable(e.to_string()))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing)))
}

/// The control API servers' configuration: TLS 1.2 and 1.3, HTTP/1.1, the certificate from
/// `cert`.
pub fn server_config(cert: Arc<ReloadingCert>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration that trusts the CA in `ca` and nothing else.
pub fn client_config(ca: &Path) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Verifies `cert_pem` as a server certificate for `name` against `ca_pem`, as a client would.
#[cfg(test)]
pub(crate) fn verify_chain(ca_pem: &str, cert_pem: &str, name: &str) -> Result<(), rustls::Error> {
    use rustls::client::danger::ServerCertVerifier;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap())?;
    }
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| rustls::Error::General(e.to_string()))?;
    let leaf = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], rustls::pki_types::UnixTime::now())
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Authority, CertRequest};

    #[test]
    fn a_reload_picks_up_a_renewed_certificate_and_a_broken_file_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles::in_dir(dir.path());
        let ca = Authority::generate("ca", crate::CA_VALIDITY).unwrap();
        let request = CertRequest {
            common_name: "c".into(),
            dns_names: vec!["c".into()],
            ips: vec![],
            validity: crate::MEMBER_CERT_VALIDITY,
        };
        let write = |issued: &crate::Issued| {
            crate::write_public(&files.cert(), &issued.cert_pem).unwrap();
            crate::write_private(&files.key(), &issued.key_pem).unwrap();
        };
        write(&ca.issue(&request).unwrap());
        let cert = ReloadingCert::load(files.clone()).unwrap();
        let first = cert.current.read().unwrap().cert[0].clone();
        write(&ca.issue(&request).unwrap());
        cert.reload().unwrap();
        let second = cert.current.read().unwrap().cert[0].clone();
        assert_ne!(first, second);
        crate::write_public(&files.cert(), "not pem").unwrap();
        assert!(cert.reload().is_err());
        assert_eq!(cert.current.read().unwrap().cert[0], second);
        server_config(cert).unwrap();
        crate::write_public(&files.ca(), ca.cert_pem()).unwrap();
        client_config(&files.ca()).unwrap();
    }
}
