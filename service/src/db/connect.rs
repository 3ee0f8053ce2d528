//! TLS to PostgreSQL, honouring libpq's `sslmode` and `sslrootcert` in the
//! database URL (managed PostgreSQL and CockroachDB require TLS).
//!
//! tokio-postgres itself knows `sslmode=disable|prefer|require` and neither
//! `verify-ca`, `verify-full` nor `sslrootcert`; this module takes those out
//! of the URL and builds the matching rustls verifier:
//! - `disable`: no TLS;
//! - `prefer` (the default) and `require`: encrypted, the certificate not
//!   checked, as libpq does without a root certificate;
//! - `require` with `sslrootcert`, and `verify-ca`: the chain is checked
//!   against the root certificate, not the host name;
//! - `verify-full`: chain and host name are checked; the roots are
//!   `sslrootcert` or the system's.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::defaults;
use crate::error::{Error, Result};

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Not checked (`prefer`, `require` without a root certificate).
    Nothing,
    /// The chain, not the host name (`verify-ca`, `require` with a root).
    Chain,
    /// Chain and host name (`verify-full`).
    Full,
}

/// A database connection configuration with its TLS settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// What tokio-postgres understands of the URL.
    pub postgres: tokio_postgres::Config,
    /// How the certificate is checked.
    pub verify: Verify,
    /// `sslrootcert`: the root certificates to trust (PEM).
    pub root_cert: Option<PathBuf>,
    /// A pooled connection not handed out for this long is checked before
    /// it is ([`defaults::POOL_CHECK_IDLE`]; tests shorten it).
    pub check_idle: Duration,
}

impl From<tokio_postgres::Config> for ConnectConfig {
    fn from(postgres: tokio_postgres::Config) -> Self {
        ConnectConfig {
            postgres,
            verify: Verify::Nothing,
            root_cert: None,
            check_idle: defaults::POOL_CHECK_IDLE,
        }
    }
}

impl ConnectConfig {
    /// Parses a libpq URL (`postgresql://…?sslmode=verify-full`) or
    /// key=value string (`host=… sslmode=verify-full`).
    pub fn parse(url: &str) -> Result<ConnectConfig> {
        let invalid = |reason: String| Error::invalid("--database-url", reason);
        let (mut mode, mut root_cert) = (None, None);
        let mut keep = |key: &str, value: &str| -> bool {
            match key {
                "sslmode" if matches!(value, "verify-ca" | "verify-full") => {
                    mode = Some(value.to_owned());
                    false
                }
                "sslmode" => {
                    mode = Some(value.to_owned());
                    true
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(value));
                    false
                }
                _ => true,
            }
        };
        let rewritten = if url.contains("://") {
            match url.split_once('?') {
                Some((base, query)) => {
                    let kept: Vec<&str> = query
                        .split('&')
                        .filter(|pair| {
                            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                            keep(key, value)
                        })
                        .collect();
                    if kept.is_empty() {
                        base.to_owned()
                    } else {
                        format!("{base}?{}", kept.join("&"))
                    }
                }
                None => url.to_owned(),
            }
        } else {
            url.split_whitespace()
                .filter(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    keep(key, value)
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut postgres: tokio_postgres::Config =
            rewritten.parse().map_err(|e| invalid(format!("{e}")))?;
        let verify = match mode.as_deref() {
            Some("verify-full") => Verify::Full,
            Some("verify-ca") => Verify::Chain,
            Some("require") if root_cert.is_some() => Verify::Chain,
            _ => Verify::Nothing,
        };
        if verify != Verify::Nothing {
            postgres.ssl_mode(tokio_postgres::config::SslMode::Require);
        }
        if verify == Verify::Chain && root_cert.is_none() {
            return Err(invalid("sslmode=verify-ca needs sslrootcert".to_owned()));
        }
        Ok(ConnectConfig {
            postgres,
            verify,
            root_cert,
            check_idle: defaults::POOL_CHECK_IDLE,
        })
    }

    /// The TLS connector for these settings (also used when TLS is off:
    /// tokio-postgres then never starts it).
    pub fn connector(&self) -> Result<MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Setup(format!("TLS: {e}")))?;
        let config = match self.verify {
            Verify::Nothing => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
            Verify::Full => builder
                .with_root_certificates(self.roots()?)
                .with_no_client_auth(),
            Verify::Chain => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots()?),
                    provider,
                )
                .build()
                .map_err(|e| Error::Setup(format!("TLS: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                    .with_no_client_auth()
            }
        };
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(Error::io(format!("reading sslrootcert {}", path.display())))?;
                for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                    let cert =
                        cert.map_err(Error::io(format!("parsing sslrootcert {}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| Error::invalid("sslrootcert", format!("{e}")))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system root that rustls cannot use is skipped.
                    let _ = roots.add(cert);
                }
            }
        }
        Ok(roots)
    }
}

/// Accepts any certificate: encryption without authentication, as libpq's
/// `sslmode=require` without a root certificate.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

/// Checks the chain but not the host name (`verify-ca`).
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_ssl_options_are_taken_out_of_the_url() {
        let config = ConnectConfig::parse("postgresql://u:p@db.example:5432/count?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x").unwrap();
        assert_eq!(
            (config.verify, config.root_cert.as_deref()),
            (Verify::Full, Some(std::path::Path::new("/ca.pem")))
        );
        assert_eq!(
            config.postgres.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        assert_eq!(config.postgres.get_application_name(), Some("x"));
        let config =
            ConnectConfig::parse("host=db sslmode=require sslrootcert=/ca.pem dbname=count")
                .unwrap();
        assert_eq!(config.verify, Verify::Chain);
        assert_eq!(config.postgres.get_dbname(), Some("count"));
        let config = ConnectConfig::parse("postgresql://db/count?sslmode=require").unwrap();
        assert_eq!(
            (config.verify, config.postgres.get_ssl_mode()),
            (Verify::Nothing, tokio_postgres::config::SslMode::Require)
        );
        let error = ConnectConfig::parse("postgresql://db/count?sslmode=verify-ca").unwrap_err();
        assert_eq!(
            error.to_string(),
            "--database-url: sslmode=verify-ca needs sslrootcert"
        );
    }
}
