//! Which of its two loops a port's bursts run through: with the lookahead (the outside port's
//! burst path, [`crate::burst`]; the inside port's prefetch chain, [`crate::prefetch`]) or
//! without it, one frame at a time.
//!
//! Neither is faster everywhere. The lookahead pays where the SAs' state is not in the CPU's
//! caches and costs where it is, and where that turns depends on the caches, on how many SAs
//! are busy (not held: a worker may hold thousands of idle ones), and on the traffic
//! (docs/performance.md, "Choosing the lookahead": 64-byte decryption crossed over at about
//! 512 SAs on an AMD EPYC, between 1,000 and 2,000 on a Xeon with 2 MiB of L2 per core, where
//! the burst path cost about a quarter at 1,000 SAs and gained about 40 % at 2,000). So with
//! [`Lookahead::Auto`] a worker measures: in every [`PERIOD`] bursts of a port, the first
//! [`TRIAL`] run the two loops in turn, [`BLOCK`] bursts each, the bursts of a block after its
//! first [`WARM`] timed (two TSC reads a burst, no syscall), and the loop whose bursts took
//! fewer cycles per packet (the median burst: an interrupt or a preempted virtual CPU in a
//! few bursts does not decide) runs the rest of the period. Blocks, not every other burst:
//! alternating burst by burst, each loop evicting the other's code and predictions, measured
//! the two loops alike at 1,000 SAs where running one of them alone differed by 27 %, and the
//! choice flipped from run to run. Where the two are close, a wrong choice costs little.

/// Whether a worker's ports run the lookahead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lookahead {
    /// Measured, per port ([`Depth`]).
    #[default]
    Auto,
    /// Always (tests of the burst path; measuring it).
    Always,
    /// Never.
    Never,
}

/// Bursts of a port per period: a trial, then the chosen loop (32,768 bursts of 32 packets are
/// 105 ms at 10 Mpps).
pub const PERIOD: u32 = 1 << 15;
/// Bursts of a period's trial: four blocks of each loop, in turn.
pub const TRIAL: u32 = 8 * BLOCK;
/// Bursts of one loop in a row in a trial.
pub const BLOCK: u32 = 64;
/// Bursts at the start of a block that are not timed (the loop's code and branch predictions
/// coming back).
pub const WARM: u32 = 16;

/// Timed bursts of each loop in a trial.
const HALF: usize = (TRIAL / BLOCK / 2 * (BLOCK - WARM)) as usize;

/// The loop a burst runs through, and whether to time it ([`Depth::record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// With the lookahead.
    pub deep: bool,
    /// Part of a trial: time the burst and [`Depth::record`] it.
    pub timed: bool,
}

/// One port's choice of loop (module documentation).
pub struct Depth {
    mode: Lookahead,
    /// The loop chosen by the last trial (none yet: without the lookahead).
    deep: bool,
    /// Bursts into the period.
    burst: u32,
    /// The trial's cycles per packet of each timed burst: without, with the lookahead.
    trial: [[u32; HALF]; 2],
    /// How many of each the trial has.
    timed: [usize; 2],
}

impl Depth {
    /// A port's choice under `mode`; with [`Lookahead::Auto`] its first bursts are a trial.
    pub fn new(mode: Lookahead) -> Depth {
        Depth {
            mode,
            deep: mode == Lookahead::Always,
            burst: 0,
            trial: [[0; HALF]; 2],
            timed: [0; 2],
        }
    }

    /// The loop of the next burst.
    #[inline]
    pub fn pick(&mut self) -> Pick {
        if self.mode != Lookahead::Auto {
            return Pick {
                deep: self.deep,
                timed: false,
            };
        }
        let b = self.burst;
        self.burst = if b + 1 == PERIOD { 0 } else { b + 1 };
        if b < TRIAL {
            Pick {
                deep: (b / BLOCK) & 1 == 1,
                timed: b % BLOCK >= WARM,
            }
        } else {
            Pick {
                deep: self.deep,
                timed: false,
            }
        }
    }

    /// A timed burst of `pick`: `packets` in `cycles` (a burst without packets is not
    /// counted). The trial's last burst decides the loop: the one whose median burst took
    /// fewer cycles per packet; a trial in which a loop ran no packet leaves the choice.
    pub fn record(&mut self, pick: Pick, cycles: u64, packets: usize) {
        let side = usize::from(pick.deep);
        if let (Some(slot), Some(per)) = (
            self.trial[side].get_mut(self.timed[side]),
            cycles.checked_div(packets as u64),
        ) {
            *slot = u32::try_from(per).unwrap_or(u32::MAX);
            self.timed[side] += 1;
        }
        if self.burst != TRIAL {
            return;
        }
        let [plain, deep] = self.timed;
        self.timed = [0; 2];
        if plain > 0 && deep > 0 {
            let [p, d] = &mut self.trial;
            self.deep = median(&mut d[..deep]) < median(&mut p[..plain]);
        }
    }
}

/// The median of `v` (not empty; reorders it).
fn median(v: &mut [u32]) -> u32 {
    let mid = v.len() / 2;
    *v.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs one period of `d`, the lookahead costing `deep` cycles a packet and the other loop
    /// `plain`, bursts of 32; how many bursts ran with the lookahead.
    fn period(d: &mut Depth, plain: u64, deep: u64) -> u32 {
        let mut n = 0;
        for _ in 0..PERIOD {
            let p = d.pick();
            n += u32::from(p.deep);
            if p.timed {
                d.record(p, 32 * if p.deep { deep } else { plain }, 32);
            }
        }
        n
    }

    #[test]
    fn auto_runs_the_loop_with_fewer_cycles_per_packet_after_each_trial() {
        let mut d = Depth::new(Lookahead::Auto);
        assert!(!d.deep, "before a trial: without the lookahead");
        // The lookahead faster: the trial's half, then the rest of the period.
        assert_eq!(period(&mut d, 300, 200), TRIAL / 2 + PERIOD - TRIAL);
        assert!(d.deep);
        // The traffic changes (fewer busy SAs): the next trial turns back.
        assert_eq!(period(&mut d, 200, 260), TRIAL / 2);
        assert!(!d.deep);
        // Equal: the lookahead is not chosen for nothing.
        period(&mut d, 250, 250);
        assert!(!d.deep);
    }

    #[test]
    fn a_trial_runs_blocks_in_turn_and_compares_per_packet_not_per_burst() {
        let mut d = Depth::new(Lookahead::Auto);
        let mut timed = [0; 2];
        for b in 0..TRIAL {
            let p = d.pick();
            let deep = (b / BLOCK) % 2 == 1;
            assert_eq!(
                p,
                Pick {
                    deep,
                    timed: b % BLOCK >= WARM
                }
            );
            timed[usize::from(deep)] += u32::from(p.timed);
            if !p.timed {
                continue;
            }
            // The lookahead's bursts are larger and slower per burst, faster per packet.
            let (cycles, packets) = if p.deep { (3_000, 32) } else { (1_000, 8) };
            d.record(p, cycles, packets);
        }
        assert_eq!(timed, [HALF as u32; 2]);
        assert!(d.deep);
        assert!(!d.pick().timed, "the rest of the period is not timed");
    }

    #[test]
    fn a_few_interrupted_bursts_do_not_decide() {
        let mut d = Depth::new(Lookahead::Auto);
        for b in 0..TRIAL {
            let p = d.pick();
            if !p.timed {
                continue;
            }
            // The lookahead 10 % faster, but a tenth of its bursts preempted for 100 µs.
            let cycles = if !p.deep {
                32 * 300
            } else if b % 10 == 0 {
                32 * 270 + 250_000
            } else {
                32 * 270
            };
            d.record(p, cycles, 32);
        }
        assert!(
            d.deep,
            "a sum would have chosen the loop without the lookahead"
        );
    }

    #[test]
    fn a_trial_with_one_loop_unmeasured_keeps_the_choice() {
        let mut d = Depth::new(Lookahead::Auto);
        period(&mut d, 300, 100);
        assert!(d.deep);
        for _ in 0..TRIAL {
            let p = d.pick();
            if !p.timed {
                continue;
            }
            // Only the loop without the lookahead saw packets (the others' bursts were empty).
            d.record(p, 500, if p.deep { 0 } else { 32 });
        }
        assert!(d.deep);
    }

    #[test]
    fn always_and_never_are_never_timed() {
        for (mode, deep) in [(Lookahead::Always, true), (Lookahead::Never, false)] {
            let mut d = Depth::new(mode);
            for _ in 0..2 * PERIOD {
                assert_eq!(d.pick(), Pick { deep, timed: false });
            }
        }
    }
}
