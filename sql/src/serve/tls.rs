//! TLS for the server: the PEM certificate chain and private key of `[serve]`, loaded
//! once at start. A file that cannot be read or used stops the server with the reason;
//! it never falls back to plaintext.

use std::path::Path;
use std::sync::Arc;

use datafusion_postgres::pgwire::tokio::TlsAcceptor;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls::ServerConfig;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls::crypto::ring::default_provider;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls::pki_types::pem::PemObject;
use datafusion_postgres::pgwire::tokio::tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer,
};

use crate::error::{Error, Result};

/// The acceptor for `cert` and `key` (PEM files).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    Ok(TlsAcceptor::from(Arc::new(server_config(cert, key)?)))
}

/// The acceptor for `cert` and `key` that offers HTTP/2 and HTTP/1.1 by ALPN, for the
/// HTTP API (the PostgreSQL listener's acceptor offers no application protocol).
pub fn http_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let mut config = server_config(cert, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The server configuration of `cert` and `key` (PEM files).
fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig> {
    let unusable = |what: &str, path: &Path, cause: String| {
        Error::Serve(format!(
            "{what} {}: {cause}; give a PEM file in [serve] {}",
            path.display(),
            if what == "certificate" {
                "tls_cert"
            } else {
                "tls_key"
            }
        ))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| unusable("certificate", cert, e.to_string()))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| unusable("certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(unusable(
            "certificate",
            cert,
            String::from("no certificate found"),
        ));
    }
    let private_key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| unusable("private key", key, e.to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Serve(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| {
            Error::Serve(format!(
                "TLS with {} and {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(config)
}
