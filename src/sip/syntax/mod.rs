//! The small pieces of the RFC 3261 §25 grammar the gateway must read, one
//! file per production: linear whitespace and quoting, comma lists, generic
//! parameters, URIs, name-addrs and Via values. Everything works on raw bytes
//! that may contain folded whitespace, and nothing allocates per message
//! except the list splitter's small vector.

mod list;
mod lws;
mod name_addr;
mod params;
mod uri;
mod via;

pub use list::{split_list, ListItems};
pub(crate) use lws::{is_lws, trim_lws};
pub use name_addr::{parse_name_addr, NameAddr};
pub use params::find_param;
pub(crate) use uri::uri_scheme;
pub use uri::{parse_sip_uri, split_host_port, SipUri};
pub use via::{parse_via, ViaValue};
