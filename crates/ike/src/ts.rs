//! Traffic-selector narrowing (RFC 7296 §2.9): the responder answers with the intersection of
//! what the initiator proposed and what its policy allows; the initiator accepts only a subset
//! of what it proposed.

use std::net::IpAddr;

use crate::msgs::{TrafficSelector, TsType};

/// A selector covering every address of one family, every protocol and port.
pub fn any(v6: bool) -> TrafficSelector {
    let zero = if v6 {
        IpAddr::from([0u8; 16])
    } else {
        IpAddr::from([0u8; 4])
    };
    prefix(zero, 0)
}

/// The selector for one prefix, all protocols and ports.
pub fn prefix(addr: IpAddr, len: u8) -> TrafficSelector {
    let (ts_type, start_addr, end_addr) = match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len.min(32)))
            };
            (
                TsType::TS_IPV4_ADDR_RANGE,
                IpAddr::from((bits & mask).to_be_bytes()),
                IpAddr::from((bits | !mask).to_be_bytes()),
            )
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len.min(128)))
            };
            (
                TsType::TS_IPV6_ADDR_RANGE,
                IpAddr::from((bits & mask).to_be_bytes()),
                IpAddr::from((bits | !mask).to_be_bytes()),
            )
        }
    };
    TrafficSelector {
        ts_type,
        ip_protocol: 0,
        start_port: 0,
        end_port: 0xffff,
        start_addr,
        end_addr,
    }
}

fn addr_key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(v) => (4, u128::from(u32::from(v))),
        IpAddr::V6(v) => (6, u128::from(v)),
    }
}

/// The intersection of two selectors, if not empty.
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    if a.ts_type != b.ts_type {
        return None;
    }
    let ip_protocol = match (a.ip_protocol, b.ip_protocol) {
        (0, p) | (p, 0) => p,
        (p, q) if p == q => p,
        _ => return None,
    };
    let start_port = a.start_port.max(b.start_port);
    let end_port = a.end_port.min(b.end_port);
    let (fa, sa) = addr_key(a.start_addr);
    let (fb, sb) = addr_key(b.start_addr);
    let (fc, ea) = addr_key(a.end_addr);
    let (fd, eb) = addr_key(b.end_addr);
    if fa != fb || fc != fd || fa != fc {
        return None;
    }
    let (s, e) = (sa.max(sb), ea.min(eb));
    if s > e || start_port > end_port {
        return None;
    }
    let pick = |k: u128, x: IpAddr, y: IpAddr| if addr_key(x).1 == k { x } else { y };
    Some(TrafficSelector {
        ts_type: a.ts_type,
        ip_protocol,
        start_port,
        end_port,
        start_addr: pick(s, a.start_addr, b.start_addr),
        end_addr: pick(e, a.end_addr, b.end_addr),
    })
}

/// Narrows the peer's proposed selectors to our policy: every non-empty pairwise
/// intersection, without duplicates. Empty: TS_UNACCEPTABLE.
pub fn narrow(proposed: &[TrafficSelector], policy: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out: Vec<TrafficSelector> = Vec::new();
    for p in proposed {
        for q in policy {
            if let Some(i) = intersect(p, q)
                && !out.contains(&i)
            {
                out.push(i);
            }
        }
    }
    out
}

/// Whether `inner` lies within `outer`.
pub fn contains(outer: &TrafficSelector, inner: &TrafficSelector) -> bool {
    intersect(outer, inner).as_ref() == Some(inner)
}

/// Whether every selector of the responder's answer lies within one we proposed.
pub fn is_subset(answer: &[TrafficSelector], proposed: &[TrafficSelector]) -> bool {
    !answer.is_empty()
        && answer
            .iter()
            .all(|a| proposed.iter().any(|p| contains(p, a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str, len: u8) -> TrafficSelector {
        prefix(s.parse().unwrap(), len)
    }

    #[test]
    fn narrowing_cases() {
        // (proposed, policy, expected)
        let cases: &[(&[TrafficSelector], &[TrafficSelector], &[TrafficSelector])] = &[
            (
                &[v4("198.18.0.0", 16)],
                &[v4("198.18.5.0", 24)],
                &[v4("198.18.5.0", 24)],
            ),
            (
                &[v4("198.18.5.0", 24)],
                &[v4("198.18.0.0", 16)],
                &[v4("198.18.5.0", 24)],
            ),
            (&[v4("198.18.5.0", 24)], &[v4("198.19.0.0", 16)], &[]),
            (
                &[any(false)],
                &[v4("192.0.2.0", 24), v4("198.51.100.0", 24)],
                &[v4("192.0.2.0", 24), v4("198.51.100.0", 24)],
            ),
            (&[any(true)], &[v4("192.0.2.0", 24)], &[]),
        ];
        for (proposed, policy, expected) in cases {
            assert_eq!(
                narrow(proposed, policy),
                *expected,
                "{proposed:?} ∩ {policy:?}"
            );
        }
    }

    #[test]
    fn protocol_and_ports() {
        let mut tcp = v4("192.0.2.0", 24);
        tcp.ip_protocol = 6;
        tcp.start_port = 80;
        tcp.end_port = 443;
        let mut udp = tcp;
        udp.ip_protocol = 17;
        assert_eq!(intersect(&tcp, &v4("192.0.2.0", 24)), Some(tcp));
        assert_eq!(intersect(&tcp, &udp), None);
        let mut high = v4("192.0.2.0", 24);
        high.start_port = 1000;
        assert_eq!(intersect(&tcp, &high), None);
    }

    #[test]
    fn subset_check() {
        assert!(is_subset(&[v4("198.18.5.0", 24)], &[v4("198.18.0.0", 16)]));
        assert!(!is_subset(&[v4("198.18.0.0", 15)], &[v4("198.18.0.0", 16)]));
        assert!(!is_subset(&[], &[v4("198.18.0.0", 16)]));
    }

    #[test]
    fn prefixes() {
        let t = prefix("2001:db8::1".parse().unwrap(), 32);
        assert_eq!(t.start_addr, "2001:db8::".parse::<IpAddr>().unwrap());
        assert_eq!(
            t.end_addr,
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"
                .parse::<IpAddr>()
                .unwrap()
        );
        assert_eq!(prefix("198.18.7.9".parse().unwrap(), 0), any(false));
    }
}
