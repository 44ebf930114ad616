//! ECN at IP-in-IP tunnel endpoints, RFC 6040 normal mode.
//!
//! Encapsulation copies the whole DS field (DSCP and ECN) to the outer header (RFC 6040 §4.1,
//! normal mode; RFC 2983 uniform DSCP). Decapsulation combines outer and inner ECN per the table
//! of RFC 6040 §4.2.

/// The 2-bit ECN codepoint (RFC 3168 §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Ecn {
    /// Not ECN-capable transport.
    NotEct = 0b00,
    /// ECN-capable transport (1).
    Ect1 = 0b01,
    /// ECN-capable transport (0).
    Ect0 = 0b10,
    /// Congestion experienced.
    Ce = 0b11,
}

impl Ecn {
    /// The ECN codepoint of a TOS / traffic-class byte.
    #[inline]
    pub const fn from_tos(tos: u8) -> Self {
        match tos & 0b11 {
            0b00 => Ecn::NotEct,
            0b01 => Ecn::Ect1,
            0b10 => Ecn::Ect0,
            _ => Ecn::Ce,
        }
    }
}

/// Outer TOS / traffic class for an inner one: RFC 6040 §4.1 normal mode copies ECN, and the
/// DSCP is copied too (RFC 4301 §5.1.2.1 default).
#[inline]
pub const fn encap_tos(inner_tos: u8) -> u8 {
    inner_tos
}

/// The ECN codepoint to put on the inner header at decapsulation (RFC 6040 §4.2, figure 4), or
/// `None` when the packet must be dropped (outer CE on a Not-ECT inner packet).
#[inline]
pub const fn decap_ecn(inner: Ecn, outer: Ecn) -> Option<Ecn> {
    match (inner, outer) {
        (Ecn::NotEct, Ecn::Ce) => None,
        (Ecn::NotEct, _) => Some(Ecn::NotEct),
        (Ecn::Ce, _) | (_, Ecn::Ce) => Some(Ecn::Ce),
        (Ecn::Ect0, Ecn::Ect1) => Some(Ecn::Ect1),
        (i, _) => Some(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ecn::*;

    #[test]
    fn rfc6040_decap_table() {
        // Rows: inner; columns: outer Not-ECT, ECT(0), ECT(1), CE (RFC 6040 figure 4).
        let table = [
            (NotEct, [Some(NotEct), Some(NotEct), Some(NotEct), None]),
            (Ect0, [Some(Ect0), Some(Ect0), Some(Ect1), Some(Ce)]),
            (Ect1, [Some(Ect1), Some(Ect1), Some(Ect1), Some(Ce)]),
            (Ce, [Some(Ce), Some(Ce), Some(Ce), Some(Ce)]),
        ];
        for (inner, row) in table {
            for (outer, want) in [NotEct, Ect0, Ect1, Ce].into_iter().zip(row) {
                assert_eq!(
                    decap_ecn(inner, outer),
                    want,
                    "inner {inner:?} outer {outer:?}"
                );
            }
        }
    }

    #[test]
    fn encap_copies_ds_field() {
        assert_eq!(encap_tos(0xb9), 0xb9);
        assert_eq!(Ecn::from_tos(0xb9), Ect1);
    }
}
