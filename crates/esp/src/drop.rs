//! Why a packet was dropped: one enum and one table, the single source of truth for per-SA and
//! per-worker counters, metric names, `show drops` and log text (VPP's `counters esp_decrypt`).

/// How bad a drop is, for operators and log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// Expected in normal operation (e.g. a packet outside the replay window after reordering).
    Info,
    /// Points at a misbehaving or misconfigured peer, or an attack.
    Warn,
    /// Points at a local problem (buffer sizing, configuration).
    Error,
}

/// Which SAs can drop a packet for a reason, and so which per-SA counters have a slot for it
/// ([`crate::counters::SaCounters`] keeps only those; the data plane counts every drop per
/// worker as well).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SaScope {
    /// Only decapsulation (RFC 4303 §3.4).
    Inbound,
    /// Only encapsulation (RFC 4303 §3.1).
    Outbound,
    /// Both directions.
    Both,
    /// No SA: only the data plane's lookups.
    DataPlane,
}

impl SaScope {
    /// Whether an SA of this direction (`true` = inbound) can produce the reason.
    pub const fn includes(self, inbound: bool) -> bool {
        match self {
            Self::Both => true,
            Self::Inbound => inbound,
            Self::Outbound => !inbound,
            Self::DataPlane => false,
        }
    }
}

/// Static description of one [`DropReason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropInfo {
    /// Counter and metric name (snake_case, stable).
    pub name: &'static str,
    /// Severity for logs.
    pub severity: Severity,
    /// Which SAs can produce it.
    pub scope: SaScope,
    /// One-line description for operators.
    pub description: &'static str,
}

macro_rules! drop_reasons {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $sev:ident, $scope:ident, $desc:literal), )*) => {
        /// Why a packet was dropped. `#[repr(u8)]`, dense from 0, usable as a counter index.
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $( $(#[$doc])* $variant, )*
        }

        impl DropReason {
            /// Every reason, in discriminant order.
            pub const ALL: &'static [DropReason] = &[ $( DropReason::$variant, )* ];
            /// Number of reasons (size of counter arrays).
            pub const COUNT: usize = Self::ALL.len();
            /// The table of names, severities and descriptions, indexed by discriminant.
            pub const TABLE: &'static [DropInfo] = &[ $( DropInfo {
                name: $name, severity: Severity::$sev, scope: SaScope::$scope, description: $desc,
            }, )* ];
        }
    };
}

drop_reasons! {
    /// Packet shorter than the headers, IV, trailer and ICV it must contain.
    TooShort = ("too_short", Warn, Both, "packet too short for its headers, IV, ESP trailer and ICV"),
    /// Outer IP/UDP header malformed: version, header length, total length or checksum
    /// (RFC 791 §3.1, RFC 8200 §3).
    BadOuterHeader = ("bad_outer_header", Warn, Inbound, "malformed outer IP or UDP header"),
    /// Outer fragment (IPv4, or IPv6 fragment header) that is not reassembled; reassembly of
    /// ESP and UDP happens before the ESP engine (`espada_dataplane::reasm`).
    OuterFragment = ("outer_fragment", Info, Inbound, "outer fragment espada does not reassemble (not ESP or UDP, or malformed): dropped"),
    /// Not an ESP packet (wrong protocol or port, NAT-T keepalive or non-ESP marker).
    NotEsp = ("not_esp", Warn, Inbound, "packet given to the ESP engine is not ESP"),
    /// The packet's SPI is not this SA's SPI.
    SpiMismatch = ("spi_mismatch", Error, Inbound, "SPI of the packet differs from the SA's SPI"),
    /// ICV verification failed (RFC 4303 §3.4.4, RFC 4106).
    AuthFailed = ("auth_failed", Warn, Inbound, "integrity check (ICV) failed"),
    /// Sequence number already received (RFC 4303 §3.4.3).
    Replayed = ("replayed", Warn, Inbound, "sequence number already received (replay)"),
    /// Sequence number older than the replay window (RFC 4303 §3.4.3).
    OutsideWindow = ("outside_window", Info, Inbound, "sequence number left of the replay window"),
    /// Padding bytes not 1, 2, 3, … or pad length beyond the payload (RFC 4303 §2.4).
    BadPadding = ("bad_padding", Warn, Inbound, "ESP padding malformed (RFC 4303 §2.4)"),
    /// Next header is not IPv4 (4) or IPv6 (41) in tunnel mode (RFC 4303 §2.6).
    BadNextHeader = ("bad_next_header", Warn, Inbound, "ESP next header is not IPv4 or IPv6"),
    /// Next header 59: a dummy packet (RFC 4303 §2.6), authenticated and then discarded.
    DummyPacket = ("dummy_packet", Info, Inbound, "dummy packet (next header 59), discarded as RFC 4303 §2.6 says"),
    /// Inner packet malformed: version, header or total length inconsistent with the payload.
    BadInnerHeader = ("bad_inner_header", Warn, Both, "inner IP header malformed or longer than the payload"),
    /// Outer CE on a Not-ECT inner packet (RFC 6040 §4.2).
    EcnCeOnNotEct = ("ecn_ce_on_not_ect", Info, Inbound, "outer ECN CE on Not-ECT inner packet (RFC 6040 §4.2)"),
    /// Outbound sequence number space used up; the SA never wraps (RFC 4303 §3.3.3).
    SeqExhausted = ("seq_exhausted", Error, Outbound, "outbound sequence number exhausted (SA must be rekeyed)"),
    /// Hard byte or packet lifetime reached (RFC 4301 §4.4.2.1).
    LifetimeExpired = ("lifetime_expired", Info, Both, "hard lifetime reached, SA refuses traffic"),
    /// Not enough headroom in the buffer for the outer headers.
    NoHeadroom = ("no_headroom", Error, Outbound, "buffer headroom too small for outer headers"),
    /// Not enough tailroom in the buffer for the ESP trailer and ICV.
    NoTailroom = ("no_tailroom", Error, Outbound, "buffer tailroom too small for ESP trailer and ICV"),
    /// The crypto backend refused the operation (input longer than AES-GCM allows).
    CryptoError = ("crypto_error", Error, Outbound, "crypto backend refused the operation"),
    /// The packet would exceed the maximum IP packet length after encapsulation.
    TooBig = ("too_big", Warn, Outbound, "packet too big to encapsulate (IP length limit)"),
    /// No SA for the traffic (used by the data plane's outbound lookup).
    NoSa = ("no_sa", Info, DataPlane, "no SA installed for this traffic"),
    /// Inbound SPI matches no SA (used by the data plane's inbound lookup).
    UnknownSpi = ("unknown_spi", Warn, DataPlane, "inbound SPI matches no SA"),
}

impl DropReason {
    /// The table entry for this reason.
    pub const fn info(self) -> &'static DropInfo {
        &Self::TABLE[self as usize]
    }
    /// Stable snake_case name.
    pub const fn name(self) -> &'static str {
        self.info().name
    }
    /// Operator description.
    pub const fn description(self) -> &'static str {
        self.info().description
    }
    /// Index into counter arrays (the discriminant).
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl core::fmt::Display for DropReason {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

const _: () = assert!(DropReason::ALL.len() == DropReason::TABLE.len());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_dense_and_names_unique() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut names: Vec<_> = DropReason::TABLE.iter().map(|i| i.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DropReason::COUNT);
        assert_eq!(DropReason::AuthFailed.to_string(), "auth_failed");
    }
}
