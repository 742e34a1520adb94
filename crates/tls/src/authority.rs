//! The cluster's certificate authority and the certificates it issues.

use crate::TlsError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A CA that can issue: its certificate and its signing key.
pub struct Authority {
    cert_pem: String,
    key: KeyPair,
}

/// What a member's certificate must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertRequest {
    pub common_name: String,
    /// Host names clients may verify it by.
    pub dns_names: Vec<String>,
    /// Addresses clients may verify it by (the member's own, and the endpoints that route to it).
    pub ips: Vec<IpAddr>,
    pub validity: Duration,
}

/// A certificate and its new private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Clocks of the machines a cluster spans may disagree a little: a certificate is valid from
/// a little before it was made.
const BACKDATE: Duration = Duration::from_secs(3600);

impl Authority {
    /// A new self-signed CA named after the cluster.
    pub fn generate(common_name: &str, validity: Duration) -> Result<Self, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            key,
        })
    }

    /// A CA from its PEM files (the user's own CA, or one generated earlier).
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let cert_pem = crate::files::read(cert)?;
        let key_pem = crate::files::read(key)?;
        let key_path = key;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| TlsError::Unparsable {
            path: key_path.display().to_string(),
            problem: e.to_string(),
        })?;
        let parsed = crate::files::parse_certificate(cert, &cert_pem)?;
        if !parsed.is_ca {
            return Err(TlsError::Unparsable {
                path: cert.display().to_string(),
                problem: "not a CA certificate (basicConstraints CA:TRUE is missing)".into(),
            });
        }
        // Whether the key belongs to the certificate: a certificate signed with the key
        // must verify against the CA's public key.
        if parsed.public_key_der != rcgen::PublicKeyData::der_bytes(&key) {
            return Err(TlsError::Unparsable {
                path: key_path.display().to_string(),
                problem: format!("this key does not belong to {}", cert.display()),
            });
        }
        Ok(Authority { cert_pem, key })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A certificate for a server (and client) with a key of its own, signed by this CA.
    pub fn issue(&self, request: &CertRequest) -> Result<Issued, TlsError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&request.common_name);
        params.subject_alt_names = request
            .dns_names
            .iter()
            .map(|d| Ok(SanType::DnsName(d.as_str().try_into()?)))
            .chain(request.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
            .collect::<Result<_, rcgen::Error>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, request.validity);
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "myset");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + validity).into();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::parse_certificate;

    fn request() -> CertRequest {
        CertRequest {
            common_name: "demo-1".into(),
            dns_names: vec!["demo-1".into(), "localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "10.231.0.3".parse().unwrap()],
            validity: crate::MEMBER_CERT_VALIDITY,
        }
    }

    #[test]
    fn an_issued_certificate_names_its_member_and_comes_from_the_ca() {
        let ca = Authority::generate("demo CA", crate::CA_VALIDITY).unwrap();
        let issued = ca.issue(&request()).unwrap();
        let parsed = parse_certificate(Path::new("x"), &issued.cert_pem).unwrap();
        assert!(!parsed.is_ca);
        assert_eq!(parsed.dns_names, ["demo-1", "localhost"]);
        assert_eq!(
            parsed.ips,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "10.231.0.3".parse().unwrap()
            ]
        );
        let lifetime = parsed.not_after.duration_since(parsed.not_before).unwrap();
        assert!(lifetime >= crate::MEMBER_CERT_VALIDITY);
        assert!(!crate::needs_renewal(
            parsed.not_before,
            parsed.not_after,
            SystemTime::now()
        ));
        // The chain verifies with rustls, as the control APIs' clients do.
        crate::rustls_config::verify_chain(ca.cert_pem(), &issued.cert_pem, "demo-1").unwrap();
        crate::rustls_config::verify_chain(ca.cert_pem(), &issued.cert_pem, "10.231.0.3").unwrap();
        assert!(
            crate::rustls_config::verify_chain(ca.cert_pem(), &issued.cert_pem, "10.0.0.9")
                .is_err(),
            "an address the certificate does not name is refused"
        );
        let other = Authority::generate("other CA", crate::CA_VALIDITY).unwrap();
        assert!(
            crate::rustls_config::verify_chain(other.cert_pem(), &issued.cert_pem, "demo-1")
                .is_err(),
            "another CA's trust does not accept it"
        );
    }

    #[test]
    fn a_saved_ca_loads_and_keeps_issuing() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("demo CA", crate::CA_VALIDITY).unwrap();
        let (cert, key) = (dir.path().join("ca.pem"), dir.path().join("ca-key.pem"));
        crate::write_public(&cert, ca.cert_pem()).unwrap();
        crate::write_private(&key, &ca.key_pem()).unwrap();
        let loaded = Authority::load(&cert, &key).unwrap();
        let issued = loaded.issue(&request()).unwrap();
        crate::rustls_config::verify_chain(ca.cert_pem(), &issued.cert_pem, "127.0.0.1").unwrap();
    }

    #[test]
    fn a_leaf_certificate_or_a_foreign_key_is_not_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Authority::generate("demo CA", crate::CA_VALIDITY).unwrap();
        let leaf = ca.issue(&request()).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        crate::write_public(&cert, &leaf.cert_pem).unwrap();
        crate::write_private(&key, &leaf.key_pem).unwrap();
        let e = Authority::load(&cert, &key).err().unwrap().to_string();
        assert!(e.contains("not a CA certificate"), "{e}");
        let other = Authority::generate("other", crate::CA_VALIDITY).unwrap();
        crate::write_public(&cert, ca.cert_pem()).unwrap();
        crate::write_private(&key, &other.key_pem()).unwrap();
        let e = Authority::load(&cert, &key).err().unwrap().to_string();
        assert!(e.contains("does not belong"), "{e}");
        crate::write_public(&cert, "garbage").unwrap();
        let e = Authority::load(&cert, &key).err().unwrap().to_string();
        assert!(e.contains("not a PEM certificate"), "{e}");
    }
}
