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
    /// The inbound SA taken out, to be dropped by the control thread.
    RemovedInbound(Option<Box<InboundSa>>),
    /// The outbound SA taken out, to be dropped by the control thread.
    RemovedOutbound(Option<Box<OutboundSa>>),
}

/// The SAs one worker owns.
#[derive(Default)]
pub struct Slab {
    inbound: Vec<Option<Box<InboundSa>>>,
    outbound: Vec<Option<Box<OutboundSa>>>,
}

fn put<T>(v: &mut Vec<Option<T>>, slot: u32, x: T) {
    let i = slot as usize;
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i] = Some(x);
}

impl Slab {
    /// Applies a command and returns the reply.
    pub fn apply(&mut self, c: Command) -> Reply {
        match c {
            Command::InstallInbound { slot, sa } => {
                put(&mut self.inbound, slot, sa);
                Reply::Installed { slot }
            }
            Command::InstallOutbound { slot, sa } => {
                put(&mut self.outbound, slot, sa);
                Reply::Installed { slot }
            }
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
