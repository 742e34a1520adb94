//! Where one party's certificate files live, and reading and writing them safely.

use crate::TlsError;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One party's TLS files, all in one directory: the CA it trusts, its certificate, its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub dir: PathBuf,
}

impl CertFiles {
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        CertFiles { dir: dir.into() }
    }
    /// The CA certificate this party trusts peers by.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    /// Mode 0600.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// Where the CA's signing key is kept, for the party that issues (mode 0600).
    pub fn ca_key(&self) -> PathBuf {
        self.dir.join("ca-key.pem")
    }
}

/// What myset reads from a certificate.
#[derive(Debug, Clone)]
pub struct ParsedCert {
    pub is_ca: bool,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    /// The raw public key bits, to match a key against its certificate.
    pub public_key_der: Vec<u8>,
}

pub(crate) fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// What the certificate in `path` says.
pub fn inspect(path: &Path) -> Result<ParsedCert, TlsError> {
    parse_certificate(path, &read(path)?)
}

pub(crate) fn parse_certificate(path: &Path, pem: &str) -> Result<ParsedCert, TlsError> {
    use x509_parser::extensions::GeneralName;
    let unparsable = |problem: String| TlsError::Unparsable {
        path: path.display().to_string(),
        problem,
    };
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| unparsable(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| unparsable(e.to_string()))?;
    let time = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(t.timestamp().max(0) as u64)
    };
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ips.push(IpAddr::from(
                        <[u8; 4]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    16 => ips.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).unwrap_or_default(),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(ParsedCert {
        is_ca: cert.is_ca(),
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        dns_names,
        ips,
        public_key_der: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// Writes a key: mode 0600 from the start, replaced atomically (a reader never sees half).
pub fn write_private(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_atomically(path, contents, 0o600)
}

/// Writes a certificate: replaced atomically.
pub fn write_public(path: &Path, contents: &str) -> Result<(), TlsError> {
    write_atomically(path, contents, 0o644)
}

fn write_atomically(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let io = |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    // A leftover from an interrupted write may have another mode, which open keeps.
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
