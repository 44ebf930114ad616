//! Per-worker SA storage and the commands that change it.
//!
//! Every SA lives in exactly one worker's slab; only that worker touches its mutable state
//! (sequence number, replay window, lifetime, counters). The control thread installs and
//! removes SAs by [`Command`]s over an SPSC ring ([`crate::lifecycle`] sends them); a removed
//! SA is sent back in a [`Reply`] so that its memory (and key material, zeroized on drop) is
//! freed on the control thread, never on a worker. A slot is filled before any shared
//! structure refers to it and emptied only after none does.
//!
//! Each slot holds, next to the SA, what a worker needs to forward its packets without another
//! lookup: the tunnel, the traffic selectors to check (RFC 4301 §5.2 step 4 inbound, §5.1
//! outbound), and for outbound SAs the next hop whose MAC goes into the Ethernet header.

use std::net::IpAddr;
use std::sync::Arc;

use espada_config::Prefix;
use espada_esp::keys::DEFAULT_CACHE_LINES;
use espada_esp::{InboundSa, KeyCache, OutboundSa};

use crate::selectors::SlotPolicy;
use crate::tables::TunnelId;

/// Capacity of the command and reply rings of each worker. The control thread never has more
/// commands in flight to one worker than this, so the reply ring cannot overflow.
pub const COMMAND_RING: usize = 1024;

/// Slots per direction a worker's slab is built with by default (8 octets each when empty).
pub const SLAB_SLOTS: u32 = 65_536;

/// A tunnel's traffic selectors (RFC 4301 §4.4.1), shared by its SAs. Built and dropped on the
/// control thread (the control thread keeps a reference for as long as any SA has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Local selectors (inner sources outbound, inner destinations inbound).
    pub local_ts: Vec<Prefix>,
    /// Remote selectors (inner destinations outbound, inner sources inbound).
    pub remote_ts: Vec<Prefix>,
}

/// An inbound SA and what forwarding its packets needs. Cache-line aligned, the SA's hot state
/// first; five cache lines with the replay bitmap of windows up to 1024.
#[repr(C, align(64))]
pub struct InboundSlot {
    /// The SA.
    pub sa: InboundSa,
    /// Its tunnel.
    pub tunnel: TunnelId,
    /// Selectors decrypted packets must match.
    pub policy: SlotPolicy,
    /// A hard-expiry notice was sent.
    pub hard_noticed: bool,
}

/// An outbound SA and what forwarding its packets needs. Cache-line aligned, the SA's hot state
/// first; four cache lines.
#[repr(C, align(64))]
pub struct OutboundSlot {
    /// The SA.
    pub sa: OutboundSa,
    /// Its tunnel.
    pub tunnel: TunnelId,
    /// Selectors cleartext packets must match.
    pub policy: SlotPolicy,
    /// The peer (outer destination).
    pub peer: IpAddr,
    /// Next hop towards the peer on the outside port ([`crate::hops`]).
    pub hop: u32,
    /// A hard-expiry notice was sent.
    pub hard_noticed: bool,
}

/// Bytes of an [`InboundSlot`] (the figure behind docs/performance.md, "Bytes per SA").
pub const INBOUND_SLOT_BYTES: usize = 320;
/// Bytes of an [`OutboundSlot`].
pub const OUTBOUND_SLOT_BYTES: usize = 256;
const _: () = assert!(size_of::<InboundSlot>() <= INBOUND_SLOT_BYTES);
const _: () = assert!(size_of::<OutboundSlot>() <= OUTBOUND_SLOT_BYTES);

impl InboundSlot {
    /// A slot for `sa` of `tunnel`.
    pub fn new(sa: InboundSa, tunnel: TunnelId, policy: Arc<Policy>) -> Box<InboundSlot> {
        Box::new(InboundSlot {
            sa,
            tunnel,
            policy: SlotPolicy::new(policy),
            hard_noticed: false,
        })
    }
}

impl OutboundSlot {
    /// A slot for `sa` of `tunnel`, sent towards `peer` through next hop `hop`.
    pub fn new(
        sa: OutboundSa,
        tunnel: TunnelId,
        policy: Arc<Policy>,
        peer: IpAddr,
        hop: u32,
    ) -> Box<OutboundSlot> {
        Box::new(OutboundSlot {
            sa,
            tunnel,
            policy: SlotPolicy::new(policy),
            peer,
            hop,
            hard_noticed: false,
        })
    }
}

/// A change to a worker's slab.
pub enum Command {
    /// Put an inbound SA into `slot`.
    InstallInbound {
        /// Slot index.
        slot: u32,
        /// The SA.
        entry: Box<InboundSlot>,
    },
    /// Put an outbound SA into `slot`.
    InstallOutbound {
        /// Slot index.
        slot: u32,
        /// The SA.
        entry: Box<OutboundSlot>,
    },
    /// Take the inbound SA with `spi` out of `slot`.
    RemoveInbound {
        /// Slot index.
        slot: u32,
        /// The SPI it must hold.
        spi: u32,
    },
    /// Take the outbound SA with `spi` out of `slot`.
    RemoveOutbound {
        /// Slot index.
        slot: u32,
        /// The SPI it must hold.
        spi: u32,
    },
    /// The outbound SA with `spi` in `slot` sends to `peer` (UDP `port` when encapsulated)
    /// through next hop `hop` from the next packet on: the peer moved behind its NAT.
    RetargetOutbound {
        /// Slot index.
        slot: u32,
        /// The SPI it must hold.
        spi: u32,
        /// The peer's new address.
        peer: IpAddr,
        /// Its new UDP port (ignored without UDP encapsulation).
        port: Option<u16>,
        /// Next hop towards it.
        hop: u32,
    },
}

/// A worker's answer to a [`Command`], one per command, in order.
pub enum Reply {
    /// The slot is filled.
    Installed {
        /// Inbound (else outbound).
        inbound: bool,
        /// Slot index.
        slot: u32,
        /// The SA's SPI.
        spi: u32,
    },
    /// The slot is occupied or beyond the slab's capacity: nothing was changed, and the SA
    /// comes back to be dropped by the control thread.
    RefusedInbound {
        /// Slot index.
        slot: u32,
        /// The SA that was not installed.
        entry: Box<InboundSlot>,
    },
    /// As [`Reply::RefusedInbound`], for an outbound SA.
    RefusedOutbound {
        /// Slot index.
        slot: u32,
        /// The SA that was not installed.
        entry: Box<OutboundSlot>,
    },
    /// The inbound SA taken out (`None`: the slot did not hold that SPI), to be dropped by the
    /// control thread.
    RemovedInbound {
        /// Slot index.
        slot: u32,
        /// The SPI asked for.
        spi: u32,
        /// The SA.
        entry: Option<Box<InboundSlot>>,
    },
    /// A [`Command::RetargetOutbound`] was applied (false: the slot did not hold that SPI,
    /// or the address family differs).
    Retargeted {
        /// The SPI asked for.
        spi: u32,
        /// Applied.
        ok: bool,
    },
    /// As [`Reply::RemovedInbound`], for an outbound SA.
    RemovedOutbound {
        /// Slot index.
        slot: u32,
        /// The SPI asked for.
        spi: u32,
        /// The SA.
        entry: Option<Box<OutboundSlot>>,
    },
}

/// The SAs one worker owns and the expanded key schedules of those it is busy with
/// ([`KeyCache`]). The slot vectors and the cache are sized when the slab is built (on the
/// control thread) and never grow, so a worker never allocates or frees SA storage; an occupied
/// slot is never overwritten. An SA taken out has its cached schedule wiped here, on the worker,
/// before it goes back to the control thread.
pub struct Slab {
    inbound: Vec<Option<Box<InboundSlot>>>,
    outbound: Vec<Option<Box<OutboundSlot>>>,
    /// Occupied slots (inbound, outbound).
    held: (usize, usize),
    keys: KeyCache,
}

impl Default for Slab {
    /// A slab of [`SLAB_SLOTS`] slots per direction.
    fn default() -> Self {
        Slab::with_capacity(SLAB_SLOTS)
    }
}

/// Fills an empty slot; gives `x` back when the slot is occupied or does not exist.
fn put<T>(v: &mut [Option<T>], slot: u32, x: T) -> Result<(), T> {
    match v.get_mut(slot as usize) {
        Some(s @ None) => {
            *s = Some(x);
            Ok(())
        }
        _ => Err(x),
    }
}

/// Empties a slot when it holds the SA with `spi`.
fn take<T>(v: &mut [Option<Box<T>>], slot: u32, has: impl Fn(&T) -> bool) -> Option<Box<T>> {
    let s = v.get_mut(slot as usize)?;
    if s.as_deref().is_some_and(has) {
        s.take()
    } else {
        None
    }
}

/// The address of `slot`'s word in a slab index (for a prefetch).
#[inline]
fn word<T>(index: &[T], slot: u32) -> Option<*const ()> {
    index
        .get(slot as usize)
        .map(|w| std::ptr::from_ref(w).cast())
}

impl Slab {
    /// A slab of `slots` slots per direction, with a key cache of
    /// [`DEFAULT_CACHE_LINES`] lines (fewer for a slab that cannot hold that many SAs).
    pub fn with_capacity(slots: u32) -> Self {
        let n = slots as usize;
        Slab {
            inbound: (0..n).map(|_| None).collect(),
            outbound: (0..n).map(|_| None).collect(),
            held: (0, 0),
            keys: KeyCache::new(DEFAULT_CACHE_LINES.min(2 * n)),
        }
    }

    /// Slots per direction.
    pub fn capacity(&self) -> u32 {
        self.inbound.len() as u32
    }

    /// Applies a command and returns the reply.
    pub fn apply(&mut self, c: Command) -> Reply {
        match c {
            Command::InstallInbound { slot, entry } => {
                let spi = entry.sa.spi();
                match put(&mut self.inbound, slot, entry) {
                    Ok(()) => {
                        self.held.0 += 1;
                        Reply::Installed {
                            inbound: true,
                            slot,
                            spi,
                        }
                    }
                    Err(entry) => Reply::RefusedInbound { slot, entry },
                }
            }
            Command::InstallOutbound { slot, entry } => {
                let spi = entry.sa.spi();
                match put(&mut self.outbound, slot, entry) {
                    Ok(()) => {
                        self.held.1 += 1;
                        Reply::Installed {
                            inbound: false,
                            slot,
                            spi,
                        }
                    }
                    Err(entry) => Reply::RefusedOutbound { slot, entry },
                }
            }
            Command::RemoveInbound { slot, spi } => {
                let entry = take(&mut self.inbound, slot, |e| e.sa.spi() == spi);
                if let Some(e) = &entry {
                    self.held.0 -= 1;
                    self.keys.wipe(e.sa.key());
                }
                Reply::RemovedInbound { slot, spi, entry }
            }
            Command::RemoveOutbound { slot, spi } => {
                let entry = take(&mut self.outbound, slot, |e| e.sa.spi() == spi);
                if let Some(e) = &entry {
                    self.held.1 -= 1;
                    self.keys.wipe(e.sa.key());
                }
                Reply::RemovedOutbound { slot, spi, entry }
            }
            Command::RetargetOutbound {
                slot,
                spi,
                peer,
                port,
                hop,
            } => {
                let e = self.outbound(slot).filter(|e| e.sa.spi() == spi);
                let ok = e.is_some_and(|e| {
                    let ok = e.sa.set_remote(peer, port).is_ok();
                    if ok {
                        (e.peer, e.hop) = (peer, hop);
                    }
                    ok
                });
                Reply::Retargeted { spi, ok }
            }
        }
    }

    /// The inbound SA in `slot`.
    #[inline]
    pub fn inbound(&mut self, slot: u32) -> Option<&mut InboundSlot> {
        self.inbound.get_mut(slot as usize)?.as_deref_mut()
    }

    /// The outbound SA in `slot`.
    #[inline]
    pub fn outbound(&mut self, slot: u32) -> Option<&mut OutboundSlot> {
        self.outbound.get_mut(slot as usize)?.as_deref_mut()
    }

    /// The inbound SA in `slot`, to read (the prefetch of [`crate::prefetch`]).
    #[inline]
    pub fn inbound_ref(&self, slot: u32) -> Option<&InboundSlot> {
        self.inbound.get(slot as usize)?.as_deref()
    }

    /// The word of the slab's index that holds `slot`'s SA (its address, for a prefetch ahead
    /// of [`Slab::inbound_ref`]).
    #[inline]
    pub fn inbound_word(&self, slot: u32) -> Option<*const ()> {
        word(&self.inbound, slot)
    }

    /// The outbound SA in `slot`, to read (the prefetch of [`crate::prefetch`]).
    #[inline]
    pub fn outbound_ref(&self, slot: u32) -> Option<&OutboundSlot> {
        self.outbound.get(slot as usize)?.as_deref()
    }

    /// The word of the slab's index that holds outbound `slot`'s SA (for a prefetch).
    #[inline]
    pub fn outbound_word(&self, slot: u32) -> Option<*const ()> {
        word(&self.outbound, slot)
    }

    /// The inbound SA in `slot` and the key cache to process its packets with.
    #[inline]
    pub fn inbound_keyed(&mut self, slot: u32) -> Option<(&mut InboundSlot, &mut KeyCache)> {
        let e = self.inbound.get_mut(slot as usize)?.as_deref_mut()?;
        Some((e, &mut self.keys))
    }

    /// The outbound SA in `slot` and the key cache to process its packets with.
    #[inline]
    pub fn outbound_keyed(&mut self, slot: u32) -> Option<(&mut OutboundSlot, &mut KeyCache)> {
        let e = self.outbound.get_mut(slot as usize)?.as_deref_mut()?;
        Some((e, &mut self.keys))
    }

    /// The worker's key cache (hits and misses for the stats).
    pub fn keys(&self) -> &KeyCache {
        &self.keys
    }

    /// SAs held (inbound, outbound).
    #[inline]
    pub fn occupied(&self) -> (usize, usize) {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_esp::{Backend, Direction, OutboundSa, SaConfig};

    fn inbound(spi: u32) -> Box<InboundSlot> {
        let (a, b) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let cfg = SaConfig::new(spi, Direction::Inbound, b, a);
        let policy = Arc::new(Policy {
            local_ts: vec![],
            remote_ts: vec![],
        });
        InboundSlot::new(
            InboundSa::new(cfg, &[7u8; 20], Backend::Ring).unwrap(),
            0,
            policy,
        )
    }

    #[test]
    fn occupied_and_missing_slots_are_refused_never_overwritten() {
        let mut slab = Slab::with_capacity(2);
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 1,
                entry: inbound(0x1001)
            }),
            Reply::Installed {
                slot: 1,
                spi: 0x1001,
                inbound: true
            }
        ));
        match slab.apply(Command::InstallInbound {
            slot: 1,
            entry: inbound(0x2002),
        }) {
            Reply::RefusedInbound { slot: 1, entry } => assert_eq!(entry.sa.spi(), 0x2002),
            _ => panic!("occupied slot not refused"),
        }
        assert_eq!(
            slab.inbound(1).map(|s| s.sa.spi()),
            Some(0x1001),
            "kept the first SA"
        );
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 2,
                entry: inbound(0x3003)
            }),
            Reply::RefusedInbound { slot: 2, .. }
        ));
        assert_eq!(slab.inbound.len(), 2, "no growth");
        assert!(
            matches!(
                slab.apply(Command::RemoveInbound {
                    slot: 1,
                    spi: 0x9999
                }),
                Reply::RemovedInbound { entry: None, .. }
            ),
            "a remove naming another SPI leaves the slot alone"
        );
        assert_eq!(
            slab.occupied(),
            (1, 0),
            "refused installs and a remove of another SPI count nothing"
        );
        match slab.apply(Command::RemoveInbound {
            slot: 1,
            spi: 0x1001,
        }) {
            Reply::RemovedInbound { entry: Some(e), .. } => assert_eq!(e.sa.spi(), 0x1001),
            _ => panic!("not removed"),
        }
        assert_eq!(slab.occupied(), (0, 0));
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 1,
                entry: inbound(0x4004)
            }),
            Reply::Installed { slot: 1, .. }
        ));
        assert_eq!(slab.occupied(), (1, 0));
    }

    /// An ESP packet sealed by the peer's outbound SA.
    fn esp_from_peer(peer: &mut OutboundSa, keys: &mut KeyCache) -> espada_buf::VecBuf {
        let mut inner = [0u8; 20];
        inner[0] = 0x45;
        inner[3] = 20;
        let mut b = espada_buf::VecBuf::new(
            espada_esp::MAX_ENCAP_HEADROOM,
            &inner,
            espada_esp::MAX_ENCAP_TAILROOM,
        );
        peer.encap(keys, &mut b).unwrap();
        b
    }

    #[test]
    fn a_removed_sa_leaves_no_schedule_in_the_workers_key_cache() {
        let (a, b) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let mut peer = OutboundSa::new(
            SaConfig::new(0x1001, Direction::Outbound, a, b),
            &[7u8; 20],
            Backend::Ring,
        )
        .unwrap();
        let mut peer_keys = KeyCache::new(2);
        let mut slab = Slab::with_capacity(4);
        let decap = |slab: &mut Slab, pkt: &mut espada_buf::VecBuf| {
            let (e, keys) = slab.inbound_keyed(1).unwrap();
            e.sa.decap(keys, pkt).unwrap();
        };
        let install = |slab: &mut Slab, entry| {
            assert!(matches!(
                slab.apply(Command::InstallInbound { slot: 1, entry }),
                Reply::Installed { .. }
            ));
        };
        install(&mut slab, inbound(0x1001));
        for _ in 0..3 {
            decap(&mut slab, &mut esp_from_peer(&mut peer, &mut peer_keys));
        }
        assert_eq!(
            (slab.keys().stats().hits, slab.keys().stats().misses),
            (2, 1)
        );
        // A remove naming another SPI takes nothing and wipes nothing.
        slab.apply(Command::RemoveInbound {
            slot: 1,
            spi: 0x9999,
        });
        decap(&mut slab, &mut esp_from_peer(&mut peer, &mut peer_keys));
        assert_eq!(slab.keys().stats().misses, 1);
        // Removed: its line is wiped, so the same SA put back builds its schedule again.
        let Reply::RemovedInbound { entry: Some(e), .. } = slab.apply(Command::RemoveInbound {
            slot: 1,
            spi: 0x1001,
        }) else {
            panic!("not removed");
        };
        install(&mut slab, e);
        decap(&mut slab, &mut esp_from_peer(&mut peer, &mut peer_keys));
        assert_eq!(
            (slab.keys().stats().hits, slab.keys().stats().misses),
            (3, 2)
        );
    }
}
