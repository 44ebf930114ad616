//! `espada-hostpath`: the appliance's own tiny host stack, sans-I/O.
//!
//! The data plane punts ARP (RFC 826), IPv6 Neighbor Discovery (RFC 4861) and ICMP/ICMPv6 echo
//! (RFC 792, RFC 4443) addressed to the box to the control thread (design §3, "Exception
//! path"). This crate is the pure logic behind it: it works on Ethernet frames as byte slices,
//! takes time as an [`std::time::Instant`] argument, and returns frames to transmit plus events.
//! No DPDK, no sockets, no unsafe code, and no panics on any input.
//!
//! Module map (one concept per file):
//! - Ethernet, IPv4 and IPv6 headers and the checksum: `espada-wire` (shared with the ESP engine
//!   and the data plane).
//! - [`arp`]: ARP packets, replies, requests, gratuitous ARP (RFC 826, RFC 5227).
//! - [`ndisc`]: Neighbor Solicitation / Advertisement (RFC 4861).
//! - [`icmp`]: echo replies and path-MTU errors (RFC 792, RFC 1191, RFC 4443).
//! - [`neighbor`]: the neighbour cache (RFC 4861 §7.3, RFC 1122 §2.3.2).
//! - [`counters`]: handled/ignored counters by reason.
//! - [`host`]: [`HostStack`], which combines them per port.
//!
//! ```
//! use espada_hostpath::{HostConfig, HostOutput, HostStack, Handled, PortConfig, PortRole};
//! use espada_hostpath::host::Ipv4Cidr;
//! use espada_wire::MacAddr;
//! use std::time::Instant;
//!
//! let port = |last, ip: [u8; 4]| PortConfig {
//!     mac: MacAddr([2, 0, 0, 0, 0, last]),
//!     ipv4: Some(Ipv4Cidr { addr: ip.into(), prefix_len: 24 }),
//!     ipv6: None,
//!     gateway_v4: None,
//!     gateway_v6: None,
//! };
//! let mut host = HostStack::new(HostConfig {
//!     outside: port(1, [192, 0, 2, 1]),
//!     inside: port(2, [10, 0, 0, 1]),
//!     neighbor: Default::default(),
//!     router: true,
//! })
//! .unwrap();
//! let mut out = HostOutput::default();
//! // Somebody on the inside asks who has 10.0.0.1.
//! let request = espada_hostpath::arp::build_request(
//!     MacAddr([2, 0, 0, 0, 0, 9]),
//!     [10, 0, 0, 9].into(),
//!     [10, 0, 0, 1].into(),
//! );
//! let now = Instant::now();
//! assert_eq!(host.handle_frame(PortRole::Inside, &request, now, &mut out), Handled::Replied);
//! assert_eq!(out.frames.len(), 1);
//! assert_eq!(host.resolve(PortRole::Inside, [10, 0, 0, 9].into(), now, &mut out),
//!            Some(MacAddr([2, 0, 0, 0, 0, 9])));
//! ```

#![forbid(unsafe_code)]

pub mod arp;
pub mod counters;
pub mod host;
pub mod icmp;
pub mod ndisc;
pub mod neighbor;

pub use counters::{Counters, IgnoreReason};
pub use espada_wire::MacAddr;
pub use host::{
    Handled, HostConfig, HostEvent, HostOutput, HostStack, Outgoing, PortConfig, PortRole,
};
pub use neighbor::{Lookup, NeighborCache, NeighborConfig};
