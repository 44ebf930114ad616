//! espada-lookup: the data plane's lookup structures, free of DPDK so they are tested and
//! model-checked on their own.
//!
//! * [`spi`]: inbound SPI allocation; an SPI encodes its owner worker and slot (issue 13).
//! * [`sad`]: the inbound SA directory: SPI → tunnel by a direct index and one compare.
//! * [`map`]: a small multimap of 32-bit keys (outbound SPIs, peer fingerprints) → tunnels.
//! * [`route`]: inner destination → tunnel, DIR-24-8 style (as DPDK's `rte_lpm`), updated per
//!   entry while workers read it.
#![forbid(unsafe_code)]

pub mod map;
pub mod route;
pub mod sad;
pub mod spi;
