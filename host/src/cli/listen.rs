//! `wasmhook listen`: a development receiver. It prints every request it
//! gets with its headers and body, checks the signature the way a receiver
//! should (wasmhook's default scheme, FraiseQL v2's or Standard Webhooks'),
//! and can fail on purpose so retries, backoff and the DLQ can be watched.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use serde_json::{json, Value};

use crate::incoming::scheme::{
    self, Encoding, HmacAlgorithm, HmacScheme, Scheme, SignatureFormat, DEFAULT_TOLERANCE_SECONDS,
};

/// `wasmhook listen` flags.
#[derive(Debug, clap::Args)]
pub(super) struct ListenArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Address to bind instead of 127.0.0.1:PORT.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The signing secret (wasmhook's default scheme and FraiseQL v2's).
    #[arg(long, env = "WASMHOOK_LISTEN_SECRET")]
    secret: Option<String>,
    /// A Standard Webhooks secret (`whsec_...`).
    #[arg(long = "standard-webhooks", value_name = "WHSEC")]
    standard: Option<String>,
    /// The header carrying the signature in wasmhook's default scheme.
    #[arg(long, default_value = "X-Wasmhook-Signature")]
    header: String,
    /// The header carrying the timestamp in wasmhook's default scheme.
    #[arg(long, default_value = "X-Wasmhook-Timestamp")]
    timestamp_header: String,
    /// Answer with this status instead of 200 (with --times: only at first).
    #[arg(long)]
    status: Option<u16>,
    /// Answer --status only to the first N requests, then 200.
    #[arg(long, requires = "status")]
    times: Option<u64>,
    /// Fail this share of requests (0 to 1) at random, with --status or 500.
    #[arg(long, value_parser = fraction)]
    fail_rate: Option<f64>,
    /// Wait this long before answering ("250ms", "2s").
    #[arg(long, value_parser = crate::config::parse_duration)]
    delay: Option<Duration>,
    /// One JSON object per request on stdout, for scripts.
    #[arg(long)]
    json: bool,
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

struct Listener {
    args: ListenArgs,
    /// The Standard Webhooks key, decoded once.
    standard_key: Option<Vec<u8>>,
    received: AtomicU64,
}

/// Runs until Ctrl-C.
pub(super) async fn execute(args: ListenArgs) -> Result<()> {
    let standard_key = match &args.standard {
        Some(secret) => Some(
            crate::signing::standard::decode_secret(secret)
                .filter(|_| secret.starts_with("whsec_"))
                .context("--standard-webhooks must be a whsec_ secret: base64 after whsec_")?,
        ),
        None => None,
    };
    let address = args
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], args.port)));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let json = args.json;
    let state = Arc::new(Listener {
        args,
        standard_key,
        received: AtomicU64::new(0),
    });
    if !json {
        eprintln!(
            "listening on http://{} ({}); Ctrl-C to stop",
            listener.local_addr()?,
            state.verifying()
        );
    }
    let app = Router::new().fallback(receive).with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the listener stopped")
}

impl Listener {
    fn verifying(&self) -> &'static str {
        match (&self.args.secret, &self.standard_key) {
            (Some(_), Some(_)) => "checking signatures with --secret and --standard-webhooks",
            (Some(_), None) => "checking signatures with --secret",
            (None, Some(_)) => "checking Standard Webhooks signatures",
            (None, None) => "not checking signatures: give --secret or --standard-webhooks",
        }
    }

    /// The status to answer the `n`th request (from 1) with.
    fn status(&self, n: u64) -> StatusCode {
        let failing = self.args.status.unwrap_or(500);
        let code = match (self.args.status, self.args.times, self.args.fail_rate) {
            (Some(status), Some(times), _) if n <= times => status,
            (Some(_), Some(_), None) => 200,
            (_, _, Some(rate)) if random_unit() < rate => failing,
            (_, _, Some(_)) => 200,
            (Some(status), None, None) => status,
            (None, _, None) => 200,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// What the signature check found.
#[derive(Debug, PartialEq)]
struct Verdict {
    scheme: &'static str,
    /// `None`: not checked (no secret for this scheme).
    valid: Option<bool>,
    reason: Option<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Checks the request in the scheme its headers show.
fn verify(listener: &Listener, headers: &[(String, String)], body: &[u8], now: u64) -> Verdict {
    use scheme::Headers;
    let has = |name: &str| Headers::get(headers, name).is_some();
    let (name, scheme, key): (&'static str, Scheme, Option<Vec<u8>>) = if has("webhook-signature") {
        (
            "standard-webhooks",
            Scheme::StandardWebhooks {
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            },
            listener.standard_key.clone(),
        )
    } else if has("X-FraiseQL-Signature-256") {
        (
            "fraiseql-v2",
            Scheme::FraiseqlV2 {
                tolerance_seconds: DEFAULT_TOLERANCE_SECONDS,
            },
            listener.args.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        )
    } else {
        let sha512 = Headers::get(headers, &listener.args.header)
            .is_some_and(|v| v.trim_start().starts_with("sha512="));
        let mut generic = HmacScheme::new(listener.args.header.clone());
        generic.algorithm = if sha512 {
            HmacAlgorithm::Sha512
        } else {
            HmacAlgorithm::Sha256
        };
        generic.signature_format = SignatureFormat::parse(if sha512 {
            "sha512={signature}"
        } else {
            "sha256={signature}"
        })
        .unwrap_or_default();
        generic.encoding = Encoding::Hex;
        generic.timestamp_header = Some(listener.args.timestamp_header.clone());
        (
            "wasmhook",
            Scheme::Hmac(generic),
            listener.args.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        )
    };
    let Some(key) = key else {
        return Verdict {
            scheme: name,
            valid: None,
            reason: Some("no secret given for this scheme".into()),
        };
    };
    match scheme::verify(&scheme, headers, body, &[key.as_slice()], now) {
        Ok(()) => Verdict {
            scheme: name,
            valid: Some(true),
            reason: None,
        },
        Err(rejection) => Verdict {
            scheme: name,
            valid: Some(false),
            reason: Some(rejection.to_string()),
        },
    }
}

async fn receive(
    State(listener): State<Arc<Listener>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = listener.received.fetch_add(1, Ordering::Relaxed) + 1;
    let pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let verdict = verify(&listener, &pairs, &body, now());
    let status = listener.status(n);
    if listener.args.json {
        let body_value = serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        let headers: serde_json::Map<String, Value> = pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        println!(
            "{}",
            json!({
                "method": method.as_str(), "path": uri.to_string(), "headers": headers,
                "body": body_value,
                "signature": {"scheme": verdict.scheme, "valid": verdict.valid, "reason": verdict.reason},
                "status": status.as_u16(),
            })
        );
    } else {
        let signature = match (&verdict.valid, &verdict.reason) {
            (Some(true), _) => format!("signature={} valid", verdict.scheme),
            (Some(false), Some(reason)) => {
                format!("signature={} INVALID: {reason}", verdict.scheme)
            }
            (_, reason) => format!(
                "signature={} not checked: {}",
                verdict.scheme,
                reason.as_deref().unwrap_or("")
            ),
        };
        println!("{method} {uri}  {signature}  -> {}", status.as_u16());
        for (name, value) in &pairs {
            println!("  {name}: {value}");
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(value) => println!(
                "  {}",
                serde_json::to_string_pretty(&value)
                    .unwrap_or_default()
                    .replace('\n', "\n  ")
            ),
            Err(_) => println!("  {}", String::from_utf8_lossy(&body)),
        }
        println!();
    }
    if let Some(delay) = listener.args.delay {
        tokio::time::sleep(delay).await;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{Algorithm, Signer};
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ListenArgs,
    }

    fn listener(flags: &[&str]) -> Listener {
        let mut argv = vec!["listen"];
        argv.extend_from_slice(flags);
        let args = Cmd::try_parse_from(argv).unwrap().args;
        let standard_key = args
            .standard
            .as_deref()
            .map(|s| crate::signing::standard::decode_secret(s).unwrap());
        Listener {
            args,
            standard_key,
            received: AtomicU64::new(0),
        }
    }

    fn signed(signer: &Signer, body: &[u8], at: u64) -> Vec<(String, String)> {
        signer
            .headers("d-1", "e-1", at, body)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    #[test]
    fn every_scheme_wasmhook_signs_with_is_checked() {
        let body = br#"{"id": 1}"#;
        let at = 1_700_000_000;
        let secret = listener(&["--secret", "s3cret"]);
        let default = Signer::new(
            Algorithm::Sha256,
            b"s3cret",
            "X-Wasmhook-Signature".into(),
            "X-Wasmhook-Timestamp".into(),
        );
        assert_eq!(
            verify(&secret, &signed(&default, body, at), body, at).valid,
            Some(true)
        );
        let sha512 = Signer::new(
            Algorithm::Sha512,
            b"s3cret",
            "X-Wasmhook-Signature".into(),
            "X-Wasmhook-Timestamp".into(),
        );
        assert_eq!(
            verify(&secret, &signed(&sha512, body, at), body, at).valid,
            Some(true)
        );
        let v2 = Signer::fraiseql_v2(&[b"s3cret"]).unwrap();
        let verdict = verify(&secret, &signed(&v2, body, at), body, at);
        assert_eq!((verdict.scheme, verdict.valid), ("fraiseql-v2", Some(true)));
        let tampered = verify(&secret, &signed(&default, body, at), b"{\"id\": 2}", at);
        assert_eq!(tampered.valid, Some(false));
        assert_eq!(tampered.reason.as_deref(), Some("signature mismatch"));
        let stale = verify(&secret, &signed(&default, body, at), body, at + 3600);
        assert_eq!(
            stale.reason.as_deref(),
            Some("timestamp outside the tolerance")
        );

        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let standard = Signer::standard_webhooks(&[whsec]).unwrap();
        let both = listener(&["--standard-webhooks", whsec]);
        let verdict = verify(&both, &signed(&standard, body, at), body, at);
        assert_eq!(
            (verdict.scheme, verdict.valid),
            ("standard-webhooks", Some(true))
        );
        let unchecked = verify(&both, &signed(&default, body, at), body, at);
        assert_eq!(unchecked.valid, None, "no --secret for the default scheme");
    }

    #[test]
    fn failures_on_purpose_follow_the_flags() {
        let twice = listener(&["--status", "503", "--times", "2"]);
        let codes: Vec<u16> = (1..=4).map(|n| twice.status(n).as_u16()).collect();
        assert_eq!(codes, vec![503, 503, 200, 200]);
        let always = listener(&["--status", "410"]);
        assert_eq!(always.status(9).as_u16(), 410);
        let never = listener(&["--fail-rate", "0"]);
        assert!((1..50).all(|n| never.status(n) == StatusCode::OK));
        let all = listener(&["--fail-rate", "1"]);
        assert!((1..50).all(|n| all.status(n) == StatusCode::INTERNAL_SERVER_ERROR));
        assert!(Cmd::try_parse_from(["listen", "--fail-rate", "1.5"]).is_err());
        assert!(
            Cmd::try_parse_from(["listen", "--times", "2"]).is_err(),
            "--times needs --status"
        );
    }
}
