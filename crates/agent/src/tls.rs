//! The agent's TLS: its server's certificate files, the certificate its API serves, and
//! taking up a renewed certificate without a restart.

use crate::state::Shared;
use anyhow::Context;
use myset_mariadb::config::ServerTls;
use myset_tls::{CertFiles, ReloadingCert};
use std::path::PathBuf;
use std::sync::Arc;

/// A TLS directory's files, loaded once at start.
pub struct AgentTls {
    pub files: CertFiles,
    cert: Arc<ReloadingCert>,
    /// The API server's configuration; it resolves [`AgentTls::cert`] at each handshake.
    pub server: Arc<rustls::ServerConfig>,
}

impl AgentTls {
    pub fn load(dir: PathBuf) -> anyhow::Result<Self> {
        myset_tls::install_crypto_provider();
        let files = CertFiles::in_dir(dir);
        let cert = ReloadingCert::load(files.clone()).with_context(|| {
            format!(
                "cannot load the agent's certificate from {}",
                files.dir.display()
            )
        })?;
        let server = Arc::new(myset_tls::server_config(cert.clone())?);
        Ok(AgentTls {
            files,
            cert,
            server,
        })
    }

    /// The server's TLS options.
    pub fn server_files(&self) -> ServerTls {
        ServerTls {
            ca: self.files.ca(),
            cert: self.files.cert(),
            key: self.files.key(),
        }
    }
}

/// Takes up renewed certificate files: the API serves them to new connections, and the
/// server to new clients (`FLUSH SSL`; open connections keep their session). A server that
/// is not running reads them at its next start.
pub async fn reload(shared: &Shared) -> anyhow::Result<()> {
    let Some(tls) = &shared.tls else {
        anyhow::bail!("this agent runs without TLS");
    };
    tls.cert.reload()?;
    if shared.server().phase == myset_api::Phase::Running {
        let galera = shared.spec().galera.is_some();
        let mut c = crate::role::admin(shared).await?;
        let mut flushed = c.exec(myset_mariadb::sql::FLUSH_SSL).await;
        if galera && flushed.is_ok() {
            // Group communication has its own TLS context.
            flushed = c.exec(myset_mariadb::sql::GALERA_SSL_RELOAD).await;
        }
        c.disconnect().await;
        flushed.context("the server did not take up its new certificate")?;
    }
    tracing::info!("took up renewed TLS certificates");
    Ok(())
}
