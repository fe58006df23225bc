//! The delivery stage: a stored [`Delivery`] in, signed and sent over HTTP,
//! an [`Attempt`] record and an [`AttemptResult`] for the retry policy out.
//!
//! `dispatcher` decides when each delivery runs; `retry` decides what happens
//! after an attempt. This module only knows how to make one attempt.

pub mod dispatcher;
pub mod retry;
pub mod switches;

use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

use crate::config::HttpConfig;
use crate::outbox::{now_ms, Attempt, Delivery};
use crate::payload::Payload;
use crate::signing::Signer;
use retry::AttemptResult;

/// Header carrying the delivery id, stable across retries.
pub const DELIVERY_HEADER: &str = "X-Wasmhook-Delivery";

/// How much of an error response's body is kept in the attempt record.
const ERROR_BODY_PREFIX: usize = 512;

/// Makes attempts: one keep-alive HTTP client shared by every webhook.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    signer: Option<Signer>,
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(#[from] reqwest::Error);

impl Sender {
    /// Builds the client. Redirects are not followed (a moved webhook should be
    /// updated, and following would re-send signed bodies to a third party);
    /// proxies from the environment are ignored so deliveries go where the
    /// config says.
    pub fn new(http: &HttpConfig, signer: Option<Signer>) -> Result<Sender, ClientError> {
        let client = reqwest::Client::builder()
            .connect_timeout(http.connect_timeout)
            .timeout(http.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(http.max_concurrent)
            .tcp_nodelay(true)
            .build()?;
        Ok(Sender { client, signer })
    }

    /// Signs and sends one attempt of `delivery`'s `payload`.
    pub async fn attempt(
        &self,
        delivery: &Delivery,
        payload: &Payload,
    ) -> (Attempt, AttemptResult) {
        let at_ms = now_ms();
        let started = Instant::now();
        let result = self.send(&delivery.id, payload).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, error) = match &result {
            Ok((code, body)) => (Some(*code), body.clone()),
            Err(e) => (None, Some(e.to_string())),
        };
        let result = match result {
            Ok((code, _)) => AttemptResult::Status(code),
            Err(SendError::Unsendable(reason)) => AttemptResult::Unsendable(reason),
            Err(SendError::Transport(reason)) => AttemptResult::Transport(reason),
        };
        (
            Attempt {
                at_ms,
                status,
                error,
                duration_ms,
            },
            result,
        )
    }

    async fn send(
        &self,
        delivery_id: &str,
        payload: &Payload,
    ) -> Result<(u16, Option<String>), SendError> {
        let method = reqwest::Method::from_bytes(payload.method.as_bytes())
            .map_err(|_| SendError::Unsendable(format!("invalid method {:?}", payload.method)))?;
        let mut request = self
            .client
            .request(method, &payload.url)
            .header(
                CONTENT_TYPE,
                payload
                    .content_type
                    .as_deref()
                    .unwrap_or("application/json"),
            )
            .header(USER_AGENT, concat!("wasmhook/", env!("CARGO_PKG_VERSION")))
            .header(DELIVERY_HEADER, delivery_id);
        for (name, value) in &payload.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SendError::Unsendable(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                SendError::Unsendable(format!(
                    "header {name} has a value that is not allowed in HTTP (control characters?)"
                ))
            })?;
            request = request.header(name, value);
        }
        if let Some(signer) = &self.signer {
            let unix = now_ms() / 1000;
            let signature = signer.sign(unix, &payload.body);
            request = request
                .header(signer.header.as_str(), signature.signature)
                .header(signer.timestamp_header.as_str(), signature.timestamp);
        }
        let mut response = request
            .body(payload.body.clone())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok((status, None));
        }
        // Keep the start of an error body for the DLQ; never read more, a
        // hostile receiver could answer with gigabytes.
        let mut prefix = Vec::new();
        while prefix.len() < ERROR_BODY_PREFIX {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                _ => break,
            }
        }
        prefix.truncate(ERROR_BODY_PREFIX);
        let text = String::from_utf8_lossy(&prefix).trim().to_string();
        Ok((status, (!text.is_empty()).then_some(text)))
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Unsendable(String),
    #[error("{0}")]
    Transport(String),
}

fn classify(error: &reqwest::Error) -> SendError {
    if error.is_builder() {
        return SendError::Unsendable(format!("request could not be built: {error}"));
    }
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // The source chain carries the useful part ("Connection refused").
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        SendError::Transport(kind.to_string())
    } else {
        SendError::Transport(format!("{kind}: {detail}"))
    }
}
