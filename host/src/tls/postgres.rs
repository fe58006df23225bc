//! PostgreSQL connection strings with libpq's TLS parameters: `sslmode`
//! (`disable`, `prefer`, `require`, `verify-ca`, `verify-full`),
//! `sslrootcert`, `sslcert` and `sslkey`, in URL or `key=value` form, as
//! users copy them from their provider (RDS, Cloud SQL, Neon, Supabase).
//! tokio-postgres knows only the first three modes and none of the files,
//! so they are taken out here and become a rustls configuration. Messages
//! show a connection as [`shown`] does: never with its password.

use tokio_postgres::config::SslMode as ClientSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{TlsError, TlsFiles, Verification};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, unchecked; plain otherwise (libpq's default).
    Prefer,
    /// TLS, the certificate unchecked (checked against `sslrootcert`'s CA
    /// when one is given, as libpq does).
    Require,
    /// TLS, the chain checked, any name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

/// How to reach one PostgreSQL server: the client's settings and its TLS.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Everything but TLS, as tokio-postgres reads it.
    pub config: tokio_postgres::Config,
    /// The `sslmode`.
    pub mode: SslMode,
    /// Files from `sslrootcert`/`sslcert`/`sslkey`, else from `[... ] tls`.
    pub files: TlsFiles,
}

/// Why a connection string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PgTargetError {
    /// A TLS parameter has a value libpq would refuse too.
    #[error("sslmode {0:?} is not disable, prefer, require, verify-ca or verify-full")]
    SslMode(String),
    /// tokio-postgres refused the rest.
    #[error("{0}")]
    Config(#[from] tokio_postgres::Error),
    /// The URL form does not parse.
    #[error("not a connection URL: {0}")]
    Url(String),
}

impl PgTarget {
    /// Reads `conninfo`; the files of `defaults` (`[observers] tls`) apply
    /// where the string names none.
    pub fn parse(conninfo: &str, defaults: &TlsFiles) -> Result<PgTarget, PgTargetError> {
        let (rest, params) = if conninfo.contains("://") {
            split_url(conninfo)?
        } else {
            split_pairs(conninfo)
        };
        let mut mode = SslMode::Prefer;
        let mut files = defaults.clone();
        for (key, value) in params {
            match key.as_str() {
                "sslmode" => {
                    mode = match value.as_str() {
                        "disable" => SslMode::Disable,
                        // `allow` tries plain first; TLS when offered is no weaker.
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" => SslMode::VerifyCa,
                        "verify-full" => SslMode::VerifyFull,
                        _ => return Err(PgTargetError::SslMode(value)),
                    }
                }
                "sslrootcert" => files.ca_file = Some(value.into()),
                "sslcert" => files.cert_file = Some(value.into()),
                "sslkey" => files.key_file = Some(value.into()),
                _ => {}
            }
        }
        let mut config: tokio_postgres::Config = rest.parse()?;
        config.ssl_mode(match mode {
            SslMode::Disable => ClientSslMode::Disable,
            SslMode::Prefer => ClientSslMode::Prefer,
            _ => ClientSslMode::Require,
        });
        Ok(PgTarget {
            config,
            mode,
            files,
        })
    }

    /// How strictly the server's certificate is checked.
    pub fn verification(&self) -> Verification {
        match self.mode {
            SslMode::VerifyFull => Verification::Full,
            SslMode::VerifyCa => Verification::Chain,
            // libpq checks the chain in `require` mode when a root
            // certificate is given; `prefer` never checks.
            SslMode::Require if self.files.ca_file.is_some() => Verification::Chain,
            _ => Verification::None,
        }
    }

    /// The TLS connector, or `None` with `sslmode=disable`.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, TlsError> {
        if self.mode == SslMode::Disable {
            return Ok(None);
        }
        let config = self.files.client_config(self.verification())?;
        Ok(Some(MakeRustlsConnect::new(config)))
    }
}

/// Where a connection goes, for messages: user, hosts, ports and database
/// only, so a password never reaches a log or a terminal, whether it was in
/// the URL, in a query parameter or in `key=value` form.
pub fn shown(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let name = match host {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{name}:{port}"),
                None => name,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config
        .get_dbname()
        .map(|d| format!("/{d}"))
        .unwrap_or_default();
    format!("postgres://{user}{}{db}", hosts.join(","))
}

/// The TLS parameters tokio-postgres does not read.
const TAKEN: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// `postgres://…?sslmode=…&…`: the URL without the TLS parameters, and them.
fn split_url(conninfo: &str) -> Result<(String, Vec<(String, String)>), PgTargetError> {
    let Some((head, query)) = conninfo.split_once('?') else {
        return Ok((conninfo.to_string(), Vec::new()));
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key)?;
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        head.to_string()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    Ok((rest, taken))
}

fn decode(text: &str) -> Result<String, PgTargetError> {
    let plus_as_space = text.replace('+', " ");
    url::form_urlencoded::parse(format!("x={plus_as_space}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .ok_or_else(|| PgTargetError::Url(format!("cannot decode {text:?}")))
}

/// `host=… sslmode=…`: the string without the TLS pairs, and them. Values
/// may be quoted (`'…'`, with `\'` and `\\` inside), as libpq allows.
fn split_pairs(conninfo: &str) -> (String, Vec<(String, String)>) {
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    let mut chars = conninfo.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut raw = String::new();
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next_if_eq(&'\'').is_some() {
                raw.push('\'');
                while let Some(c) = chars.next() {
                    raw.push(c);
                    match c {
                        '\\' => {
                            if let Some(escaped) = chars.next() {
                                raw.push(escaped);
                                value.push(escaped);
                            }
                        }
                        '\'' => break,
                        _ => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    raw.push(c);
                    value.push(c);
                }
            }
        }
        if TAKEN.contains(&key.as_str()) {
            taken.push((key, value));
        } else {
            kept.push(format!("{key}={raw}"));
        }
    }
    (kept.join(" "), taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn target(conninfo: &str) -> PgTarget {
        PgTarget::parse(conninfo, &TlsFiles::default()).unwrap()
    }

    #[test]
    fn libpq_tls_parameters_are_read_from_urls() {
        let t = target(
            "postgres://app:pw@db.example.com:5433/orders?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        );
        assert_eq!(t.mode, SslMode::VerifyFull);
        assert_eq!(t.files.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(t.verification(), Verification::Full);
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_dbname(), Some("orders"));
        assert_eq!(t.config.get_ssl_mode(), ClientSslMode::Require);
    }

    #[test]
    fn libpq_tls_parameters_are_read_from_key_value_strings() {
        let t = target(
            "host=db port=5433 user=app password='p w\\'d' sslmode=verify-ca sslcert=/c.pem sslkey = '/k.pem' dbname=orders",
        );
        assert_eq!(t.mode, SslMode::VerifyCa);
        assert_eq!(t.verification(), Verification::Chain);
        assert_eq!(t.files.cert_file, Some(PathBuf::from("/c.pem")));
        assert_eq!(t.files.key_file, Some(PathBuf::from("/k.pem")));
        assert_eq!(t.config.get_password(), Some(&b"p w'd"[..]));
        assert_eq!(t.config.get_dbname(), Some("orders"));
    }

    #[test]
    fn modes_and_defaults_follow_libpq() {
        let plain = target("postgres://app@db/app");
        assert_eq!(
            (plain.mode, plain.verification()),
            (SslMode::Prefer, Verification::None)
        );
        assert!(target("host=db sslmode=disable")
            .connector()
            .unwrap()
            .is_none());
        let require = target("host=db sslmode=require");
        assert_eq!(require.verification(), Verification::None);
        let with_ca = PgTarget::parse(
            "host=db sslmode=require",
            &TlsFiles {
                ca_file: Some("/ca.pem".into()),
                ..TlsFiles::default()
            },
        )
        .unwrap();
        assert_eq!(
            with_ca.verification(),
            Verification::Chain,
            "the [tls] CA applies"
        );
        let e = PgTarget::parse("host=db sslmode=verify", &TlsFiles::default()).unwrap_err();
        assert!(e.to_string().contains("\"verify\""), "{e}");
        assert!(PgTarget::parse("postgres://app@db:notaport/app", &TlsFiles::default()).is_err());
    }
}
