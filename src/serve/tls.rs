//! HTTPS for `serve`: `--tls-cert` (a PEM chain, the server's certificate first) and
//! `--tls-key` (its PEM private key: PKCS#8, PKCS#1 or SEC1), served with rustls over
//! TLS 1.2 and 1.3, HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// The acceptor of TLS connections with the certificate chain and key in these files.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let failed = |what: &str, path: &Path, cause: String| Error::Io {
        context: format!("{what} {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, cause),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| failed("reading the certificate chain", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(failed(
            "reading the certificate chain",
            cert,
            "no CERTIFICATE in the file".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| failed("reading the private key", key, e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private)
        })
        .map_err(|e| failed("using the certificate and key of", cert, e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
