//! `espada-wire`: the wire formats every part of the packet path shares — one of each.
//!
//! - [`ether`]: Ethernet II header and [`ether::MacAddr`], the one MAC address type (RFC 894).
//! - [`ipv4`], [`ipv6`]: header views over borrowed bytes (`Ipv4Packet<T>`, `Ipv6Packet<T>`:
//!   checked constructors, then accessors that cannot panic, setters on mutable buffers) and
//!   emitters (`Ipv4Repr`, `Ipv6Repr`), field offsets named after the RFCs; the IPv6
//!   extension-header walk (RFC 8200 §4).
//! - [`ip`]: what either family answers (version, addresses).
//! - [`udp`]: UDP field offsets (RFC 768).
//! - [`checksum`]: the Internet checksum (RFC 1071), its incremental update (RFC 1624) and the
//!   pseudo-header sums.
//! - [`proto`]: IP protocol numbers.
//!
//! The ESP engine (`espada-esp`), the data plane, the host stack and the control thread's IKE
//! I/O all parse and build headers with these; none keeps a copy.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod ether;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod proto;
pub mod udp;

pub use ether::MacAddr;
