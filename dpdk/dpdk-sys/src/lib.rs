//! Raw bindings to the system DPDK, generated at build time by bindgen from `wrapper.h`.
//!
//! `static inline` functions (the DPDK fast path) are reached through bindgen's generated
//! static-function wrappers, compiled by `build.rs`; they keep their C names. Everything here
//! is `unsafe`: the safe layer is the `dpdk` crate, the only place allowed to call it.
#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    missing_docs
)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]
#![allow(unsafe_op_in_unsafe_fn)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
