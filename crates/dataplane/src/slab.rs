//! Per-worker SA storage and the commands that change it.
//!
//! Every SA lives in exactly one worker's slab; only that worker touches its mutable state
//! (sequence number, replay window, lifetime, counters). The control thread installs and
//! removes SAs by [`Command`]s over an SPSC ring; a removed SA is sent back in a [`Reply`] so
//! that its memory (and key material, zeroized on drop) is freed on the control thread, never
//! on a worker. The published tables refer to slots by [`crate::tables::SaRef`]; a slot is
//! filled before any table refers to it and emptied only after no table does.

use espada_esp::{InboundSa, OutboundSa};

/// Capacity of the command and reply rings of each worker.
pub const COMMAND_RING: usize = 1024;

/// Slots per direction a worker's slab is built with (8 octets each when empty).
pub const SLAB_SLOTS: u32 = 65_536;

/// A change to a worker's slab.
pub enum Command {
    /// Put an inbound SA into `slot`.
    InstallInbound {
        /// Slot index.
        slot: u32,
        /// The SA.
        sa: Box<InboundSa>,
    },
    /// Put an outbound SA into `slot`.
    InstallOutbound {
        /// Slot index.
        slot: u32,
        /// The SA.
        sa: Box<OutboundSa>,
    },
    /// Take the inbound SA out of `slot`.
    RemoveInbound {
        /// Slot index.
        slot: u32,
    },
    /// Take the outbound SA out of `slot`.
    RemoveOutbound {
        /// Slot index.
        slot: u32,
    },
}

/// A worker's answer to a [`Command`].
pub enum Reply {
    /// The slot is filled.
    Installed {
        /// Slot index.
        slot: u32,
    },
    /// The slot is occupied or beyond the slab's capacity: nothing was changed, and the SA
    /// comes back to be dropped by the control thread.
    RefusedInbound {
        /// Slot index.
        slot: u32,
        /// The SA that was not installed.
        sa: Box<InboundSa>,
    },
    /// As [`Reply::RefusedInbound`], for an outbound SA.
    RefusedOutbound {
        /// Slot index.
        slot: u32,
        /// The SA that was not installed.
        sa: Box<OutboundSa>,
    },
    /// The inbound SA taken out, to be dropped by the control thread.
    RemovedInbound(Option<Box<InboundSa>>),
    /// The outbound SA taken out, to be dropped by the control thread.
    RemovedOutbound(Option<Box<OutboundSa>>),
}

/// The SAs one worker owns. The slot vectors are sized when the slab is built (on the control
/// thread) and never grow, so a worker never allocates or frees SA storage; an occupied slot is
/// never overwritten.
pub struct Slab {
    inbound: Vec<Option<Box<InboundSa>>>,
    outbound: Vec<Option<Box<OutboundSa>>>,
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

impl Slab {
    /// A slab of `slots` slots per direction.
    pub fn with_capacity(slots: u32) -> Self {
        let n = slots as usize;
        Slab {
            inbound: (0..n).map(|_| None).collect(),
            outbound: (0..n).map(|_| None).collect(),
        }
    }

    /// Applies a command and returns the reply.
    pub fn apply(&mut self, c: Command) -> Reply {
        match c {
            Command::InstallInbound { slot, sa } => match put(&mut self.inbound, slot, sa) {
                Ok(()) => Reply::Installed { slot },
                Err(sa) => Reply::RefusedInbound { slot, sa },
            },
            Command::InstallOutbound { slot, sa } => match put(&mut self.outbound, slot, sa) {
                Ok(()) => Reply::Installed { slot },
                Err(sa) => Reply::RefusedOutbound { slot, sa },
            },
            Command::RemoveInbound { slot } => {
                Reply::RemovedInbound(self.inbound.get_mut(slot as usize).and_then(Option::take))
            }
            Command::RemoveOutbound { slot } => {
                Reply::RemovedOutbound(self.outbound.get_mut(slot as usize).and_then(Option::take))
            }
        }
    }

    /// The inbound SA in `slot`.
    #[inline]
    pub fn inbound(&mut self, slot: u32) -> Option<&mut InboundSa> {
        self.inbound.get_mut(slot as usize)?.as_deref_mut()
    }

    /// The outbound SA in `slot`.
    #[inline]
    pub fn outbound(&mut self, slot: u32) -> Option<&mut OutboundSa> {
        self.outbound.get_mut(slot as usize)?.as_deref_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_esp::{Backend, Direction, SaConfig};

    fn inbound(spi: u32) -> Box<InboundSa> {
        let (a, b) = (
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
        );
        let cfg = SaConfig::new(spi, Direction::Inbound, b, a);
        Box::new(InboundSa::new(cfg, &[7u8; 20], Backend::Ring).unwrap())
    }

    #[test]
    fn occupied_and_missing_slots_are_refused_never_overwritten() {
        let mut slab = Slab::with_capacity(2);
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 1,
                sa: inbound(0x1001)
            }),
            Reply::Installed { slot: 1 }
        ));
        match slab.apply(Command::InstallInbound {
            slot: 1,
            sa: inbound(0x2002),
        }) {
            Reply::RefusedInbound { slot: 1, sa } => assert_eq!(sa.spi(), 0x2002),
            _ => panic!("occupied slot not refused"),
        }
        assert_eq!(
            slab.inbound(1).map(|s| s.spi()),
            Some(0x1001),
            "kept the first SA"
        );
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 2,
                sa: inbound(0x3003)
            }),
            Reply::RefusedInbound { slot: 2, .. }
        ));
        assert_eq!(slab.inbound.len(), 2, "no growth");
        match slab.apply(Command::RemoveInbound { slot: 1 }) {
            Reply::RemovedInbound(Some(sa)) => assert_eq!(sa.spi(), 0x1001),
            _ => panic!("not removed"),
        }
        assert!(matches!(
            slab.apply(Command::InstallInbound {
                slot: 1,
                sa: inbound(0x4004)
            }),
            Reply::Installed { slot: 1 }
        ));
    }
}
