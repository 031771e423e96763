//! SIP over TLS (RFC 3261 §26, RFC 5630) with rustls: the server side for the
//! PBX (optionally mutual TLS against `[tls] ca`), the client side toward
//! carriers (certificate checked against `ca` and the URI host, RFC 5922), and
//! reload of certificate and key without dropping established connections.
//!
//! Only TLS 1.2 and 1.3 are offered. There is no plaintext fallback: a
//! handshake that fails closes the connection and, toward a carrier, makes the
//! core fail the call over as if the carrier were unreachable.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::{client, server, TlsAcceptor, TlsConnector};

use crate::config::TlsConfig;

/// A handshake that has not finished after this long is abandoned, so that a
/// peer that stalls mid-handshake holds a socket for a bounded time only.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `[tls]` files could not be turned into a TLS context; names the key
/// whose file is at fault, so the operator knows which one to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsError {
    Cert(String),
    Key(String),
    Ca(String),
}

impl TlsError {
    /// The `[tls]` key the problem belongs to.
    pub fn key(&self) -> &'static str {
        match self {
            TlsError::Cert(_) => "cert",
            TlsError::Key(_) => "key",
            TlsError::Ca(_) => "ca",
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Cert(m) | TlsError::Key(m) | TlsError::Ca(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TlsError {}

/// Everything needed to accept and make TLS connections with one set of files.
pub struct TlsContext {
    /// `None` without `[tls] cert`/`key`: no TLS listener can run then.
    pub acceptor: Option<TlsAcceptor>,
    pub connector: TlsConnector,
    /// PBX connections must present a client certificate (it is verified
    /// against `ca` by the handshake whenever one is presented).
    pub require_client_cert: bool,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("{shown}: {e}"))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{shown}: no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let certs = read_certs(path).map_err(TlsError::Ca)?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| TlsError::Ca(format!("{}: {e}", path.display())))?;
    }
    Ok(Arc::new(roots))
}

impl TlsContext {
    /// Reads and checks the files named by `cfg`.
    pub fn load(cfg: &TlsConfig) -> Result<TlsContext, TlsError> {
        let roots = cfg.ca.as_deref().map(read_roots).transpose()?;
        let identity = match (&cfg.cert, &cfg.key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert).map_err(TlsError::Cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| TlsError::Key(format!("{}: {e}", key.display())))?;
                Some((chain, key))
            }
            _ => None,
        };
        let acceptor = match &identity {
            Some((chain, key)) => Some(server_config(
                chain.clone(),
                key.clone_key(),
                roots.clone(),
                cfg.require_client_cert,
            )?),
            None => None,
        };
        let connector = client_config(identity, roots, cfg.verify_carrier)?;
        Ok(TlsContext {
            acceptor: acceptor.map(|c| TlsAcceptor::from(Arc::new(c))),
            connector: TlsConnector::from(Arc::new(connector)),
            require_client_cert: cfg.require_client_cert,
        })
    }
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
    require_client_cert: bool,
) -> Result<rustls::ServerConfig, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Cert(e.to_string()))?;
    let builder = match (roots, require_client_cert) {
        // Carriers connecting in for in-dialog requests need not present a
        // certificate; whether a PBX must is checked once the peer is known.
        // A certificate that is presented must chain to `ca`.
        (Some(roots), true) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Ca(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Key(format!("does not fit the certificate: {e}")))
}

fn client_config(
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    roots: Option<Arc<RootCertStore>>,
    verify: bool,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| TlsError::Ca(e.to_string()))?;
    let builder = if verify {
        let roots = roots.unwrap_or_else(|| Arc::new(RootCertStore::empty()));
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCarrierCert(provider())))
    };
    match identity {
        // Presented to carriers that ask for a client certificate.
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Key(format!("does not fit the certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// `verify_carrier = false`: the carrier's certificate is not checked (the
/// handshake's own signatures still are), for lab set-ups with self-signed
/// carriers. Off by default.
#[derive(Debug)]
struct AnyCarrierCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCarrierCert {
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

/// The running TLS context, swapped as a whole on reload: connections already
/// established keep the session they have, new ones use the new files.
pub struct TlsHandle {
    config: TlsConfig,
    current: ArcSwap<TlsContext>,
}

impl TlsHandle {
    pub fn new(config: TlsConfig) -> Result<TlsHandle, TlsError> {
        let ctx = TlsContext::load(&config)?;
        Ok(TlsHandle {
            config,
            current: ArcSwap::from_pointee(ctx),
        })
    }

    pub fn current(&self) -> Arc<TlsContext> {
        self.current.load_full()
    }

    /// Re-reads the files; a set that does not load is refused and the
    /// running one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let ctx = TlsContext::load(&self.config)?;
        self.current.store(Arc::new(ctx));
        Ok(())
    }

    /// Reloads and logs the verdict (SIGHUP, admin reload).
    pub fn reload_logged(&self) -> bool {
        match self.reload() {
            Ok(()) => {
                tracing::info!("tls certificate and key reloaded");
                metrics::counter!("cidgate_tls_reloads_total", "result" => "ok").increment(1);
                true
            }
            Err(e) => {
                tracing::error!(key = e.key(), error = %e, "tls reload refused; the running certificate stays");
                metrics::counter!("cidgate_tls_reloads_total", "result" => "refused").increment(1);
                false
            }
        }
    }
}

/// Accepts a TLS session on an accepted TCP connection, bounded in time.
/// `is_pbx`: the peer is on the trust list, so a client certificate is
/// demanded when `require_client_cert` is set.
pub async fn accept(
    ctx: &TlsContext,
    stream: TcpStream,
    peer: SocketAddr,
    is_pbx: bool,
) -> io::Result<server::TlsStream<TcpStream>> {
    let Some(acceptor) = &ctx.acceptor else {
        return Err(io::Error::other("no [tls] certificate configured"));
    };
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))??;
    if is_pbx && ctx.require_client_cert {
        let presented = tls
            .get_ref()
            .1
            .peer_certificates()
            .is_some_and(|c| !c.is_empty());
        if !presented {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("PBX {peer} presented no client certificate (require_client_cert)"),
            ));
        }
    }
    Ok(tls)
}

/// Makes a TLS session toward a carrier (or any TLS next hop) on a connected
/// TCP stream; `host` is the name its certificate must carry (the URI host,
/// RFC 5922), an IP address when the URI had one.
pub async fn connect(
    ctx: &TlsContext,
    stream: TcpStream,
    host: &str,
) -> io::Result<client::TlsStream<TcpStream>> {
    let name = server_name(host)?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, ctx.connector.connect(name, stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "handshake timed out"))?
}

fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(bare.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("`{host}`: {e}")))
}
