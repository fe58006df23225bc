//! How a request leaves the machine: directly or through an outbound
//! proxy, with or without a client certificate. reqwest binds both to a
//! client, so the sender keeps one client per distinct [`Egress`]; most
//! configs have one.
//!
//! The SSRF guard and a proxy: the proxy's own address is the operator's
//! choice and is never refused (it is usually on a private network). The
//! destination is what the guard is for, but through a proxy it is the
//! proxy that resolves and connects. So before a proxied request wasmhook
//! resolves the destination itself and refuses it when any of its
//! addresses is in a blocked network; a name it cannot resolve locally
//! (split DNS) is left to the proxy, whose own egress rules are the last
//! word. Hosts in `no_proxy` are connected to directly, through the guard
//! as usual.

use std::net::IpAddr;
use std::sync::Arc;

use super::guard::{Blocked, Guard};

/// One way out: a client certificate and a proxy, either optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    /// Presented to receivers that ask for one (mTLS).
    pub identity: Option<ClientIdentity>,
    /// Where requests go first, unless their host is in its `no_proxy`.
    pub proxy: Option<OutboundProxy>,
}

/// A client certificate chain and its private key, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pem: Vec<u8>,
    /// The files it was read from, for messages.
    pub files: String,
}

impl std::fmt::Debug for ClientIdentity {
    // The key stays out of logs and `check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// Why a client certificate or a proxy cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The PEM holds no usable certificate and key.
    #[error("{files}: not a PEM certificate and private key ({source})")]
    Identity {
        /// The files.
        files: String,
        /// What reqwest said.
        source: reqwest::Error,
    },
    /// The proxy URL is not one the client can use.
    #[error("{0}")]
    Proxy(String),
}

impl ClientIdentity {
    /// The certificate chain and the key, checked now so that a bad file
    /// fails at start-up, not at the first delivery.
    pub fn from_pem(cert: &[u8], key: &[u8], files: String) -> Result<ClientIdentity, EgressError> {
        let mut pem = Vec::with_capacity(cert.len() + key.len() + 1);
        pem.extend_from_slice(cert);
        pem.push(b'\n');
        pem.extend_from_slice(key);
        let identity = ClientIdentity { pem, files };
        identity.to_reqwest()?;
        Ok(identity)
    }

    fn to_reqwest(&self) -> Result<reqwest::Identity, EgressError> {
        reqwest::Identity::from_pem(&self.pem).map_err(|source| EgressError::Identity {
            files: self.files.clone(),
            source,
        })
    }
}

/// An outbound proxy: `http://`, `https://`, `socks5://` (names resolved
/// here) or `socks5h://` (names resolved by the proxy).
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundProxy {
    /// The proxy; credentials may be in it (`http://user:pass@proxy:3128`).
    pub url: reqwest::Url,
    /// Hosts reached directly: names (`internal.example.com` also covers
    /// its subdomains), IP addresses or networks (`10.0.0.0/8`).
    pub no_proxy: Vec<String>,
}

impl OutboundProxy {
    /// Checks the scheme and the `no_proxy` entries.
    pub fn new(url: reqwest::Url, no_proxy: Vec<String>) -> Result<OutboundProxy, EgressError> {
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(EgressError::Proxy(format!(
                "{:?} is not an http://, https://, socks5:// or socks5h:// proxy",
                redacted(&url)
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(EgressError::Proxy("the proxy URL has no host".into()));
        }
        if let Some(entry) = no_proxy
            .iter()
            .find(|e| e.trim().is_empty() || e.contains(','))
        {
            return Err(EgressError::Proxy(format!(
                "no_proxy entry {entry:?} must be one host, address or network"
            )));
        }
        Ok(OutboundProxy { url, no_proxy })
    }

    /// The proxy for messages, its password replaced.
    pub fn display(&self) -> String {
        redacted(&self.url)
    }

    /// Whether requests to `host` skip the proxy, by the rules reqwest
    /// applies (`no_proxy`'s usual meaning).
    fn bypasses(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.no_proxy.iter().any(|entry| {
            let entry = entry.trim();
            if entry == "*" {
                return true;
            }
            if let Ok(ip) = host.parse::<IpAddr>() {
                return entry
                    .parse::<ipnet::IpNet>()
                    .map(|net| net.contains(&ip))
                    .or_else(|_| entry.parse::<IpAddr>().map(|e| e == ip))
                    .unwrap_or(false);
            }
            let domain = entry.trim_start_matches('.');
            host.eq_ignore_ascii_case(domain)
                || (host.len() > domain.len()
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
                    && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain))
        })
    }
}

impl std::fmt::Debug for OutboundProxy {
    // The proxy's password stays out of logs and `check`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundProxy")
            .field("url", &self.display())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

impl Egress {
    /// For `check`: what is not direct about it, passwords hidden; `None`
    /// when requests go straight out with no client certificate.
    pub fn describe(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(proxy) = &self.proxy {
            let mut part = format!("through proxy {}", proxy.display());
            if !proxy.no_proxy.is_empty() {
                part.push_str(&format!(" (not for {})", proxy.no_proxy.join(", ")));
            }
            parts.push(part);
        }
        if let Some(identity) = &self.identity {
            parts.push(format!("client certificate {}", identity.files));
        }
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// Applies this egress to a client builder; `guard` is the resolver
    /// the client will use, which lets the proxy's own name through.
    pub(super) fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
        guard: &Guard,
    ) -> Result<reqwest::ClientBuilder, EgressError> {
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.to_reqwest()?);
        }
        let guard = match &self.proxy {
            None => {
                // Proxies from the environment are ignored so deliveries go
                // where the config says.
                builder = builder.no_proxy();
                guard.clone()
            }
            Some(proxy) => {
                let mut all = reqwest::Proxy::all(proxy.url.clone())
                    .map_err(|e| EgressError::Proxy(format!("{}: {e}", proxy.display())))?;
                if !proxy.no_proxy.is_empty() {
                    all = all.no_proxy(reqwest::NoProxy::from_string(&proxy.no_proxy.join(",")));
                }
                builder = builder.proxy(all);
                guard.trusting(proxy.url.host_str().unwrap_or_default())
            }
        };
        Ok(builder.dns_resolver(Arc::new(guard)))
    }

    /// The guard's check for a request that will go through the proxy:
    /// every address `host` resolves to here must be allowed (the proxy may
    /// pick any of them). Nothing to check when there is no proxy or the
    /// host bypasses it: the client's resolver checks those connections.
    pub(super) async fn check_proxied(
        &self,
        guard: &Guard,
        url: &reqwest::Url,
    ) -> Result<(), Blocked> {
        let Some(proxy) = &self.proxy else {
            return Ok(());
        };
        let Some(url::Host::Domain(host)) = url.host() else {
            // IP literals were checked with the URL.
            return Ok(());
        };
        if proxy.bypasses(host) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        // A name that does not resolve here is the proxy's to resolve.
        let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
            return Ok(());
        };
        for address in addresses {
            guard.check(address.ip())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(no_proxy: &[&str]) -> OutboundProxy {
        OutboundProxy::new(
            "http://proxy.internal:3128".parse().unwrap(),
            no_proxy.iter().map(|s| s.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn no_proxy_matches_names_their_subdomains_addresses_and_networks() {
        let p = proxy(&["internal.example.com", ".corp", "10.0.0.0/8", "::1"]);
        assert!(p.bypasses("internal.example.com"));
        assert!(p.bypasses("api.internal.example.com"));
        assert!(p.bypasses("INTERNAL.example.com"));
        assert!(!p.bypasses("notinternal.example.com"));
        assert!(!p.bypasses("example.com"));
        assert!(p.bypasses("hr.corp"));
        assert!(p.bypasses("10.2.3.4"));
        assert!(!p.bypasses("11.2.3.4"));
        assert!(p.bypasses("[::1]"));
        assert!(proxy(&["*"]).bypasses("anything.example"));
    }

    #[test]
    fn a_proxy_needs_a_known_scheme_and_plain_no_proxy_entries() {
        let bad = |url: &str, no_proxy: &[&str]| {
            OutboundProxy::new(
                url.parse().unwrap(),
                no_proxy.iter().map(|s| s.to_string()).collect(),
            )
            .unwrap_err()
            .to_string()
        };
        let error = bad("ftp://user:secret@proxy:21", &[]);
        assert!(error.contains("not an http://"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(bad("http://proxy:3128", &["a.com,b.com"]).contains("one host"));
        assert!(bad("http://proxy:3128", &[" "]).contains("one host"));
        for good in ["https://p:443", "socks5://p:1080", "socks5h://p:1080"] {
            OutboundProxy::new(good.parse().unwrap(), vec![]).unwrap();
        }
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused_and_never_shown() {
        let error = ClientIdentity::from_pem(b"junk", b"SECRETKEY", "a.pem, a-key.pem".into())
            .unwrap_err()
            .to_string();
        assert!(error.contains("a.pem, a-key.pem"), "{error}");
        assert!(!error.contains("SECRETKEY"), "{error}");
    }

    #[tokio::test]
    async fn a_proxied_name_that_resolves_to_a_blocked_address_is_refused() {
        let egress = Egress {
            identity: None,
            proxy: Some(proxy(&["bypassed.localhost"])),
        };
        let guard = Guard::default();
        let url = "http://localhost:8080/x".parse().unwrap();
        let blocked = egress.check_proxied(&guard, &url).await.unwrap_err();
        assert_eq!(blocked.class, "loopback");
        let allowed = Guard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        egress.check_proxied(&allowed, &url).await.unwrap();
        // Bypassing hosts are the resolver's to check; unresolvable names
        // the proxy's.
        let bypassed = "http://bypassed.localhost/x".parse().unwrap();
        egress.check_proxied(&guard, &bypassed).await.unwrap();
        let unknown = "http://no-such-host.invalid/x".parse().unwrap();
        egress.check_proxied(&guard, &unknown).await.unwrap();
    }
}
