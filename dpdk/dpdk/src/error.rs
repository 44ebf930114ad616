//! Typed errors for every DPDK call the safe layer makes.

use std::ffi::CStr;
use std::fmt;

/// A failed DPDK operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// `Eal::init` was called a second time in this process. DPDK cannot initialise EAL twice,
    /// even after `rte_eal_cleanup` (it fails with EALREADY).
    AlreadyInitialized,
    /// An argument could not be passed to DPDK (for example it contains a NUL byte).
    InvalidArgument(String),
    /// A resource (port, queue, lcore) is already taken or does not exist.
    Unavailable(String),
    /// DPDK returned an error code.
    Dpdk {
        /// The DPDK function that failed.
        op: &'static str,
        /// Positive errno value.
        errno: i32,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Builds an error from a negative return code or, when `ret` is not negative, `rte_errno`.
    pub(crate) fn from_ret(op: &'static str, ret: i32) -> Self {
        let errno = if ret < 0 { -ret } else { rte_errno() };
        Error::Dpdk { op, errno }
    }

    /// Builds an error from `rte_errno` (for calls that return NULL).
    pub(crate) fn last(op: &'static str) -> Self {
        Error::Dpdk {
            op,
            errno: rte_errno(),
        }
    }
}

pub(crate) fn rte_errno() -> i32 {
    // SAFETY: reads the calling thread's rte_errno through a C helper.
    unsafe { dpdk_sys::espada_rte_errno() }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::AlreadyInitialized => {
                write!(
                    f,
                    "DPDK EAL is already initialised in this process (it can only be initialised once)"
                )
            }
            Error::InvalidArgument(s) => write!(f, "invalid argument: {s}"),
            Error::Unavailable(s) => write!(f, "unavailable: {s}"),
            Error::Dpdk { op, errno } => {
                // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
                let msg = unsafe { CStr::from_ptr(dpdk_sys::rte_strerror(*errno)) };
                write!(f, "{op} failed: {} (errno {errno})", msg.to_string_lossy())
            }
        }
    }
}

impl std::error::Error for Error {}
