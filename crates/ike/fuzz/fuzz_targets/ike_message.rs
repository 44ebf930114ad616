//! Arbitrary bytes as an IKE message: parse must not panic, and whatever parses must emit
//! and parse back to the same message, byte-stably; the protected-message paths (SK open,
//! fragment reassembly) must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    espada_ike::msgs::fuzz_check::message_round_trip(data);
    espada_ike::msgs::fuzz_check::protected_no_panic(data);
});
