//! EAL initialisation (`rte_eal_init`), at most once per process.

use std::ffi::{CString, c_char};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};
use crate::lcore::LcoreId;

/// Set by the first `Eal::init`, never cleared: DPDK refuses a second `rte_eal_init` in a
/// process even after `rte_eal_cleanup`, so the safe layer refuses it first, with a typed error.
static INITIALISED: AtomicBool = AtomicBool::new(false);

/// A handle on the initialised EAL. Cloning is cheap; `rte_eal_cleanup` runs when the last
/// handle (including the ones held inside pools, ports and rings) is dropped.
#[derive(Clone)]
pub struct Eal {
    _inner: Arc<EalInner>,
}

struct EalInner;

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: every object created from this EAL (pools, ports, rings) holds a clone of the
        // handle, so none is alive any more when the last handle goes.
        unsafe { dpdk_sys::rte_eal_cleanup() };
    }
}

impl std::fmt::Debug for Eal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eal")
            .field("main_lcore", &self.main_lcore())
            .finish()
    }
}

impl Eal {
    /// Initialises EAL with `args` (EAL options only; the program name is supplied here), e.g.
    /// `["--no-huge", "-m", "512", "--no-pci", "--no-shconf", "--file-prefix", "x",
    /// "--vdev", "net_ring0"]`.
    ///
    /// Returns [`Error::AlreadyInitialized`] on any call after the first one in the process,
    /// whether or not the first one succeeded (DPDK cannot retry either).
    pub fn init<I, S>(args: I) -> Result<Eal>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut cargs = vec![CString::new("espada").expect("no NUL")];
        for a in args {
            let a = a.as_ref();
            cargs.push(
                CString::new(a)
                    .map_err(|_| Error::InvalidArgument(format!("NUL byte in {a:?}")))?,
            );
        }
        if INITIALISED.swap(true, Ordering::SeqCst) {
            return Err(Error::AlreadyInitialized);
        }
        // rte_eal_init keeps pointers into argv and permutes it: both must live for the
        // whole process, so they are leaked on purpose (a few hundred bytes, once).
        let strings: &'static mut [CString] = Vec::leak(cargs);
        let argv: &'static mut [*mut c_char] =
            Vec::leak(strings.iter_mut().map(|s| s.as_ptr().cast_mut()).collect());
        let argc = i32::try_from(argv.len())
            .map_err(|_| Error::InvalidArgument("too many EAL arguments".into()))?;
        // SAFETY: argv points to `argc` valid NUL-terminated strings that live forever, and
        // this is the only call of rte_eal_init in the process (guarded by INITIALISED).
        let ret = unsafe { dpdk_sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if ret < 0 {
            return Err(Error::from_ret("rte_eal_init", ret));
        }
        Ok(Eal {
            _inner: Arc::new(EalInner),
        })
    }

    /// Hot-plugs a device from a devargs string (for example `net_null1` or
    /// `net_af_packet1,iface=veth0`) and returns its port id.
    pub fn probe(&self, devargs: &str) -> Result<u16> {
        let c = CString::new(devargs)
            .map_err(|_| Error::InvalidArgument(format!("NUL byte in {devargs:?}")))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let ret = unsafe { dpdk_sys::rte_dev_probe(c.as_ptr()) };
        if ret < 0 {
            return Err(Error::from_ret("rte_dev_probe", ret));
        }
        let name = devargs.split(',').next().unwrap_or(devargs);
        self.port_by_name(name)
    }

    /// The port id of an ethdev by device name (`net_ring0`, `0000:03:00.0`, …).
    pub fn port_by_name(&self, name: &str) -> Result<u16> {
        let c = CString::new(name)
            .map_err(|_| Error::InvalidArgument(format!("NUL byte in {name:?}")))?;
        let mut id = 0u16;
        // SAFETY: valid string and out-pointer for the duration of the call.
        let ret = unsafe { dpdk_sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        if ret < 0 {
            return Err(Error::Unavailable(format!("no ethdev named {name:?}")));
        }
        Ok(id)
    }

    /// Number of ethdev ports currently available.
    pub fn port_count(&self) -> u16 {
        // SAFETY: plain query on initialised EAL.
        unsafe { dpdk_sys::rte_eth_dev_count_avail() }
    }

    /// The main lcore (the one that called `init`).
    pub fn main_lcore(&self) -> LcoreId {
        // SAFETY: plain query on initialised EAL.
        unsafe { dpdk_sys::rte_get_main_lcore() }
    }

    /// The enabled worker lcores (every lcore of `-l`/`--lcores` except the main one).
    pub fn worker_lcores(&self) -> Vec<LcoreId> {
        let mut out = Vec::new();
        let mut i = u32::MAX; // rte_get_next_lcore(-1, …) starts at the first lcore
        loop {
            // SAFETY: plain query on initialised EAL.
            i = unsafe { dpdk_sys::rte_get_next_lcore(i, 1, 0) };
            if i >= dpdk_sys::RTE_MAX_LCORE {
                return out;
            }
            out.push(i);
        }
    }

    /// Registers the calling non-EAL thread with EAL so it gets an lcore id and mempool caches
    /// (`rte_thread_register`). Unregistered on drop of the returned guard.
    pub fn register_thread(&self) -> Result<ThreadRegistration> {
        // SAFETY: registers the calling thread; paired with rte_thread_unregister on drop.
        let ret = unsafe { dpdk_sys::rte_thread_register() };
        if ret < 0 {
            return Err(Error::last("rte_thread_register"));
        }
        Ok(ThreadRegistration {
            _eal: self.clone(),
            _not_send: std::marker::PhantomData,
        })
    }
}

/// A registration of a non-EAL thread (see [`Eal::register_thread`]); not `Send`, because it
/// belongs to the thread that made it.
pub struct ThreadRegistration {
    _eal: Eal,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        // SAFETY: this thread registered itself in register_thread and is still running.
        unsafe { dpdk_sys::rte_thread_unregister() };
    }
}
