//! IP protocol numbers and IPv6 next-header values used by espada (IANA "Assigned Internet
//! Protocol Numbers").

/// IPv6 hop-by-hop options (RFC 8200 §4.3).
pub const HOP_BY_HOP: u8 = 0;
/// ICMP (RFC 792).
pub const ICMP: u8 = 1;
/// IPv4 encapsulated in IP (inner IPv4 in tunnel mode, RFC 4303 §2.6).
pub const IPV4: u8 = 4;
/// TCP (RFC 9293).
pub const TCP: u8 = 6;
/// UDP (RFC 768).
pub const UDP: u8 = 17;
/// IPv6 encapsulated (inner IPv6 in tunnel mode).
pub const IPV6: u8 = 41;
/// IPv6 routing header (RFC 8200 §4.4).
pub const ROUTING: u8 = 43;
/// IPv6 fragment header (RFC 8200 §4.5).
pub const FRAGMENT: u8 = 44;
/// ESP (RFC 4303).
pub const ESP: u8 = 50;
/// ICMPv6 (RFC 4443).
pub const ICMPV6: u8 = 58;
/// No next header: ESP dummy packets (RFC 4303 §2.6).
pub const NO_NEXT_HEADER: u8 = 59;
/// IPv6 destination options (RFC 8200 §4.6).
pub const DEST_OPTS: u8 = 60;
