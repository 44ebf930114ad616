//! Ethernet ports (`rte_ethdev`): configuration, RSS, start/stop, link, MAC, statistics, and one
//! handle per RX/TX queue so that each queue is polled by exactly one thread.

use std::ffi::CStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::burst::Burst;
use crate::eal::Eal;
use crate::error::{Error, Result};
use crate::mempool::Mempool;

/// How to set a port up.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Number of RX queues (one per worker).
    pub rx_queues: u16,
    /// Number of TX queues (one per worker plus one for the control thread).
    pub tx_queues: u16,
    /// RX descriptors per queue.
    pub rx_desc: u16,
    /// TX descriptors per queue.
    pub tx_desc: u16,
    /// Spread received packets over the RX queues by RSS when the driver offers it.
    pub rss: bool,
    /// Receive frames for every destination MAC.
    pub promiscuous: bool,
}

impl Default for PortConfig {
    fn default() -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_desc: 1024,
            tx_desc: 1024,
            rss: true,
            promiscuous: true,
        }
    }
}

/// An Ethernet MAC address (`espada-wire`'s: one MAC type for the whole appliance).
pub use espada_wire::MacAddr;

/// Link state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    /// Link is up.
    pub up: bool,
    /// Speed in Mbit/s (0 when unknown).
    pub speed_mbps: u32,
}

/// Basic port counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets the NIC dropped because RX queues were full.
    pub rx_missed: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Receive failures for lack of mbufs.
    pub rx_nombuf: u64,
}

/// A configured ethdev port. Cloning shares it; it is stopped and closed when the last handle
/// and the last queue handle are gone.
#[derive(Clone)]
pub struct Port {
    inner: Arc<Inner>,
}

struct Inner {
    id: u16,
    rss: bool,
    rx_queues: u16,
    tx_queues: u16,
    rx_taken: AtomicU64,
    tx_taken: AtomicU64,
    queues_out: AtomicUsize,
    started: AtomicBool,
    _pool: Mempool,
    _eal: Eal,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: no queue handle is alive (each holds an Arc<Inner>), so nobody polls the port.
        unsafe {
            if self.started.load(Ordering::Acquire) {
                dpdk_sys::rte_eth_dev_stop(self.id);
            }
            dpdk_sys::rte_eth_dev_close(self.id);
        }
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("id", &self.inner.id)
            .field("rss", &self.inner.rss)
            .finish()
    }
}

impl Port {
    /// The most RX and TX queues port `id` supports (`rte_eth_dev_info_get`), to plan with
    /// before [`Port::configure`].
    pub fn max_queues(_eal: &Eal, id: u16) -> Result<(u16, u16)> {
        let info = dev_info(id)?;
        Ok((info.max_rx_queues, info.max_tx_queues))
    }

    /// Configures port `id` with `cfg`, receiving into `pool`. The port is not started.
    pub fn configure(eal: &Eal, id: u16, cfg: &PortConfig, pool: &Mempool) -> Result<Port> {
        if cfg.rx_queues == 0 || cfg.tx_queues == 0 || cfg.rx_queues > 64 || cfg.tx_queues > 64 {
            return Err(Error::InvalidArgument("queue counts must be 1..=64".into()));
        }
        let info = dev_info(id)?;
        if cfg.rx_queues > info.max_rx_queues || cfg.tx_queues > info.max_tx_queues {
            return Err(Error::Unavailable(format!(
                "port {id} supports at most {} RX and {} TX queues",
                info.max_rx_queues, info.max_tx_queues
            )));
        }
        let mut conf = dpdk_sys::rte_eth_conf::default();
        let rss = cfg.rss && cfg.rx_queues > 1 && info.flow_type_rss_offloads != 0;
        if rss {
            conf.rxmode.mq_mode = dpdk_sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = info.flow_type_rss_offloads;
        }
        // SAFETY: valid port id (dev_info succeeded) and a fully initialised conf.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_configure(id, cfg.rx_queues, cfg.tx_queues, &conf) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_dev_configure", ret));
        }
        let mut rx_desc = cfg.rx_desc;
        let mut tx_desc = cfg.tx_desc;
        // SAFETY: valid port and out-pointers.
        let ret =
            unsafe { dpdk_sys::rte_eth_dev_adjust_nb_rx_tx_desc(id, &mut rx_desc, &mut tx_desc) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_dev_adjust_nb_rx_tx_desc", ret));
        }
        // SAFETY: valid port id.
        let socket = unsafe { dpdk_sys::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..cfg.rx_queues {
            // SAFETY: configured port, valid queue index, default rxconf (NULL), valid pool.
            let ret = unsafe {
                dpdk_sys::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.as_ptr(),
                )
            };
            if ret < 0 {
                return Err(Error::from_ret("rte_eth_rx_queue_setup", ret));
            }
        }
        for q in 0..cfg.tx_queues {
            // SAFETY: configured port, valid queue index, default txconf (NULL).
            let ret = unsafe {
                dpdk_sys::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null())
            };
            if ret < 0 {
                return Err(Error::from_ret("rte_eth_tx_queue_setup", ret));
            }
        }
        if cfg.promiscuous {
            // SAFETY: valid port; failure (unsupported) is harmless and ignored.
            unsafe { dpdk_sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(Port {
            inner: Arc::new(Inner {
                id,
                rss,
                rx_queues: cfg.rx_queues,
                tx_queues: cfg.tx_queues,
                rx_taken: AtomicU64::new(0),
                tx_taken: AtomicU64::new(0),
                queues_out: AtomicUsize::new(0),
                started: AtomicBool::new(false),
                _pool: pool.clone(),
                _eal: eal.clone(),
            }),
        })
    }

    /// The ethdev port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// True when RSS spreads received packets over the RX queues.
    pub fn rss(&self) -> bool {
        self.inner.rss
    }

    /// The driver's name (`net_ring`, `net_af_packet`, …).
    pub fn driver_name(&self) -> String {
        dev_info(self.inner.id)
            .ok()
            .filter(|i| !i.driver_name.is_null())
            .map(|i| {
                // SAFETY: the driver name is a static NUL-terminated string owned by the driver.
                unsafe { CStr::from_ptr(i.driver_name) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_default()
    }

    /// Sets the port's MTU (L3 bytes, Ethernet header and CRC excluded), before it is started.
    pub fn set_mtu(&self, mtu: u16) -> Result<()> {
        // SAFETY: valid, configured port id.
        let ret = unsafe { dpdk_sys::rte_eth_dev_set_mtu(self.inner.id, mtu) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_dev_set_mtu", ret));
        }
        Ok(())
    }

    /// The port's MTU as the driver reports it.
    pub fn mtu(&self) -> Result<u16> {
        let mut mtu = 0u16;
        // SAFETY: valid port id and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_mtu(self.inner.id, &mut mtu) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_dev_get_mtu", ret));
        }
        Ok(mtu)
    }

    /// Starts the port.
    pub fn start(&self) -> Result<()> {
        // SAFETY: configured port.
        let ret = unsafe { dpdk_sys::rte_eth_dev_start(self.inner.id) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_dev_start", ret));
        }
        self.inner.started.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops the port. Refused while any queue handle is alive: DPDK forbids stopping a port
    /// that another thread may be polling.
    pub fn stop(&self) -> Result<()> {
        let out = self.inner.queues_out.load(Ordering::Acquire);
        if out != 0 {
            return Err(Error::Unavailable(format!(
                "{out} queue handles of port {} are still in use",
                self.inner.id
            )));
        }
        if self.inner.started.swap(false, Ordering::AcqRel) {
            // SAFETY: started port, no queue is being polled.
            let ret = unsafe { dpdk_sys::rte_eth_dev_stop(self.inner.id) };
            if ret < 0 {
                return Err(Error::from_ret("rte_eth_dev_stop", ret));
            }
        }
        Ok(())
    }

    /// Link state, without waiting.
    pub fn link(&self) -> LinkStatus {
        let mut link = dpdk_sys::rte_eth_link::default();
        // SAFETY: valid port and out-pointer.
        unsafe { dpdk_sys::rte_eth_link_get_nowait(self.inner.id, &mut link) };
        LinkStatus {
            up: u32::from(link.link_status()) == dpdk_sys::RTE_ETH_LINK_UP,
            speed_mbps: link.link_speed,
        }
    }

    /// The port's MAC address.
    pub fn mac(&self) -> MacAddr {
        let mut a = dpdk_sys::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        unsafe { dpdk_sys::rte_eth_macaddr_get(self.inner.id, &mut a) };
        MacAddr(a.addr_bytes)
    }

    /// Basic counters.
    pub fn stats(&self) -> Result<PortStats> {
        let mut s = dpdk_sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let ret = unsafe { dpdk_sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eth_stats_get", ret));
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }

    /// Extended statistics, by name (`rte_eth_xstats_get`).
    pub fn xstats(&self) -> Result<Vec<(String, u64)>> {
        let id = self.inner.id;
        // SAFETY: a NULL array with size 0 asks for the count.
        let n = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, std::ptr::null_mut(), 0) };
        if n < 0 {
            return Err(Error::from_ret("rte_eth_xstats_get_names", n));
        }
        let mut names = vec![dpdk_sys::rte_eth_xstat_name::default(); n as usize];
        let mut vals = vec![dpdk_sys::rte_eth_xstat::default(); n as usize];
        // SAFETY: arrays of `n` elements.
        let got = unsafe { dpdk_sys::rte_eth_xstats_get_names(id, names.as_mut_ptr(), n as u32) };
        // SAFETY: arrays of `n` elements.
        let got2 = unsafe { dpdk_sys::rte_eth_xstats_get(id, vals.as_mut_ptr(), n as u32) };
        if got < 0 || got2 < 0 {
            return Err(Error::from_ret("rte_eth_xstats_get", got.min(got2)));
        }
        let count = (got.min(got2) as usize).min(names.len());
        Ok(vals[..count]
            .iter()
            .map(|v| {
                let name = names.get(v.id as usize).map(|n| {
                    // SAFETY: DPDK NUL-terminates names within the 64-byte array.
                    unsafe { CStr::from_ptr(n.name.as_ptr()) }
                        .to_string_lossy()
                        .into_owned()
                });
                (name.unwrap_or_default(), v.value)
            })
            .collect())
    }

    /// Takes the handle of RX queue `q`; each queue can be taken once.
    pub fn rx_queue(&self, q: u16) -> Result<RxQueue> {
        self.take(q, self.inner.rx_queues, &self.inner.rx_taken, "RX")?;
        Ok(RxQueue {
            port: self.clone(),
            queue: q,
        })
    }

    /// Takes the handle of TX queue `q`; each queue can be taken once.
    pub fn tx_queue(&self, q: u16) -> Result<TxQueue> {
        self.take(q, self.inner.tx_queues, &self.inner.tx_taken, "TX")?;
        Ok(TxQueue {
            port: self.clone(),
            queue: q,
        })
    }

    fn take(&self, q: u16, n: u16, taken: &AtomicU64, what: &str) -> Result<()> {
        if q >= n {
            return Err(Error::Unavailable(format!(
                "port {} has no {what} queue {q}",
                self.inner.id
            )));
        }
        if taken.fetch_or(1 << q, Ordering::AcqRel) & (1 << q) != 0 {
            return Err(Error::Unavailable(format!(
                "{what} queue {q} of port {} is already taken",
                self.inner.id
            )));
        }
        self.inner.queues_out.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn give_back(&self, q: u16, taken: &AtomicU64) {
        taken.fetch_and(!(1 << q), Ordering::AcqRel);
        self.inner.queues_out.fetch_sub(1, Ordering::AcqRel);
    }
}

fn dev_info(id: u16) -> Result<dpdk_sys::rte_eth_dev_info> {
    let mut info = dpdk_sys::rte_eth_dev_info::default();
    // SAFETY: out-pointer to a default-initialised struct; invalid ids return an error.
    let ret = unsafe { dpdk_sys::rte_eth_dev_info_get(id, &mut info) };
    if ret < 0 {
        return Err(Error::from_ret("rte_eth_dev_info_get", ret));
    }
    Ok(info)
}

/// The receive side of one queue of a port. `Send` but not `Clone`: one poller per queue.
pub struct RxQueue {
    port: Port,
    queue: u16,
}

impl RxQueue {
    /// Receives into the free slots of `burst`; returns how many mbufs arrived.
    #[inline]
    pub fn rx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        let room = (burst.capacity() - burst.len()) as u16;
        // SAFETY: the burst has `room` free slots; the driver writes at most that many owned mbufs.
        let n = unsafe {
            dpdk_sys::rte_eth_rx_burst(self.port.inner.id, self.queue, burst.spare_ptr(), room)
        } as usize;
        // SAFETY: the driver initialised exactly `n` slots.
        unsafe { burst.assume_filled(n) };
        n
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The port this queue belongs to.
    pub fn port(&self) -> &Port {
        &self.port
    }
}

impl Drop for RxQueue {
    fn drop(&mut self) {
        self.port.give_back(self.queue, &self.port.inner.rx_taken);
    }
}

/// The transmit side of one queue of a port. `Send` but not `Clone`: one sender per queue.
pub struct TxQueue {
    port: Port,
    queue: u16,
}

impl TxQueue {
    /// Sends mbufs from the front of `burst`; those the driver did not take stay in the burst,
    /// moved to its front, for the caller to retry or drop. Returns how many were sent.
    #[inline]
    pub fn tx_burst<const N: usize>(&mut self, burst: &mut Burst<N>) -> usize {
        if burst.is_empty() {
            return 0;
        }
        let len = burst.len() as u16;
        // SAFETY: the first `len` slots hold owned mbufs; the driver takes ownership of the
        // first `n` it returns.
        let n = unsafe {
            dpdk_sys::rte_eth_tx_burst(self.port.inner.id, self.queue, burst.raw_ptr(), len)
        } as usize;
        burst.consumed_front(n);
        n
    }

    /// Sends the burst and frees what the driver did not take. Returns (sent, dropped).
    #[inline]
    pub fn tx_or_drop<const N: usize>(&mut self, burst: &mut Burst<N>) -> (usize, usize) {
        let sent = self.tx_burst(burst);
        let dropped = burst.len();
        burst.clear();
        (sent, dropped)
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// The port this queue belongs to.
    pub fn port(&self) -> &Port {
        &self.port
    }
}

impl Drop for TxQueue {
    fn drop(&mut self) {
        self.port.give_back(self.queue, &self.port.inner.tx_taken);
    }
}
