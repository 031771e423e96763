//! The carrier states the admin API shows. The proxy core reports changes as
//! events; the shell writes them here and `/healthz` and `/metrics` read
//! them, so the admin side never reaches into the core.

use std::sync::{Arc, Mutex};

use crate::proxy::Peer;

/// What `/healthz` says of the carriers.
pub struct CarrierHealth {
    /// Whether any carrier can take calls (else `/healthz` answers 503).
    pub any_up: bool,
    /// One line per carrier, up or down, in failover order.
    pub lines: String,
}

/// Every carrier in failover order, as `transport:address`, and whether it
/// is up. Carriers start up: a carrier is down only once probes or calls
/// have shown it.
pub struct CarrierBoard {
    carriers: Mutex<Vec<(Peer, bool)>>,
}

impl CarrierBoard {
    pub fn new(carriers: &[Peer]) -> Arc<CarrierBoard> {
        Arc::new(CarrierBoard {
            carriers: Mutex::new(carriers.iter().map(|&p| (p, true)).collect()),
        })
    }

    pub fn set(&self, carrier: Peer, up: bool) {
        let mut all = self.carriers.lock().unwrap_or_else(|e| e.into_inner());
        for entry in all.iter_mut().filter(|(p, _)| *p == carrier) {
            entry.1 = up;
        }
    }

    /// (name, up) per carrier, in failover order.
    pub fn snapshot(&self) -> Vec<(String, bool)> {
        let all = self.carriers.lock().unwrap_or_else(|e| e.into_inner());
        all.iter()
            .map(|(p, up)| (format!("{}:{}", p.transport, p.addr), *up))
            .collect()
    }

    /// The carrier lines of `/healthz`, and whether any carrier can take
    /// calls.
    pub fn health(&self) -> CarrierHealth {
        let all = self.snapshot();
        let any_up = all.iter().any(|(_, up)| *up);
        let mut text = String::new();
        for (name, up) in &all {
            text.push_str(&format!(
                "carrier {name} {}\n",
                if *up { "up" } else { "down" }
            ));
        }
        CarrierHealth {
            any_up,
            lines: text,
        }
    }

    /// The carrier gauge in Prometheus text form.
    pub fn metrics_text(&self) -> String {
        let mut text = String::from(
            "# HELP cidgate_carrier_up Whether the carrier takes new calls (1) or is marked down (0).\n# TYPE cidgate_carrier_up gauge\n",
        );
        for (name, up) in self.snapshot() {
            text.push_str(&format!(
                "cidgate_carrier_up{{carrier=\"{name}\"}} {}\n",
                up as u8
            ));
        }
        text
    }
}
