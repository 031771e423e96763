//! The running gateway: binds the listeners and runs the core task that owns
//! the [`Proxy`]. Sockets and connection tasks only move bytes; every decision is
//! made by the core, one message at a time, so no lock is taken per message.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::carrier_board::CarrierBoard;
use crate::config::Config;
use crate::inventory::InventoryHandle;
use crate::proxy::{Event, Peer, Proxy, Settings, Transmit};
use crate::shell::accept::AcceptGate;
use crate::shell::guard::{Class, Guard};
use crate::shell::paths::UdpPaths;
use crate::shell::throttle::LogThrottle;
use crate::shell::{Input, WorkerStats};
use crate::sip::Transport;
use crate::stir::{Signed, Signer, SigningPool};
use crate::transport::mmsg::{self, RecvBatch};
use crate::transport::port::UdpPort;
use crate::transport::steer;
use crate::transport::tls::TlsHandle;
use crate::transport::udp::ReceiveBuffer;
use crate::transport::{spawn_connection, Origin, TcpEvent, TlsDial};

/// What the core task is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Run,
    Drain(Instant),
    Now,
}

/// A started gateway. Dropping it does not stop it; call [`Gateway::shutdown`].
pub struct Gateway {
    /// The addresses actually bound (port 0 in the config is resolved here).
    pub listen: Vec<Peer>,
    pub inventory: Arc<InventoryHandle>,
    /// The running certificate and key, when `[tls]` is configured; reloaded
    /// with the inventory.
    pub tls: Option<Arc<TlsHandle>>,
    /// Carrier states as the core last reported them (for the admin API).
    pub carriers: Arc<CarrierBoard>,
    stop: watch::Sender<Stop>,
    task: JoinHandle<()>,
    aux: Vec<JoinHandle<()>>,
}

impl Gateway {
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find(|p| p.transport == Transport::Udp)
            .map(|p| p.addr)
    }
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find(|p| p.transport == Transport::Tcp)
            .map(|p| p.addr)
    }
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.listen
            .iter()
            .find(|p| p.transport == Transport::Tls)
            .map(|p| p.addr)
    }

    /// Stops the listeners and the core task at once and waits for it to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(Stop::Now);
        for t in &self.aux {
            t.abort();
        }
        let _ = self.task.await;
    }

    /// Graceful stop (SIGTERM): new calls get 503, calls in progress get up to
    /// `max` to reach a final response; the gateway keeps relaying ACKs and
    /// retransmissions for a grace time after the last final response
    /// ([`crate::proxy::DRAIN_GRACE`]), handles every message already
    /// received, then stops.
    pub async fn drain(self, max: Duration) {
        let _ = self.stop.send(Stop::Drain(Instant::now() + max));
        let _ = self.task.await;
        for t in &self.aux {
            t.abort();
        }
    }
}

/// Accepted TCP connections at most; beyond this new ones are closed at once
/// so that a flood of idle connections cannot exhaust descriptors.
const MAX_TCP_CONNECTIONS: usize = 10_000;

/// Kernel send buffer asked for on UDP sockets (the receive buffer is
/// `[limits] udp_receive_buffer`). The defaults (about 200 KiB) hold only a
/// few hundred SIP messages: a burst at a few thousand calls per second
/// overflows them and turns into retransmissions and failed calls.
const UDP_SEND_BUFFER: usize = 4 << 20;

/// Binds one UDP socket; `reuse`: `SO_REUSEPORT`, for a steered pair.
fn bind_udp(
    addr: SocketAddr,
    receive: usize,
    reuse: bool,
) -> std::io::Result<(socket2::Socket, ReceiveBuffer)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let buffer = crate::transport::udp::size_receive_buffer(&sock, receive);
    // Best effort: the kernel caps this at net.core.wmem_max.
    let _ = sock.set_send_buffer_size(UDP_SEND_BUFFER);
    sock.set_nonblocking(true)?;
    if reuse {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    Ok((sock, buffer))
}

/// Which datagrams a UDP socket receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sources {
    /// Everyone's: the listener is one socket.
    All,
    /// The PBX's and the carriers' (the first of a steered pair).
    Trusted,
    /// Everyone else's (the second of a steered pair).
    Others,
}

/// A bound UDP socket, what the kernel gave it, and whose datagrams it gets.
struct UdpBound {
    sock: Arc<UdpPort>,
    buffer: ReceiveBuffer,
    sources: Sources,
}

fn udp_bound(
    (sock, buffer): (socket2::Socket, ReceiveBuffer),
    sources: Sources,
) -> std::io::Result<UdpBound> {
    Ok(UdpBound {
        sock: Arc::new(UdpPort::from_std(sock.into())?),
        buffer,
        sources,
    })
}

/// Binds one UDP listener: one socket, or, with a steering `program`, two
/// on the same address whose group runs it (`crate::transport::steer`), the
/// trusted one first. When the kernel refuses the program the listener is
/// the first socket alone, and the log says so.
fn bind_udp_listener(
    addr: SocketAddr,
    receive: usize,
    program: Option<&[steer::Insn]>,
) -> std::io::Result<Vec<UdpBound>> {
    let Some(program) = program else {
        return Ok(vec![udp_bound(
            bind_udp(addr, receive, false)?,
            Sources::All,
        )?]);
    };
    let trusted = bind_udp(addr, receive, true)?;
    let at = trusted.0.local_addr()?.as_socket().unwrap_or(addr);
    let others = bind_udp(at, receive, true)?;
    if let Err(e) = steer::attach(&trusted.0, program) {
        tracing::warn!(listen = %format!("udp://{at}"), error = %e,
            "cannot steer the PBX and the carriers to a UDP socket of their own ([limits] udp_trusted_socket); one socket takes everything");
        drop(others);
        return Ok(vec![udp_bound(trusted, Sources::All)?]);
    }
    Ok(vec![
        udp_bound(trusted, Sources::Trusted)?,
        udp_bound(others, Sources::Others)?,
    ])
}

/// The steering program for this configuration's trusted sources, when
/// `[limits] udp_trusted_socket` asks for one.
fn steering(config: &Config) -> Option<Vec<steer::Insn>> {
    if !config.limits.udp_trusted_socket {
        return None;
    }
    let carriers = config.carrier.iter().map(|c| c.addr.ip());
    let program = steer::program(&steer::trusted_sources(config.trust.nets(), carriers));
    if program.is_none() {
        tracing::warn!(
            "[trust] and the carriers list too many networks for one steering program \
             ([limits] udp_trusted_socket); each UDP listener is one socket"
        );
    }
    program
}

/// Which listener failed, in the configuration's words, so that `Address
/// already in use` says what to change.
fn listener_error(transport: Transport, addr: SocketAddr) -> String {
    let name = transport.to_string().to_ascii_uppercase();
    format!("SIP {name} listener {transport}://{addr} ([server] listen): cannot bind")
}

/// The bound listeners.
struct Bound {
    /// UDP sockets in listen order (a steered pair: the trusted one first).
    udp: Vec<UdpBound>,
    /// TCP and TLS listeners, with which of the two each is.
    streams: Vec<(TcpListener, Transport)>,
    /// Where each listener ended up (port 0 resolved), in configuration order.
    listen: Vec<Peer>,
}

/// Tries at binding a configuration with port 0. The port the kernel gives the
/// first listener on an IP is free for that transport only; the other one may
/// find it taken (by any socket on the machine) and then every listener is
/// bound again on a new port.
const PORT_ZERO_ATTEMPTS: usize = 64;

/// Binds every listener; a port 0 is shared by UDP and TCP on the same IP so
/// that one port serves both transports, as SIP expects.
async fn bind_all(config: &Config) -> anyhow::Result<Bound> {
    let mut attempt = 1;
    let program = steering(config);
    loop {
        match bind_once(config, program.as_deref()).await {
            Ok(bound) => return Ok(bound),
            Err(BindFailure::SharedPortTaken(e)) if attempt < PORT_ZERO_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "port 0: the shared port was taken; binding again");
                attempt += 1;
            }
            Err(BindFailure::SharedPortTaken(e) | BindFailure::Other(e)) => return Err(e),
        }
    }
}

enum BindFailure {
    /// A port-0 listener could not have the port its sibling got: worth a retry.
    SharedPortTaken(anyhow::Error),
    Other(anyhow::Error),
}

async fn bind_once(config: &Config, program: Option<&[steer::Insn]>) -> Result<Bound, BindFailure> {
    let mut udp = Vec::new();
    let mut tcp = Vec::new();
    let mut bound: Vec<Peer> = Vec::new();
    let mut chosen: HashMap<std::net::IpAddr, u16> = HashMap::new();
    for l in &config.server.listen {
        let mut addr = l.addr;
        let mut shared = false;
        if addr.port() == 0 {
            if let Some(p) = chosen.get(&addr.ip()) {
                addr.set_port(*p);
                shared = true;
            }
        }
        let result = match l.transport {
            Transport::Udp => bind_udp_listener(addr, config.limits.udp_receive_buffer, program)
                .and_then(|socks| {
                    let local = socks[0].sock.local_addr()?;
                    udp.extend(socks);
                    Ok(local)
                }),
            Transport::Tcp | Transport::Tls => {
                // TLS has its own port (5061 by convention), so a port 0 is
                // not shared with UDP and TCP.
                if l.transport == Transport::Tls {
                    addr.set_port(l.addr.port());
                    shared = false;
                }
                match TcpListener::bind(addr).await {
                    Ok(s) => s.local_addr().inspect(|_| tcp.push((s, l.transport))),
                    Err(e) => Err(e),
                }
            }
        };
        let local = match result {
            Ok(local) => local,
            Err(e) => {
                let taken = shared && e.kind() == std::io::ErrorKind::AddrInUse;
                let e = anyhow::Error::new(e).context(listener_error(l.transport, addr));
                return Err(if taken {
                    BindFailure::SharedPortTaken(e)
                } else {
                    BindFailure::Other(e)
                });
            }
        };
        if l.transport != Transport::Tls {
            chosen.entry(local.ip()).or_insert(local.port());
        }
        bound.push(Peer {
            transport: l.transport,
            addr: local,
        });
    }
    Ok(Bound {
        udp,
        streams: tcp,
        listen: bound,
    })
}

/// Starts the gateway. `tap` receives a copy of every core event (the demo and
/// tests use it to observe decisions).
pub async fn start(
    config: &Config,
    inventory: Arc<InventoryHandle>,
    tap: Option<mpsc::UnboundedSender<Event>>,
) -> anyhow::Result<Gateway> {
    // First, so that an unusable key stops the start at once, naming the file.
    let signer = config.load_signer()?.map(Arc::new);
    // Before the listeners exist, so that a gateway that answers is warm:
    // a number of a country not seen before must not stall the core thread.
    tokio::task::spawn_blocking(crate::inventory::warm_numbering_plans)
        .await
        .context("numbering-plan warm-up")?;
    let Bound {
        udp,
        streams,
        listen,
    } = bind_all(config).await?;
    udp.iter().for_each(log_udp_socket);
    let udp: Vec<Arc<UdpPort>> = udp.into_iter().map(|u| u.sock).collect();
    let mut settings = config.proxy_settings();
    settings.listen = listen.clone();
    if config.server.admin.is_some() {
        // Install the recorder before the shell takes its metric handles.
        crate::admin::prometheus();
    }
    let tls = tls_handle(config)?;
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let (tcp_tx, tcp_rx) = mpsc::channel::<TcpEvent>(8192);
    let ids = Arc::new(AtomicU64::new(1));
    let mut aux = spawn_acceptors(config, streams, &tls, &tcp_tx, &ids)?;
    aux.push(tokio::spawn(crate::telemetry::summarise_untrusted()));
    let kit = CoreKit {
        board: CarrierBoard::new(&settings.carriers),
        settings,
        inventory: inventory.clone(),
        udp,
        ids,
        tcp_tx,
        tap,
        signer,
        workers: config.server.worker_count(),
        tls: tls.clone(),
        tls_hosts: tls_carrier_names(config),
        sources: listen.clone(),
        batch_window: config.limits.batch_window,
    };
    let task = spawn_cores(&kit, config, tcp_rx, stop_rx)?;
    Ok(Gateway {
        listen,
        inventory,
        tls,
        carriers: kit.board,
        stop: stop_tx,
        task,
        aux,
    })
}

/// Says once, at start, whose datagrams each UDP socket takes and what
/// receive buffer it got: an operator who relies on it to ride out a flood
/// must see when the kernel gave less than `[limits] udp_receive_buffer`.
fn log_udp_socket(u: &UdpBound) {
    let listen = u
        .sock
        .local_addr()
        .map_or_else(|_| "?".to_string(), |a| format!("udp://{a}"));
    let sources = match u.sources {
        Sources::All => "all",
        Sources::Trusted => "PBX and carriers",
        Sources::Others => "everyone else",
    };
    // The name /proc/net/udp knows it by (its inode), where the kernel
    // counts what it dropped on each socket.
    let socket = kernel_name(&u.sock);
    let (asked, granted) = (u.buffer.asked, u.buffer.granted());
    if u.buffer.capped() {
        tracing::warn!(
            %listen, sources, %socket, asked, granted,
            "UDP receive buffer smaller than [limits] udp_receive_buffer: net.core.rmem_max caps it and \
             the process lacks CAP_NET_ADMIN to pass it; a flood fills it sooner (raise net.core.rmem_max \
             or grant CAP_NET_ADMIN)"
        );
    } else {
        let how = if u.buffer.forced {
            "SO_RCVBUFFORCE, past net.core.rmem_max"
        } else {
            "SO_RCVBUF"
        };
        tracing::info!(%listen, sources, %socket, granted, how, "UDP receive buffer");
    }
}

/// `socket:[INODE]` on Linux, as `/proc/net/udp` and `ss -e` name the
/// socket; empty elsewhere.
fn kernel_name(sock: &UdpPort) -> String {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", sock.as_raw_fd()))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The running certificate and key: needed by a `tls://` listener or a TLS
/// carrier, absent otherwise.
fn tls_handle(config: &Config) -> anyhow::Result<Option<Arc<TlsHandle>>> {
    let configured = config.tls.has_identity() || config.tls.ca.is_some();
    let dials_tls = config.carrier.iter().any(|c| c.transport == Transport::Tls);
    if !configured && !dials_tls {
        return Ok(None);
    }
    let handle = TlsHandle::new(config.tls.clone())
        .map_err(|e| anyhow::anyhow!("[tls] {}: {e}", e.key()))?;
    Ok(Some(Arc::new(handle)))
}

/// The name each TLS carrier's certificate must carry, by carrier address.
fn tls_carrier_names(config: &Config) -> HashMap<SocketAddr, String> {
    config
        .carrier
        .iter()
        .filter(|c| c.transport == Transport::Tls)
        .map(|c| (c.addr, c.host.clone()))
        .collect()
}

/// One accept loop per TCP or TLS listener.
fn spawn_acceptors(
    config: &Config,
    streams: Vec<(TcpListener, Transport)>,
    tls: &Option<Arc<TlsHandle>>,
    events: &mpsc::Sender<TcpEvent>,
    ids: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let admission = Arc::new(Admission {
        trust: config.trust.clone(),
        carriers: config.carrier.iter().map(|c| c.addr.ip()).collect(),
    });
    let mut tasks = Vec::new();
    for (listener, transport) in streams {
        let tls = match transport {
            Transport::Tls => Some(
                tls.clone()
                    .context("a tls:// listener needs [tls] cert and key")?,
            ),
            _ => None,
        };
        tasks.push(tokio::spawn(accept_loop(
            listener,
            tls,
            admission.clone(),
            AcceptGate::new(MAX_TCP_CONNECTIONS, config.limits.tcp_per_source),
            events.clone(),
            ids.clone(),
        )));
    }
    Ok(tasks)
}

/// Starts the proxy cores: one that reads the sockets itself, or several
/// behind a dispatcher (`[server] workers`). The task ends when they stop.
fn spawn_cores(
    kit: &CoreKit,
    config: &Config,
    tcp_rx: mpsc::Receiver<TcpEvent>,
    stop: watch::Receiver<Stop>,
) -> anyhow::Result<JoinHandle<()>> {
    let carriers: Vec<SocketAddr> = kit.settings.carriers.iter().map(|p| p.addr).collect();
    let guard = Guard::new(&config.trust, &carriers, &config.limits);
    if kit.workers == 1 {
        // One core: it reads the sockets itself, no dispatcher hop.
        let inputs = Inputs {
            udp: kit.udp.clone(),
            tcp_rx: Some(tcp_rx),
            inbox: None,
        };
        return Ok(tokio::spawn(kit.core(0, Some(guard)).run(inputs, stop)));
    }
    let cores = (0..kit.workers).map(|k| kit.core(k, None)).collect();
    let task =
        crate::shell::pool::spawn(cores, kit.udp.clone(), tcp_rx, stop, guard, &config.limits)?;
    Ok(task)
}

/// What every proxy core is built from; each core gets its own clones.
struct CoreKit {
    settings: Settings,
    inventory: Arc<InventoryHandle>,
    board: Arc<CarrierBoard>,
    udp: Vec<Arc<UdpPort>>,
    ids: Arc<AtomicU64>,
    tcp_tx: mpsc::Sender<TcpEvent>,
    tap: Option<mpsc::UnboundedSender<Event>>,
    signer: Option<Arc<Signer>>,
    workers: usize,
    tls: Option<Arc<TlsHandle>>,
    tls_hosts: HashMap<SocketAddr, String>,
    sources: Vec<Peer>,
    batch_window: Duration,
}

impl CoreKit {
    /// Core `k`; `guard` when it reads the sockets itself.
    fn core(&self, k: usize, guard: Option<Guard>) -> Core {
        // Each core has its own signing threads, so that a signature comes
        // back to the core that owns its call.
        let (pool, signed_rx) = match &self.signer {
            Some(signer) => {
                let (pool, rx) = start_signing(signer.clone(), self.workers);
                (Some(pool), Some(rx))
            }
            None => (None, None),
        };
        Core {
            proxy: Proxy::new(self.settings.clone(), self.inventory.clone()),
            board: self.board.clone(),
            udp: self.udp.clone(),
            udp_out: Vec::with_capacity(mmsg::SLOTS),
            paths: UdpPaths::new(
                &self
                    .udp
                    .iter()
                    .map(|s| s.local_addr().is_ok_and(|a| a.is_ipv4()))
                    .collect::<Vec<_>>(),
            ),
            conns: HashMap::new(),
            ids: self.ids.clone(),
            tcp_tx: self.tcp_tx.clone(),
            tap: self.tap.clone(),
            pool,
            signed_rx,
            input_waiting: false,
            tls: self.tls.clone(),
            tls_hosts: self.tls_hosts.clone(),
            sources: self.sources.clone(),
            guard,
            io: tokio::runtime::Handle::current(),
            stats: WorkerStats::new(k),
            tcp_log: LogThrottle::default(),
            batch_window: self.batch_window,
        }
    }
}

/// A turn that read this many datagrams or more (one `recvmmsg`'s worth)
/// starts no batch window and ends one: at such rates each wake-up is
/// already shared by many datagrams, and nearer the core's ceiling a window
/// would only add queueing to the latency.
const WINDOW_UNDER: usize = 16;

/// Signatures the core makes itself in one turn at most (see
/// `Core::submit_signatures`): callers send INVITEs in small bursts (SIPp
/// sends a timer tick's worth together), and a message arriving meanwhile
/// waits for these at most, about 80 µs.
const SIGN_HERE_PER_TURN: usize = 4;

/// Signing threads: at about 25 µs a signature one thread keeps up with
/// tens of thousands of calls a second; a second one absorbs bursts while the
/// first is descheduled. Never more than the machine has cores, shared by
/// the proxy cores (at least one each).
fn signing_threads(cores: usize) -> usize {
    let total = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    (total / cores).max(1)
}

/// Starts a signing pool for one of `cores` proxy cores; finished signatures
/// arrive on the returned channel, which the core task reads like a socket.
fn start_signing(
    signer: Arc<Signer>,
    cores: usize,
) -> (SigningPool, mpsc::UnboundedReceiver<Signed>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let threads = signing_threads(cores);
    let pool = SigningPool::start(
        threads,
        threads * crate::stir::pool::QUEUE_PER_THREAD,
        move |claims| signer.identity(claims, crate::stir::unix_now()),
        // Unbounded but never long: at most the queue plus one job per
        // thread is ever in flight.
        move |signed| {
            let _ = tx.send(signed);
        },
    );
    (pool, rx)
}

/// The next finished signature; never resolves when calls are not signed.
async fn next_signed(rx: &mut Option<mpsc::UnboundedReceiver<Signed>>) -> Option<Signed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Who may open a connection to a TLS listener: the PBX (the trust list) and
/// the carriers (in-dialog requests from the callee's side). Anyone else is
/// closed before the handshake, so an unknown host cannot make the gateway do
/// public-key work.
struct Admission {
    trust: crate::proxy::TrustList,
    carriers: Vec<std::net::IpAddr>,
}

impl Admission {
    fn is_pbx(&self, ip: std::net::IpAddr) -> bool {
        self.trust.is_trusted(ip)
    }
    fn class(&self, ip: std::net::IpAddr) -> Class {
        if self.is_pbx(ip) {
            Class::Trusted
        } else if self.carriers.contains(&ip.to_canonical()) {
            Class::Carrier
        } else {
            Class::Untrusted
        }
    }
    fn admits(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.is_pbx(ip) || self.carriers.contains(&ip)
    }
}

/// Accepts connections on a TCP or (with `tls`) TLS listener and hands each
/// to its own task.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<TlsHandle>>,
    admission: Arc<Admission>,
    mut gate: AcceptGate,
    events: mpsc::Sender<TcpEvent>,
    ids: Arc<AtomicU64>,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or similar: back off instead of
                // spinning on an accept that keeps failing.
                tracing::warn!(error = %e, "{transport} accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = gate.admit(peer, admission.class(peer.ip())) else {
            drop(stream);
            continue;
        };
        let origin = match &tls {
            None => Origin::Tcp(stream),
            Some(_) if !admission.admits(peer.ip()) => {
                tracing::warn!(%peer, "tls connection from an address neither trusted nor a carrier; closed before the handshake");
                metrics::counter!("cidgate_tls_handshake_failures_total", "side" => "untrusted")
                    .increment(1);
                continue;
            }
            Some(handle) => Origin::Tls {
                stream,
                ctx: handle.current(),
                is_pbx: admission.is_pbx(peer.ip()),
            },
        };
        let (otx, orx) = mpsc::channel(crate::transport::OUTBOX);
        let id = ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let peer = Peer {
            transport,
            addr: peer,
        };
        spawn_connection(origin, peer, id, events.clone(), orx, otx, Some(slot));
    }
}

/// What a core reads besides its finished signatures: the UDP sockets it
/// serves itself (none behind a dispatcher), TCP events it takes directly,
/// and what a dispatcher hands it.
pub(crate) struct Inputs {
    pub udp: Vec<Arc<UdpPort>>,
    pub tcp_rx: Option<mpsc::Receiver<TcpEvent>>,
    pub inbox: Option<mpsc::Receiver<Input>>,
}

/// One proxy core and the I/O around it. With one worker it reads the
/// sockets itself; with several, each runs on its own thread and takes its
/// messages from the dispatcher (`crate::shell::pool`).
pub(crate) struct Core {
    proxy: Proxy,
    /// Signs calls off this task's thread; `None` without `[stir]`.
    pool: Option<SigningPool>,
    /// Where the pool's finished signatures arrive; `run` takes it to read
    /// it beside the sockets.
    signed_rx: Option<mpsc::UnboundedReceiver<Signed>>,
    /// Whether input was left waiting after this turn (a UDP batch cut at
    /// its bound, queued TCP, dispatcher or signing messages): the core then
    /// leaves every signature to the pool instead of signing one itself.
    input_waiting: bool,
    udp: Vec<Arc<UdpPort>>,
    /// The datagrams of this turn, sent together when it ends.
    udp_out: Vec<Transmit>,
    /// Which of `udp` a message to a peer leaves from; `None` with one
    /// socket (or none).
    paths: Option<UdpPaths>,
    /// Stream connections (TCP and TLS) by transport and remote address.
    conns: HashMap<Peer, (u64, mpsc::Sender<Bytes>)>,
    ids: Arc<AtomicU64>,
    tcp_tx: mpsc::Sender<TcpEvent>,
    tap: Option<mpsc::UnboundedSender<Event>>,
    tls: Option<Arc<TlsHandle>>,
    /// The name a TLS carrier's certificate must carry, by carrier address.
    tls_hosts: HashMap<SocketAddr, String>,
    /// The bound listeners: the source address of outgoing connections.
    sources: Vec<Peer>,
    /// Flood guard, when this core reads the sockets itself.
    guard: Option<Guard>,
    /// The runtime that runs connection tasks (the main one).
    io: tokio::runtime::Handle,
    stats: WorkerStats,
    tcp_log: LogThrottle,
    /// Carrier states for the admin API, from this core's events.
    board: Arc<CarrierBoard>,
    /// `[limits] batch_window_us`: after a turn that read a few datagrams
    /// (fewer than [`WINDOW_UNDER`]), the thread sleeps this long before
    /// reading again. Asleep in `epoll_wait` instead, each arrival would wake
    /// it: at 1 000 calls per second 2.3 context switches per call, against
    /// 1.0 with the window (BENCHMARKS.md). The window ends as soon as one
    /// brings no datagram or many, so neither an idle gateway nor a busy one
    /// pays the latency. Zero turns it off.
    batch_window: Duration,
}

impl Core {
    /// Serves until stopped.
    pub(crate) async fn run(mut self, inputs: Inputs, mut stop: watch::Receiver<Stop>) {
        let Inputs {
            udp,
            mut tcp_rx,
            mut inbox,
        } = inputs;
        let mut signed_rx = self.signed_rx.take();
        let mut drain_until: Option<Instant> = None;
        // One set of receive buffers for every datagram; each message is
        // copied out at its exact size, so they are never zeroed or regrown.
        let mut batch = RecvBatch::default();
        // Tell the core the time once: carrier probing starts here.
        self.proxy.handle_timeout(Instant::now());
        // Set after a turn that read only a few datagrams: the next turn
        // first lets more of them queue up (`batch_window`).
        let mut batching = false;
        loop {
            if batching {
                batching = self.after_window(&udp, &mut batch).await;
            }
            let deadline = match (self.proxy.poll_timeout(), drain_until) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                // Input before timers: a response that is already queued must
                // be seen before the retransmission timer it would cancel.
                biased;
                // UDP is read here, in the task that owns the proxy: no channel
                // hop and no cross-thread wake-up per datagram. One batch
                // from every socket in listen order, so a flood on one
                // cannot starve the others.
                _ = udp_readable(&udp) => batching = self.read_turn(&udp, &mut batch),
                Some(ev) = recv(&mut tcp_rx) => self.on_tcp(ev),
                Some(input) = recv(&mut inbox) => self.on_inputs(input, inbox.as_mut()),
                Some(signed) = next_signed(&mut signed_rx) => self.on_signatures(signed, signed_rx.as_mut()),
                _ = sleep_until(deadline) => self.proxy.handle_timeout(Instant::now()),
                // The gateway handle gone (dropped without a shutdown) means stop.
                r = stop.changed() => match if r.is_ok() { *stop.borrow() } else { Stop::Now } {
                    Stop::Run => {}
                    Stop::Drain(until) => {
                        self.proxy.start_draining();
                        drain_until = Some(until);
                    }
                    Stop::Now => break,
                },
                // Batching: nothing else is ready, go on without parking.
                _ = std::future::ready(()), if batching => {}
            }
            // Under continuous input the biased select never picks the timer
            // branch; run due timers here so they cannot starve.
            if deadline.is_some_and(|d| d <= Instant::now()) {
                self.proxy.handle_timeout(Instant::now());
            }
            self.input_waiting |= !tcp_rx.as_ref().is_none_or(|rx| rx.is_empty())
                || !inbox.as_ref().is_none_or(|rx| rx.is_empty())
                || !signed_rx.as_ref().is_none_or(|rx| rx.is_empty());
            self.flush().await;
            self.input_waiting = false;
            self.stats
                .transactions
                .set(self.proxy.transactions() as f64);
            if let Some(until) = drain_until {
                let received = !tcp_rx.as_ref().is_none_or(|rx| rx.is_empty())
                    || !inbox.as_ref().is_none_or(|rx| rx.is_empty());
                if self.done_draining(until, received, &udp, &mut batch) {
                    break;
                }
                self.flush().await;
            }
        }
    }

    /// Handles what is queued on the sockets; whether to let more queue up
    /// before the next read (a few came).
    fn read_turn(&mut self, udp: &[Arc<UdpPort>], batch: &mut RecvBatch) -> bool {
        let read = self.take_queued(udp, batch);
        (1..WINDOW_UNDER).contains(&read) && !self.input_waiting && !self.batch_window.is_zero()
    }

    /// Reads what queued up during a batch window; whether to wait another.
    async fn after_window(&mut self, udp: &[Arc<UdpPort>], batch: &mut RecvBatch) -> bool {
        // Blocks the thread, not just the task: asleep in epoll, every
        // datagram's arrival would wake it again.
        std::thread::sleep(self.batch_window);
        let again = self.read_turn(udp, batch);
        // The other tasks of this runtime (connections, admin API, signals)
        // get their turn and their I/O is polled, without blocking, before
        // the next select.
        tokio::task::yield_now().await;
        again
    }

    /// Whether a drain is over: past `until`, or nothing waits and nothing
    /// more was already received (`received`: on a channel; the sockets are
    /// read here), so that what arrived is handled, not dropped.
    fn done_draining(
        &mut self,
        until: Instant,
        received: bool,
        udp: &[Arc<UdpPort>],
        batch: &mut RecvBatch,
    ) -> bool {
        let now = Instant::now();
        let idle = self.proxy.drained(now) && !received && self.take_queued(udp, batch) == 0;
        now >= until || idle
    }

    /// Handles what is already queued on every socket this core reads;
    /// how many datagrams that was.
    fn take_queued(&mut self, udp: &[Arc<UdpPort>], batch: &mut RecvBatch) -> usize {
        let mut read = 0;
        for (k, sock) in udp.iter().enumerate() {
            read += self.drain_udp(k, sock, batch);
        }
        read
    }

    /// Handles the datagrams already queued on `sock`, the `k`-th UDP
    /// socket (a bounded number of receive batches); returns how many were
    /// read.
    fn drain_udp(&mut self, k: usize, sock: &UdpPort, batch: &mut RecvBatch) -> usize {
        let guard = &mut self.guard;
        let paths = &mut self.paths;
        let messages = &self.stats.messages;
        let mut queued = batch.queued(sock, crate::transport::udp::BATCH);
        let recv = || loop {
            let (from, data) = queued.next_datagram()?;
            // What the flood guard drops costs a glance each.
            if !admitted(guard, from, data) {
                continue;
            }
            if let Some(paths) = paths.as_mut() {
                paths.note(from, k);
            }
            messages.increment(1);
            // Copied out at its exact size: the buffers are reused as is.
            return Some((from, Bytes::copy_from_slice(data)));
        };
        crate::transport::udp::feed(&mut self.proxy, Instant::now, recv);
        self.input_waiting |= queued.more_waiting();
        queued.read()
    }

    /// Handles `first` and whatever else the dispatcher has already queued
    /// (bounded, so that timers get their turn).
    fn on_inputs(&mut self, first: Input, mut inbox: Option<&mut mpsc::Receiver<Input>>) {
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(input) = next.take() {
            match input {
                Input::Message { from, data, socket } => {
                    handled += 1;
                    if let (Some(paths), Transport::Udp) = (self.paths.as_mut(), from.transport) {
                        paths.note(from.addr, socket);
                    }
                    self.proxy.handle(Instant::now(), from, data);
                }
                Input::Tcp(ev) => self.on_tcp(ev),
            }
            if handled < crate::transport::udp::BATCH as u64 {
                next = inbox.as_mut().and_then(|rx| rx.try_recv().ok());
            }
        }
        self.stats.messages.increment(handled);
    }

    fn on_tcp(&mut self, ev: TcpEvent) {
        match ev {
            TcpEvent::Message { from, data } => {
                if admitted(&mut self.guard, from.addr, &data) {
                    self.stats.messages.increment(1);
                    self.proxy.handle(Instant::now(), from, data);
                }
            }
            TcpEvent::Up { peer, tx, id } => {
                self.conns.entry(peer).or_insert((id, tx));
            }
            TcpEvent::Down {
                peer,
                id,
                connect_failed,
            } => {
                // Several cores learn of every connection; only the ones that
                // were sending through this one lose their messages with it.
                let was_ours = self.conns.get(&peer).is_some_and(|(cid, _)| *cid == id);
                if was_ours {
                    self.conns.remove(&peer);
                }
                if connect_failed && was_ours {
                    self.proxy.handle_unreachable(Instant::now(), peer);
                }
            }
        }
    }

    /// Hands `first` and every other signature already finished to the
    /// core, in the same turn.
    fn on_signatures(
        &mut self,
        first: Signed,
        mut rx: Option<&mut mpsc::UnboundedReceiver<Signed>>,
    ) {
        let mut next = Some(first);
        while let Some(signed) = next {
            self.proxy
                .handle_signature(Instant::now(), signed.token, signed.result.ok());
            next = rx.as_mut().and_then(|rx| rx.try_recv().ok());
        }
    }

    /// Hands the signatures the core asked for to the pool; a full queue
    /// answers at once, and the core refuses that call (never unsigned).
    ///
    /// A few signatures per turn are made on this thread instead, when
    /// nothing else waits for the core and the pool is idle: at low rates
    /// the hand-off (waking a signing thread, then the core again) costs
    /// more than the signature, and no other message is held up by it. A
    /// job that needs the numbering-plan parser always goes to the pool.
    fn submit_signatures(&mut self) {
        let mut sign_here = if self.input_waiting {
            0
        } else {
            SIGN_HERE_PER_TURN
        };
        while let Some(job) = self.proxy.poll_sign() {
            let token = job.token;
            let Some(pool) = self.pool.as_ref() else {
                self.proxy.handle_signature(Instant::now(), token, None);
                continue;
            };
            if sign_here > 0 && !job.claims.dest.needs_numbering_plan() {
                sign_here -= 1;
                if let Some(signed) = pool.sign_if_idle(&job) {
                    self.proxy
                        .handle_signature(Instant::now(), token, signed.ok());
                    continue;
                }
            }
            if pool.try_submit(job).is_err() {
                self.proxy.handle_signature(Instant::now(), token, None);
            }
        }
    }

    async fn flush(&mut self) {
        self.submit_signatures();
        while let Some(t) = self.proxy.poll_transmit() {
            self.transmit(t).await;
        }
        self.send_udp().await;
        while let Some(ev) = self.proxy.poll_event() {
            crate::telemetry::record(&ev);
            if let Event::CarrierState { carrier, up, .. } = &ev {
                self.board.set(*carrier, *up);
            }
            if let Some(tap) = &self.tap {
                let _ = tap.send(ev);
            }
        }
    }

    /// Sends this turn's datagrams, in order: each run of them that leaves
    /// from the same socket in as few system calls as the kernel takes
    /// them (`sendmmsg`, up to [`mmsg::SLOTS`] each); a datagram the full
    /// send buffer refuses waits for room, and the rest follow it.
    async fn send_udp(&mut self) {
        let mut out = std::mem::take(&mut self.udp_out);
        let mut at = 0;
        // The socket of the datagram that ended the last run: each
        // datagram's socket is looked up once.
        let mut next_k = None;
        while at < out.len() {
            let k = next_k
                .take()
                .unwrap_or_else(|| self.udp_index(out[at].to.addr));
            let mut end = at + 1;
            while let Some(t) = out.get(end) {
                let k_here = self.udp_index(t.to.addr);
                if k_here != k {
                    next_k = Some(k_here);
                    break;
                }
                end += 1;
            }
            let Some(sock) = self.udp.get(k) else {
                at = end;
                continue;
            };
            while at < end {
                let n = (end - at).min(mmsg::SLOTS);
                let mut batch: [(SocketAddr, &[u8]); mmsg::SLOTS] =
                    [(mmsg::UNUSED, &[]); mmsg::SLOTS];
                for (slot, t) in batch.iter_mut().zip(&out[at..at + n]) {
                    *slot = (t.to.addr, &t.data[..]);
                }
                match sock.try_send_batch(&batch[..n]) {
                    Ok(sent) => at += sent.max(1),
                    Err(e) => {
                        let t = &out[at];
                        if e.kind() == std::io::ErrorKind::WouldBlock {
                            let _ = sock.send_to(&t.data, t.to.addr).await;
                        } else {
                            tracing::debug!(to = %t.to.addr, error = %e, "udp send failed");
                        }
                        at += 1;
                    }
                }
            }
        }
        out.clear();
        self.udp_out = out;
    }

    /// Sends a message over a stream connection, opening one when there is
    /// none to that peer; a datagram waits for the turn's [`Core::send_udp`].
    async fn transmit(&mut self, t: Transmit) {
        match t.to.transport {
            Transport::Udp => self.udp_out.push(t),
            Transport::Tcp | Transport::Tls => {
                let tx = match self.conns.get(&t.to) {
                    Some((_, tx)) => tx.clone(),
                    None => {
                        let Some(origin) = self.dial_origin(t.to) else {
                            tracing::warn!(to = %t.to.addr, "tls next hop but no [tls] configured; message dropped");
                            self.proxy.handle_unreachable(Instant::now(), t.to);
                            return;
                        };
                        let (otx, orx) = mpsc::channel(crate::transport::OUTBOX);
                        let id = self.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _on_main = self.io.enter();
                        spawn_connection(
                            origin,
                            t.to,
                            id,
                            self.tcp_tx.clone(),
                            orx,
                            otx.clone(),
                            None,
                        );
                        self.conns.insert(t.to, (id, otx.clone()));
                        otx
                    }
                };
                if tx.try_send(t.data).is_err() {
                    if let Some(n) = self.tcp_log.hit(Instant::now()) {
                        tracing::warn!(to = %t.to.addr, dropped = n, "stream send queue full or closed; messages dropped (count since the last line)");
                    }
                }
            }
        }
    }

    /// Which of `udp` a message to `to` leaves from: with several, the one
    /// `to` last wrote to, else the first of its address family, the one
    /// Via and Record-Route name (see [`UdpPaths`]); no syscall per send.
    fn udp_index(&self, to: SocketAddr) -> usize {
        self.paths.as_ref().map_or(0, |p| p.toward(to))
    }

    /// How to reach `to` over a new connection: from the listen address of
    /// its transport and, for TLS, checking the name configured for that
    /// carrier (else the address itself). `None`: TLS without `[tls]`.
    fn dial_origin(&self, to: Peer) -> Option<Origin> {
        let source = self
            .sources
            .iter()
            .find(|p| p.transport == to.transport && p.addr.is_ipv4() == to.addr.is_ipv4())
            .map(|p| p.addr.ip());
        let tls = match to.transport {
            Transport::Tls => {
                let ctx = self.tls.as_ref()?.current();
                let host = self
                    .tls_hosts
                    .get(&to.addr)
                    .cloned()
                    .unwrap_or_else(|| to.addr.ip().to_string());
                Some(TlsDial { ctx, host })
            }
            _ => None,
        };
        Some(Origin::Dial { source, tls })
    }
}

/// The flood guard's verdict on a message a core read itself (no guard:
/// a dispatcher has checked it already).
fn admitted(guard: &mut Option<Guard>, from: SocketAddr, data: &[u8]) -> bool {
    match guard {
        Some(guard) => guard.admit_message(Instant::now(), from, data).is_some(),
        None => true,
    }
}

/// The next item of an optional channel; pending forever without one.
async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves with the index of the first UDP socket that has data to read
/// (callers then read every socket in turn).
pub(crate) async fn udp_readable(socks: &[Arc<UdpPort>]) -> usize {
    if socks.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for (i, s) in socks.iter().enumerate() {
            if let std::task::Poll::Ready(r) = s.poll_recv_ready(cx) {
                if r.is_ok() {
                    return std::task::Poll::Ready(i);
                }
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Timer resolution of the shell. SIP timers are multiples of 500 ms, so
/// firing them up to this much late is harmless, and it lets one wake-up serve
/// every timer that falls into the same slot instead of one wake-up per timer.
const TIMER_SLOT: Duration = Duration::from_millis(10);

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => {
            // Round up to a slot boundary counted from a fixed origin, so that
            // timers a few milliseconds apart share one wake-up.
            static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            let origin = *ORIGIN.get_or_init(Instant::now);
            let slot = TIMER_SLOT.as_nanos();
            let offset = t.saturating_duration_since(origin).as_nanos();
            let rounded = offset.div_ceil(slot) * slot;
            let at = origin + Duration::from_nanos(rounded as u64);
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await
        }
        None => std::future::pending().await,
    }
}
