//! Bearer-token authentication for the control APIs, and a client that sends the token.

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
    let presented = req
        .headers()
        .get(myset_api::AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.0.as_bytes())) {
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

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
}

/// A client for one control API.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
    headers: Vec<(&'static str, String)>,
}

impl Client {
    /// A client whose every request must finish within `timeout`.
    pub fn new(base: impl Into<String>, token: &str, timeout: Duration) -> Self {
        Self::build(
            base,
            token,
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout),
        )
    }

    /// A client for long streams: only connecting is bounded, by `connect_timeout`.
    pub fn streaming(base: impl Into<String>, token: &str, connect_timeout: Duration) -> Self {
        Self::build(
            base,
            token,
            reqwest::Client::builder().connect_timeout(connect_timeout),
        )
    }

    fn build(base: impl Into<String>, token: &str, builder: reqwest::ClientBuilder) -> Self {
        let http = builder
            .no_proxy()
            .build()
            .expect("a TLS-less reqwest client always builds");
        Client {
            http,
            base: base.into(),
            token: token.into(),
            headers: Vec::new(),
        }
    }

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

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response, CallError> {
        let url = format!("{}{}", self.base, path);
        let resp = req.send().await.map_err(|source| CallError::Unreachable {
            url: url.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let message = match resp.json::<ApiError>().await {
            Ok(e) => e.error,
            Err(_) => "no details".into(),
        };
        Err(CallError::Refused {
            url,
            status,
            message,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CallError> {
        let resp = self
            .send(self.request(reqwest::Method::GET, path), path)
            .await?;
        let url = format!("{}{}", self.base, path);
        resp.json()
            .await
            .map_err(|source| CallError::Unreachable { url, source })
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
        let url = format!("{}{}", self.base, path);
        resp.json()
            .await
            .map_err(|source| CallError::Unreachable { url, source })
    }

    pub async fn post(&self, path: &str) -> Result<(), CallError> {
        self.send(self.request(reqwest::Method::POST, path), path)
            .await
            .map(drop)
    }

    /// A GET whose body the caller streams.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, CallError> {
        self.send(self.request(reqwest::Method::GET, path), path)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
