//! The control APIs' transport: bearer-token authentication, HTTPS serving with a
//! certificate that can be renewed while it runs, and a client that sends the token and
//! verifies the server by the cluster's CA.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use myset_api::ApiError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// The token every request must present.
#[derive(Clone)]
pub struct Token(pub Arc<str>);

/// Axum middleware rejecting requests without `Authorization: Bearer <token>`.
pub async fn require_token(State(token): State<Token>, req: Request, next: Next) -> Response {
    require_any_token(State(Tokens(vec![token.0])), req, next).await
}

/// Several tokens, any of which is accepted (a route readable with a narrower token too).
#[derive(Clone)]
pub struct Tokens(pub Vec<Arc<str>>);

/// Axum middleware rejecting requests without `Authorization: Bearer <one of the tokens>`.
pub async fn require_any_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(myset_api::AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let accepted = presented.is_some_and(|p| {
        tokens.0.iter().fold(false, |ok, t| {
            ok | constant_time_eq(p.as_bytes(), t.as_bytes())
        })
    });
    if accepted {
        next.run(req).await
    } else {
        error_response(StatusCode::UNAUTHORIZED, "missing or wrong API token")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn error_response(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: message.into(),
        }),
    )
        .into_response()
}

/// Why a call failed. The variants never overlap, so a caller can tell a peer it cannot reach
/// from one that answered in a way it did not expect.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No HTTP answer: connection refused, timeout, or the connection broke while the request
    /// was sent or the answer received.
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The server answered with an error status.
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The server answered with a success status, but the body is not what was asked for.
    #[error("{url} answered with a body that does not decode: {source}")]
    Undecodable {
        url: String,
        source: serde_json::Error,
    },
}

impl CallError {
    /// Whether the server sent an HTTP answer: the network path to it works.
    pub fn answered(&self) -> bool {
        match self {
            CallError::Unreachable { .. } => false,
            CallError::Status { .. } | CallError::Undecodable { .. } => true,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            CallError::Unreachable { .. } | CallError::Undecodable { .. } => None,
        }
    }
}

/// How much of a non-JSON error body is quoted in a `Status` error.
const ERROR_BODY_QUOTE: usize = 200;

/// The message of an error answer: the `ApiError` text, or the start of whatever else came.
fn error_message(body: &[u8]) -> String {
    if let Ok(e) = serde_json::from_slice::<ApiError>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no details".into();
    }
    text.chars().take(ERROR_BODY_QUOTE).collect()
}

/// How to reach one cluster's control APIs: the token, and with TLS the CA servers are
/// verified by. Every client of a control API is made here, so the scheme is decided once.
#[derive(Clone)]
pub struct ApiAccess {
    token: Arc<str>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl ApiAccess {
    /// Plain HTTP (a cluster with TLS off, or a Kubernetes runtime without certificates).
    pub fn plain(token: &str) -> Self {
        ApiAccess {
            token: token.into(),
            tls: None,
        }
    }

    /// HTTPS, trusting the CA in the file `ca` and nothing else.
    pub fn verified_by(token: &str, ca: &std::path::Path) -> Result<Self, myset_tls::TlsError> {
        myset_tls::install_crypto_provider();
        Ok(ApiAccess {
            token: token.into(),
            tls: Some(Arc::new(myset_tls::client_config(ca)?)),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The base URL of the API at `addr` (`host:port`).
    pub fn url(&self, addr: impl std::fmt::Display) -> String {
        myset_api::api_url(addr, self.tls.is_some())
    }

    /// A client of the API at `addr` whose every request must finish within `timeout`.
    pub fn client(&self, addr: impl std::fmt::Display, timeout: Duration) -> Client {
        self.build(
            addr,
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout),
        )
    }

    /// A client for long streams from `addr`: only connecting is bounded, by `connect_timeout`.
    pub fn streaming(&self, addr: impl std::fmt::Display, connect_timeout: Duration) -> Client {
        self.build(
            addr,
            reqwest::Client::builder().connect_timeout(connect_timeout),
        )
    }

    fn build(&self, addr: impl std::fmt::Display, builder: reqwest::ClientBuilder) -> Client {
        // reqwest builds a rustls configuration even for plain HTTP, from the process's provider.
        myset_tls::install_crypto_provider();
        let builder = match &self.tls {
            Some(config) => builder.use_preconfigured_tls(rustls::ClientConfig::clone(config)),
            None => builder,
        };
        let http = builder
            .no_proxy()
            .build()
            .expect("a client with a prebuilt rustls configuration always builds");
        Client {
            http,
            base: self.url(addr),
            token: self.token.clone(),
            headers: Vec::new(),
        }
    }
}

/// A client for one control API, made by [`ApiAccess`].
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
    headers: Vec<(&'static str, String)>,
}

impl Client {
    /// Sends `name: value` with every request.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&*self.token);
        for (name, value) in &self.headers {
            req = req.header(*name, value);
        }
        req
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends `req` and returns the answer, whatever its status.
    async fn answer(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, CallError> {
        req.send().await.map_err(|source| CallError::Unreachable {
            url: self.url(path),
            source,
        })
    }

    /// Sends `req` and returns a success answer; an error status becomes `CallError::Status`.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, CallError> {
        let resp = self.answer(req, path).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = self.body(resp, path).await?;
        Err(CallError::Status {
            url: self.url(path),
            status,
            message: error_message(&body),
        })
    }

    /// Reads a whole body; a connection that breaks meanwhile is `Unreachable`.
    async fn body(&self, resp: reqwest::Response, path: &str) -> Result<bytes::Bytes, CallError> {
        resp.bytes().await.map_err(|source| CallError::Unreachable {
            url: self.url(path),
            source,
        })
    }

    async fn decode<T: DeserializeOwned>(
        &self,
        resp: reqwest::Response,
        path: &str,
    ) -> Result<T, CallError> {
        let body = self.body(resp, path).await?;
        serde_json::from_slice(&body).map_err(|source| CallError::Undecodable {
            url: self.url(path),
            source,
        })
    }

    /// Checks that `path` answers, without reading the body: the HTTP status of any answer,
    /// error statuses included. Only `CallError::Unreachable` is returned as an error.
    pub async fn probe(&self, path: &str) -> Result<u16, CallError> {
        let resp = self
            .answer(self.request(reqwest::Method::GET, path), path)
            .await?;
        Ok(resp.status().as_u16())
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, path), path)
            .await?;
        self.decode(resp, path).await
    }

    pub async fn put<B: Serialize>(&self, path: &str, body: &B) -> Result<(), CallError> {
        self.send(self.request(reqwest::Method::PUT, path).json(body), path)
            .await
            .map(drop)
    }

    /// POSTs `body` and decodes the answer.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CallError> {
        let resp = self
            .send(self.request(reqwest::Method::POST, path).json(body), path)
            .await?;
        self.decode(resp, path).await
    }

    pub async fn post(&self, path: &str) -> Result<(), CallError> {
        self.send(self.request(reqwest::Method::POST, path), path)
            .await
            .map(drop)
    }

    /// A GET whose whole body is text (such as Prometheus metrics).
    pub async fn text(&self, path: &str) -> Result<String, CallError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, path), path)
            .await?;
        let body = self.body(resp, path).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A GET whose body the caller streams.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CallError> {
        self.send(self.request(reqwest::Method::GET, path), path)
            .await
    }
}

/// How long a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` completes: over HTTPS with `tls`, else plain
/// HTTP. Each TLS handshake runs in its connection's own task, so a slow client never holds
/// up the others.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        return axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::routing::get;
    use axum::Router;
    use std::net::SocketAddr;

    /// An agent-like server with the token middleware, on a free loopback port.
    async fn server() -> SocketAddr {
        let app = Router::new()
            .route("/text", get(|| async { "ok\n" }))
            .route("/json", get(|| async { Json(serde_json::json!({"n": 1})) }))
            .route(
                "/unavailable",
                get(|| async { error_response(StatusCode::SERVICE_UNAVAILABLE, "not ready") }),
            )
            .layer(axum::middleware::from_fn_with_state(
                Token("secret".into()),
                require_token,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn client(addr: SocketAddr, token: &str) -> Client {
        ApiAccess::plain(token).client(addr, Duration::from_secs(5))
    }

    /// A loopback port nothing listens on: bound, then released.
    fn closed_port() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn a_success_answer_that_does_not_decode_is_undecodable_and_answered() {
        let c = client(server().await, "secret");
        let err = c.get::<serde_json::Value>("/text").await.unwrap_err();
        assert!(matches!(err, CallError::Undecodable { .. }), "{err:?}");
        assert!(err.answered());
        assert_eq!(err.status(), None);
        let n: serde_json::Value = c.get("/json").await.unwrap();
        assert_eq!(n["n"], 1);
    }

    #[tokio::test]
    async fn an_error_status_is_status_and_answered() {
        let addr = server().await;
        let err = client(addr, "secret")
            .get::<serde_json::Value>("/unavailable")
            .await
            .unwrap_err();
        match &err {
            CallError::Status {
                status, message, ..
            } => {
                assert_eq!(*status, 503);
                assert_eq!(message, "not ready");
            }
            other => panic!("expected Status, got {other:?}"),
        }
        assert!(err.answered());
        let wrong_token = client(addr, "wrong")
            .get::<serde_json::Value>("/json")
            .await;
        assert_eq!(wrong_token.unwrap_err().status(), Some(401));
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_not_answered() {
        let err = client(closed_port(), "secret")
            .get::<serde_json::Value>("/json")
            .await
            .unwrap_err();
        assert!(matches!(err, CallError::Unreachable { .. }), "{err:?}");
        assert!(!err.answered());
    }

    #[tokio::test]
    async fn probe_reports_any_answer_without_decoding() {
        let addr = server().await;
        assert_eq!(client(addr, "secret").probe("/text").await.unwrap(), 200);
        assert_eq!(
            client(addr, "secret").probe("/unavailable").await.unwrap(),
            503
        );
        assert_eq!(client(addr, "wrong").probe("/text").await.unwrap(), 401);
        let err = client(closed_port(), "secret")
            .probe("/text")
            .await
            .unwrap_err();
        assert!(!err.answered());
    }

    /// Certificates for a server on 127.0.0.1 from a fresh CA, in `dir`.
    fn certificates(dir: &std::path::Path) -> myset_tls::CertFiles {
        let files = myset_tls::CertFiles::in_dir(dir);
        let ca = myset_tls::Authority::generate("test CA", myset_tls::CA_VALIDITY).unwrap();
        let issued = ca
            .issue(&myset_tls::CertRequest {
                common_name: "server".into(),
                dns_names: vec!["localhost".into()],
                ips: vec!["127.0.0.1".parse().unwrap()],
                validity: myset_tls::MEMBER_CERT_VALIDITY,
            })
            .unwrap();
        myset_tls::write_public(&files.ca(), ca.cert_pem()).unwrap();
        myset_tls::write_public(&files.cert(), &issued.cert_pem).unwrap();
        myset_tls::write_private(&files.key(), &issued.key_pem).unwrap();
        files
    }

    #[tokio::test]
    async fn https_answers_clients_that_trust_its_ca_and_no_one_else() {
        myset_tls::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let files = certificates(dir.path());
        let cert = myset_tls::ReloadingCert::load(files.clone()).unwrap();
        let config = Arc::new(myset_tls::server_config(cert).unwrap());
        let app = Router::new()
            .route("/json", get(|| async { Json(serde_json::json!({"n": 1})) }))
            .layer(axum::middleware::from_fn_with_state(
                Token("secret".into()),
                require_token,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, app, Some(config), std::future::pending()));

        let access = ApiAccess::verified_by("secret", &files.ca()).unwrap();
        assert!(access.url(addr).starts_with("https://"));
        let n: serde_json::Value = access
            .client(addr, Duration::from_secs(5))
            .get("/json")
            .await
            .unwrap();
        assert_eq!(n["n"], 1);

        // Neither a client trusting another CA nor a plain HTTP one gets an answer.
        let other = tempfile::tempdir().unwrap();
        let stranger = certificates(other.path());
        for (access, who) in [
            (
                ApiAccess::verified_by("secret", &stranger.ca()).unwrap(),
                "a client trusting another CA",
            ),
            (ApiAccess::plain("secret"), "a plain HTTP client"),
        ] {
            let err = access
                .client(addr, Duration::from_secs(5))
                .get::<serde_json::Value>("/json")
                .await
                .unwrap_err();
            assert!(!err.answered(), "{who} got an answer: {err}");
        }
    }

    #[test]
    fn error_messages_quote_api_errors_or_plain_bodies() {
        assert_eq!(error_message(br#"{"error":"no"}"#), "no");
        assert_eq!(error_message(b"  plain words\n"), "plain words");
        assert_eq!(error_message(b""), "no details");
        assert_eq!(error_message(&[b'x'; 1000]).len(), ERROR_BODY_QUOTE);
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
