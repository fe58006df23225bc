//! How wasmhook proves who it is to NATS and secures the connection: a
//! token, a user and password, an nkey seed or a `.creds` file (Synadia
//! Cloud and most production NATS), and TLS (`tls://` URLs, or the
//! `[observers] tls` files: a private CA, a client certificate).

use std::fmt;
use std::path::PathBuf;

use crate::tls::TlsFiles;

/// `[observers]` `token`, `user`/`password`, `nkey_seed_file`,
/// `credentials_file` (at most one) and `tls`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// A bearer token (`authorization { token: ... }`).
    pub token: Option<String>,
    /// A user and password (also possible as URL userinfo).
    pub user: Option<(String, String)>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A `.creds` file (JWT and seed), as `nsc` and Synadia Cloud write it.
    pub credentials_file: Option<PathBuf>,
    /// A private CA and a client certificate; any of them requires TLS.
    pub tls: TlsFiles,
}

/// Why the NATS connection cannot be set up as configured.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NatsAuthError(String);

// Secrets must never reach a log line.
impl fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAuth")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("user", &self.user.as_ref().map(|(user, _)| user))
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field("credentials_file", &self.credentials_file)
            .field("tls", &self.tls)
            .finish()
    }
}

impl NatsAuth {
    /// Adds the credentials and TLS to `options`; reads the seed and
    /// credentials files, naming them when they cannot be read.
    pub async fn apply(
        &self,
        mut options: async_nats::ConnectOptions,
    ) -> Result<async_nats::ConnectOptions, NatsAuthError> {
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(path) = &self.nkey_seed_file {
            let seed = std::fs::read_to_string(path)
                .map_err(|e| NatsAuthError(format!("nkey seed file {}: {e}", path.display())))?;
            options = options.nkey(seed.trim().to_string());
        }
        if let Some(path) = &self.credentials_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| NatsAuthError(format!("credentials file {}: {e}", path.display())))?;
        }
        if let Some(ca) = &self.tls.ca_file {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                options = options
                    .add_client_certificate(cert.clone(), key.clone())
                    .require_tls(true);
            }
            (None, None) => {}
            _ => {
                return Err(NatsAuthError(
                    "a client certificate needs both cert_file and key_file".into(),
                ))
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let auth = NatsAuth {
            token: Some("t0ken".into()),
            user: Some(("app".into(), "pa55".into())),
            ..NatsAuth::default()
        };
        let text = format!("{auth:?}");
        assert!(!text.contains("t0ken") && !text.contains("pa55"), "{text}");
        assert!(text.contains("app"), "{text}");
    }

    #[tokio::test]
    async fn unreadable_files_are_named() {
        let auth = NatsAuth {
            nkey_seed_file: Some("/nonexistent/seed.nk".into()),
            ..NatsAuth::default()
        };
        let e = auth
            .apply(async_nats::ConnectOptions::new())
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/seed.nk"), "{e}");
        let half = NatsAuth {
            tls: TlsFiles {
                cert_file: Some("/c.pem".into()),
                ..TlsFiles::default()
            },
            ..NatsAuth::default()
        };
        assert!(half.apply(async_nats::ConnectOptions::new()).await.is_err());
    }
}
