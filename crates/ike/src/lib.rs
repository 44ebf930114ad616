//! espada-ike: IKEv2 (RFC 7296) as a sans-I/O library.
//!
//! No sockets, threads, clocks or global randomness: time is an argument, randomness comes
//! through [`rng::Random`], and everything the library wants done is polled from it, in the shape
//! of quinn-proto.
//!
//! * [`msgs`]: the wire format of RFC 7296 §3, one module per payload, parse and emit with a
//!   byte-exact round trip, the SK payload (RFC 5282) and IKE fragmentation (RFC 7383).
//! * [`crypto`]: PRFs and prf+ (§2.13), key derivation (§2.14, §2.17, §2.18), Diffie-Hellman
//!   groups 14, 19, 20 and 31, AES-GCM-16 for the SK payload, PSK authentication (§2.15).
#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod cookie;
pub mod crypto;
pub mod exchange;
pub mod msgs;
pub mod nat;
pub mod proposal;
pub mod rng;
pub mod secret;
pub mod ts;

/// UDP port of IKE (RFC 7296 §2).
pub const IKE_PORT: u16 = 500;
/// UDP port of IKE and ESP after NAT detection (RFC 3948, RFC 7296 §2.23).
pub const NATT_PORT: u16 = 4500;
