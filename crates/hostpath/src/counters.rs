//! Counters of the host stack: what was answered, learned and sent, and every ignored frame by
//! reason, so `show` and metrics can account for each punted frame (ARP RFC 826, ND RFC 4861,
//! ICMP RFC 792 / RFC 4443).

/// Why a punted frame was ignored (nothing sent, nothing learned): one reason per failed
/// check of RFC 826, RFC 4861 §7.1, RFC 792 / RFC 4443 and RFC 1122 §3.2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IgnoreReason {
    /// Shorter than an Ethernet header.
    EtherTruncated,
    /// 802.1Q/802.1ad tagged: VLANs are not supported.
    VlanTagged,
    /// IEEE 802.3 length field instead of an EtherType.
    NotEthernetII,
    /// Unicast to another MAC address.
    NotOurMac,
    /// EtherType other than ARP, IPv4, IPv6.
    UnsupportedEthertype,
    /// ARP packet truncated or not Ethernet/IPv4 request/reply (RFC 826).
    ArpMalformed,
    /// ARP for another target, and no existing entry to merge (RFC 826).
    ArpNotForUs,
    /// ARP/ND sent from our own MAC (looped back).
    FromSelf,
    /// Someone else claims one of our addresses (RFC 5227 §2.4 conflict / failed DAD).
    AddressConflict,
    /// The port has no address of this family.
    NoAddress,
    /// IPv4 header invalid (version, lengths, checksum; RFC 1122 §3.2.1).
    Ipv4Malformed,
    /// IPv4 destination is not our address (includes broadcast).
    Ipv4NotForUs,
    /// IPv4 fragment: no reassembly on this path.
    Ipv4Fragment,
    /// IPv4 protocol other than ICMP.
    Ipv4UnsupportedProtocol,
    /// ICMP/ICMPv6 message truncated or with a bad checksum.
    IcmpMalformed,
    /// ICMP type other than echo request.
    IcmpUnsupportedType,
    /// Source must never be answered (broadcast, multicast, unspecified, loopback).
    BadSource,
    /// IPv6 header invalid or truncated.
    Ipv6Malformed,
    /// IPv6 destination is none of ours (unicast, solicited-node, all-nodes).
    Ipv6NotForUs,
    /// IPv6 next header other than ICMPv6 (extension headers are not walked).
    Ipv6UnsupportedNextHeader,
    /// ICMPv6 type other than NS, NA, echo request.
    Icmpv6UnsupportedType,
    /// NS/NA failing RFC 4861 §7.1 validation (hop limit, checksum, code, options).
    NdInvalid,
    /// NS for another target, and no existing entry to merge.
    NdNotForUs,
    /// NA for a neighbour we did not ask about, without a link-layer address, or not
    /// overriding a different cached address (RFC 4861 §7.2.5).
    NdUnsolicited,
}

impl IgnoreReason {
    /// Every reason, in counter order (the [`IgnoreReason`] taxonomy of RFC 826/4861/1122 checks).
    pub const ALL: [IgnoreReason; 24] = [
        IgnoreReason::EtherTruncated,
        IgnoreReason::VlanTagged,
        IgnoreReason::NotEthernetII,
        IgnoreReason::NotOurMac,
        IgnoreReason::UnsupportedEthertype,
        IgnoreReason::ArpMalformed,
        IgnoreReason::ArpNotForUs,
        IgnoreReason::FromSelf,
        IgnoreReason::AddressConflict,
        IgnoreReason::NoAddress,
        IgnoreReason::Ipv4Malformed,
        IgnoreReason::Ipv4NotForUs,
        IgnoreReason::Ipv4Fragment,
        IgnoreReason::Ipv4UnsupportedProtocol,
        IgnoreReason::IcmpMalformed,
        IgnoreReason::IcmpUnsupportedType,
        IgnoreReason::BadSource,
        IgnoreReason::Ipv6Malformed,
        IgnoreReason::Ipv6NotForUs,
        IgnoreReason::Ipv6UnsupportedNextHeader,
        IgnoreReason::Icmpv6UnsupportedType,
        IgnoreReason::NdInvalid,
        IgnoreReason::NdNotForUs,
        IgnoreReason::NdUnsolicited,
    ];

    /// Stable snake_case name for logs and metrics labels (design §4 telemetry; reasons per
    /// RFC 826 / RFC 4861 / RFC 1122).
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::EtherTruncated => "ether_truncated",
            IgnoreReason::VlanTagged => "vlan_tagged",
            IgnoreReason::NotEthernetII => "not_ethernet_ii",
            IgnoreReason::NotOurMac => "not_our_mac",
            IgnoreReason::UnsupportedEthertype => "unsupported_ethertype",
            IgnoreReason::ArpMalformed => "arp_malformed",
            IgnoreReason::ArpNotForUs => "arp_not_for_us",
            IgnoreReason::FromSelf => "from_self",
            IgnoreReason::AddressConflict => "address_conflict",
            IgnoreReason::NoAddress => "no_address",
            IgnoreReason::Ipv4Malformed => "ipv4_malformed",
            IgnoreReason::Ipv4NotForUs => "ipv4_not_for_us",
            IgnoreReason::Ipv4Fragment => "ipv4_fragment",
            IgnoreReason::Ipv4UnsupportedProtocol => "ipv4_unsupported_protocol",
            IgnoreReason::IcmpMalformed => "icmp_malformed",
            IgnoreReason::IcmpUnsupportedType => "icmp_unsupported_type",
            IgnoreReason::BadSource => "bad_source",
            IgnoreReason::Ipv6Malformed => "ipv6_malformed",
            IgnoreReason::Ipv6NotForUs => "ipv6_not_for_us",
            IgnoreReason::Ipv6UnsupportedNextHeader => "ipv6_unsupported_next_header",
            IgnoreReason::Icmpv6UnsupportedType => "icmpv6_unsupported_type",
            IgnoreReason::NdInvalid => "nd_invalid",
            IgnoreReason::NdNotForUs => "nd_not_for_us",
            IgnoreReason::NdUnsolicited => "nd_unsolicited",
        }
    }

    fn index(self) -> usize {
        // `ALL` lists the variants in declaration order.
        self as usize
    }
}

/// Host-stack counters for ARP (RFC 826), ND (RFC 4861) and ICMP (RFC 792, RFC 4443);
/// monotonic, owned by the control thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// ARP requests for our addresses answered (RFC 826).
    pub arp_replied: u64,
    /// ARP packets that created or updated a cache entry without an answer.
    pub arp_learned: u64,
    /// ARP requests we sent (resolution, confirmation, retries).
    pub arp_requests_sent: u64,
    /// Neighbor Solicitations for our addresses answered (RFC 4861 §7.2.4).
    pub nd_replied: u64,
    /// ND messages that created or updated a cache entry without an answer.
    pub nd_learned: u64,
    /// Neighbor Solicitations we sent.
    pub nd_solicits_sent: u64,
    /// ICMP echo requests answered (RFC 792).
    pub icmp_echo_replied: u64,
    /// ICMPv6 echo requests answered (RFC 4443 §4).
    pub icmpv6_echo_replied: u64,
    ignored: [u64; IgnoreReason::ALL.len()],
}

impl Counters {
    /// Frames ignored for `reason` (see [`IgnoreReason`] for the RFC check behind each).
    pub fn ignored(&self, reason: IgnoreReason) -> u64 {
        self.ignored[reason.index()]
    }

    /// Frames ignored for any reason (all RFC 826/4861/1122 checks together).
    pub fn ignored_total(&self) -> u64 {
        self.ignored.iter().sum()
    }

    /// Every reason with its count, in a stable order (RFC 826/4861/1122 checks).
    pub fn ignored_by_reason(&self) -> impl Iterator<Item = (IgnoreReason, u64)> + '_ {
        IgnoreReason::ALL.iter().map(|r| (*r, self.ignored(*r)))
    }

    /// Counts one frame ignored for `reason` (RFC 1122 §3.2.2: silent discards, but counted).
    pub fn count_ignored(&mut self, reason: IgnoreReason) {
        let c = &mut self.ignored[reason.index()];
        *c = c.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_variant_in_order() {
        for (i, r) in IgnoreReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut names: Vec<_> = IgnoreReason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), IgnoreReason::ALL.len());
    }

    #[test]
    fn counting() {
        let mut c = Counters::default();
        c.count_ignored(IgnoreReason::NotOurMac);
        c.count_ignored(IgnoreReason::NotOurMac);
        c.count_ignored(IgnoreReason::NdInvalid);
        assert_eq!(c.ignored(IgnoreReason::NotOurMac), 2);
        assert_eq!(c.ignored(IgnoreReason::NdInvalid), 1);
        assert_eq!(c.ignored_total(), 3);
    }
}
