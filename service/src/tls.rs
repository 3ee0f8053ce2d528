//! The server's TLS settings (`--tls-cert`, `--tls-key`, `--tls-client-ca`),
//! read once and given to both listeners: the gRPC one (tonic's TLS) and
//! the HTTP one ([`crate::http`], rustls), so that both present the same
//! certificate and ask for the same client certificates.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::error::{Error, Result};

/// How long a client may take over its TLS handshake, on either listener.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files' contents, and the HTTP listener's settings built from
/// them (once, so that a bad file fails the start).
#[derive(Clone)]
pub struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        write!(f, "TlsFiles(client_ca: {})", self.client_ca.is_some())
    }
}

impl TlsFiles {
    /// A certificate chain and its key, and the CA whose client
    /// certificates are required (mutual TLS) when given; all PEM. Errors
    /// name the flag whose file is at fault.
    pub fn new(cert: Vec<u8>, key: Vec<u8>, client_ca: Option<Vec<u8>>) -> Result<TlsFiles> {
        let http = http_config(&cert, &key, client_ca.as_deref())?;
        Ok(TlsFiles {
            cert,
            key,
            client_ca,
            http,
        })
    }

    /// The gRPC listener's settings.
    pub fn grpc(&self) -> ServerTlsConfig {
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        tls
    }

    /// The HTTP listener's settings: HTTP/2 and HTTP/1.1 by ALPN.
    pub fn http(&self) -> Arc<rustls::ServerConfig> {
        self.http.clone()
    }
}

/// The HTTP listener's settings from the PEM files.
fn http_config(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>> {
    let setup = |what: &str, e: &dyn std::fmt::Display| Error::Setup(format!("{what}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup("TLS versions", &e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in certificates(ca, "--tls-client-ca")? {
                roots
                    .add(certificate)
                    .map_err(|e| setup("--tls-client-ca", &e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| setup("--tls-client-ca", &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key[..])
        .map_err(|e| setup("--tls-key", &e))?
        .ok_or_else(|| Error::Setup("--tls-key: no private key in the file".to_owned()))?;
    let mut config = builder
        .with_single_cert(certificates(cert, "--tls-cert")?, key)
        .map_err(|e| setup("--tls-cert and --tls-key", &e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates of a PEM file, at least one.
fn certificates(pem: &[u8], flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certificates = rustls_pemfile::certs(&mut &pem[..])
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Setup(format!("{flag}: {e}")))?;
    if certificates.is_empty() {
        return Err(Error::Setup(format!("{flag}: no certificate in the file")));
    }
    Ok(certificates)
}
