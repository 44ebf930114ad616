//! Checks shared by the fuzz targets (`crates/ike/fuzz`) and the stable tests that replay
//! their corpus, so both test the same property.

use crate::crypto::aead::SkAead;

use super::enums::PayloadType;
use super::fragment::Reassembler;
use super::message::Message;
use super::payload::{emit_payloads, parse_payloads};
use super::protect;

/// Parses `data` as a message; if that succeeds, emits it, parses the result and requires
/// the same message and, emitted again, the same octets. Also runs the payload-chain parser
/// over everything after the header with every first payload type of interest.
///
/// Returns whether `data` parsed as a message.
///
/// # Panics
///
/// If the round trip does not hold: that is the bug a fuzzer is after. The parsers
/// themselves must never panic.
pub fn message_round_trip(data: &[u8]) -> bool {
    let body = data.get(28..).unwrap_or(&[]);
    for first in [
        PayloadType::SA,
        PayloadType::NOTIFY,
        PayloadType::SK,
        PayloadType(200),
    ] {
        if let Ok(payloads) = parse_payloads(first, body) {
            let mut out = Vec::new();
            emit_payloads(&payloads, &mut out);
            assert_eq!(
                parse_payloads(first, &out).as_ref(),
                Ok(&payloads),
                "chain round trip"
            );
        }
    }
    let Ok(msg) = Message::parse(data) else {
        return false;
    };
    let bytes = msg.emit();
    let again = Message::parse(&bytes).expect("an emitted message parses");
    assert_eq!(again, msg, "parse(emit(m)) == m");
    assert_eq!(again.emit(), bytes, "emit is stable");
    true
}

/// Feeds `data` to [`protect::open`] and to a [`Reassembler`] under a fixed key; neither may
/// panic. Returns whether either produced a message.
pub fn protected_no_panic(data: &[u8]) -> bool {
    let Ok(aead) = SkAead::new(&[0x5a; 20]) else {
        return false;
    };
    let opened = protect::open(data, &aead).is_ok();
    let mut r = Reassembler::new(8, 4096);
    let reassembled = matches!(r.add(data, &aead), Ok(Some(_)));
    opened || reassembled
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgs::message::tests::ike_sa_init_bytes;

    #[test]
    fn test_checks() {
        assert!(message_round_trip(&ike_sa_init_bytes()));
        assert!(!message_round_trip(&[]));
        assert!(!message_round_trip(&ike_sa_init_bytes()[..100]));
        assert!(!protected_no_panic(&ike_sa_init_bytes()));
    }
}
