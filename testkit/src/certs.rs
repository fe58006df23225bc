//! Certificates for TLS tests, made by the test: a private CA, server
//! certificates for loopback names, client certificates; written as PEM
//! files into a directory the caller owns.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A private certificate authority whose certificate is in [`TestCa::ca_file`].
pub struct TestCa {
    name: String,
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA called `name`, its files in `dir` (`<name>-ca.pem`).
    ///
    /// # Errors
    ///
    /// When a key cannot be made or a file written.
    pub fn new(dir: &Path, name: &str) -> Result<TestCa> {
        let key = KeyPair::generate().context("CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("CA params")?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).context("CA certificate")?;
        let ca = TestCa {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cert,
            key,
        };
        std::fs::write(ca.ca_file(), ca.cert.pem()).context("writing the CA file")?;
        Ok(ca)
    }

    /// The CA's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for `names` (DNS names or IP addresses, e.g.
    /// `["localhost", "127.0.0.1"]`), signed by this CA.
    ///
    /// # Errors
    ///
    /// As [`TestCa::new`].
    pub fn server(&self, file: &str, names: &[&str]) -> Result<CertFiles> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .context("server params")?;
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or(file));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params)
    }

    /// A client certificate with common name `user` (PostgreSQL and NATS
    /// map it to a user), signed by this CA.
    ///
    /// # Errors
    ///
    /// As [`TestCa::new`].
    pub fn client(&self, file: &str, user: &str) -> Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new()).context("client params")?;
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params)
    }

    fn issue(&self, file: &str, params: CertificateParams) -> Result<CertFiles> {
        let key = KeyPair::generate().context("key")?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .context("signing")?;
        let files = CertFiles {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem()).context("writing a certificate")?;
        std::fs::write(&files.key, key.serialize_pem()).context("writing a key")?;
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_pem() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path(), "t").unwrap();
        let server = ca.server("server", &["localhost", "127.0.0.1"]).unwrap();
        let client = ca.client("client", "app").unwrap();
        for path in [ca.ca_file(), server.cert, client.cert] {
            let text = std::fs::read_to_string(path).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        }
        let key = std::fs::read_to_string(server.key).unwrap();
        assert!(key.contains("PRIVATE KEY"), "{key}");
    }
}
