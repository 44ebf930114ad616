//! espada-esp: the sans-I/O ESP engine.
//!
//! Turns inner IP packets into ESP packets and back, in place, in any buffer that implements
//! [`espada_buf::PacketBuf`] (the DPDK mbuf in the data plane, [`espada_buf::VecBuf`] in tests).
//! Nothing here does I/O, reads a clock or allocates per packet.
//!
//! * RFC 4303 tunnel mode, IPv4/IPv6 outer × IPv4/IPv6 inner ([`encap`], [`decap`]).
//! * AES-GCM-128/-256 with a 16-byte ICV, RFC 4106 ([`aead`]), two backends chosen per SA; an
//!   SA stores its raw key, the worker caches expanded schedules ([`keys`]).
//! * Sequence numbers, 64-bit ESN and the anti-replay window, a bit ring in the manner of
//!   RFC 6479 ([`replay`]).
//! * UDP encapsulation for NAT traversal, RFC 3948 ([`natt`], [`mod@classify`]).
//! * ECN at tunnel endpoints, RFC 6040 normal mode ([`ecn`]).
//! * Byte/packet lifetimes ([`lifetime`]), per-SA counters ([`counters`]) and one table of drop
//!   reasons ([`mod@drop`]).
//! * ICMP error parsing to match errors about packets this box sent ([`icmp`]).
//!
//! The SA is split, VPP/DPDK style, into a cold [`sa::SaConfig`] and hot per-direction runtime
//! objects [`OutboundSa`] and [`InboundSa`], each owned and written by exactly one worker.
//!
//! ```
//! use espada_buf::{PacketBuf, VecBuf};
//! use espada_esp::{Backend, Direction, InboundSa, KeyCache, OutboundSa, SaConfig};
//!
//! let (a, b) = ("192.0.2.1".parse().unwrap(), "198.51.100.2".parse().unwrap());
//! let keymat = [0x42u8; 20]; // AES-128 key || 4-byte salt (RFC 4106 §8.1)
//! let mut tx = OutboundSa::new(SaConfig::new(0x1000, Direction::Outbound, a, b), &keymat, Backend::auto())?;
//! let mut rx = InboundSa::new(SaConfig::new(0x1000, Direction::Inbound, b, a), &keymat, Backend::auto())?;
//!
//! // A minimal IPv4 packet (header only, checksum not needed for the ESP engine).
//! let mut inner = [0u8; 20];
//! inner[0] = 0x45;
//! inner[3] = 20;
//! let mut buf = VecBuf::new(espada_esp::MAX_ENCAP_HEADROOM, &inner, espada_esp::MAX_ENCAP_TAILROOM);
//! let mut keys = KeyCache::new(16); // a worker's expanded key schedules
//! tx.encap(&mut keys, &mut buf).unwrap();
//! assert_eq!(buf.data()[9], 50); // outer IPv4, protocol ESP
//! rx.decap(&mut keys, &mut buf).unwrap();
//! assert_eq!(buf.data(), &inner);
//! assert_eq!(rx.counters().snapshot().packets, 1);
//! # Ok::<(), espada_esp::SaError>(())
//! ```
#![forbid(unsafe_code)]

pub mod aead;
pub mod classify;
pub mod counters;
pub mod decap;
pub mod drop;
pub mod ecn;
pub mod encap;
pub mod icmp;
pub mod keys;
pub mod lifetime;
pub mod natt;
pub mod replay;
pub mod sa;
pub mod wire;

pub use aead::{AeadEngine, Backend};
pub use keys::{KeyCache, SaKey};

pub use classify::{Class, classify};
pub use counters::{CountersSnapshot, SaCounters, Tally};
pub use decap::Opening;
pub use drop::DropReason;
pub use lifetime::LifetimeLimits;
pub use replay::{ReplayState, ReplayWindow};
pub use sa::{
    DfPolicy, Direction, InboundSa, InnerProto, NattPorts, OutboundSa, Processed, SaConfig, SaError,
};

/// Headroom encapsulation needs in front of the inner packet: outer IPv6 header (40) + UDP
/// (8, NAT-T, RFC 3948) + ESP header (8, RFC 4303 §2) + GCM explicit IV (8, RFC 4106 §3.1).
/// The data plane adds its 14-byte Ethernet header on top of this.
pub const MAX_ENCAP_HEADROOM: usize = 64;

/// Tailroom encapsulation needs after the inner packet: up to 3 padding bytes (RFC 4303 §2.4,
/// 4-byte alignment), pad length and next header (2), and the 16-byte ICV (RFC 4106 §6).
pub const MAX_ENCAP_TAILROOM: usize = 3 + 2 + 16;
