//! IPv6 Neighbor Discovery address resolution (RFC 4861): Neighbor Solicitation and Neighbor
//! Advertisement parsing with the §7.1.1/§7.1.2 validity checks, NA answers (§7.2.4) and NS
//! requests (§7.2.2) with link-layer address options (§4.6.1, RFC 2464 §8).

use espada_wire::checksum::{self, PROTO_ICMPV6};
use espada_wire::ether::{self, ETHERTYPE_IPV6, EthernetHeader, MacAddr};
use espada_wire::ipv6::{self, Ipv6Packet, Ipv6Repr};
use std::net::Ipv6Addr;

/// ICMPv6 type of a Neighbor Solicitation (RFC 4861 §4.3).
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Option type of the Source Link-Layer Address option (RFC 4861 §4.6.1).
pub const OPT_SOURCE_LL: u8 = 1;
/// Option type of the Target Link-Layer Address option (RFC 4861 §4.6.1).
pub const OPT_TARGET_LL: u8 = 2;
/// Hop limit that every ND message must be sent and received with (RFC 4861 §7.1).
pub const ND_HOP_LIMIT: u8 = 255;
/// Length of an NS or NA without options: type, code, checksum, 4 bytes, target (RFC 4861
/// §4.3/§4.4).
pub const MESSAGE_LEN: usize = 24;

/// Neighbor Advertisement flags (RFC 4861 §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NaFlags {
    /// R: the sender is a router.
    pub router: bool,
    /// S: sent in response to a Neighbor Solicitation.
    pub solicited: bool,
    /// O: the advertisement should override an existing cache entry.
    pub override_: bool,
}

impl NaFlags {
    fn to_byte(self) -> u8 {
        (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_) << 5)
    }

    fn from_byte(b: u8) -> Self {
        NaFlags {
            router: b & 0x80 != 0,
            solicited: b & 0x40 != 0,
            override_: b & 0x20 != 0,
        }
    }
}

/// A validated Neighbor Solicitation (RFC 4861 §4.3) with its IPv6 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborSolicit {
    /// IPv6 source (unspecified for duplicate address detection).
    pub src: Ipv6Addr,
    /// IPv6 destination (solicited-node multicast or the target itself).
    pub dst: Ipv6Addr,
    /// Target address being resolved.
    pub target: Ipv6Addr,
    /// Source link-layer address option, if present.
    pub source_ll: Option<MacAddr>,
}

/// A validated Neighbor Advertisement (RFC 4861 §4.4) with its IPv6 addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborAdvert {
    /// IPv6 source.
    pub src: Ipv6Addr,
    /// IPv6 destination.
    pub dst: Ipv6Addr,
    /// R/S/O flags.
    pub flags: NaFlags,
    /// Target address whose link-layer address is advertised.
    pub target: Ipv6Addr,
    /// Target link-layer address option, if present.
    pub target_ll: Option<MacAddr>,
}

/// A Neighbor Discovery message used for address resolution (RFC 4861 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdiscMessage {
    /// Neighbor Solicitation.
    Solicit(NeighborSolicit),
    /// Neighbor Advertisement.
    Advert(NeighborAdvert),
}

/// Why an IPv6 packet is not a valid NS/NA (RFC 4861 §7.1.1, §7.1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NdiscError {
    /// The fixed header's next header is not ICMPv6 (extension headers are not walked).
    NotIcmpv6,
    /// An ICMPv6 type other than NS/NA.
    NotNdisc(u8),
    /// ICMPv6 length below 24 bytes.
    Truncated,
    /// IP hop limit is not 255: the packet may come from off-link.
    HopLimit(u8),
    /// ICMPv6 checksum does not verify.
    Checksum,
    /// ICMPv6 code is not 0.
    Code(u8),
    /// Target address is multicast.
    MulticastTarget,
    /// An option has length 0, runs past the end, or a link-layer option is not 8 bytes.
    BadOption,
    /// NS from the unspecified address not sent to a solicited-node address, or with a source
    /// link-layer address option.
    BadDad,
    /// NA to a multicast destination with the Solicited flag set.
    SolicitedToMulticast,
}

/// Parses and validates an NS or NA carried directly (no extension headers) in `ip`,
/// applying every receive check of RFC 4861 §7.1.1 (NS) and §7.1.2 (NA).
pub fn parse(ip: &Ipv6Packet<&'_ [u8]>) -> Result<NdiscMessage, NdiscError> {
    if ip.next_header() != PROTO_ICMPV6 {
        return Err(NdiscError::NotIcmpv6);
    }
    let msg = ip.payload();
    let ty = *msg.first().ok_or(NdiscError::Truncated)?;
    if ty != TYPE_NEIGHBOR_SOLICIT && ty != TYPE_NEIGHBOR_ADVERT {
        return Err(NdiscError::NotNdisc(ty));
    }
    if ip.hop_limit() != ND_HOP_LIMIT {
        return Err(NdiscError::HopLimit(ip.hop_limit()));
    }
    if msg.len() < MESSAGE_LEN {
        return Err(NdiscError::Truncated);
    }
    if !checksum::verify_icmpv6(ip.src(), ip.dst(), msg) {
        return Err(NdiscError::Checksum);
    }
    if msg[1] != 0 {
        return Err(NdiscError::Code(msg[1]));
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&msg[8..24]);
    let target = Ipv6Addr::from(t);
    if target.is_multicast() {
        return Err(NdiscError::MulticastTarget);
    }
    let (source_ll, target_ll) = parse_options(&msg[MESSAGE_LEN..])?;
    if ty == TYPE_NEIGHBOR_SOLICIT {
        if ip.src().is_unspecified()
            && (ip.dst() != ipv6::solicited_node(target) || source_ll.is_some())
        {
            return Err(NdiscError::BadDad);
        }
        Ok(NdiscMessage::Solicit(NeighborSolicit {
            src: ip.src(),
            dst: ip.dst(),
            target,
            source_ll,
        }))
    } else {
        let flags = NaFlags::from_byte(msg[4]);
        if ip.dst().is_multicast() && flags.solicited {
            return Err(NdiscError::SolicitedToMulticast);
        }
        Ok(NdiscMessage::Advert(NeighborAdvert {
            src: ip.src(),
            dst: ip.dst(),
            flags,
            target,
            target_ll,
        }))
    }
}

/// Walks ND options (RFC 4861 §4.6): each must have a non-zero length and fit; unknown options
/// are skipped (§4.6 "silently ignore"). Returns the first source and target LL addresses.
fn parse_options(mut opts: &[u8]) -> Result<(Option<MacAddr>, Option<MacAddr>), NdiscError> {
    let (mut sll, mut tll) = (None, None);
    while !opts.is_empty() {
        let [ty, len, ..] = *opts else {
            return Err(NdiscError::BadOption);
        };
        let bytes = usize::from(len) * 8;
        if bytes == 0 || bytes > opts.len() {
            return Err(NdiscError::BadOption);
        }
        let (opt, rest) = opts.split_at(bytes);
        if ty == OPT_SOURCE_LL || ty == OPT_TARGET_LL {
            // RFC 2464 §8: for Ethernet the option is exactly one 8-byte unit.
            if bytes != 8 {
                return Err(NdiscError::BadOption);
            }
            let mut m = [0u8; 6];
            m.copy_from_slice(&opt[2..8]);
            let slot = if ty == OPT_SOURCE_LL {
                &mut sll
            } else {
                &mut tll
            };
            slot.get_or_insert(MacAddr(m));
        }
        opts = rest;
    }
    Ok((sll, tll))
}

/// The ICMPv6 part of an NS/NA we send: type, flags byte, target and the one LL option type.
struct NdBody {
    ty: u8,
    flags: u8,
    target: Ipv6Addr,
    option: u8,
}

/// Builds an ICMPv6 ND frame: Ethernet + IPv6 (hop limit 255) + message with one LL option and
/// a correct checksum (RFC 4861 §4.3/§4.4, §4.6.1; RFC 4443 §2.3).
fn build(
    eth_dst: MacAddr,
    our_mac: MacAddr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    body: NdBody,
) -> Vec<u8> {
    let NdBody {
        ty,
        flags,
        target,
        option,
    } = body;
    let mut msg = [0u8; MESSAGE_LEN + 8];
    msg[0] = ty;
    msg[4] = flags;
    msg[8..24].copy_from_slice(&target.octets());
    msg[24] = option;
    msg[25] = 1;
    msg[26..32].copy_from_slice(&our_mac.0);
    // The message is 32 bytes, so the checksum always fits.
    let c = checksum::icmpv6(src, dst, &msg).unwrap_or(0);
    msg[2..4].copy_from_slice(&c.to_be_bytes());

    let mut f = Vec::with_capacity(ether::HEADER_LEN + ipv6::HEADER_LEN + msg.len());
    EthernetHeader {
        dst: eth_dst,
        src: our_mac,
        ethertype: ETHERTYPE_IPV6,
    }
    .emit(&mut f);
    let _fits = Ipv6Repr {
        traffic_class: 0,
        next_header: PROTO_ICMPV6,
        hop_limit: ND_HOP_LIMIT,
        src,
        dst,
    }
    .emit(msg.len(), &mut f);
    f.extend_from_slice(&msg);
    f
}

/// Builds a Neighbor Advertisement for `target` (one of our addresses) at `our_mac`, from
/// `target` to `dst` at Ethernet address `eth_dst`, with a Target Link-Layer Address option
/// (RFC 4861 §4.4, §7.2.4, §7.2.6 for unsolicited advertisements to all-nodes).
pub fn build_advert(
    our_mac: MacAddr,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    eth_dst: MacAddr,
    flags: NaFlags,
) -> Vec<u8> {
    build(
        eth_dst,
        our_mac,
        target,
        dst,
        NdBody {
            ty: TYPE_NEIGHBOR_ADVERT,
            flags: flags.to_byte(),
            target,
            option: OPT_TARGET_LL,
        },
    )
}

/// The answer to `ns` for its target, one of our addresses (RFC 4861 §7.2.4): Override set,
/// Router as given. A solicitation from the unspecified address (DAD) is answered to all-nodes
/// with Solicited clear; otherwise the NA is unicast to the solicitation's source, at its
/// Source Link-Layer Address or, when the option is absent (a unicast NUD probe), at
/// `frame_src`, the Ethernet source of the NS.
pub fn build_advert_reply(
    ns: &NeighborSolicit,
    frame_src: MacAddr,
    our_mac: MacAddr,
    router: bool,
) -> Vec<u8> {
    if ns.src.is_unspecified() {
        let flags = NaFlags {
            router,
            solicited: false,
            override_: true,
        };
        return build_advert(
            our_mac,
            ns.target,
            ipv6::ALL_NODES,
            MacAddr::ipv6_multicast(ipv6::ALL_NODES),
            flags,
        );
    }
    let flags = NaFlags {
        router,
        solicited: true,
        override_: true,
    };
    build_advert(
        our_mac,
        ns.target,
        ns.src,
        ns.source_ll.unwrap_or(frame_src),
        flags,
    )
}

/// A Neighbor Solicitation for `target` from `our_ip` with a Source Link-Layer Address option
/// (RFC 4861 §7.2.2). With `unicast: None` it goes to the target's solicited-node multicast
/// address `ff02::1:ffXX:XXXX` and MAC `33:33:ff:XX:XX:XX` (RFC 4291 §2.7.1, RFC 2464 §7);
/// with `Some(mac)` it is unicast to `target` at `mac` (reachability confirmation, §7.3.3).
pub fn build_solicit(
    our_mac: MacAddr,
    our_ip: Ipv6Addr,
    target: Ipv6Addr,
    unicast: Option<MacAddr>,
) -> Vec<u8> {
    let (dst, eth_dst) = match unicast {
        Some(mac) => (target, mac),
        None => {
            let group = ipv6::solicited_node(target);
            (group, MacAddr::ipv6_multicast(group))
        }
    };
    build(
        eth_dst,
        our_mac,
        our_ip,
        dst,
        NdBody {
            ty: TYPE_NEIGHBOR_SOLICIT,
            flags: 0,
            target,
            option: OPT_SOURCE_LL,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

    fn ip6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn parse_frame(f: &[u8]) -> Result<NdiscMessage, NdiscError> {
        let ip = Ipv6Packet::parse(&f[14..]).unwrap();
        parse(&ip)
    }

    #[test]
    fn solicit_round_trip_multicast() {
        let f = build_solicit(MAC, ip6("2001:db8::1"), ip6("2001:db8::2"), None);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
        let NdiscMessage::Solicit(ns) = parse_frame(&f).unwrap() else {
            panic!("not an NS");
        };
        assert_eq!(ns.dst, ip6("ff02::1:ff00:2"));
        assert_eq!(ns.target, ip6("2001:db8::2"));
        assert_eq!(ns.source_ll, Some(MAC));
    }

    #[test]
    fn validity_checks() {
        let f = build_solicit(MAC, ip6("2001:db8::1"), ip6("2001:db8::2"), None);
        let mut x = f.clone();
        x[14 + 7] = 254;
        assert_eq!(parse_frame(&x), Err(NdiscError::HopLimit(254)));
        let mut x = f.clone();
        x[14 + 40 + 10] ^= 1;
        assert_eq!(parse_frame(&x), Err(NdiscError::Checksum));
        // Option length 0 (with checksum fixed up) is rejected.
        let mut x = f.clone();
        x[14 + 40 + 25] = 0;
        let ip = Ipv6Packet::parse(&x[14..]).unwrap();
        let c = checksum::icmpv6(ip.src(), ip.dst(), ip.payload()).unwrap();
        x[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse_frame(&x), Err(NdiscError::BadOption));
    }

    #[test]
    fn dad_answer_goes_to_all_nodes_unsolicited() {
        let ns = NeighborSolicit {
            src: Ipv6Addr::UNSPECIFIED,
            dst: ip6("ff02::1:ff00:1"),
            target: ip6("2001:db8::1"),
            source_ll: None,
        };
        let f = build_advert_reply(&ns, MacAddr([2, 0, 0, 0, 0, 9]), MAC, true);
        assert_eq!(&f[0..6], &[0x33, 0x33, 0, 0, 0, 1]);
        let NdiscMessage::Advert(na) = parse_frame(&f).unwrap() else {
            panic!("not an NA");
        };
        assert_eq!(na.dst, ipv6::ALL_NODES);
        assert!(!na.flags.solicited && na.flags.override_ && na.flags.router);
        assert_eq!(na.target_ll, Some(MAC));
    }
}
