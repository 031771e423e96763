//! One task per TCP connection: frames inbound bytes for the core and writes
//! what the core sends. Connections are keyed by remote address so the core can
//! reuse them in both directions.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::sip::framing::{Frame, Framer};
use crate::sip::scan::MAX_MESSAGE;

/// What a connection tells the core task.
#[derive(Debug)]
pub enum TcpEvent {
    /// A framed message from `from`.
    Message { from: SocketAddr, data: Bytes },
    /// The connection to `peer` is up; send through `tx`.
    Up {
        peer: SocketAddr,
        tx: mpsc::Sender<Bytes>,
        id: u64,
    },
    /// The connection to `peer` is gone (or never came up).
    Down {
        peer: SocketAddr,
        id: u64,
        connect_failed: bool,
    },
}

/// Messages queued for one connection, at most. Far above any burst the core
/// produces (the writer drains the queue in batches); a peer that stops
/// reading long enough to fill it is not keeping up and loses messages.
pub const OUTBOX: usize = 65_536;

/// Bytes gathered into one write.
const WRITE_BATCH: usize = 256 * 1024;

/// How long a connection may stay silent before it is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs a connection: `stream` is an accepted one, or `None` to dial `peer`.
/// `outbox` receives what the core wants written (queued while dialling);
/// `slot` is the acceptor's connection-count token, released on close.
pub fn spawn_connection(
    stream: Option<TcpStream>,
    peer: SocketAddr,
    id: u64,
    events: mpsc::Sender<TcpEvent>,
    outbox: mpsc::Receiver<Bytes>,
    outbox_tx: mpsc::Sender<Bytes>,
    slot: Option<std::sync::Arc<()>>,
) {
    tokio::spawn(async move {
        // Held for the life of the connection: the acceptor counts these.
        let _slot = slot;
        let stream = match stream {
            Some(s) => s,
            None => {
                match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(peer)).await {
                    Ok(Ok(s)) => s,
                    _ => {
                        let _ = events
                            .send(TcpEvent::Down {
                                peer,
                                id,
                                connect_failed: true,
                            })
                            .await;
                        return;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
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
    });
}

async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    events: &mpsc::Sender<TcpEvent>,
    mut outbox: mpsc::Receiver<Bytes>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (pong_tx, mut pong_rx) = mpsc::channel::<()>(4);
    let writer = async move {
        let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            tokio::select! {
                msg = outbox.recv() => match msg {
                    Some(data) => {
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
                        if wr.write_all(&batch).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                p = pong_rx.recv() => match p {
                    Some(()) => if wr.write_all(b"\r\n").await.is_err() { break },
                    None => break,
                },
            }
        }
    };
    let reader = async move {
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
                        if events
                            .send(TcpEvent::Message { from: peer, data })
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(Frame::Ping)) => {
                        let _ = pong_tx.try_send(());
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "closing unframeable TCP stream");
                        return;
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {},
        _ = reader => {},
    }
}
