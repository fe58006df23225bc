//! The delivery stage: a stored [`crate::store::Delivery`] in, signed and sent over HTTP,
//! an [`Attempt`] record and an [`AttemptResult`] for the retry policy out.
//!
//! `dispatcher` decides when each delivery runs (destinations' queues, rate
//! limits, breakers, entity lanes, batches: `limits`); `attempt` sends one
//! job and records it; `retry` decides what happens after an attempt;
//! `guard` keeps requests off internal networks. This module only knows how
//! to make one HTTP attempt.

mod attempt;
pub(crate) mod batch;
pub mod dispatcher;
pub mod egress;
pub mod guard;
pub mod limits;
pub mod retry;
pub mod schedule;
pub mod switches;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

use crate::clock::now_ms;
use crate::config::HttpConfig;
use crate::observer::Webhook;
use crate::signing::Signer;
use crate::store::{Attempt, Payload};
use egress::Egress;
use retry::AttemptResult;

/// Header carrying the delivery id, stable across retries.
pub const DELIVERY_HEADER: &str = "X-Wasmhook-Delivery";

/// [`DELIVERY_HEADER`] as a header map spells it.
const DELIVERY_HEADER_LOWER: &str = "x-wasmhook-delivery";

/// How much of an error response's body is kept in the attempt record.
const BODY_PREFIX: usize = 1024;

/// Makes attempts: one keep-alive HTTP client per way out ([`Egress`]),
/// shared by every webhook that leaves that way.
#[derive(Clone)]
pub struct Sender {
    /// In the order of [`HttpConfig::egresses`]; the first is `[webhooks]`'s.
    clients: Arc<[(Arc<Egress>, reqwest::Client)]>,
    signer: Option<Signer>,
    guard: guard::Guard,
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
    /// A client certificate or proxy cannot be used.
    #[error("cannot build the HTTP client: {0}")]
    Egress(#[from] egress::EgressError),
}

impl Sender {
    /// Builds the client. Redirects are not followed unless
    /// `follow_redirects` allows some (a moved webhook should be updated, and
    /// following re-sends signed bodies elsewhere); every hop passes the SSRF
    /// guard. Proxies from the environment are ignored so deliveries go where
    /// the config says, unless a webhook names one.
    pub fn new(http: &HttpConfig, signer: Option<Signer>) -> Result<Sender, ClientError> {
        let guard = guard::Guard::new(http.allowed_networks.clone());
        let redirects = || match http.follow_redirects {
            0 => reqwest::redirect::Policy::none(),
            hops => {
                let guard = guard.clone();
                reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() > hops {
                        attempt.error(format!("more than {hops} redirects"))
                    } else if let Err(blocked) = guard.check_url(attempt.url()) {
                        attempt.error(blocked)
                    } else {
                        attempt.follow()
                    }
                })
            }
        };
        let roots = match &http.ca_pem {
            Some(pem) => reqwest::Certificate::from_pem_bundle(pem)?,
            None => Vec::new(),
        };
        let mut clients = Vec::with_capacity(http.egresses.len().max(1));
        let default = [Arc::new(Egress::default())];
        let egresses = if http.egresses.is_empty() {
            &default[..]
        } else {
            &http.egresses[..]
        };
        for egress in egresses {
            let mut builder = reqwest::Client::builder();
            for certificate in &roots {
                builder = builder.add_root_certificate(certificate.clone());
            }
            let client = egress
                .apply(builder, &guard)?
                .connect_timeout(http.connect_timeout)
                .timeout(http.request_timeout)
                .redirect(redirects())
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(http.max_concurrent)
                .tcp_nodelay(true)
                .build()?;
            clients.push((egress.clone(), client));
        }
        Ok(Sender {
            clients: clients.into(),
            signer,
            guard,
        })
    }

    /// The client for `egress` (one of the config's, so found by address),
    /// or `[webhooks]`'s.
    fn client(&self, egress: Option<&Arc<Egress>>) -> (&Egress, &reqwest::Client) {
        let (default_egress, default_client) = &self.clients[0];
        egress
            .and_then(|wanted| {
                self.clients
                    .iter()
                    .find(|(egress, _)| Arc::ptr_eq(egress, wanted))
            })
            .map_or((&**default_egress, default_client), |(egress, client)| {
                (&**egress, client)
            })
    }

    /// Signs (with `webhook`'s own `signing` when it has one, else the
    /// global signer) and sends one attempt the way `webhook` leaves (its
    /// timeout, client certificate and proxy); also returns the receiver's
    /// `Retry-After` on a 429 or 503. `event_id` names the event in
    /// signature schemes that send it (FraiseQL v2's). `webhook` is `None`
    /// when its observer is gone from the config.
    pub async fn attempt(
        &self,
        delivery_id: &str,
        event_id: &str,
        payload: &Payload,
        webhook: Option<&Webhook>,
    ) -> (Attempt, AttemptResult, Option<Duration>) {
        let at_ms = now_ms();
        let started = Instant::now();
        let result = self.send(delivery_id, event_id, payload, webhook).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let (status, error, response, retry_after) = match &result {
            Ok(answer) if (200..300).contains(&answer.status) => {
                (Some(answer.status), None, answer.body.clone(), None)
            }
            Ok(answer) => (
                Some(answer.status),
                answer.body.clone(),
                None,
                answer.retry_after,
            ),
            Err(e) => (None, Some(e.to_string()), None, None),
        };
        let result = match result {
            Ok(answer) => AttemptResult::Status(answer.status),
            Err(SendError::Unsendable(reason)) => AttemptResult::Unsendable(reason),
            Err(SendError::Transport(reason)) => AttemptResult::Transport(reason),
        };
        (
            Attempt {
                at_ms,
                status,
                error,
                response,
                duration_ms,
            },
            result,
            retry_after,
        )
    }

    /// The first half of an attempt: the request [`Sender::attempt`] sends,
    /// signed at `at_s` (Unix seconds) with `webhook`'s own `signing` when it
    /// has one, else the global signer. No I/O: `wasmhook dry-run` shows
    /// exactly this and sends nothing. `event_id` names the event in
    /// signature schemes that send it (FraiseQL v2's).
    pub fn prepare(
        &self,
        delivery_id: &str,
        event_id: &str,
        payload: &Payload,
        webhook: Option<&Webhook>,
        at_s: u64,
    ) -> Result<SignedRequest, Unsendable> {
        let signer = match webhook.and_then(|w| w.signing.as_ref()) {
            Some(own) => own.as_ref(),
            None => self.signer.as_ref(),
        };
        let method = reqwest::Method::from_bytes(payload.method.as_bytes())
            .map_err(|_| Unsendable(format!("invalid method {:?}", payload.method)))?;
        let url = reqwest::Url::parse(&payload.url)
            .map_err(|e| Unsendable(format!("invalid URL: {e}")))?;
        self.guard
            .check_url(&url)
            .map_err(|blocked| Unsendable(blocked.to_string()))?;
        let mut headers = HeaderMap::with_capacity(payload.headers.len() + 6);
        let content_type = payload
            .content_type
            .as_deref()
            .unwrap_or("application/json");
        let content_type = HeaderValue::from_str(content_type).map_err(|_| {
            Unsendable(format!(
                "content type {content_type:?} is not allowed in HTTP (control characters?)"
            ))
        })?;
        headers.append(CONTENT_TYPE, content_type);
        headers.append(
            USER_AGENT,
            HeaderValue::from_static(concat!("wasmhook/", env!("CARGO_PKG_VERSION"))),
        );
        let id = HeaderValue::from_str(delivery_id)
            .map_err(|_| Unsendable(format!("invalid delivery id {delivery_id:?}")))?;
        headers.append(HeaderName::from_static(DELIVERY_HEADER_LOWER), id);
        for (name, value) in &payload.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Unsendable(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                Unsendable(format!(
                    "header {name} has a value that is not allowed in HTTP (control characters?)"
                ))
            })?;
            headers.append(name, value);
        }
        let mut signature = Vec::new();
        if let Some(signer) = signer {
            for (name, value) in signer.headers(delivery_id, event_id, at_s, &payload.body) {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Unsendable(format!("invalid signature header name {name:?}")))?;
                let value = HeaderValue::from_str(&value).map_err(|_| {
                    Unsendable(format!("signature header {name} has an invalid value"))
                })?;
                headers.append(name.clone(), value);
                signature.push(name);
            }
        }
        Ok(SignedRequest {
            method,
            url,
            headers,
            signature,
            body: payload.body.clone(),
            timeout: webhook.and_then(|w| w.timeout),
        })
    }

    /// The second half of an attempt: prepares the request, checks where a
    /// proxy would take it, sends it and reads the answer.
    async fn send(
        &self,
        delivery_id: &str,
        event_id: &str,
        payload: &Payload,
        webhook: Option<&Webhook>,
    ) -> Result<Answer, SendError> {
        let request = self.prepare(delivery_id, event_id, payload, webhook, now_ms() / 1000)?;
        let (egress, client) = self.client(webhook.map(|w| &w.egress));
        egress
            .check_proxied(&self.guard, &request.url)
            .await
            .map_err(|blocked| SendError::Unsendable(blocked.to_string()))?;
        let mut builder = client
            .request(request.method, request.url)
            .headers(request.headers);
        if let Some(timeout) = request.timeout {
            builder = builder.timeout(timeout);
        }
        let mut response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status().as_u16();
        let retry_after = match status {
            429 | 503 => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now())),
            _ => None,
        };
        // Keep the start of the body for the delivery log and the DLQ;
        // never read more, a hostile receiver could answer with gigabytes.
        let mut prefix = Vec::new();
        while prefix.len() < BODY_PREFIX {
            match response.chunk().await {
                Ok(Some(chunk)) => prefix.extend_from_slice(&chunk),
                _ => break,
            }
        }
        prefix.truncate(BODY_PREFIX);
        let text = String::from_utf8_lossy(&prefix).trim().to_string();
        Ok(Answer {
            status,
            body: (!text.is_empty()).then_some(text),
            retry_after,
        })
    }
}

/// One attempt's request, signed and ready to go: the payload with the
/// headers every attempt adds (`Content-Type`, `User-Agent`, the delivery
/// id) and its signature. Made afresh for each attempt, since the signature
/// covers its timestamp. No `Debug`: headers carry credentials and are never
/// logged.
pub struct SignedRequest {
    /// The method.
    pub method: reqwest::Method,
    /// Where it goes; an IP literal has passed the SSRF guard (names are
    /// checked when they are resolved).
    pub url: reqwest::Url,
    /// Every header wasmhook sets, in order; the HTTP client adds `Host`,
    /// `Content-Length` and `Accept` as it sends.
    pub headers: HeaderMap,
    /// The names of the headers the signature scheme set (also in
    /// `headers`): they change with every attempt.
    pub signature: Vec<HeaderName>,
    /// The body.
    pub body: Vec<u8>,
    /// The webhook's own whole-request timeout, if it has one.
    pub timeout: Option<Duration>,
}

/// Why a request can never be sent (a bad URL, method or header, a
/// refused destination): its delivery goes to the DLQ with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsendable(pub String);

/// What a receiver answered.
struct Answer {
    status: u16,
    /// The start of the body.
    body: Option<String>,
    retry_after: Option<Duration>,
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110 10.2.3); a date
/// in the past means now. Anything else is ignored (the backoff applies).
fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("{0}")]
    Unsendable(String),
    #[error("{0}")]
    Transport(String),
}

impl From<Unsendable> for SendError {
    fn from(Unsendable(reason): Unsendable) -> SendError {
        SendError::Unsendable(reason)
    }
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
    // The source chain carries the useful part ("Connection refused"). A
    // destination refused by the guard is refused for good: no retries.
    let mut detail = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        if let Some(blocked) = inner.downcast_ref::<guard::Blocked>() {
            return SendError::Unsendable(blocked.to_string());
        }
        detail = inner.to_string();
        source = inner.source();
    }
    if detail.is_empty() {
        SendError::Transport(kind.to_string())
    } else {
        SendError::Transport(format!("{kind}: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request an attempt sends: our headers, the configured ones in
    /// order, the signature last and named as such; a destination the
    /// guard refuses can never be sent.
    #[test]
    fn prepare_signs_the_payload_beside_our_headers() {
        let config = crate::config::Config::from_toml(
            "[webhooks.signing]\nsecret = \"s\"\n",
            std::path::Path::new("test.toml"),
            &|_| None,
        )
        .unwrap();
        let signer = config.signer.clone().unwrap();
        let sender = Sender::new(&config.http, config.signer.clone()).unwrap();
        let payload = Payload {
            method: "PUT".into(),
            url: "https://example.com/x".into(),
            headers: vec![("X-A".into(), "1".into())],
            content_type: None,
            body: b"{}".to_vec(),
        };
        let request = sender
            .prepare("d1", "e1", &payload, None, 1_700_000_000)
            .unwrap();
        assert_eq!(request.method, reqwest::Method::PUT);
        assert_eq!(request.body, b"{}");
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        let signature = signer.sign(1_700_000_000, b"{}").signature;
        assert_eq!(
            headers,
            [
                ("content-type", "application/json"),
                (
                    "user-agent",
                    concat!("wasmhook/", env!("CARGO_PKG_VERSION"))
                ),
                (DELIVERY_HEADER_LOWER, "d1"),
                ("x-a", "1"),
                ("x-wasmhook-signature", signature.as_str()),
                ("x-wasmhook-timestamp", "1700000000"),
            ]
        );
        assert_eq!(DELIVERY_HEADER.to_ascii_lowercase(), DELIVERY_HEADER_LOWER);
        let signed: Vec<&str> = request.signature.iter().map(|n| n.as_str()).collect();
        assert_eq!(signed, ["x-wasmhook-signature", "x-wasmhook-timestamp"]);

        let internal = Payload {
            url: "http://10.0.0.1/x".into(),
            ..payload
        };
        let refused = sender.prepare("d1", "e1", &internal, None, 1).err();
        assert!(
            refused.is_some_and(|e| e.0.contains("private address")),
            "the guard refuses 10.0.0.1"
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
