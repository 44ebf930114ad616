//! UDP header field offsets (RFC 768).

use core::ops::Range;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;
/// Source port.
pub const SRC_PORT: Range<usize> = 0..2;
/// Destination port.
pub const DST_PORT: Range<usize> = 2..4;
/// Length (header + payload).
pub const LENGTH: Range<usize> = 4..6;
/// Checksum (0 = none, IPv4 only).
pub const CHECKSUM: Range<usize> = 6..8;
