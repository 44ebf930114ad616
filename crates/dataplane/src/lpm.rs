//! Longest-prefix match for traffic selectors (RFC 4301 §4.4.1 SPD lookup by destination).
//!
//! One hash map per prefix length present, probed from the longest length down: the cost is
//! one hash probe per distinct length in the table (a handful in practice), independent of
//! the number of prefixes.

use std::collections::HashMap;
use std::net::IpAddr;

use espada_config::Prefix;

/// A longest-prefix-match table from IPv4/IPv6 prefixes to values.
#[derive(Clone, Debug)]
pub struct Lpm<V> {
    v4: Vec<(u8, HashMap<u128, V>)>,
    v6: Vec<(u8, HashMap<u128, V>)>,
}

impl<V> Default for Lpm<V> {
    fn default() -> Self {
        Lpm {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }
}

fn key(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u128::from(u32::from(a))),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

fn mask(bits: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let host = u32::from(width - len);
        bits >> host << host
    }
}

impl<V: Copy> Lpm<V> {
    /// Adds or replaces a prefix.
    pub fn insert(&mut self, p: Prefix, v: V) {
        let (v6, bits) = key(p.addr);
        let width = if v6 { 128 } else { 32 };
        let table = if v6 { &mut self.v6 } else { &mut self.v4 };
        let pos = match table.iter().position(|(l, _)| *l <= p.len) {
            Some(i) if table[i].0 == p.len => i,
            Some(i) => {
                table.insert(i, (p.len, HashMap::new()));
                i
            }
            None => {
                table.push((p.len, HashMap::new()));
                table.len() - 1
            }
        };
        table[pos].1.insert(mask(bits, p.len, width), v);
    }

    /// The value of the longest prefix containing `ip`.
    #[inline]
    pub fn lookup(&self, ip: IpAddr) -> Option<V> {
        let (v6, bits) = key(ip);
        let (table, width) = if v6 { (&self.v6, 128) } else { (&self.v4, 32) };
        table
            .iter()
            .find_map(|(len, m)| m.get(&mask(bits, *len, width)).copied())
    }

    /// Number of prefixes.
    pub fn len(&self) -> usize {
        self.v4.iter().chain(&self.v6).map(|(_, m)| m.len()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn longest_prefix_wins_per_family() {
        let mut t = Lpm::default();
        t.insert(p("0.0.0.0/0"), 0);
        t.insert(p("203.0.113.0/24"), 1);
        t.insert(p("203.0.113.128/25"), 2);
        t.insert(p("2001:db8::/32"), 3);
        t.insert(p("2001:db8:b::/48"), 4);
        assert_eq!(t.lookup("203.0.113.5".parse().unwrap()), Some(1));
        assert_eq!(t.lookup("203.0.113.200".parse().unwrap()), Some(2));
        assert_eq!(t.lookup("198.51.100.1".parse().unwrap()), Some(0));
        assert_eq!(t.lookup("2001:db8:b::1".parse().unwrap()), Some(4));
        assert_eq!(t.lookup("2001:db8:c::1".parse().unwrap()), Some(3));
        assert_eq!(t.lookup("2001:db9::1".parse().unwrap()), None);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn matches_a_linear_reference() {
        let prefixes = [
            "198.18.0.0/15",
            "198.18.4.0/22",
            "198.18.4.0/24",
            "198.19.255.0/24",
            "198.18.4.7/32",
        ];
        let mut t = Lpm::default();
        for (i, s) in prefixes.iter().enumerate() {
            t.insert(p(s), i);
        }
        for a in 0..=u16::MAX {
            let ip = IpAddr::from([198, 18 + (a >> 15) as u8, (a >> 7) as u8, (a as u8) & 0x7f]);
            let want = prefixes
                .iter()
                .enumerate()
                .filter(|(_, s)| p(s).contains(ip))
                .max_by_key(|(_, s)| p(s).len)
                .map(|(i, _)| i);
            assert_eq!(t.lookup(ip), want, "{ip}");
        }
    }
}
