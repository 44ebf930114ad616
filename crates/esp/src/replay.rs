//! Anti-replay (RFC 4303 §3.4.3) with a ring bitmap in the manner of RFC 6479, and ESN
//! reconstruction (RFC 4303 Appendix A2.1).
//!
//! Split around the crypto, as DPDK's `ipsec_sqn.h` does: [`ReplayWindow::check`] runs before
//! decryption and returns a [`Candidate`] (the full 64-bit sequence number); only after the ICV
//! verified does [`ReplayWindow::commit`] advance the window. A forged packet therefore never
//! moves the window.
//!
//! The bitmap is a ring of `C` bits, `C` the window size rounded up to a power of two (at least
//! 64): sequence number `s` lives at bit `s mod C`. Like RFC 6479 it never shifts bits;
//! advancing the window clears the positions skipped over with whole-word masks (one store per
//! 64 positions at most, one bit operation for an in-order packet). RFC 6479 clears whole blocks
//! and so needs one block more than the window, which a power-of-two ring doubles; clearing at
//! bit granularity keeps the ring at exactly `C` bits (a window of 64 is one word, 4096 is
//! 512 bytes). The window size enforced is the configured one exactly.
//!
//! Windows up to [`INLINE_WINDOW`] keep the ring inside the [`ReplayWindow`] (and so inside the
//! SA, no separate allocation and no pointer to follow per packet); larger windows allocate it
//! once, at install (docs/architecture.md, "Memory per SA").

use crate::drop::DropReason;

/// Smallest replay window accepted (RFC 4303 §3.4.3: 32 "MUST" be supported, 64 is the
/// default). 0 switches anti-replay off ([`ReplayWindow::new`]).
pub const MIN_WINDOW: u32 = 32;
/// Window used only to reconstruct ESN high bits when anti-replay is off.
const OFF_ESN_WINDOW: u32 = 64;
/// Largest replay window accepted.
pub const MAX_WINDOW: u32 = 65536;
/// Largest window whose bitmap is stored inline (the configuration default, 1024).
pub const INLINE_WINDOW: u32 = 1024;
/// 64-bit words of the inline bitmap.
const INLINE_WORDS: usize = INLINE_WINDOW as usize / 64;

/// A sequence number that passed [`ReplayWindow::check`] and waits for the ICV to verify.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Candidate {
    seq: u64,
}

impl Candidate {
    /// The reconstructed 64-bit sequence number (the low 32 bits when ESN is off).
    pub const fn seq(&self) -> u64 {
        self.seq
    }
}

/// Exported or installed window state (high availability, tests near 2^32).
///
/// `bitmap[j]` bit `k` set ⇔ sequence number `highest - (64*j + k)` was received; bits for
/// offsets beyond the window size are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReplayState {
    /// Highest sequence number received (64-bit; 0 = none yet).
    pub highest: u64,
    /// Received-bits behind `highest`, least significant bit of word 0 = `highest` itself.
    pub bitmap: Vec<u64>,
}

/// The ring storage: inline for windows up to [`INLINE_WINDOW`], one allocation above.
#[derive(Clone, Debug)]
enum Bits {
    Inline([u64; INLINE_WORDS]),
    Heap(Box<[u64]>),
}

/// The inbound replay window of one SA.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Highest sequence number received so far (0 = none).
    top: u64,
    /// Configured window size W minus one (W is 32 ..= 65536; 64 when anti-replay is off,
    /// for ESN reconstruction only).
    size_m1: u16,
    /// Words in the ring minus one (the ring has a power of two of words, at most 1024).
    mask: u16,
    esn: bool,
    /// Anti-replay off (window 0): every authentic sequence number is accepted.
    off: bool,
    bits: Bits,
}

/// The replay window size is out of range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadWindowSize(pub u32);

impl ReplayWindow {
    /// An empty window of `size` packets (32 ..= 65536), with or without ESN. `size` 0 turns
    /// anti-replay off (RFC 4303 §3.4.3 lets the receiver disable it; for labs): no packet is
    /// dropped as replayed or outside the window, ESN high bits are still reconstructed.
    pub fn new(size: u32, esn: bool) -> Result<Self, BadWindowSize> {
        let off = size == 0;
        let size = if off { OFF_ESN_WINDOW } else { size };
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&size) {
            return Err(BadWindowSize(size));
        }
        let words = (size as usize).next_power_of_two().max(64) / 64;
        let bits = if size <= INLINE_WINDOW {
            Bits::Inline([0; INLINE_WORDS])
        } else {
            Bits::Heap(vec![0u64; words].into_boxed_slice())
        };
        Ok(Self {
            top: 0,
            size_m1: (size - 1) as u16,
            mask: (words - 1) as u16,
            esn,
            off,
            bits,
        })
    }

    /// Whether anti-replay is off (window 0).
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Whether the bitmap sits inside this value (windows up to [`INLINE_WINDOW`]) rather than
    /// in its own allocation.
    pub fn is_inline(&self) -> bool {
        matches!(self.bits, Bits::Inline(_))
    }

    #[inline(always)]
    fn words(&self) -> &[u64] {
        match &self.bits {
            Bits::Inline(a) => a,
            Bits::Heap(b) => b,
        }
    }

    #[inline(always)]
    fn words_mut(&mut self) -> &mut [u64] {
        match &mut self.bits {
            Bits::Inline(a) => a,
            Bits::Heap(b) => b,
        }
    }

    /// A window with installed state. Fails when `highest` does not fit 32 bits without ESN.
    pub fn with_state(size: u32, esn: bool, state: &ReplayState) -> Result<Self, BadWindowSize> {
        let mut w = Self::new(size, esn)?;
        if !esn && state.highest > u64::from(u32::MAX) {
            return Err(BadWindowSize(size));
        }
        w.top = state.highest;
        for (j, word) in state.bitmap.iter().enumerate() {
            for k in 0..64u64 {
                let off = j as u64 * 64 + k;
                if word >> k & 1 == 1 && off < w.window() && off < state.highest {
                    w.set_bit(state.highest - off);
                }
            }
        }
        Ok(w)
    }

    /// Exports the state ([`ReplayState`] layout).
    pub fn state(&self) -> ReplayState {
        let mut bitmap = vec![0u64; self.window().div_ceil(64) as usize];
        for off in 0..self.window().min(self.top) {
            if self.get_bit(self.top - off) {
                bitmap[(off / 64) as usize] |= 1 << (off % 64);
            }
        }
        ReplayState {
            highest: self.top,
            bitmap,
        }
    }

    /// The 64 most recent positions of the window as a bitmap: bit *i* is set when sequence
    /// number `highest - i` has been received (Cisco's "replay bitmap" in `show crypto ipsec
    /// sa`). Two words and a shift: cheap enough to publish after every packet.
    pub fn recent(&self) -> u64 {
        if self.top == 0 {
            return 0;
        }
        let w = self.words();
        let word = self.top >> 6;
        let mask = u64::from(self.mask);
        // Positions top-63 ..= top: bits 0 ..= top%64 of the top's word and the rest of the
        // word before it in the ring (the same word when the ring is one word long).
        let w0 = w[(word & mask) as usize];
        let w1 = w[(word.wrapping_sub(1) & mask) as usize];
        let v = (u128::from(w0) << 64) | u128::from(w1);
        let bits = ((v >> ((self.top & 63) + 1)) as u64).reverse_bits();
        // Positions before sequence number 1 do not exist.
        if self.top < 64 {
            bits & ((1u64 << self.top) - 1)
        } else {
            bits
        }
    }

    /// Highest sequence number received (0 = none).
    pub fn highest(&self) -> u64 {
        self.top
    }

    /// Whether the window reconstructs 64-bit sequence numbers (RFC 4303 §2.2.1).
    #[inline(always)]
    pub fn esn(&self) -> bool {
        self.esn
    }

    /// Configured window size (0: anti-replay off).
    pub fn size(&self) -> u32 {
        if self.off {
            0
        } else {
            u32::from(self.size_m1) + 1
        }
    }

    /// Configured window size, as the per-packet arithmetic uses it.
    #[inline(always)]
    fn window(&self) -> u64 {
        u64::from(self.size_m1) + 1
    }

    /// Reconstructs the 64-bit sequence number from its low 32 bits, RFC 4303 Appendix A2.1,
    /// for a window of `size` whose highest received number is `top`. `None` when the number
    /// would fall outside the 64-bit space (before 1 or after 2^64-1).
    #[inline]
    pub fn infer_esn(top: u64, size: u64, seq_lo: u32) -> Option<u64> {
        let tl = top as u32;
        let th = (top >> 32) as u32;
        // Window sizes are at most 65536, so `w1` fits 32 bits.
        let w1 = (size - 1) as u32;
        let seq_hi = if tl >= w1 {
            // Case A: the window lies within one 2^32 subspace.
            if seq_lo >= tl - w1 {
                th
            } else {
                th.checked_add(1)?
            }
        } else {
            // Case B: the window spans two subspaces.
            if seq_lo >= tl.wrapping_sub(w1) {
                th.checked_sub(1)?
            } else {
                th
            }
        };
        Some(u64::from(seq_hi) << 32 | u64::from(seq_lo))
    }

    /// Checks a received sequence number before decryption (RFC 4303 §3.4.3). Does not change
    /// the window.
    #[inline]
    pub fn check(&self, seq_lo: u32) -> Result<Candidate, DropReason> {
        let seq = if self.esn {
            Self::infer_esn(self.top, self.window(), seq_lo).ok_or(DropReason::OutsideWindow)?
        } else {
            u64::from(seq_lo)
        };
        if seq == 0 {
            // Sequence numbers start at 1 (RFC 4303 §3.3.3); 0 is never sent.
            return Err(DropReason::OutsideWindow);
        }
        if seq > self.top || self.off {
            return Ok(Candidate { seq });
        }
        if self.top - seq >= self.window() {
            return Err(DropReason::OutsideWindow);
        }
        if self.get_bit(seq) {
            return Err(DropReason::Replayed);
        }
        Ok(Candidate { seq })
    }

    /// Records a sequence number whose ICV verified, advancing the window if it is new highest.
    /// The window is checked again first: between a [`ReplayWindow::check`] and its commit
    /// other packets may have been committed (a burst checks all its packets before any is
    /// decrypted), and a candidate that is now a duplicate (`Replayed`) or behind the window
    /// (`OutsideWindow`) is refused, the window unchanged (RFC 4303 §3.4.3: the window is
    /// updated only for packets that pass both checks).
    #[inline]
    pub fn commit(&mut self, c: Candidate) -> Result<(), DropReason> {
        let seq = c.seq;
        if seq > self.top {
            self.clear_after_top(seq - self.top);
            self.top = seq;
        } else if !self.off {
            if self.top - seq >= self.window() {
                return Err(DropReason::OutsideWindow);
            }
            if self.get_bit(seq) {
                return Err(DropReason::Replayed);
            }
        }
        self.set_bit(seq);
        Ok(())
    }

    /// Clears the `n` ring positions `top+1 ..= top+n` (all of them when `n` covers the ring),
    /// so that they read "not received" once the top moves there.
    #[inline(always)]
    fn clear_after_top(&mut self, n: u64) {
        let ring_bits = (u64::from(self.mask) + 1) * 64;
        let mask = u64::from(self.mask);
        let top = self.top;
        let w = self.words_mut();
        if n >= ring_bits {
            w.fill(0);
            return;
        }
        let mut pos = top.wrapping_add(1);
        let mut left = n;
        while left > 0 {
            let bit = pos & 63;
            let take = (64 - bit).min(left);
            let m = if take == 64 {
                u64::MAX
            } else {
                ((1u64 << take) - 1) << bit
            };
            w[((pos >> 6) & mask) as usize] &= !m;
            pos = pos.wrapping_add(take);
            left -= take;
        }
    }

    #[inline(always)]
    fn get_bit(&self, seq: u64) -> bool {
        self.words()[((seq >> 6) & u64::from(self.mask)) as usize] >> (seq & 63) & 1 == 1
    }

    #[inline(always)]
    fn set_bit(&mut self, seq: u64) {
        let i = ((seq >> 6) & u64::from(self.mask)) as usize;
        self.words_mut()[i] |= 1 << (seq & 63);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_bitmap_shows_the_last_64_positions() {
        let mut w = ReplayWindow::new(1024, false).unwrap();
        assert_eq!(w.recent(), 0);
        for seq in (1..=10).filter(|&s| s != 5) {
            let c = w.check(seq).unwrap();
            w.commit(c).unwrap();
        }
        // highest 10; 5 (bit 10 - 5 = 5) missing.
        assert_eq!(w.recent(), 0b11_1101_1111);
        for seq in 11..=200u32 {
            if seq != 190 {
                let c = w.check(seq).unwrap();
                w.commit(c).unwrap();
            }
        }
        assert_eq!(w.recent(), !(1u64 << 10), "only 190 (= 200 - 10) missing");
        // Across a block boundary: top 128 at bit 0 of a fresh block.
        let mut w = ReplayWindow::new(64, false).unwrap();
        for seq in [127u32, 128] {
            let c = w.check(seq).unwrap();
            w.commit(c).unwrap();
        }
        assert_eq!(w.recent(), 0b11);
    }

    fn recv(w: &mut ReplayWindow, seq: u32) -> Result<u64, DropReason> {
        let c = w.check(seq)?;
        w.commit(c)?;
        Ok(c.seq())
    }

    #[test]
    fn commit_checks_again_what_was_committed_since_the_check() {
        // A burst: every packet checked before the first is decrypted and committed.
        let mut w = ReplayWindow::new(64, false).unwrap();
        let (a, b) = (w.check(5).unwrap(), w.check(5).unwrap());
        assert_eq!(w.commit(a), Ok(()));
        assert_eq!(
            w.commit(b),
            Err(DropReason::Replayed),
            "the same number twice in a burst"
        );
        let old = w.check(6).unwrap();
        let jump = w.check(200).unwrap();
        assert_eq!(w.commit(jump), Ok(()));
        assert_eq!(
            w.commit(old),
            Err(DropReason::OutsideWindow),
            "left behind by the jump"
        );
        assert_eq!(w.highest(), 200);
        // With anti-replay off (window 0) every candidate is accepted.
        let mut off = ReplayWindow::new(0, false).unwrap();
        let (a, b) = (off.check(5).unwrap(), off.check(5).unwrap());
        assert_eq!((off.commit(a), off.commit(b)), (Ok(()), Ok(())));
    }

    #[test]
    fn basic_window() {
        let mut w = ReplayWindow::new(64, false).unwrap();
        assert_eq!(w.check(0), Err(DropReason::OutsideWindow));
        assert_eq!(recv(&mut w, 1), Ok(1));
        assert_eq!(recv(&mut w, 1), Err(DropReason::Replayed));
        assert_eq!(recv(&mut w, 100), Ok(100));
        assert_eq!(recv(&mut w, 36), Err(DropReason::OutsideWindow));
        assert_eq!(recv(&mut w, 37), Ok(37));
        assert_eq!(recv(&mut w, 37), Err(DropReason::Replayed));
        assert_eq!(recv(&mut w, 99), Ok(99));
        // A check without commit leaves the window as it was.
        let _ = w.check(1000).unwrap();
        assert_eq!(w.highest(), 100);
        assert_eq!(recv(&mut w, 1000), Ok(1000));
        assert_eq!(recv(&mut w, 100), Err(DropReason::OutsideWindow));
    }

    #[test]
    fn big_window_4096() {
        let mut w = ReplayWindow::new(4096, false).unwrap();
        assert_eq!(recv(&mut w, 5000), Ok(5000));
        assert_eq!(recv(&mut w, 905), Ok(905));
        assert_eq!(recv(&mut w, 904), Err(DropReason::OutsideWindow));
        assert_eq!(recv(&mut w, 905), Err(DropReason::Replayed));
    }

    #[test]
    fn esn_inference_appendix_a() {
        // Case A, same subspace, and next subspace after wrap.
        let top = (7u64 << 32) | 1000;
        assert_eq!(ReplayWindow::infer_esn(top, 64, 990), Some(top - 10));
        assert_eq!(
            ReplayWindow::infer_esn(top, 64, 2000),
            Some((7 << 32) | 2000)
        );
        // Left of the window in this subspace means "ahead, next subspace" (A2.1 case A).
        assert_eq!(ReplayWindow::infer_esn(top, 64, 5), Some((8 << 32) | 5));
        let top = (7u64 << 32) | 0xffff_fff0;
        assert_eq!(ReplayWindow::infer_esn(top, 64, 3), Some((8 << 32) | 3));
        // Case B: window spans the boundary.
        let top = (8u64 << 32) | 10;
        assert_eq!(
            ReplayWindow::infer_esn(top, 64, 0xffff_fff0),
            Some((7 << 32) | 0xffff_fff0)
        );
        assert_eq!(ReplayWindow::infer_esn(top, 64, 12), Some((8 << 32) | 12));
        // Before 1: no subspace -1.
        assert_eq!(ReplayWindow::infer_esn(5, 64, 0xffff_fff0), None);
    }

    #[test]
    fn esn_wrap_in_window() {
        let st = ReplayState {
            highest: 0xffff_fff0,
            bitmap: vec![1],
        };
        let mut w = ReplayWindow::with_state(64, true, &st).unwrap();
        assert_eq!(recv(&mut w, 0xffff_fff0), Err(DropReason::Replayed));
        assert_eq!(recv(&mut w, 2), Ok((1 << 32) | 2));
        assert_eq!(recv(&mut w, 0xffff_fff5), Ok(0xffff_fff5));
        assert_eq!(recv(&mut w, 0xffff_fff5), Err(DropReason::Replayed));
        assert_eq!(recv(&mut w, 0), Ok(1 << 32));
        // Below the window's start in the previous subspace reads as far ahead (A2.1 case B).
        assert_eq!(recv(&mut w, 0xffff_ffc0), Ok((1 << 32) | 0xffff_ffc0));
    }

    #[test]
    fn state_roundtrip() {
        let mut w = ReplayWindow::new(128, true).unwrap();
        for s in [1u32, 5, 64, 65, 130, 200] {
            recv(&mut w, s).unwrap();
        }
        let st = w.state();
        assert_eq!(st.highest, 200);
        let w2 = ReplayWindow::with_state(128, true, &st).unwrap();
        for s in 1..=260u32 {
            assert_eq!(
                w.check(s).map(|c| c.seq()),
                w2.check(s).map(|c| c.seq()),
                "seq {s}"
            );
        }
        assert!(
            ReplayWindow::with_state(
                64,
                false,
                &ReplayState {
                    highest: 1 << 32,
                    bitmap: vec![]
                }
            )
            .is_err()
        );
    }

    /// The bit ring against a set of received numbers, for windows inline and on the heap,
    /// powers of two and not, with in-order runs, reordering and jumps of up to twice the
    /// ring (xorshift, fixed seed).
    #[test]
    fn ring_matches_a_set_model_inline_and_on_the_heap() {
        for size in [64u32, 100, 1000, 1024, 1025, 4096, 65536] {
            let mut w = ReplayWindow::new(size, false).unwrap();
            assert_eq!(w.is_inline(), size <= INLINE_WINDOW, "{size}");
            let mut seen = std::collections::BTreeSet::new();
            let (mut top, mut x) = (0u64, 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(size));
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let span = 2 * u64::from(size).next_power_of_two();
                let s = match x % 8 {
                    0 => top + 1 + (x >> 8) % span,
                    1..=3 => top + 1,
                    _ => top.saturating_sub((x >> 8) % (u64::from(size) + 70)),
                };
                let want = if s == 0 || (s <= top && top - s >= u64::from(size)) {
                    Err(DropReason::OutsideWindow)
                } else if seen.contains(&s) {
                    Err(DropReason::Replayed)
                } else {
                    Ok(s)
                };
                assert_eq!(
                    recv(&mut w, s as u32),
                    want,
                    "window {size} seq {s} top {top}"
                );
                if want.is_ok() {
                    seen.insert(s);
                    top = top.max(s);
                }
                assert_eq!(w.highest(), top);
            }
        }
    }

    #[test]
    fn sizes() {
        assert!(ReplayWindow::new(31, false).is_err());
        assert!(ReplayWindow::new(63, false).is_ok());
        assert!(ReplayWindow::new(65537, false).is_err());
        assert!(ReplayWindow::new(1000, false).is_ok());
    }

    fn accept(w: &mut ReplayWindow, seq: u32) -> Result<u64, DropReason> {
        let c = w.check(seq)?;
        w.commit(c)?;
        Ok(c.seq())
    }

    #[test]
    fn a_window_of_32_keeps_exactly_32_positions() {
        // RFC 4303 §3.4.3: a window of 32 MUST be supported.
        let mut w = ReplayWindow::new(32, false).unwrap();
        assert_eq!(w.size(), 32);
        assert!(w.is_inline() && !w.is_off());
        accept(&mut w, 100).unwrap();
        assert_eq!(accept(&mut w, 69), Ok(69), "top − 31 is inside");
        assert_eq!(
            w.check(68),
            Err(DropReason::OutsideWindow),
            "top − 32 is outside"
        );
        assert_eq!(w.check(69), Err(DropReason::Replayed));
        assert_eq!(w.check(100), Err(DropReason::Replayed));
        // Moving the top by more than the ring clears it: old positions read "not received".
        accept(&mut w, 1000).unwrap();
        assert_eq!(accept(&mut w, 990), Ok(990));
        assert!(ReplayWindow::new(31, false).is_err());
        assert!(ReplayWindow::new(16, false).is_err());
    }

    #[test]
    fn window_0_turns_anti_replay_off_but_still_reconstructs_esn() {
        let mut w = ReplayWindow::new(0, false).unwrap();
        assert!(w.is_off());
        assert_eq!(w.size(), 0);
        for seq in [5, 5, 1, 5, 100_000, 3] {
            assert_eq!(accept(&mut w, seq), Ok(u64::from(seq)), "{seq} accepted");
        }
        assert_eq!(w.highest(), 100_000);
        assert_eq!(
            w.check(0),
            Err(DropReason::OutsideWindow),
            "0 is never sent"
        );
        // ESN: past 2^32 the high bits still follow the top.
        let st = ReplayState {
            highest: (1 << 32) + 10,
            bitmap: vec![],
        };
        let mut w = ReplayWindow::with_state(0, true, &st).unwrap();
        assert_eq!(
            accept(&mut w, 10),
            Ok((1 << 32) + 10),
            "a replay is accepted"
        );
        assert_eq!(accept(&mut w, 20), Ok((1 << 32) + 20));
        assert_eq!(accept(&mut w, u32::MAX - 5), Ok(u64::from(u32::MAX - 5)));
    }
}
