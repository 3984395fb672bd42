//! TLS to PostgreSQL with rustls, for libpq's `sslmode`: the adapter that
//! tokio-postgres's `MakeTlsConnect` asks for, and the certificate checks
//! each mode means.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_rustls::TlsConnector;

use super::settings::Tls;

/// Makes a TLS connection for each new pool connection. Cloned per
/// connection; the rustls config inside is shared.
///
/// Every connection goes through this one type, `disable` too (tokio-postgres
/// then never asks it for TLS): tokio-postgres's connection code is generic
/// over it, and a second type (its `NoTls`) would compile all of that twice
/// (what that cost: docs/database.md, "What it costs").
#[derive(Clone)]
pub struct MakeRustls {
    /// None for `disable`.
    config: Option<Arc<ClientConfig>>,
}

impl MakeRustls {
    /// The TLS client for `tls`.
    pub fn new(tls: &Tls) -> Result<MakeRustls, String> {
        let provider = Arc::new(ring_provider());
        let (roots, check_name) = match tls {
            Tls::Disable => return Ok(MakeRustls { config: None }),
            Tls::Prefer | Tls::Require => (None, false),
            Tls::VerifyCa(ca) => (Some(ca.roots()?), false),
            Tls::VerifyFull(ca) => (Some(ca.roots()?), true),
        };
        let chain = roots
            .map(|roots| {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the sslrootcert certificates: {e}"))
            })
            .transpose()?;
        let verifier = Verifier {
            chain,
            check_name,
            algorithms: provider.signature_verification_algorithms,
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(MakeRustls {
            config: Some(Arc::new(config)),
        })
    }
}

/// rustls's ring provider: X25519 and the NIST curves, AES-GCM and
/// ChaCha20-Poly1305, TLS 1.2 and 1.3.
///
/// rustls deprecated it (0.23.48) because it has no post-quantum key
/// exchange (X25519MLKEM768); its aws-lc-rs provider has. That one needs
/// cmake and a C toolchain for each target and adds more to the binary
/// than ring, and the PostgreSQL servers built on OpenSSL before 3.5
/// (Debian 12's, most managed ones today) offer no such group anyway.
/// Revisit when they do: docs/database.md, "TLS".
#[allow(deprecated)]
fn ring_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// rustls's verdict when a connection failed because the server's
/// certificate was refused: tokio-postgres wraps the `io::Error` from
/// tokio-rustls, which wraps that verdict.
pub fn refused_certificate(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    std::error::Error::source(error)
        .and_then(|cause| cause.downcast_ref::<io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .filter(|verdict| matches!(verdict, rustls::Error::InvalidCertificate(_)))
}

/// The server certificate check for each mode.
#[derive(Debug)]
struct Verifier {
    /// The CA chain check (`verify-ca`, `verify-full`). None for `prefer` and
    /// `require`, which take any certificate.
    // SECURITY: libpq's meaning, kept: `require` encrypts against a passive
    // listener but does not authenticate the server, so a machine in the
    // middle can read everything. Only `verify-full` stops that; the docs
    // (docs/database.md) say to use it.
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// `verify-full`: the certificate must also name the host in the URL.
    check_name: bool,
    /// The handshake's signatures are checked in every mode.
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // rustls checks the chain first and the name last, so for
        // `verify-ca` a wrong name is the only failure let through.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            outcome => outcome,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = rustls::pki_types::InvalidDnsNameError;

    /// `host` is the URL's host: a name, or an address that the certificate
    /// must then list as an IP address. It is empty for a Unix socket, over
    /// which PostgreSQL offers no TLS: the connection goes on in plain text
    /// when the server says so (as libpq, which ignores `sslmode` there).
    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsConnect, Self::Error> {
        let target = match &self.config {
            Some(config) if !host.is_empty() => Some((
                TlsConnector::from(config.clone()),
                ServerName::try_from(host.to_owned())?,
            )),
            _ => None,
        };
        Ok(RustlsConnect(target))
    }
}

/// The connector and the name the certificate must carry, or None where
/// there is no TLS to make (`disable`, a Unix socket).
pub struct RustlsConnect(Option<(TlsConnector, ServerName<'static>)>);

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            // tokio-postgres asks only where TLS was configured and there is
            // a host name; this answers anything else with an error, not a panic.
            let (connector, server_name) = self
                .0
                .ok_or_else(|| io::Error::other("no TLS configured for this connection"))?;
            let stream = connector.connect(server_name, stream).await?;
            Ok(RustlsStream(stream))
        })
    }
}

/// A TLS connection to PostgreSQL.
pub struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// None: SCRAM-SHA-256 without channel binding (`-PLUS`), which is what
    /// tokio-postgres's default `channel_binding=prefer` then uses.
    /// `verify-full` is what authenticates the server.
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
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(tls: &Tls, host: &str) -> RustlsConnect {
        MakeTlsConnect::<tokio::net::TcpStream>::make_tls_connect(
            &mut MakeRustls::new(tls).unwrap(),
            host,
        )
        .unwrap()
    }

    #[test]
    fn disable_has_no_tls_and_the_other_modes_do() {
        assert!(connector(&Tls::Disable, "db.example").0.is_none());
        assert!(connector(&Tls::Prefer, "db.example").0.is_some());
        assert!(connector(&Tls::Require, "10.0.0.7").0.is_some());
    }

    #[test]
    fn a_unix_socket_has_no_tls_and_is_no_error() {
        // tokio-postgres names no host for a Unix socket.
        assert!(connector(&Tls::Prefer, "").0.is_none());
        assert!(connector(&Tls::Require, "").0.is_none());
    }
}
