//! The Traffic Selector payloads TSi and TSr (RFC 7296 §3.13).
//!
//! ```text
//! | Number of TSs |                 RESERVED                      |
//! ~                       <Traffic Selectors>                     ~
//! Traffic Selector (§3.13.1):
//! |   TS Type     |IP Protocol ID*|       Selector Length         |
//! |           Start Port*         |           End Port*           |
//! ~                         Starting Address*                     ~
//! ~                         Ending Address*                       ~
//! ```
//!
//! Only the address-range types of RFC 7296 are understood: a selector of another type
//! (e.g. TS_SECLABEL, RFC 9478) makes the payload InvalidSyntax, so the exchange answers
//! INVALID_SYNTAX rather than narrowing over selectors it cannot read. The selector length
//! must be 16 (IPv4) or 40 (IPv6) and the count must match the selectors present.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{Reader, Writer};
use super::enums::TsType;
use super::error::ParseError;

/// One traffic selector: an address range, a port range and a protocol (§3.13.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE, matching the addresses' family.
    pub ts_type: TsType,
    /// IP protocol, 0 for any.
    pub ip_protocol: u8,
    /// First port (0 for any; for ICMP the type and code, §3.13.1).
    pub start_port: u16,
    /// Last port (65535 for any).
    pub end_port: u16,
    /// First address.
    pub start_addr: IpAddr,
    /// Last address, of the same family.
    pub end_addr: IpAddr,
}

/// The selectors of a TSi or TSr payload, in order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct TrafficSelectors(pub Vec<TrafficSelector>);

impl TrafficSelector {
    /// The selector from `start_addr` to `end_addr` with the type of their family.
    /// `None` if the families differ.
    pub fn range(
        ip_protocol: u8,
        start_port: u16,
        end_port: u16,
        start_addr: IpAddr,
        end_addr: IpAddr,
    ) -> Option<Self> {
        let ts_type = match (start_addr, end_addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) => TsType::TS_IPV4_ADDR_RANGE,
            (IpAddr::V6(_), IpAddr::V6(_)) => TsType::TS_IPV6_ADDR_RANGE,
            _ => return None,
        };
        Some(TrafficSelector {
            ts_type,
            ip_protocol,
            start_port,
            end_port,
            start_addr,
            end_addr,
        })
    }

    fn parse(r: &mut Reader<'_>) -> Result<TrafficSelector, ParseError> {
        let ts_type = TsType(r.u8()?);
        let ip_protocol = r.u8()?;
        let len = usize::from(r.u16()?);
        let want = match ts_type {
            TsType::TS_IPV4_ADDR_RANGE => 16,
            TsType::TS_IPV6_ADDR_RANGE => 40,
            _ => return Err(ParseError::InvalidSyntax("traffic selector type")),
        };
        if len != want {
            return Err(ParseError::InvalidSyntax("traffic selector length"));
        }
        let start_port = r.u16()?;
        let end_port = r.u16()?;
        let (start_addr, end_addr) = if ts_type == TsType::TS_IPV4_ADDR_RANGE {
            let s: [u8; 4] = r.array()?;
            let e: [u8; 4] = r.array()?;
            (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(e)))
        } else {
            let s: [u8; 16] = r.array()?;
            let e: [u8; 16] = r.array()?;
            (IpAddr::V6(Ipv6Addr::from(s)), IpAddr::V6(Ipv6Addr::from(e)))
        };
        Ok(TrafficSelector {
            ts_type,
            ip_protocol,
            start_port,
            end_port,
            start_addr,
            end_addr,
        })
    }

    fn emit(&self, w: &mut Writer<'_>) {
        let start = w.position();
        w.u8(self.ts_type.0);
        w.u8(self.ip_protocol);
        let len = w.placeholder_u16(start);
        w.u16(self.start_port);
        w.u16(self.end_port);
        for a in [self.start_addr, self.end_addr] {
            match a {
                IpAddr::V4(a) => w.bytes(&a.octets()),
                IpAddr::V6(a) => w.bytes(&a.octets()),
            }
        }
        w.fill_u16(len);
    }
}

impl TrafficSelectors {
    /// Parses the body of a TSi or TSr payload.
    pub fn parse(body: &[u8]) -> Result<TrafficSelectors, ParseError> {
        let mut r = Reader::new(body);
        let count = r.u8()?;
        let _reserved = r.take(3)?;
        let mut v = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            v.push(TrafficSelector::parse(&mut r)?);
        }
        r.finish("traffic selector count")?;
        Ok(TrafficSelectors(v))
    }

    /// Appends the body of the TS payload. Each selector is written with its own type and
    /// addresses (build them with [`TrafficSelector::range`] to keep those consistent).
    ///
    /// # Panics
    ///
    /// If there are more than 255 selectors.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.u8(u8::try_from(self.0.len()).unwrap_or_else(|_| panic!("over 255 selectors")));
        w.bytes(&[0, 0, 0]);
        for ts in &self.0 {
            ts.emit(&mut w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static BYTES: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, // two selectors
        0x07, 0x00, 0x00, 0x10, // IPv4 range, any protocol, length 16
        0x00, 0x00, 0xff, 0xff, // ports 0-65535
        198, 18, 0, 0, 198, 18, 255, 255, // 198.18.0.0-198.18.255.255
        0x08, 0x11, 0x00, 0x28, // IPv6 range, UDP, length 40
        0x01, 0xf4, 0x01, 0xf4, // port 500
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // 2001:db8::
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];

    fn selectors() -> TrafficSelectors {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        TrafficSelectors(vec![
            TrafficSelector::range(
                0,
                0,
                65535,
                IpAddr::V4(Ipv4Addr::new(198, 18, 0, 0)),
                IpAddr::V4(Ipv4Addr::new(198, 18, 255, 255)),
            )
            .unwrap(),
            TrafficSelector::range(
                17,
                500,
                500,
                v6("2001:db8::"),
                v6("2001:db8::ffff:ffff:ffff:ffff"),
            )
            .unwrap(),
        ])
    }

    #[test]
    fn test_parse() {
        assert_eq!(TrafficSelectors::parse(&BYTES).unwrap(), selectors());
    }

    #[test]
    fn test_emit() {
        let mut out = Vec::new();
        selectors().emit(&mut out);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn test_check_len() {
        for n in 0..BYTES.len() {
            assert!(TrafficSelectors::parse(&BYTES[..n]).is_err(), "{n} octets");
        }
        let mut long = BYTES.to_vec();
        long.push(0);
        assert!(TrafficSelectors::parse(&long).is_err());
        // (offset, value): count, type, length each wrong.
        let table: &[(usize, u8)] = &[(0, 1), (0, 3), (4, 8), (4, 10), (7, 0x28), (23, 0x10)];
        for &(at, v) in table {
            let mut b = BYTES;
            b[at] = v;
            assert!(
                matches!(
                    TrafficSelectors::parse(&b),
                    Err(ParseError::InvalidSyntax(_))
                ),
                "octet {at} = {v}"
            );
        }
    }

    #[test]
    fn test_range_families() {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(TrafficSelector::range(0, 0, 0, v4, v6), None);
        assert_eq!(
            TrafficSelector::range(0, 0, 0, v6, v6).unwrap().ts_type,
            TsType::TS_IPV6_ADDR_RANGE
        );
    }
}
