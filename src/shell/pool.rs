//! Several proxy cores behind one dispatcher: core 0 on the main runtime
//! beside it, each other core on a worker thread of its own.
//!
//! The dispatcher (a task on the main runtime) reads the UDP sockets and the
//! TCP connections' events, looks at each message before parsing it
//! ([`glance`](super::glance)), drops what the flood guard refuses, and hands
//! the rest to the core that owns its Call-ID. Every message of a call
//! (requests, responses, CANCEL, ACK, in-dialog requests) carries the same
//! Call-ID, so each core owns its calls' transactions alone: no lock per
//! message and no shared transaction table. The inventory stays one
//! lock-free snapshot that every core reads.
//!
//! Each worker's queue is bounded. A new call that finds its core's queue
//! three quarters full is refused with `503` and `Retry-After`; responses and
//! requests of calls in progress may use the whole queue; messages from
//! untrusted sources only the lower half.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::glance::glance;
use super::guard::{Class, DropReason, Guard};
use super::shed::overload_reply;
use super::Input;
use crate::proxy::Peer;
use crate::server::{udp_readable, Core, Inputs, Stop};
use crate::sip::Transport;
use crate::transport::mmsg::RecvBatch;
use crate::transport::port::UdpPort;
use crate::transport::TcpEvent;

/// Room in each queue beyond the configured size, kept for connection
/// events, which must never be lost.
const CONTROL_ROOM: usize = 256;

/// Datagrams read per wake-up before TCP and control get a turn.
pub const READ_BATCH: usize = 256;

/// The dispatcher's handle on one worker.
struct Port {
    tx: mpsc::Sender<Input>,
    depth: metrics::Gauge,
    shed: metrics::Counter,
}

/// What became of a message handed to [`Router::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// In the owning worker's queue (every worker's, for a probe answer).
    Queued,
    /// A new call whose worker has no room: the caller answers it with
    /// `503` + `Retry-After` (the router has no socket).
    Shed,
    /// Dropped unanswered: refused by the flood guard, or no room for a
    /// message that is not a new call (counted here).
    Dropped,
}

/// The socket-free half of the dispatcher: glance, flood guard, the worker
/// that owns the Call-ID and room in its queue. The pool runs it between
/// the sockets and the worker threads; `benches/workers.rs` runs the same
/// code over pre-built datagrams.
pub struct Router {
    ports: Vec<Port>,
    guard: Guard,
    queue: usize,
}

impl Router {
    /// A router over `workers` queues of `queue` messages each (plus room
    /// for connection events); worker `k` reads the `k`-th receiver.
    pub fn new(workers: usize, guard: Guard, queue: usize) -> (Router, Vec<mpsc::Receiver<Input>>) {
        let mut ports = Vec::with_capacity(workers);
        let mut inboxes = Vec::with_capacity(workers);
        for k in 0..workers {
            let (tx, rx) = mpsc::channel(queue + CONTROL_ROOM);
            let label = k.to_string();
            ports.push(Port {
                tx,
                depth: metrics::gauge!("cidgate_worker_queue_depth", "worker" => label.clone()),
                shed: metrics::counter!("cidgate_worker_shed_total", "worker" => label),
            });
            inboxes.push(rx);
        }
        (
            Router {
                ports,
                guard,
                queue,
            },
            inboxes,
        )
    }

    /// Routes a datagram still in the receive buffer of UDP socket `socket`
    /// (its index in listen order): it is copied out only when a core takes
    /// it.
    pub fn route(&mut self, now: Instant, from: Peer, socket: usize, data: &[u8]) -> Routed {
        match self.admit(now, from, data) {
            Ok(to) => self.deliver(to, from, socket, Bytes::copy_from_slice(data)),
            Err(refused) => refused,
        }
    }

    /// Routes a message that is already owned (a framed TCP message).
    pub fn route_owned(&mut self, now: Instant, from: Peer, data: &Bytes) -> Routed {
        match self.admit(now, from, data) {
            Ok(to) => self.deliver(to, from, 0, data.clone()),
            Err(refused) => refused,
        }
    }

    /// Hands the message to core `k`, or to every core when it answers a
    /// carrier probe (each core keeps its own view of carrier health).
    fn deliver(
        &mut self,
        (k, probe_answer): (usize, bool),
        from: Peer,
        socket: usize,
        data: Bytes,
    ) -> Routed {
        if !probe_answer {
            self.enqueue(k, Input::Message { from, data, socket });
            return Routed::Queued;
        }
        for k in 0..self.ports.len() {
            let data = data.clone();
            self.enqueue(k, Input::Message { from, data, socket });
        }
        Routed::Queued
    }

    /// The worker that takes the message (and whether every worker must see
    /// it), or why not.
    fn admit(&mut self, now: Instant, from: Peer, data: &[u8]) -> Result<(usize, bool), Routed> {
        let g = glance(data);
        let class = self
            .guard
            .admit(now, from.addr, &g)
            .ok_or(Routed::Dropped)?;
        let k = g.shard(self.ports.len());
        let port = &self.ports[k];
        let depth = port.tx.max_capacity() - port.tx.capacity();
        let limit = match class {
            Class::Untrusted => self.queue / 2,
            _ if g.is_new_call() => self.queue * 3 / 4,
            _ => self.queue,
        };
        // A worker that has finished draining takes nothing more; new calls
        // still get their 503, as the draining worker would have answered.
        if depth < limit && !port.tx.is_closed() {
            return Ok((k, g.is_probe_answer()));
        }
        if g.is_new_call() && class != Class::Untrusted {
            port.shed.increment(1);
            return Err(Routed::Shed);
        }
        self.guard.count(class, DropReason::QueueFull);
        Err(Routed::Dropped)
    }

    /// Queues a message for worker `k`.
    fn enqueue(&mut self, k: usize, message: Input) {
        if let Err(e) = self.ports[k].tx.try_send(message) {
            // Only the control room is left (or the worker is gone).
            if let Input::Message { from, .. } = e.into_inner() {
                let class = self.guard.classify(from.addr.ip());
                self.guard.count(class, DropReason::QueueFull);
            }
        }
    }

    /// Tells every worker of a connection event; these are never dropped.
    async fn control(&self, ev: impl Fn() -> TcpEvent) {
        for p in &self.ports {
            control(p, ev()).await;
        }
    }

    /// Publishes each worker's queue depth.
    fn publish_depths(&self) {
        for p in &self.ports {
            p.depth.set((p.tx.max_capacity() - p.tx.capacity()) as f64);
        }
    }
}

/// Starts the cores and the dispatcher; the returned task ends when every
/// core has stopped (see [`Stop`]).
///
/// Core 0 runs on the calling (main) runtime beside the dispatcher, every
/// other core on a thread of its own: `N` workers are `N` busy threads, not
/// `N + 1`, and core 0 takes a smaller share of the calls to leave its
/// thread room to dispatch ([`Glance::shard`](super::glance::Glance::shard)).
/// (With a thread of its own, the dispatcher displaced whichever core shared
/// its CPU, and on a machine with as many CPUs as cores the round lasted as
/// long as that core: BENCHMARKS.md, "Proxy cores".)
pub(crate) fn spawn(
    cores: Vec<Core>,
    udp: Vec<Arc<UdpPort>>,
    tcp_rx: mpsc::Receiver<TcpEvent>,
    stop: watch::Receiver<Stop>,
    guard: Guard,
    limits: &crate::config::LimitsConfig,
) -> std::io::Result<JoinHandle<()>> {
    let (router, inboxes) = Router::new(cores.len(), guard, limits.worker_queue);
    let inputs = |rx| Inputs {
        udp: Vec::new(),
        tcp_rx: None,
        inbox: Some(rx),
    };
    let mut local = None;
    let mut threads = Vec::new();
    for (k, (core, rx)) in cores.into_iter().zip(inboxes).enumerate() {
        let stop = stop.clone();
        if k == 0 {
            local = Some(tokio::spawn(core.run(inputs(rx), stop)));
            continue;
        }
        let thread = std::thread::Builder::new()
            // Within the 15 bytes Linux keeps of a thread's name, so that
            // top and ps tell the cores apart.
            .name(format!("cidgate-core-{k}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a worker runtime starts");
                rt.block_on(core.run(inputs(rx), stop));
            })?;
        threads.push(thread);
    }
    let dispatcher = Dispatcher {
        router,
        udp,
        conns: HashMap::new(),
        retry_after: limits.retry_after,
    };
    Ok(tokio::spawn(async move {
        let workers = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        });
        let routing = tokio::spawn(dispatcher.run(tcp_rx, stop));
        if let Some(core) = local {
            let _ = core.await;
        }
        let _ = workers.await;
        routing.abort();
    }))
}

/// The router with the sockets around it: reads them, and answers the
/// calls the router sheds.
struct Dispatcher {
    router: Router,
    udp: Vec<Arc<UdpPort>>,
    /// TCP connections by peer, to send 503s for shed calls.
    conns: HashMap<Peer, (u64, mpsc::Sender<Bytes>)>,
    retry_after: u32,
}

impl Dispatcher {
    async fn run(mut self, mut tcp_rx: mpsc::Receiver<TcpEvent>, mut stop: watch::Receiver<Stop>) {
        let mut batch = RecvBatch::default();
        let udp = self.udp.clone();
        loop {
            tokio::select! {
                biased;
                // One batch from every socket in listen order: a flood on
                // one cannot starve the others.
                _ = udp_readable(&udp) => {
                    for (k, sock) in udp.iter().enumerate() {
                        self.drain_udp(k, sock, &mut batch);
                    }
                }
                Some(ev) = tcp_rx.recv() => self.on_tcp(ev).await,
                r = stop.changed() => if r.is_err() || *stop.borrow() == Stop::Now { return },
            }
            self.router.publish_depths();
        }
    }

    /// Routes a bounded number of receive batches of what is queued on
    /// UDP socket `k`, every datagram of each batch.
    fn drain_udp(&mut self, k: usize, sock: &UdpPort, batch: &mut RecvBatch) {
        let mut queued = batch.queued(sock, READ_BATCH);
        while let Some((from, data)) = queued.next_datagram() {
            let peer = Peer {
                transport: Transport::Udp,
                addr: from,
            };
            if self.router.route(Instant::now(), peer, k, data) == Routed::Shed {
                self.shed(peer, k, data);
            }
        }
    }

    async fn on_tcp(&mut self, ev: TcpEvent) {
        match ev {
            TcpEvent::Message { from, data } => {
                if self.router.route_owned(Instant::now(), from, &data) == Routed::Shed {
                    self.shed(from, 0, &data);
                }
            }
            TcpEvent::Up { peer, tx, id } => {
                self.conns.entry(peer).or_insert_with(|| (id, tx.clone()));
                let ev = || TcpEvent::Up {
                    peer,
                    tx: tx.clone(),
                    id,
                };
                self.router.control(ev).await;
            }
            TcpEvent::Down {
                peer,
                id,
                connect_failed,
            } => {
                if self.conns.get(&peer).is_some_and(|(cid, _)| *cid == id) {
                    self.conns.remove(&peer);
                }
                let ev = || TcpEvent::Down {
                    peer,
                    id,
                    connect_failed,
                };
                self.router.control(ev).await;
            }
        }
    }

    /// Answers a new call its core has no room for with 503 + Retry-After,
    /// over UDP from the socket it arrived on (`socket`).
    fn shed(&mut self, from: Peer, socket: usize, data: &[u8]) {
        let data = Bytes::copy_from_slice(data);
        let Some(answer) = overload_reply(&data, from.transport, from.addr, self.retry_after)
        else {
            return;
        };
        match from.transport {
            Transport::Udp => {
                if let Some(sock) = self.udp.get(socket) {
                    let _ = sock.try_send_to(&answer, from.addr);
                }
            }
            _ => {
                if let Some((_, tx)) = self.conns.get(&from) {
                    let _ = tx.try_send(answer);
                }
            }
        }
    }
}

/// Queues a connection event for a worker; these are never dropped.
async fn control(p: &Port, ev: TcpEvent) {
    if let Err(mpsc::error::TrySendError::Full(Input::Tcp(ev))) = p.tx.try_send(Input::Tcp(ev)) {
        let _ = p.tx.send(Input::Tcp(ev)).await;
    }
}
