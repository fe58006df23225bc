//! The SSRF guard: webhook URLs come from config, templates and people who
//! are not always the operator, so by default no delivery may reach
//! loopback, private, link-local, CGNAT, multicast or reserved addresses,
//! which is where metadata services and internal admin ports live.
//!
//! The check runs on the addresses the connection will actually use: the
//! HTTP client resolves names through [`Guard`] (a `reqwest` resolver) and
//! only ever sees the allowed addresses, so a name that resolves to a public
//! address once and to 127.0.0.1 the next time (DNS rebinding) is still
//! refused. IP literals, which skip resolution, are checked by
//! [`Guard::check_url`] before sending and on every redirect hop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// A destination the guard refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("destination {ip} is a {class} address; list it in [webhooks] allowed_networks to deliver there")]
pub struct Blocked {
    /// The refused address.
    pub ip: IpAddr,
    /// Why: `loopback`, `private`, ...
    pub class: &'static str,
}

/// Which non-public networks deliveries may reach anyway.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allowed: Arc<[IpNet]>,
    /// A name resolved without the check: the outbound proxy's, which the
    /// operator chose (see `egress`).
    trusted: Option<Arc<str>>,
}

impl Guard {
    /// A guard that lets `allowed` through (e.g. `127.0.0.0/8` for tests).
    pub fn new(allowed: Vec<IpNet>) -> Guard {
        Guard {
            allowed: allowed.into(),
            trusted: None,
        }
    }

    /// This guard, letting the name `host` resolve to any address.
    pub fn trusting(&self, host: &str) -> Guard {
        Guard {
            allowed: self.allowed.clone(),
            trusted: Some(host.into()),
        }
    }

    /// Whether a delivery may connect to `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let Some(class) = special_class(ip) else {
            return Ok(());
        };
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        Err(Blocked { ip, class })
    }

    /// Checks a URL whose host is an IP literal; names are checked when
    /// they are resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            _ => Ok(()),
        }
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if guard.trusted.as_deref() == Some(name.as_str()) {
                return Ok(Box::new(resolved.into_iter()) as reqwest::dns::Addrs);
            }
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(blocked) => {
                        refused.get_or_insert(blocked);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(blocked)) => Err(Box::new(blocked) as _),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The class of a non-public address, or `None` for a public one.
fn special_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) and NAT64 (64:ff9b::/96) reach
            // the IPv4 address inside.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_class(v4);
            }
            let s = v6.segments();
            if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
                return v4_class(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ));
            }
            v6_class(v6)
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        _ if a == 100 && (64..128).contains(&b) => "CGNAT",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if first & 0xfe00 == 0xfc00 => "private",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xffc0 == 0xfec0 => "private",
        _ if ip.is_multicast() => "multicast",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> Option<&'static str> {
        special_class(text.parse().unwrap())
    }

    #[test]
    fn every_blocked_class_and_public_addresses() {
        for (ip, expected) in [
            ("127.0.0.1", Some("loopback")),
            ("127.9.9.9", Some("loopback")),
            ("10.1.2.3", Some("private")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.168.1.1", Some("private")),
            ("169.254.169.254", Some("link-local")),
            ("100.64.0.1", Some("CGNAT")),
            ("100.127.255.255", Some("CGNAT")),
            ("224.0.0.1", Some("multicast")),
            ("0.0.0.0", Some("unspecified")),
            ("255.255.255.255", Some("reserved")),
            ("::1", Some("loopback")),
            ("::", Some("unspecified")),
            ("fd00::1", Some("private")),
            ("fe80::1", Some("link-local")),
            ("ff02::1", Some("multicast")),
            ("::ffff:127.0.0.1", Some("loopback")),
            ("::ffff:169.254.169.254", Some("link-local")),
            ("64:ff9b::a00:1", Some("private")),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("2606:4700::1111", None),
        ] {
            assert_eq!(class(ip), expected, "{ip}");
        }
    }

    #[test]
    fn allowed_networks_open_exactly_their_range() {
        let guard = Guard::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert!(guard.check("127.0.0.1".parse().unwrap()).is_ok());
        let blocked = guard.check("10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            blocked.to_string(),
            "destination 10.0.0.1 is a private address; list it in [webhooks] allowed_networks to deliver there"
        );
        let url = reqwest::Url::parse("http://[::1]:8080/x").unwrap();
        assert_eq!(guard.check_url(&url).unwrap_err().class, "loopback");
    }

    #[tokio::test]
    async fn names_resolving_to_blocked_addresses_are_refused() {
        use reqwest::dns::Resolve;
        let name = || "localhost".parse::<reqwest::dns::Name>().unwrap();
        let refused = Guard::default().resolve(name()).await;
        let error = refused.err().expect("localhost is loopback");
        assert!(error.to_string().contains("loopback"), "{error}");
        let allowed = Guard::new(vec![
            "127.0.0.0/8".parse().unwrap(),
            "::1/128".parse().unwrap(),
        ]);
        let addrs: Vec<SocketAddr> = allowed.resolve(name()).await.unwrap().collect();
        assert!(!addrs.is_empty());
    }
}
