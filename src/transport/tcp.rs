//! One task per TCP or TLS connection: frames inbound bytes for the core and
//! writes what the core sends. Connections are keyed by transport and remote
//! address so the core can reuse them in both directions.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::tls::{self, TlsContext};
use crate::proxy::Peer;
use crate::sip::framing::{Frame, Framer};
use crate::sip::scan::MAX_MESSAGE;

/// What a connection tells the core task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A framed message from `from`.
    Message { from: Peer, data: Bytes },
    /// The connection to `peer` is up; send through `tx`.
    Up {
        peer: Peer,
        tx: mpsc::Sender<Bytes>,
        id: u64,
    },
    /// The connection to `peer` is gone (or never came up).
    Down {
        peer: Peer,
        id: u64,
        connect_failed: bool,
    },
}

/// How a connection comes to be.
pub enum Origin {
    /// Accepted by a TCP listener.
    Tcp(TcpStream),
    /// Accepted by a TLS listener; the handshake is still to be done.
    /// `is_pbx`: the peer is on the trust list.
    Tls {
        stream: TcpStream,
        ctx: Arc<TlsContext>,
        is_pbx: bool,
    },
    /// To be dialled from `source` (the listen address of the connection's
    /// transport, so the peer sees the address our Via names); with TLS, the
    /// context and the name the peer's certificate must carry.
    Dial {
        source: Option<IpAddr>,
        tls: Option<TlsDial>,
    },
}

/// How to open TLS on a dialled connection.
pub struct TlsDial {
    pub ctx: Arc<TlsContext>,
    /// The name the peer's certificate must carry.
    pub host: String,
}

/// Messages queued for one connection, at most. Far above any burst the core
/// produces (the writer drains the queue in batches); a peer that stops
/// reading long enough to fill it is not keeping up and loses messages.
pub const OUTBOX: usize = 65_536;

/// Bytes gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// How long a connection may stay silent before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A TCP connection to `peer` made from `source` (port chosen by the kernel).
async fn dial(source: Option<IpAddr>, peer: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = if peer.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source.filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == peer.is_ipv4()) {
        sock.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, sock.connect(peer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Runs a connection to or from `peer`. `outbox` receives what the core wants
/// written (queued while dialling); `slot` is the acceptor's connection-count
/// token, released on close.
pub fn spawn_connection(
    origin: Origin,
    peer: Peer,
    id: u64,
    events: mpsc::Sender<TcpEvent>,
    outbox: mpsc::Receiver<Bytes>,
    outbox_tx: mpsc::Sender<Bytes>,
    slot: Option<crate::shell::accept::ConnSlot>,
) {
    tokio::spawn(async move {
        // Held for the life of the connection: the acceptor counts these.
        let _slot = slot;
        let link = Link {
            peer,
            id,
            events,
            outbox,
            outbox_tx,
        };
        match origin {
            Origin::Tcp(stream) => {
                let _ = stream.set_nodelay(true);
                link.serve(stream).await
            }
            Origin::Tls {
                stream,
                ctx,
                is_pbx,
            } => link.accept_tls(stream, &ctx, is_pbx).await,
            Origin::Dial { source, tls } => link.dial(source, tls).await,
        }
    });
}

/// One connection's identity and its channels to the core.
struct Link {
    peer: Peer,
    id: u64,
    events: mpsc::Sender<TcpEvent>,
    outbox: mpsc::Receiver<Bytes>,
    outbox_tx: mpsc::Sender<Bytes>,
}

impl Link {
    /// Serves an accepted connection once its TLS handshake succeeds.
    async fn accept_tls(self, stream: TcpStream, ctx: &TlsContext, is_pbx: bool) {
        let _ = stream.set_nodelay(true);
        match tls::accept(ctx, stream, self.peer.addr, is_pbx).await {
            Ok(tls) => self.serve(tls).await,
            Err(e) => {
                tracing::warn!(peer = %self.peer.addr, error = %e, "tls handshake refused; connection closed");
                metrics::counter!("cidgate_tls_handshake_failures_total", "side" => "accept")
                    .increment(1);
            }
        }
    }

    /// Dials `peer` from `source`, with TLS when `tls` says so, and serves
    /// the connection; a failure is reported to the core as such.
    async fn dial(self, source: Option<IpAddr>, tls: Option<TlsDial>) {
        let stream = match dial(source, self.peer.addr).await {
            Ok(s) => s,
            Err(e) => return self.failed(&e.to_string(), "tcp connect failed").await,
        };
        let Some(TlsDial { ctx, host }) = tls else {
            return self.serve(stream).await;
        };
        match tls::connect(&ctx, stream, &host).await {
            Ok(tls) => self.serve(tls).await,
            Err(e) => {
                metrics::counter!("cidgate_tls_handshake_failures_total", "side" => "connect")
                    .increment(1);
                let why = format!("{host}: {e}");
                self.failed(
                    &why,
                    "tls to next hop failed (certificate or handshake); no plaintext fallback",
                )
                .await
            }
        }
    }

    async fn failed(self, error: &str, what: &'static str) {
        tracing::warn!(peer = %self.peer.addr, transport = %self.peer.transport, error, "{what}");
        let _ = self
            .events
            .send(TcpEvent::Down {
                peer: self.peer,
                id: self.id,
                connect_failed: true,
            })
            .await;
    }

    async fn serve<S: AsyncRead + AsyncWrite + Send + 'static>(self, stream: S) {
        let Link {
            peer,
            id,
            events,
            outbox,
            outbox_tx,
        } = self;
        let _ = events
            .send(TcpEvent::Up {
                peer,
                tx: outbox_tx,
                id,
            })
            .await;
        run(stream, peer, &events, outbox).await;
        let _ = events
            .send(TcpEvent::Down {
                peer,
                id,
                connect_failed: false,
            })
            .await;
    }
}

/// Moves bytes until either side ends: framed messages to the core, what the
/// core queued to the peer, and an answer to every keep-alive ping.
async fn run<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    peer: Peer,
    events: &mpsc::Sender<TcpEvent>,
    outbox: mpsc::Receiver<Bytes>,
) {
    let (rd, wr) = tokio::io::split(stream);
    let (pong_tx, pong_rx) = mpsc::channel::<()>(4);
    tokio::select! {
        _ = write_loop(wr, outbox, pong_rx) => {},
        _ = read_loop(rd, peer, events, pong_tx) => {},
    }
}

/// Writes what the core queued, batching what is already waiting, and the
/// pong of each ping; ends when the queue closes or a write fails.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut outbox: mpsc::Receiver<Bytes>,
    mut pong_rx: mpsc::Receiver<()>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let out: &[u8] = tokio::select! {
            msg = outbox.recv() => {
                let Some(data) = msg else { return };
                // Everything already queued goes out in one write: under
                // load that is one syscall for many messages.
                batch.clear();
                batch.extend_from_slice(&data);
                while batch.len() < WRITE_BATCH {
                    match outbox.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                &batch
            }
            p = pong_rx.recv() => {
                let Some(()) = p else { return };
                b"\r\n"
            }
        };
        // TLS keeps records it could not write yet until a flush.
        if wr.write_all(out).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}

/// Reads and frames messages for the core until the peer closes, stays
/// silent for [`IDLE_TIMEOUT`], or sends what cannot be framed.
async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    peer: Peer,
    events: &mpsc::Sender<TcpEvent>,
    pong_tx: mpsc::Sender<()>,
) {
    let mut framer = Framer::new(MAX_MESSAGE);
    loop {
        let buf = framer.buffer_mut();
        buf.reserve(8192);
        match tokio::time::timeout(IDLE_TIMEOUT, rd.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(data))) => {
                    let message = TcpEvent::Message { from: peer, data };
                    if events.send(message).await.is_err() {
                        return;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    let _ = pong_tx.try_send(());
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(peer = %peer.addr, error = %e, "closing unframeable stream");
                    return;
                }
            }
        }
    }
}
