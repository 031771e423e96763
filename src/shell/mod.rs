//! The parts of the tokio shell between the sockets and the proxy cores:
//! a glance at each message before parsing ([`glance`]), flood defence by
//! source ([`guard`], [`accept`]), the dispatcher and worker threads that run
//! one proxy core per CPU ([`pool`]), load shedding ([`shed`]), and which
//! of several UDP sockets a message leaves from ([`paths`]).

pub mod accept;
pub mod glance;
pub mod guard;
pub(crate) mod paths;
pub mod pool;
pub mod shed;
pub mod throttle;

use bytes::Bytes;

use crate::proxy::Peer;
use crate::transport::TcpEvent;

/// What the dispatcher hands a worker, in arrival order.
#[derive(Debug)]
pub enum Input {
    /// A datagram or a framed TCP message for the worker's core; `socket`
    /// is the UDP socket a datagram arrived on (its index in listen order),
    /// which answers to `from` leave from (0 for stream messages).
    Message {
        from: Peer,
        data: Bytes,
        socket: usize,
    },
    /// A TCP connection came up or went away (every worker is told).
    Tcp(TcpEvent),
}

/// Per-core counters and gauges, labelled `worker="k"`, created once so the
/// hot path only does atomic adds.
#[derive(Clone)]
pub(crate) struct WorkerStats {
    pub messages: metrics::Counter,
    pub transactions: metrics::Gauge,
}

impl WorkerStats {
    pub fn new(worker: usize) -> WorkerStats {
        let label = worker.to_string();
        WorkerStats {
            messages: metrics::counter!("cidgate_worker_messages_total", "worker" => label.clone()),
            transactions: metrics::gauge!("cidgate_worker_transactions", "worker" => label),
        }
    }
}
