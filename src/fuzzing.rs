//! Properties checked by the fuzz target (`fuzz/`) and, over a seeded corpus,
//! by the test suite. Each function panics when a property does not hold.

use bytes::Bytes;

use crate::sip::splice::Splice;
use crate::sip::{parse, Transport};

/// parse → write → parse is stable: writing a parsed message back with no
/// edits reproduces its bytes exactly (up to the framed end), and parsing that
/// again gives the same header table.
pub fn roundtrip(data: &[u8]) {
    let Ok(first) = parse(Bytes::copy_from_slice(data), Transport::Udp) else {
        return;
    };
    let c = first.fields();
    let end = c.body_end();
    let written = Splice::new(c.buf()).finish(end);
    assert_eq!(
        &written[..],
        &data[..end],
        "unedited write must be byte-identical"
    );
    let second = parse(written, Transport::Udp).expect("a written message parses again");
    let c2 = second.fields();
    assert_eq!(c.headers().len(), c2.headers().len());
    for (a, b) in c.headers().iter().zip(c2.headers()) {
        assert_eq!(a.name, b.name);
        assert_eq!(c.bytes(a.name_span), c2.bytes(b.name_span));
        assert_eq!(c.bytes(a.value), c2.bytes(b.value));
    }
    assert_eq!(c.body(), c2.body());
}

/// Any bytes from a trusted PBX, then the same bytes as if from the carrier,
/// through a fresh proxy core: no panic, every request sent parses, every
/// response sent is structurally sound.
pub fn through_proxy(data: &[u8]) {
    use std::sync::{Arc, OnceLock};
    use std::time::Instant;

    use crate::config::Config;
    use crate::inventory::InventoryHandle;
    use crate::proxy::{Peer, Proxy, TrustList};

    static INVENTORY: OnceLock<Arc<InventoryHandle>> = OnceLock::new();
    let inventory = INVENTORY.get_or_init(|| {
        Arc::new(InventoryHandle::new(
            crate::demo::example_inventory().expect("built-in inventory"),
        ))
    });
    let mut settings = Config::default().proxy_settings();
    settings.trust = TrustList::new(vec!["127.0.0.0/8".parse().expect("CIDR")]);
    let mut proxy = Proxy::new(settings, inventory.clone());
    let now = Instant::now();
    let pbx = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.10:5070".parse().expect("addr"),
    };
    let carrier = Peer {
        transport: Transport::Udp,
        addr: "127.0.0.1:5080".parse().expect("addr"),
    };
    proxy.handle(now, pbx, Bytes::copy_from_slice(data));
    proxy.handle(now, carrier, Bytes::copy_from_slice(data));
    proxy.handle_timeout(now + std::time::Duration::from_secs(40));
    while let Some(t) = proxy.poll_transmit() {
        if t.data.starts_with(b"SIP/2.0 ") {
            crate::sip::scan::scan(t.data.clone()).expect("responses are structurally sound");
        } else {
            parse(t.data.clone(), Transport::Udp).expect("requests sent are valid SIP");
        }
    }
}
