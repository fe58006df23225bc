//! How webhooks leave the machine: `client_cert`, `proxy` and `no_proxy`
//! under `[webhooks]`, which every webhook inherits, and on a webhook,
//! which override them (`false` drops the inherited one).

use std::path::Path;
use std::sync::Arc;

use super::file::{ClientCertSection, Switched};
use super::{invalid, ConfigError};
use crate::delivery::egress::{ClientIdentity, Egress, OutboundProxy};

/// What every webhook inherits and where relative file names start.
pub(super) struct Outgoing<'a> {
    /// `[webhooks]`'s way out.
    pub default: &'a Arc<Egress>,
    /// The config file's directory.
    pub base: &'a Path,
}

/// `[webhooks]`'s client certificate and proxy.
pub(super) fn defaults(
    client_cert: Option<&ClientCertSection>,
    proxy: Option<&str>,
    no_proxy: Option<&[String]>,
    base: &Path,
) -> Result<Egress, ConfigError> {
    let identity = client_cert
        .map(|section| identity(section, "webhooks.client_cert", base))
        .transpose()?;
    let proxy = match (proxy, no_proxy) {
        (None, Some(_)) => {
            return Err(invalid(
                "webhooks.no_proxy",
                "no_proxy lists hosts that skip the proxy; set webhooks.proxy too",
            ))
        }
        (None, None) => None,
        (Some(url), no_proxy) => Some(outbound_proxy(
            url,
            no_proxy.unwrap_or_default(),
            "webhooks",
        )?),
    };
    Ok(Egress { identity, proxy })
}

/// A webhook's way out at `key`: `[webhooks]`'s, with what it sets itself.
/// Returns the inherited one itself when nothing changes, so that webhooks
/// share clients.
pub(super) fn webhook(
    client_cert: Option<Switched<ClientCertSection>>,
    proxy: Option<Switched<String>>,
    no_proxy: Option<Vec<String>>,
    key: &str,
    outgoing: &Outgoing<'_>,
) -> Result<Arc<Egress>, ConfigError> {
    if client_cert.is_none() && proxy.is_none() && no_proxy.is_none() {
        return Ok(outgoing.default.clone());
    }
    let mut egress = Egress::clone(outgoing.default);
    match client_cert {
        None => {}
        Some(Switched::Switch(false)) => egress.identity = None,
        Some(Switched::Switch(true)) => {
            return Err(invalid(
                format!("{key}.client_cert"),
                "give { cert_file, key_file }, or false to send none",
            ))
        }
        Some(Switched::Own(section)) => {
            egress.identity = Some(identity(
                &section,
                &format!("{key}.client_cert"),
                outgoing.base,
            )?)
        }
    }
    let inherited_no_proxy = egress
        .proxy
        .as_ref()
        .map(|p| p.no_proxy.clone())
        .unwrap_or_default();
    egress.proxy = match proxy {
        None => match (egress.proxy, no_proxy) {
            (Some(inherited), Some(no_proxy)) => Some(outbound_proxy(
                inherited.url.as_str(),
                &no_proxy,
                key,
            )?),
            (None, Some(_)) => {
                return Err(invalid(
                    format!("{key}.no_proxy"),
                    "no_proxy lists hosts that skip the proxy, and this webhook has none (set proxy here or under [webhooks])",
                ))
            }
            (inherited, None) => inherited,
        },
        Some(Switched::Switch(false)) => {
            if no_proxy.is_some() {
                return Err(invalid(
                    format!("{key}.no_proxy"),
                    "this webhook has proxy = false: every request goes direct",
                ));
            }
            None
        }
        Some(Switched::Switch(true)) => {
            return Err(invalid(
                format!("{key}.proxy"),
                "give the proxy's URL, or false to connect directly",
            ))
        }
        Some(Switched::Own(url)) => Some(outbound_proxy(
            &url,
            no_proxy.as_deref().unwrap_or(&inherited_no_proxy),
            key,
        )?),
    };
    Ok(Arc::new(egress))
}

fn identity(
    section: &ClientCertSection,
    key: &str,
    base: &Path,
) -> Result<ClientIdentity, ConfigError> {
    let read = |file: &str, which: &str| {
        let path = base.join(file);
        std::fs::read(&path).map_err(|e| {
            invalid(
                format!("{key}.{which}"),
                format!("cannot read {}: {e}", path.display()),
            )
        })
    };
    let cert = read(&section.cert_file, "cert_file")?;
    let (key_pem, files) = match &section.key_file {
        Some(file) => (
            read(file, "key_file")?,
            format!("{}, {}", section.cert_file, file),
        ),
        None => (Vec::new(), section.cert_file.clone()),
    };
    ClientIdentity::from_pem(&cert, &key_pem, files).map_err(|e| invalid(key, e.to_string()))
}

fn outbound_proxy(url: &str, no_proxy: &[String], key: &str) -> Result<OutboundProxy, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        // The URL may carry the proxy's password: name the problem only.
        invalid(format!("{key}.proxy"), format!("not a URL ({e})"))
    })?;
    OutboundProxy::new(parsed, no_proxy.to_vec()).map_err(|e| {
        let field = if e.to_string().starts_with("no_proxy") {
            "no_proxy"
        } else {
            "proxy"
        };
        invalid(format!("{key}.{field}"), e.to_string())
    })
}

/// Gives webhooks that leave the same way the same [`Egress`] (one HTTP
/// client each) and returns the distinct ones, `default` first.
pub(super) fn intern<'a>(
    default: Arc<Egress>,
    webhooks: impl Iterator<Item = &'a mut Arc<Egress>>,
) -> Vec<Arc<Egress>> {
    let mut distinct = vec![default];
    for egress in webhooks {
        match distinct.iter().find(|known| ***known == **egress) {
            Some(known) => *egress = known.clone(),
            None => distinct.push(egress.clone()),
        }
    }
    distinct
}
