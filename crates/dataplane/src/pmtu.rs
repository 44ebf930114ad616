//! The path MTU towards a tunnel's peer (RFC 4301 §8, RFC 1191, RFC 8201), kept by the control
//! thread from the ICMP "fragmentation needed" / "packet too big" errors about ESP this box
//! sent, and published to the workers one word per tunnel
//! ([`crate::lifecycle::Lifecycle::set_path_mtu`]).
//!
//! A report only ever lowers the estimate; a report below the protocol's minimum (576 for IPv4,
//! which every IPv4 host must accept, RFC 791; 1280 for IPv6, RFC 8200 §5) is ignored as forged
//! or broken, and one above the link MTU is capped to it; the estimate ages out 10 minutes after
//! the last report that lowered or confirmed it (RFC 1191 §6.3, RFC 8201 §4), back to the link
//! MTU. A forged ICMP error can therefore lower a tunnel's MTU to 576 at worst, for 10 minutes;
//! it can never raise it.

use std::time::{Duration, Instant};

/// How long a learned path MTU holds without a new report (RFC 1191 §6.3: 10 minutes).
pub const AGE: Duration = Duration::from_secs(600);
/// The smallest path MTU an IPv4 report may set (smaller reports are ignored).
pub const MIN_V4: u32 = 576;
/// The smallest path MTU an IPv6 report may set (RFC 8200 §5; smaller reports are ignored).
pub const MIN_V6: u32 = 1280;

/// One tunnel's path MTU estimate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathMtu {
    /// The learned value and when it was last lowered or confirmed; `None`: the link MTU.
    learned: Option<(u32, Instant)>,
}

/// What a report did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    /// The estimate went down (`to` is the reported value after clamping).
    Lowered {
        /// The estimate before.
        from: u32,
        /// The estimate now.
        to: u32,
    },
    /// Same as the estimate: its age restarts.
    Confirmed,
    /// Above the estimate (only a quiet path raises it, by ageing out), or below the protocol's
    /// minimum: ignored.
    Ignored,
}

impl PathMtu {
    /// The estimate at `now` for a link MTU of `link` (the learned value, unless it aged out).
    pub fn current(&self, link: u32, now: Instant) -> u32 {
        match self.learned {
            Some((v, at)) if now.saturating_duration_since(at) < AGE => v.min(link),
            _ => link,
        }
    }

    /// When the learned value ages out (`None`: nothing learned).
    pub fn expires(&self) -> Option<Instant> {
        self.learned.map(|(_, at)| at + AGE)
    }

    /// An ICMP error said the path takes `reported` bytes (`v6`: about an IPv6 packet).
    pub fn report(&mut self, reported: u32, v6: bool, link: u32, now: Instant) -> Report {
        let floor = if v6 { MIN_V6 } else { MIN_V4 };
        if reported < floor {
            return Report::Ignored;
        }
        let v = reported.min(link);
        let cur = self.current(link, now);
        match v.cmp(&cur) {
            std::cmp::Ordering::Less => {
                self.learned = Some((v, now));
                Report::Lowered { from: cur, to: v }
            }
            std::cmp::Ordering::Equal if self.learned.is_some() => {
                self.learned = Some((v, now));
                Report::Confirmed
            }
            _ => Report::Ignored,
        }
    }

    /// Forgets a learned value that aged out by `now`; returns true when it did (the estimate
    /// is the link MTU again).
    pub fn expire(&mut self, now: Instant) -> bool {
        let old = self.expires().is_some_and(|t| t <= now);
        if old {
            self.learned = None;
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_only_lower_the_estimate_within_the_protocol_and_link_bounds() {
        let t0 = Instant::now();
        let mut p = PathMtu::default();
        assert_eq!(p.current(1500, t0), 1500);
        assert_eq!(
            p.report(1400, false, 1500, t0),
            Report::Lowered {
                from: 1500,
                to: 1400
            }
        );
        // A higher value later does not raise it.
        assert_eq!(p.report(1450, false, 1500, t0), Report::Ignored);
        assert_eq!(p.current(1500, t0), 1400);
        // Reports below the minimum of their family are ignored (a forged 68).
        assert_eq!(p.report(68, false, 1500, t0), Report::Ignored);
        assert_eq!(p.report(575, false, 1500, t0), Report::Ignored);
        assert_eq!(
            p.report(576, false, 1500, t0),
            Report::Lowered {
                from: 1400,
                to: 576
            }
        );
        let mut q = PathMtu::default();
        assert_eq!(q.report(1200, true, 1500, t0), Report::Ignored);
        assert_eq!(
            q.report(1280, true, 1500, t0),
            Report::Lowered {
                from: 1500,
                to: 1280
            }
        );
        // Above the link: nothing learned.
        let mut r = PathMtu::default();
        assert_eq!(r.report(9000, false, 1500, t0), Report::Ignored);
        assert_eq!(r.expires(), None);
    }

    #[test]
    fn the_issues_sequence_ends_at_1300() {
        // 1450, 1360, 1300, 1320 -> 1300; a forged 68 changes nothing.
        let t0 = Instant::now();
        let mut p = PathMtu::default();
        for m in [1450, 1360, 1300, 1320, 68] {
            p.report(m, false, 1500, t0);
        }
        assert_eq!(p.current(1500, t0), 1300);
        assert_eq!(p.current(1500, t0 + AGE), 1500, "aged back to the link MTU");
    }

    #[test]
    fn the_estimate_ages_out_10_minutes_after_the_last_report() {
        let t0 = Instant::now();
        let mut p = PathMtu::default();
        p.report(1400, false, 1500, t0);
        let t1 = t0 + Duration::from_secs(300);
        assert_eq!(p.report(1400, false, 1500, t1), Report::Confirmed);
        assert!(!p.expire(t0 + AGE));
        assert_eq!(p.current(1500, t0 + AGE), 1400, "confirmed at t1");
        assert_eq!(p.current(1500, t1 + AGE), 1500, "aged out");
        assert!(p.expire(t1 + AGE));
        assert_eq!(p.expires(), None);
        assert_eq!(p.current(1500, t1 + AGE), 1500);
    }
}
