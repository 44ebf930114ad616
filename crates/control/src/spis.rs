//! The IKE endpoint's inbound SPI allocator, backed by the data plane: an SPI is reserved on
//! the worker of the peer's tunnel (`espada_lookup::spi` encodes owner and slot in it), and a
//! reservation the endpoint gives back before it was ever installed is released there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use espada_ike::exchange::SpiAllocator;
use espada_ike::rng::Random;

use crate::dataplane::{DataPlane, TunnelId};

/// SPIs reserved and not installed yet, by SPI.
#[derive(Debug, Default)]
pub(crate) struct Reserved {
    pub by_spi: HashMap<u32, TunnelId>,
}

/// See the module documentation.
pub(crate) struct DataPlaneSpis<D> {
    pub dp: Rc<RefCell<D>>,
    pub reserved: Rc<RefCell<Reserved>>,
    /// Peer index → tunnel.
    pub tunnels: Rc<Vec<TunnelId>>,
}

impl<D: DataPlane> SpiAllocator for DataPlaneSpis<D> {
    fn allocate(&mut self, peer: Option<usize>, _rng: &mut dyn Random) -> Option<u32> {
        let tunnel = *self.tunnels.get(peer?)?;
        let spi = self.dp.borrow_mut().allocate_spi(tunnel)?;
        self.reserved.borrow_mut().by_spi.insert(spi, tunnel);
        Some(spi)
    }

    fn release(&mut self, spi: u32) {
        // Installed SAs are retired through the data plane's lifecycle; only a reservation
        // that never became an SA is given back here.
        if let Some(tunnel) = self.reserved.borrow_mut().by_spi.remove(&spi) {
            self.dp.borrow_mut().release_spi(tunnel, spi);
        }
    }
}
