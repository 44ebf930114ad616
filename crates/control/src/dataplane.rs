//! What the control plane needs from the data plane: the lifecycle calls of
//! `espada_dataplane::lifecycle`, behind a trait so that the control plane is tested without
//! DPDK (a simulated data plane in `tests/`) and the daemon plugs the real one in.

use std::time::Instant;

use espada_ike::exchange::ChildSaParams;

/// A tunnel of the data plane: the index of its configured tunnel.
pub type TunnelId = u32;

/// A data-plane operation's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// Which lifetime a data-plane SA crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// Soft: rekey now.
    Soft,
    /// Hard: the SA no longer carries traffic.
    Hard,
}

/// A lifetime notice from the data plane (byte or packet limits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DpNotice {
    /// The tunnel.
    pub tunnel: TunnelId,
    /// The SA.
    pub spi: u32,
    /// Inbound (else outbound).
    pub inbound: bool,
    /// Soft or hard.
    pub expiry: Expiry,
}

/// The data plane's side of the make-before-break rules (crates/ike README): each call is
/// acknowledged later through [`DataPlane::poll_ack`]; the control plane holds back every IKE
/// message that would let the peer use a new inbound SA until its install is acknowledged.
pub trait DataPlane {
    /// Reserves a fresh inbound SPI on the worker of `tunnel`; `None` when none is left.
    fn allocate_spi(&mut self, tunnel: TunnelId) -> Option<u32>;
    /// Gives back a reserved SPI that was never installed.
    fn release_spi(&mut self, tunnel: TunnelId, spi: u32);
    /// Installs an inbound SA (its SPI was reserved by [`DataPlane::allocate_spi`]).
    fn install_inbound(&mut self, tunnel: TunnelId, sa: &ChildSaParams) -> Result<Ticket, String>;
    /// Installs an outbound SA as a standby.
    fn install_outbound(&mut self, tunnel: TunnelId, sa: &ChildSaParams) -> Result<Ticket, String>;
    /// Sends on outbound SA `spi` from now on.
    fn switch_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String>;
    /// Keeps decrypting `spi` through the grace period, then makes it a tombstone.
    fn retire_inbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        now: Instant,
    ) -> Result<Ticket, String>;
    /// Removes outbound SA `spi` (the tunnel drops, never sends in clear, if it was active).
    fn remove_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String>;
    /// The peer moved behind its NAT (an authenticated IKE request came from `remote`): the
    /// outbound SA `spi` sends there (to its port when UDP-encapsulated) from now on.
    fn retarget_outbound(
        &mut self,
        tunnel: TunnelId,
        spi: u32,
        remote: std::net::SocketAddr,
    ) -> Result<Ticket, String>;
    /// Packets decrypted so far on inbound SA `spi`, if it is installed.
    fn inbound_packets(&self, tunnel: TunnelId, spi: u32) -> Option<u64>;
    /// Advances the data plane's own machinery.
    fn poll(&mut self, now: Instant);
    /// A completed operation.
    fn poll_ack(&mut self) -> Option<(Ticket, Result<(), String>)>;
    /// A lifetime notice.
    fn poll_notice(&mut self) -> Option<DpNotice>;
}
