//! TLS for PostgreSQL connections, with rustls, as the URL's `sslmode` says:
//!
//! - `disable` (or no `sslmode`): plain TCP;
//! - `require`: encrypted, the server's certificate not checked (libpq's `require`);
//! - `verify-full`: encrypted, the certificate checked against `sslrootcert` (a PEM file
//!   of trusted roots) or, without one, the system's roots, and the host name against it.
//!
//! `sslmode` and `sslrootcert` are taken out of the URL here: tokio-postgres knows neither
//! `verify-full` nor `sslrootcert`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// How a URL asks for TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Require,
    VerifyFull { root_cert: Option<String> },
}

/// The URL without `sslmode` and `sslrootcert`, and what they said.
pub fn ssl_mode_of(url: &str) -> Result<(String, SslMode), String> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        // A key=value connection string: left to tokio-postgres as it is.
        return Ok((url.to_string(), SslMode::Disable));
    };
    let (mut mode, mut root_cert) = (None, None);
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| match key.as_ref() {
            "sslmode" => {
                mode = Some(value.into_owned());
                None
            }
            "sslrootcert" => {
                root_cert = Some(value.into_owned());
                None
            }
            _ => Some((key.into_owned(), value.into_owned())),
        })
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    if root_cert.is_some() && mode.as_deref() != Some("verify-full") {
        return Err("sslrootcert is read with sslmode=verify-full only".into());
    }
    let mode = match mode.as_deref() {
        None | Some("disable") => SslMode::Disable,
        Some("require") => SslMode::Require,
        Some("verify-full") => SslMode::VerifyFull { root_cert },
        Some(other) => {
            return Err(format!(
                "sslmode '{other}' is not supported: use disable, require or verify-full"
            ));
        }
    };
    Ok((parsed.to_string(), mode))
}

/// The rustls client configuration of `mode`; `None` for plain TCP.
pub fn client_config(mode: &SslMode) -> Result<Option<RustlsConnect>, String> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        SslMode::Disable => return Ok(None),
        SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull { root_cert } => {
            let mut roots = RootCertStore::empty();
            match root_cert {
                Some(path) => {
                    let certs = CertificateDer::pem_file_iter(path)
                        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                        .map_err(|e| format!("reading sslrootcert {path}: {e}"))?;
                    let (added, _) = roots.add_parsable_certificates(certs);
                    if added == 0 {
                        return Err(format!("sslrootcert {path} holds no certificate"));
                    }
                }
                None => {
                    let native = rustls_native_certs::load_native_certs();
                    roots.add_parsable_certificates(native.certs);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(RustlsConnect(Arc::new(config))))
}

/// Makes TLS connections to PostgreSQL servers.
#[derive(Clone)]
pub struct RustlsConnect(Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnectTo;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<RustlsConnectTo> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(RustlsConnectTo {
            config: Arc::clone(&self.0),
            name,
        })
    }
}

/// One TLS connection to a named server.
pub struct RustlsConnectTo {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnectTo
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let connector = tokio_rustls::TlsConnector::from(self.config);
            connector
                .connect(self.name, stream)
                .await
                .map(|tls| RustlsStream(Box::new(tls)))
        })
    }
}

/// A TLS connection to a PostgreSQL server.
pub struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

/// `sslmode=require`: any certificate, the handshake's signatures still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
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
    fn ssl_options_are_taken_out_of_the_url() {
        let (url, mode) = ssl_mode_of(
            "postgres://u@db:5432/p?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db:5432/p?application_name=x");
        assert_eq!(
            mode,
            SslMode::VerifyFull {
                root_cert: Some("/ca.pem".into())
            }
        );
        let (url, mode) = ssl_mode_of("postgres://u@db/p?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), mode),
            ("postgres://u@db/p", SslMode::Require)
        );
        assert!(ssl_mode_of("postgres://u@db/p?sslmode=verify-ca").is_err());
        assert!(ssl_mode_of("postgres://u@db/p?sslrootcert=/ca.pem").is_err());
    }
}
