//! What an IPv4 or an IPv6 packet answers alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{ipv4, ipv6};

/// The IP version of the packet at the start of `p` (4, 6, anything else), `None` when empty.
#[inline]
pub fn version(p: &[u8]) -> Option<u8> {
    p.first().map(|b| b >> 4)
}

/// Source and destination of the IPv4 or IPv6 packet at the start of `p` (only the fixed
/// header has to be there; nothing else is checked).
#[inline]
pub fn addrs(p: &[u8]) -> Option<(IpAddr, IpAddr)> {
    match version(p)? {
        4 if p.len() >= ipv4::MIN_HEADER_LEN => {
            let s: [u8; 4] = p[ipv4::field::SRC].try_into().ok()?;
            let d: [u8; 4] = p[ipv4::field::DST].try_into().ok()?;
            Some((Ipv4Addr::from(s).into(), Ipv4Addr::from(d).into()))
        }
        6 if p.len() >= ipv6::HEADER_LEN => {
            let s: [u8; 16] = p[ipv6::field::SRC].try_into().ok()?;
            let d: [u8; 16] = p[ipv6::field::DST].try_into().ok()?;
            Some((Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_families_and_short_or_unknown_input() {
        let mut v4 = [0u8; 20];
        v4[0] = 0x45;
        v4[12..16].copy_from_slice(&[192, 0, 2, 1]);
        v4[16..20].copy_from_slice(&[198, 51, 100, 2]);
        assert_eq!(
            addrs(&v4),
            Some((
                "192.0.2.1".parse().unwrap(),
                "198.51.100.2".parse().unwrap()
            ))
        );
        let mut v6 = [0u8; 40];
        v6[0] = 0x60;
        v6[23] = 1;
        v6[39] = 2;
        assert_eq!(
            addrs(&v6),
            Some(("::1".parse().unwrap(), "::2".parse().unwrap()))
        );
        assert_eq!(addrs(&v4[..19]), None);
        assert_eq!(addrs(&v6[..39]), None);
        assert_eq!(addrs(&[0x50; 40]), None);
        assert_eq!(addrs(&[]), None);
    }
}
