//! TLS test kit: a throw-away PKI made by the test itself (rcgen; no private
//! key is checked in), SIP message framing over any stream, and TLS peers
//! (a PBX client and a carrier server) built on tokio-rustls.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const WAIT: Duration = Duration::from_secs(5);

/// One certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Identity {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A CA and leaf certificates for every party, in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    /// The gateway: `gw.example.net` and 127.0.0.1/127.0.0.2.
    pub gateway: Identity,
    /// The carrier: `carrier.test` and 127.0.0.1.
    pub carrier: Identity,
    /// A PBX client certificate.
    pub pbx: Identity,
    /// Issued by a CA the gateway does not trust.
    pub rogue_ca: PathBuf,
    pub rogue: Identity,
    /// The test CA, to issue more certificates.
    pub root: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Writes a leaf for `names` (DNS names or IP addresses) issued by `issuer`.
pub fn leaf(
    dir: &Path,
    file: &str,
    names: &[&str],
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> Identity {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names.first().copied().unwrap_or(file));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    let id = Identity {
        cert: dir.join(format!("{file}.pem")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&id.cert, cert.pem()).unwrap();
    std::fs::write(&id.key, key.serialize_pem()).unwrap();
    id
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let root = ca("cidgate test CA");
        let other = ca("someone else's CA");
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, root.pem()).unwrap();
        let rogue_ca = dir.path().join("rogue-ca.pem");
        std::fs::write(&rogue_ca, other.pem()).unwrap();
        let d = dir.path().to_path_buf();
        Pki {
            gateway: leaf(
                &d,
                "gateway",
                &["gw.example.net", "127.0.0.1", "127.0.0.2"],
                &root,
            ),
            carrier: leaf(&d, "carrier", &["carrier.test", "127.0.0.1"], &root),
            pbx: leaf(&d, "pbx", &["pbx.example.com"], &root),
            rogue: leaf(&d, "rogue", &["carrier.test", "127.0.0.1"], &other),
            ca: ca_path,
            rogue_ca,
            dir,
            root,
        }
    }

    /// The `[tls]` section naming these files.
    pub fn section(&self, extra: &str) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\n{extra}",
            self.gateway.cert.display(),
            self.gateway.key.display(),
            self.ca.display()
        )
    }
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(|c| c.unwrap())
        .collect()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client trusting `ca`, presenting `identity` when given.
pub fn client(ca: &Path, identity: Option<&Identity>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => b
            .with_client_auth_cert(certs(&id.cert), key(&id.key))
            .unwrap(),
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A TLS server presenting `identity`, asking no client certificate.
pub fn server(identity: &Identity) -> tokio_rustls::TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs(&identity.cert), key(&identity.key))
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// The certificate a TLS connection to `addr` is shown (DER of the leaf).
pub async fn presented_cert(addr: SocketAddr, ca: &Path) -> Option<Vec<u8>> {
    let tcp = TcpStream::connect(addr).await.ok()?;
    let name = ServerName::try_from("gw.example.net").unwrap();
    let tls = match tokio::time::timeout(WAIT, client(ca, None).connect(name, tcp)).await {
        Ok(Ok(tls)) => tls,
        other => {
            eprintln!("no TLS from {addr}: {other:?}");
            return None;
        }
    };
    let (_, conn) = tls.get_ref();
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// SIP messages over a stream, framed by Content-Length (RFC 3261 §18.3).
pub struct SipStream {
    io: Box<dyn Stream>,
    buf: Vec<u8>,
    pub local: SocketAddr,
    pub peer: SocketAddr,
}

impl SipStream {
    pub fn new(io: impl Stream + 'static, local: SocketAddr, peer: SocketAddr) -> SipStream {
        SipStream {
            io: Box::new(io),
            buf: Vec::new(),
            local,
            peer,
        }
    }

    /// TLS to the gateway at `addr` as `gw.example.net`, trusting `ca`.
    pub async fn tls_to(addr: SocketAddr, ca: &Path, identity: Option<&Identity>) -> SipStream {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (local, peer) = (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap());
        let name = ServerName::try_from("gw.example.net").unwrap();
        let tls = tokio::time::timeout(WAIT, client(ca, identity).connect(name, tcp))
            .await
            .expect("handshake in time")
            .expect("handshake");
        SipStream::new(tls, local, peer)
    }

    pub async fn tcp_to(addr: SocketAddr) -> SipStream {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (local, peer) = (tcp.local_addr().unwrap(), tcp.peer_addr().unwrap());
        SipStream::new(tcp, local, peer)
    }

    pub async fn send(&mut self, msg: &[u8]) {
        self.io.write_all(msg).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// The next message, or `None` when the stream closed or nothing came in
    /// time.
    pub async fn try_recv(&mut self) -> Option<Bytes> {
        loop {
            if let Some(m) = self.frame() {
                return Some(m);
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(WAIT, self.io.read(&mut chunk))
                .await
                .ok()?
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn recv(&mut self) -> Bytes {
        self.try_recv().await.expect("a message in time")
    }

    /// The next message that is not a 100 Trying.
    pub async fn recv_skip_100(&mut self) -> Bytes {
        loop {
            let m = self.recv().await;
            if !m.starts_with(b"SIP/2.0 100 ") {
                return m;
            }
        }
    }

    fn frame(&mut self) -> Option<Bytes> {
        while self.buf.starts_with(b"\r\n") {
            self.buf.drain(..2);
        }
        let end = self.buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = String::from_utf8_lossy(&self.buf[..end]).to_ascii_lowercase();
        let len = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("content-length:")
                    .or_else(|| l.strip_prefix("l:"))
            })
            .map(|v| v.trim().parse::<usize>().unwrap())
            .unwrap_or(0);
        if self.buf.len() < end + len {
            return None;
        }
        let msg: Vec<u8> = self.buf.drain(..end + len).collect();
        Some(Bytes::from(msg))
    }
}

/// A carrier listening for TLS (or plain TCP without an acceptor).
pub struct StreamCarrier {
    pub listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
}

impl StreamCarrier {
    pub async fn bind(ip: &str, identity: Option<&Identity>) -> StreamCarrier {
        StreamCarrier {
            listener: TcpListener::bind(format!("{ip}:0")).await.unwrap(),
            acceptor: identity.map(server),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    /// The next connection from the gateway (handshake done for TLS).
    pub async fn accept(&self) -> SipStream {
        let (tcp, peer) = tokio::time::timeout(WAIT, self.listener.accept())
            .await
            .expect("a connection in time")
            .unwrap();
        let local = tcp.local_addr().unwrap();
        match &self.acceptor {
            Some(a) => SipStream::new(a.accept(tcp).await.expect("handshake"), local, peer),
            None => SipStream::new(tcp, local, peer),
        }
    }
}
