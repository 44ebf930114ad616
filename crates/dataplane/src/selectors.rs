//! The traffic selectors an SA's slot checks per packet (RFC 4301 §4.4.1; inbound §5.2 step 4,
//! outbound §5.1), in the slot itself when they are one IPv4 prefix a side.
//!
//! A tunnel's [`Policy`] is shared by its SAs (an `Arc`) and holds its selectors in two
//! vectors: checking them reads three cache lines outside the slot (the policy and each
//! vector's buffer), which with thousands of SAs are misses on every packet. The common
//! policy, one IPv4 prefix on each side, is also kept inline as network and mask words
//! ([`SlotPolicy::new`]); every other policy is checked on the shared one. Both answer the
//! same for every address (tested).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use espada_config::Prefix;

use crate::slab::Policy;
use crate::tables::selects;

/// An IPv4 prefix as the words a check needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net4 {
    net: u32,
    mask: u32,
}

impl Net4 {
    /// The words of `p` if it is an IPv4 prefix.
    fn of(p: &Prefix) -> Option<Net4> {
        let IpAddr::V4(a) = p.addr else { return None };
        let mask = u32::MAX.checked_shl(32 - u32::from(p.len)).unwrap_or(0);
        Some(Net4 {
            net: u32::from(a) & mask,
            mask,
        })
    }

    #[inline(always)]
    fn contains(self, a: Ipv4Addr) -> bool {
        u32::from(a) & self.mask == self.net
    }
}

/// One IPv4 prefix a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pair4 {
    local: Net4,
    remote: Net4,
}

/// A slot's selectors: the tunnel's shared policy, and its inline form when it has one.
#[derive(Clone, Debug)]
pub struct SlotPolicy {
    pair4: Option<Pair4>,
    shared: Arc<Policy>,
}

impl SlotPolicy {
    /// The selectors of `shared`, inline if it is one IPv4 prefix a side.
    pub fn new(shared: Arc<Policy>) -> SlotPolicy {
        let pair4 = match (&shared.local_ts[..], &shared.remote_ts[..]) {
            ([l], [r]) => Net4::of(l)
                .zip(Net4::of(r))
                .map(|(local, remote)| Pair4 { local, remote }),
            _ => None,
        };
        SlotPolicy { pair4, shared }
    }

    /// The tunnel's shared policy.
    pub fn shared(&self) -> &Arc<Policy> {
        &self.shared
    }

    /// Whether a check reads nothing outside the slot.
    #[inline]
    pub fn is_inline(&self) -> bool {
        self.pair4.is_some()
    }

    /// `ip` is inside a local selector (inner destinations inbound, sources outbound).
    #[inline]
    pub fn local(&self, ip: IpAddr) -> bool {
        inside(self.pair4.map(|p| p.local), &self.shared.local_ts, ip)
    }

    /// `ip` is inside a remote selector (inner sources inbound, destinations outbound).
    #[inline]
    pub fn remote(&self, ip: IpAddr) -> bool {
        inside(self.pair4.map(|p| p.remote), &self.shared.remote_ts, ip)
    }
}

/// `ip` is inside one side's selectors: its inline prefix if the slot has one, else `shared`.
#[inline(always)]
fn inside(inline: Option<Net4>, shared: &[Prefix], ip: IpAddr) -> bool {
    match (inline, ip) {
        (Some(n), IpAddr::V4(a)) => n.contains(a),
        (Some(_), IpAddr::V6(_)) => false,
        (None, _) => selects(shared, ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn prefix(v6: bool, bits: u128, len: u8) -> Prefix {
        let addr = if v6 {
            IpAddr::from(bits.to_be_bytes())
        } else {
            IpAddr::from((bits as u32).to_be_bytes())
        };
        let len = if v6 { len % 129 } else { len % 33 };
        Prefix::new(addr, len).unwrap()
    }

    fn addr(v6: bool, bits: u128) -> IpAddr {
        prefix(v6, bits, 0).addr
    }

    #[test]
    fn only_one_ipv4_prefix_a_side_is_inline() {
        let v4 = prefix(false, 0xc000_0200, 24);
        let v6 = prefix(true, 0x2001_0db8 << 96, 32);
        let cases: [(&str, Vec<Prefix>, Vec<Prefix>, bool); 5] = [
            ("one v4 each", vec![v4], vec![v4], true),
            ("v6 local", vec![v6], vec![v4], false),
            ("v6 remote", vec![v4], vec![v6], false),
            ("two local", vec![v4, v4], vec![v4], false),
            ("none remote", vec![v4], vec![], false),
        ];
        for (name, local_ts, remote_ts, inline) in cases {
            let p = SlotPolicy::new(Arc::new(Policy {
                local_ts,
                remote_ts,
            }));
            assert_eq!(p.is_inline(), inline, "{name}");
        }
    }

    proptest! {
        #[test]
        fn inline_and_shared_selectors_answer_alike(
            sides in proptest::collection::vec(
                // One selector a side, IPv4, often: the inline form.
                proptest::collection::vec(
                    (proptest::bool::weighted(0.25), any::<u128>(), any::<u8>()),
                    1..3,
                ),
                2,
            ),
            probes in proptest::collection::vec((any::<bool>(), any::<u128>(), 0u8..129), 1..16),
        ) {
            let ts = |v: &Vec<(bool, u128, u8)>| -> Vec<Prefix> {
                v.iter().map(|&(v6, b, l)| prefix(v6, b, l)).collect()
            };
            let shared = Arc::new(Policy { local_ts: ts(&sides[0]), remote_ts: ts(&sides[1]) });
            let p = SlotPolicy::new(shared.clone());
            let selectors: Vec<Prefix> =
                shared.local_ts.iter().chain(&shared.remote_ts).copied().collect();
            for (v6, bits, keep) in probes {
                // A random address, and addresses sharing `keep` leading bits with each
                // selector's (inside it when `keep` reaches its length).
                let mut ips = vec![addr(v6, bits)];
                for s in &selectors {
                    ips.push(match s.addr {
                        IpAddr::V4(a) => {
                            let mask = u32::MAX.checked_shr(u32::from(keep)).unwrap_or(0);
                            IpAddr::from(((u32::from(a) & !mask) | (bits as u32 & mask)).to_be_bytes())
                        }
                        IpAddr::V6(a) => {
                            let mask = u128::MAX.checked_shr(u32::from(keep)).unwrap_or(0);
                            IpAddr::from(((u128::from(a) & !mask) | (bits & mask)).to_be_bytes())
                        }
                    });
                }
                for ip in ips {
                    prop_assert_eq!(p.local(ip), selects(&shared.local_ts, ip), "{:?} {}", shared, ip);
                    prop_assert_eq!(p.remote(ip), selects(&shared.remote_ts, ip), "{:?} {}", shared, ip);
                }
            }
        }
    }
}
