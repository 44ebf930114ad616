//! Running closures on EAL lcores (`rte_eal_remote_launch`), pinned by EAL.

use std::ffi::{c_int, c_void};

use crate::eal::Eal;
use crate::error::{Error, Result};

/// An EAL logical core id.
pub type LcoreId = u32;

type Job = Box<dyn FnOnce() -> i32 + Send + 'static>;

extern "C" fn trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the Box<Job> leaked by `Eal::launch` for exactly this one call.
    let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
    // A panic must not unwind into C: report it as a failed lcore instead.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).unwrap_or(-1)
}

impl Eal {
    /// Runs `f` on worker lcore `lcore` (pinned to its CPU by EAL). The lcore must be idle.
    pub fn launch<F>(&self, lcore: LcoreId, f: F) -> Result<Launched>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        let job: Box<Job> = Box::new(Box::new(f));
        let arg = Box::into_raw(job).cast::<c_void>();
        // SAFETY: trampoline takes ownership of `arg` when the launch succeeds.
        let ret = unsafe { dpdk_sys::rte_eal_remote_launch(Some(trampoline), arg, lcore) };
        if ret < 0 {
            // SAFETY: the launch failed, so the job was not handed over and is still ours.
            drop(unsafe { Box::from_raw(arg.cast::<Job>()) });
            return Err(Error::from_ret("rte_eal_remote_launch", ret));
        }
        Ok(Launched {
            lcore,
            _eal: self.clone(),
            joined: false,
        })
    }
}

/// A closure running on an lcore. [`Launched::join`] waits for it; dropping waits too.
pub struct Launched {
    lcore: LcoreId,
    _eal: Eal,
    joined: bool,
}

impl Launched {
    /// The lcore the closure runs on.
    pub fn lcore(&self) -> LcoreId {
        self.lcore
    }

    /// Waits for the closure to return and gives its return value (-1 if it panicked).
    pub fn join(mut self) -> i32 {
        self.joined = true;
        // SAFETY: waits for the job launched on this lcore by `Eal::launch`.
        unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) }
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if !self.joined {
            // SAFETY: as in join.
            unsafe { dpdk_sys::rte_eal_wait_lcore(self.lcore) };
        }
    }
}
