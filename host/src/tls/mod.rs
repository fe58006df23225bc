//! TLS for the connections wasmhook opens to its buses and storage: one
//! rustls client configuration built from the files a user names (a private
//! CA, a client certificate and key) and how strictly the server is checked.
//! rustls rather than OpenSSL, so the binary links no system TLS library.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

pub mod postgres;

/// The files of `[observers] tls` (and of libpq's `sslrootcert`, `sslcert`,
/// `sslkey`): all optional; a client certificate needs both its files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates of the CAs to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for servers that require one.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
}

/// How much of the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// Chain to a trusted CA and the name of the host connected to
    /// (libpq `verify-full`, and what `rediss://` and `tls://` mean).
    Full,
    /// Chain to a trusted CA, any name (libpq `verify-ca`).
    Chain,
    /// Encrypted, the certificate not checked (libpq `require`): protects
    /// against a passive listener, not against an impostor.
    None,
}

/// Why TLS cannot be set up; names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{what} {path}: {message}")]
    File {
        /// `CA file`, `client certificate`, `client key`.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// Only one of the client certificate's two files is set.
    #[error("a client certificate needs both cert_file and key_file")]
    HalfClientCert,
    /// rustls refused the combination.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn file_error(what: &'static str, path: &Path, message: impl fmt::Display) -> TlsError {
    TlsError::File {
        what,
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl TlsFiles {
    /// True when no file is named.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The CAs to trust: the `ca_file`'s, else the system's.
    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in certificates(path, "CA file")? {
                    roots
                        .add(cert)
                        .map_err(|e| file_error("CA file", path, e))?;
                }
            }
            None => {
                // Unreadable system certificates are skipped, as every
                // client does; an empty store fails the handshake, clearly.
                for cert in rustls_native_certs::load_native_certs().unwrap_or_default() {
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(roots)
    }

    /// The client certificate and key, when both are named.
    fn client_cert(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let chain = certificates(cert, "client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| file_error("client key", key, pem_problem(e)))?;
                Ok(Some((chain, key)))
            }
            _ => Err(TlsError::HalfClientCert),
        }
    }

    /// A rustls client configuration for these files and `verification`.
    pub fn client_config(&self, verification: Verification) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match verification {
            Verification::Full => builder.with_root_certificates(self.roots()?),
            Verification::Chain => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyName(
                    WebPkiServerVerifier::builder_with_provider(
                        Arc::new(self.roots()?),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
                ))),
            Verification::None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider.clone()))),
        };
        Ok(match self.client_cert()? {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        })
    }
}

fn certificates(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, pem_problem(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, pem_problem(e)))?;
    if certs.is_empty() {
        return Err(file_error(what, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn pem_problem(error: rustls::pki_types::pem::Error) -> String {
    match error {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => {
            "no PEM item of the expected kind in it".into()
        }
        other => format!("not valid PEM ({other:?})"),
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name is not
/// checked (the server may be reached by an address its certificate does
/// not name).
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require`: encrypted, the certificate taken as it comes; the handshake's
/// signatures are still checked, so the session is bound to that key.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let files = TlsFiles {
            ca_file: Some(empty.clone()),
            ..TlsFiles::default()
        };
        let e = files
            .client_config(Verification::Full)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("CA file ") && e.contains("empty.pem"), "{e}");
        let files = TlsFiles {
            ca_file: Some(dir.path().join("missing.pem")),
            ..TlsFiles::default()
        };
        let e = files
            .client_config(Verification::Full)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");
        let half = TlsFiles {
            cert_file: Some(empty),
            ..TlsFiles::default()
        };
        assert!(matches!(
            half.client_config(Verification::None),
            Err(TlsError::HalfClientCert)
        ));
    }

    #[test]
    fn every_verification_builds_with_the_system_roots() {
        for verification in [Verification::Full, Verification::Chain, Verification::None] {
            TlsFiles::default().client_config(verification).unwrap();
        }
    }
}
