//! The espada appliance: turns a validated site configuration into a running data plane
//! (EAL, ports, workers on their lcores) and runs the control thread beside it.
//!
//! - [`plan`]: the pure part — EAL arguments, queue layout, SAs and the first table version
//!   from a [`espada_config::SiteConfig`]; tested without DPDK.
//! - [`appliance`]: bring-up and shutdown on DPDK.
//! - [`control`]: the control thread's loop (punts, host stack, IKE through
//!   `espada_control`, events, the data plane's lifecycle, admin API).
//! - [`ike_dp`]: the data plane as `espada_control` sees it (lifecycle calls, SAs built from
//!   what IKE negotiated).
//! - [`ike_io`]: IKE datagrams in and out of Ethernet frames.
//! - [`unknown_spi`]: the per-source rate-limited unknown-SPI log and its recent-events list.
//! - [`views`]: the `show` views built from counters and tables.
#![forbid(unsafe_code)]

pub mod appliance;
pub mod control;
pub mod ike_dp;
pub mod ike_io;
pub mod plan;
pub mod unknown_spi;
pub mod views;
