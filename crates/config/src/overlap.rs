//! Checks across tunnels: remote traffic selectors that overlap, and negotiated tunnels to one
//! peer address that IKE could not tell apart.
//!
//! The data plane picks a tunnel for a cleartext packet by its destination, longest prefix
//! first, and then checks the source against that tunnel's local selectors (RFC 4301 §5.1): of
//! two tunnels whose remote selectors overlap, the more specific one takes all the traffic of
//! the overlap, whatever the local selectors say. That is an error unless one of the two
//! tunnels says `allow_overlap: true`; then the configuration loads with a warning naming the
//! winner. Two identical prefixes have no winner and are always an error.
//!
//! IKE finds a tunnel's configuration from the peer's address and identities: two negotiated
//! tunnels with the same peer address need different `remote_id`s. Manually keyed tunnels to
//! one peer are fine (their SPIs tell their SAs apart).

use std::collections::HashMap;
use std::net::IpAddr;

use serde_saphyr::Location;

use crate::model::Prefix;
use crate::validate::Ctx;

/// What the checks need of one tunnel, gathered while it is validated.
pub(crate) struct TunnelFacts {
    /// Index in `tunnels`.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// Its remote selectors that parsed, where each was written.
    pub remote_ts: Vec<(Prefix, Location)>,
    /// `allow_overlap: true`.
    pub allow_overlap: bool,
    /// Peer address and where it was written.
    pub peer: Option<(IpAddr, Location)>,
    /// The peer's identity, for a negotiated tunnel (its display form).
    pub remote_id: Option<String>,
}

/// A prefix as a numeric range in one address family: (family, first, last).
fn range(p: &Prefix) -> (u8, u128, u128) {
    let (family, bits, addr) = match p.addr {
        IpAddr::V4(a) => (4, 32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, 128, u128::from(a)),
    };
    let host = bits - u32::from(p.len);
    let span = if host == 128 {
        u128::MAX
    } else {
        (1u128 << host) - 1
    };
    (family, addr, addr + span)
}

/// Reports every pair of overlapping remote selectors of different tunnels (a sweep over the
/// selectors sorted by start, O(n log n): prefixes are nested or disjoint, so a stack of the
/// enclosing ones suffices).
pub(crate) fn remote_selectors(tunnels: &[TunnelFacts], cx: &mut Ctx<'_>) {
    let mut all: Vec<(u8, u128, u128, &TunnelFacts, usize)> = tunnels
        .iter()
        .flat_map(|t| {
            t.remote_ts.iter().enumerate().map(move |(k, (p, _))| {
                let (f, lo, hi) = range(p);
                (f, lo, hi, t, k)
            })
        })
        .collect();
    // By family, start, then the wider prefix first.
    all.sort_by(|a, b| (a.0, a.1, b.2).cmp(&(b.0, b.1, a.2)));
    let mut open: Vec<(u8, u128, u128, &TunnelFacts, usize)> = Vec::new();
    for cur in all {
        while open.last().is_some_and(|o| o.0 != cur.0 || o.2 < cur.1) {
            open.pop();
        }
        if let Some(outer) = open.iter().rev().find(|o| o.3.index != cur.3.index) {
            report(outer.3, outer.4, cur.3, cur.4, cx);
        }
        open.push(cur);
    }
}

fn report(outer: &TunnelFacts, ok: usize, inner: &TunnelFacts, ik: usize, cx: &mut Ctx<'_>) {
    let (op, _) = &outer.remote_ts[ok];
    let (ip, at) = &inner.remote_ts[ik];
    let path = format!("tunnels[{}].remote_ts[{ik}]", inner.index);
    let both = format!(
        "`{}` (tunnels[{}]) and `{}` (tunnels[{}])",
        outer.name, outer.index, inner.name, inner.index
    );
    if op == ip {
        cx.error(
            at,
            &path,
            format!("remote selector {ip} of {both}: the same prefix on two tunnels"),
            "also a remote selector of another tunnel",
            Some(format!(
                "no tunnel would win traffic to {ip}; remove it from one of them \
                 (`allow_overlap` does not apply to identical prefixes)"
            )),
        );
    } else if outer.allow_overlap || inner.allow_overlap {
        cx.warnings.push(format!(
            "remote selectors overlap: {op} of `{}` contains {ip} of `{}`; traffic to {ip} \
             goes to `{}` (longest prefix), the rest of {op} to `{}` (allow_overlap is set)",
            outer.name, inner.name, inner.name, outer.name
        ));
    } else {
        cx.error(
            at,
            &path,
            format!("remote selector {ip} overlaps {op}: {both}"),
            format!("inside {op} of `{}`", outer.name),
            Some(format!(
                "traffic to {ip} would go to `{}` only (longest prefix wins, whatever the local \
                 selectors); make the selectors disjoint, or set `allow_overlap: true` on one \
                 of the tunnels if that is intended",
                inner.name
            )),
        );
    }
}

/// Reports negotiated tunnels that share a peer address and a remote identity.
pub(crate) fn peers(tunnels: &[TunnelFacts], cx: &mut Ctx<'_>) {
    let mut seen: HashMap<(IpAddr, &str), &TunnelFacts> = HashMap::new();
    for t in tunnels {
        let (Some((peer, at)), Some(id)) = (&t.peer, &t.remote_id) else {
            continue;
        };
        if let Some(first) = seen.get(&(*peer, id.as_str())) {
            cx.error(
                at,
                &format!("tunnels[{}].peer", t.index),
                format!(
                    "peer {peer} with remote_id `{id}` is already the peer of `{}` (tunnels[{}])",
                    first.name, first.index
                ),
                "same peer and identity as another tunnel",
                Some(
                    "IKE could not tell the two tunnels apart: give them different `remote_id`s \
                     (the peer must then use those identities), or make them one tunnel with \
                     all the selectors"
                        .into(),
                ),
            );
        } else {
            seen.insert((*peer, id.as_str()), t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_their_prefix() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(range(&p), (4, 0x0a01_0000, 0x0a01_ffff));
        let all: Prefix = "::/0".parse().unwrap();
        assert_eq!(range(&all), (6, 0, u128::MAX));
        let host: Prefix = "192.0.2.7/32".parse().unwrap();
        assert_eq!(range(&host).1, range(&host).2);
    }
}
