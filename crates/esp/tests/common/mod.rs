//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::net::IpAddr;

use espada_buf::{PacketBuf, VecBuf};
use espada_esp::KeyCache;
use espada_esp::wire::checksum;
use espada_esp::{
    Backend, Direction, InboundSa, MAX_ENCAP_HEADROOM, MAX_ENCAP_TAILROOM, NattPorts, OutboundSa,
    SaConfig,
};

pub const V4_LOCAL: &str = "192.0.2.1";
pub const V4_REMOTE: &str = "198.51.100.2";
pub const V6_LOCAL: &str = "2001:db8::1";
pub const V6_REMOTE: &str = "2001:db8:ffff::2";

/// Addresses of the outbound side (local, remote) for an outer family.
pub fn endpoints(outer_v6: bool) -> (IpAddr, IpAddr) {
    if outer_v6 {
        (V6_LOCAL.parse().unwrap(), V6_REMOTE.parse().unwrap())
    } else {
        (V4_LOCAL.parse().unwrap(), V4_REMOTE.parse().unwrap())
    }
}

/// Outbound and inbound configurations of one SA as seen from the two ends.
pub fn configs(spi: u32, outer_v6: bool, natt: bool, esn: bool) -> (SaConfig, SaConfig) {
    let (l, r) = endpoints(outer_v6);
    let mut out = SaConfig::new(spi, Direction::Outbound, l, r);
    let mut inb = SaConfig::new(spi, Direction::Inbound, r, l);
    for c in [&mut out, &mut inb] {
        c.esn = esn;
        c.natt = natt.then(NattPorts::default);
    }
    (out, inb)
}

pub fn pair(
    spi: u32,
    outer_v6: bool,
    natt: bool,
    esn: bool,
    key: &[u8],
    backend: Backend,
) -> (OutboundSa, InboundSa) {
    let (o, i) = configs(spi, outer_v6, natt, esn);
    (
        OutboundSa::new(o, key, backend).unwrap(),
        InboundSa::new(i, key, backend).unwrap(),
    )
}

pub fn key(len: usize) -> Vec<u8> {
    (0..len as u8)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect()
}

/// An IPv4 UDP packet of `payload` bytes payload with a valid header checksum.
pub fn v4_inner(payload: &[u8], tos: u8, df: bool) -> Vec<u8> {
    let total = 28 + payload.len();
    let mut p = vec![0x45, tos];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34]);
    p.extend_from_slice(&(if df { 0x4000u16 } else { 0 }).to_be_bytes());
    p.extend_from_slice(&[63, 17, 0, 0, 198, 18, 0, 1, 198, 19, 0, 7]);
    let c = checksum::checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// An IPv6 UDP packet.
pub fn v6_inner(payload: &[u8], tc: u8) -> Vec<u8> {
    let mut p = vec![0x60 | (tc >> 4), tc << 4, 0x12, 0x34];
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[17, 63]);
    p.extend_from_slice(&[0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend_from_slice(&[0xfd, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
    p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

pub fn inner(v6: bool, payload: &[u8]) -> Vec<u8> {
    if v6 {
        v6_inner(payload, 0)
    } else {
        v4_inner(payload, 0, true)
    }
}

/// A buffer with the room encapsulation needs (plus Ethernet headroom).
pub fn encap_buf(data: &[u8]) -> VecBuf {
    VecBuf::new(MAX_ENCAP_HEADROOM + 14, data, MAX_ENCAP_TAILROOM)
}

/// Encapsulates `data` and returns the outer packet.
pub fn encap(sa: &mut OutboundSa, data: &[u8]) -> Vec<u8> {
    let mut b = encap_buf(data);
    sa.encap(&mut KeyCache::new(2), &mut b).unwrap();
    b.data().to_vec()
}
