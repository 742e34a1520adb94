//! TLS for a myset cluster: its certificate authority, each member's certificate, when to
//! renew one, and the rustls configurations the control APIs serve and call with.
//!
//! Every file is PEM. A directory of one party's files ([`CertFiles`]) holds the CA's
//! certificate, the party's certificate and its key.

mod authority;
mod files;
mod rustls_config;

pub use authority::{Authority, CertRequest, Issued};
pub use files::{inspect, write_private, write_public, CertFiles, ParsedCert};
pub use rustls_config::{client_config, server_config, ReloadingCert};

use std::time::{Duration, SystemTime};

/// Why a certificate could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a PEM certificate or key this can use ({problem})")]
    Unparsable { path: String, problem: String },
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// How long a member's certificate is valid. Renewal starts a third before the end
/// ([`needs_renewal`]), so a cluster left alone renews every two months.
pub const MEMBER_CERT_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);

/// How long a generated CA is valid.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Installs ring as the process's rustls provider, which rustls needs before the first
/// configuration is built when a build has both of its providers. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Whether a certificate valid from `not_before` to `not_after` should be replaced at `now`:
/// when less than a third of its lifetime is left, or it is not valid (yet or any more).
pub fn needs_renewal(not_before: SystemTime, not_after: SystemTime, now: SystemTime) -> bool {
    let Ok(lifetime) = not_after.duration_since(not_before) else {
        return true;
    };
    match not_after.duration_since(now) {
        Ok(left) => now < not_before || left < lifetime / 3,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn renews_in_the_last_third_and_when_expired() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert!(!needs_renewal(start, end, start));
        assert!(!needs_renewal(start, end, start + 59 * DAY));
        assert!(needs_renewal(start, end, start + 61 * DAY));
        assert!(needs_renewal(start, end, end + DAY));
        assert!(needs_renewal(start, end, start - DAY), "not valid yet");
        assert!(needs_renewal(end, start, start), "inverted validity");
    }

    proptest! {
        #[test]
        fn a_renewed_certificate_is_not_renewed_again_at_once(days in 3u32..4000, offset in 0u64..100_000) {
            let now = SystemTime::UNIX_EPOCH + Duration::from_secs(offset) + 2000 * DAY;
            prop_assert!(!needs_renewal(now, now + days * DAY, now));
            prop_assert!(needs_renewal(now, now + days * DAY, now + days * DAY));
        }
    }
}
