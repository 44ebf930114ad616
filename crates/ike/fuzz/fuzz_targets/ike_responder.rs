//! Arbitrary sequences of datagrams, timer runs and the responder's own commands against an
//! espada responder (record format and checks in `crates/ike/tests/fuzz_responder/mod.rs`,
//! shared with the stable corpus replay `crates/ike/tests/fuzz_responder_corpus.rs`): no panic,
//! consistent data-plane actions, half-open IKE SAs within `half_open_limit`, no timer left
//! due after a timer run, well-formed datagrams out.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/fuzz_responder/mod.rs"]
mod fuzz_responder;

fuzz_target!(|data: &[u8]| {
    fuzz_responder::responder_sequence(data);
});
