//! The controller's part in TLS: its HTTPS API, how it reaches agents and servers, and
//! renewing the members' certificates (before their end, or when asked).

use crate::controller::Controller;
use myset_api::{CertRotation, Event, EventKind};
use myset_runtime::{AgentApi, Runtime};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How often the controller checks whether a certificate nears its end. Certificates live
/// for months ([`myset_tls::MEMBER_CERT_VALIDITY`]) and are renewed a month before it.
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// How long a member may take to take up its new certificate (`FLUSH SSL`).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// The controller's TLS, where the runtime issues certificates.
pub struct ControllerTls {
    /// The API server's configuration (its certificate renews with the members').
    pub api_server: Arc<rustls::ServerConfig>,
    /// The cluster's CA certificate, to verify agents and servers by.
    pub ca: PathBuf,
}

impl<R: Runtime> Controller<R> {
    /// Serves the API over HTTPS and verifies agents and servers by the cluster's CA. Called
    /// once, before [`Controller::run_with`].
    pub fn enable_tls(&self, tls: ControllerTls) {
        let _ = self.tls.set(tls);
    }

    pub(crate) fn api_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.get().map(|t| t.api_server.clone())
    }

    /// The CA file connections to servers verify them by; None with TLS off.
    pub(crate) fn tls_ca(&self) -> Option<PathBuf> {
        self.tls.get().map(|t| t.ca.clone())
    }

    /// How the controller calls agents directly (outside the runtime's `AgentApi`).
    pub(crate) fn agent_access(&self) -> anyhow::Result<myset_http::ApiAccess> {
        Ok(match self.tls.get() {
            Some(tls) => myset_http::ApiAccess::verified_by(self.api_token(), &tls.ca)?,
            None => myset_http::ApiAccess::plain(self.api_token()),
        })
    }

    /// Renews the certificates that need it (all of them with `force`) and has their members
    /// take them up.
    pub async fn rotate_certificates(&self, force: bool) -> anyhow::Result<CertRotation> {
        let state = self.state();
        let changed = match self.runtime.renew_certificates(&state, force).await {
            Ok(changed) => changed,
            Err(e) => {
                self.record_event(
                    Event::new(
                        EventKind::CertificateRenewalFailed,
                        format!("cannot renew certificates: {e:#}"),
                    )
                    .reason(format!("{e:#}")),
                );
                return Err(e);
            }
        };
        let mut rotation = CertRotation::default();
        for ordinal in changed {
            let Some(placement) = state.placements.get(&ordinal) else {
                continue;
            };
            match self
                .runtime
                .agents()
                .reload_tls(&placement.agent, RELOAD_TIMEOUT)
                .await
            {
                Ok(()) => rotation.renewed.push(ordinal),
                Err(e) => {
                    self.record_event(
                        Event::new(
                            EventKind::CertificateRenewalFailed,
                            format!(
                                "member {ordinal} has a new certificate but did not take it up ({e}); it will at its next start"
                            ),
                        )
                        .ordinal(ordinal)
                        .reason(e.to_string()),
                    );
                    rotation.pending.push(ordinal);
                }
            }
        }
        if !rotation.renewed.is_empty() {
            self.record_event(Event::new(
                EventKind::CertificatesRenewed,
                format!(
                    "members {:?} serve renewed certificates{}",
                    rotation.renewed,
                    if force {
                        " (asked)"
                    } else {
                        " (before their end)"
                    }
                ),
            ));
        }
        Ok(rotation)
    }

    /// Renews certificates before their end, for as long as the controller runs.
    pub(crate) async fn run_certificate_renewal(self: Arc<Self>) {
        if self.tls.get().is_none() {
            return;
        }
        loop {
            if let Err(e) = self.rotate_certificates(false).await {
                tracing::error!("certificate renewal failed: {e:#}");
            }
            tokio::select! {
                _ = tokio::time::sleep(RENEWAL_CHECK) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }
}
