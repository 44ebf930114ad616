//! The unknown-SPI log: exact counts live in the workers' drop counters; this turns the
//! workers' samples into log lines rate-limited per source address (default one line per 10 s
//! per source, ScreenOS style) and keeps a list of recent events for `show drops`.
//!
//! Each line carries what operators need to compare against `show sa`: class, source,
//! destination, SPI and sequence number in hex, length, port, encapsulation, and how many
//! packets from that source were not logged since its previous line.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use espada_admin::UnknownSpiView;
use espada_dataplane::events::UnknownSpi;

/// Most sources remembered at once (a flood from many spoofed sources cannot grow the map).
const MAX_SOURCES: usize = 4096;
/// Recent events kept for `show drops`.
const RECENT: usize = 32;

struct Source {
    last_line: Instant,
    suppressed: u64,
}

/// Rate-limited unknown-SPI log.
pub struct UnknownSpiLog {
    interval: Duration,
    sources: HashMap<IpAddr, Source>,
    recent: VecDeque<UnknownSpiView>,
}

impl UnknownSpiLog {
    /// A log with at most one line per `interval` per source.
    pub fn new(interval: Duration) -> Self {
        UnknownSpiLog {
            interval,
            sources: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// Records one sample, with what the control plane knows of its SPI (`cause`, e.g.
    /// "retired by rekey" for a tombstone); returns the log line to emit, if this source
    /// may log now.
    pub fn record(
        &mut self,
        u: &UnknownSpi,
        cause: Option<&'static str>,
        now: Instant,
    ) -> Option<String> {
        self.remember(u, cause);
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&u.src) {
            let interval = self.interval;
            self.sources
                .retain(|_, s| now.duration_since(s.last_line) < interval);
            if self.sources.len() >= MAX_SOURCES {
                return None; // too many distinct sources inside one interval: counters still exact
            }
        }
        match self.sources.get_mut(&u.src) {
            Some(s) if now.duration_since(s.last_line) < self.interval => {
                s.suppressed += 1;
                None
            }
            Some(s) => {
                let line = format_line(u, cause, s.suppressed);
                s.last_line = now;
                s.suppressed = 0;
                Some(line)
            }
            None => {
                self.sources.insert(
                    u.src,
                    Source {
                        last_line: now,
                        suppressed: 0,
                    },
                );
                Some(format_line(u, cause, 0))
            }
        }
    }

    fn remember(&mut self, u: &UnknownSpi, cause: Option<&'static str>) {
        if let Some(r) = self
            .recent
            .iter_mut()
            .find(|r| r.src == u.src && r.spi == u.spi)
        {
            r.count += 1;
            r.seq = u.seq;
            r.at_unix_ms = unix_ms();
            return;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(UnknownSpiView {
            at_unix_ms: unix_ms(),
            class: match cause {
                Some(c) => format!("{} ({c})", u.class.name()),
                None => u.class.name().into(),
            },
            src: u.src,
            dst: u.dst,
            spi: u.spi,
            seq: u.seq,
            len: u.len,
            port: u.port.name().into(),
            count: 1,
        });
    }

    /// The most recent distinct (source, SPI) events, newest last.
    pub fn recent(&self) -> Vec<UnknownSpiView> {
        self.recent.iter().cloned().collect()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn format_line(u: &UnknownSpi, cause: Option<&str>, suppressed: u64) -> String {
    let cause = cause.map(|c| format!(" cause=\"{c}\"")).unwrap_or_default();
    format!(
        "unknown SPI: class={}{cause} src={} dst={} spi=0x{:08x} seq=0x{:08x} len={} port={} encap={} suppressed_since_last={}",
        u.class.name(),
        u.src,
        u.dst,
        u.spi,
        u.seq,
        u.len,
        u.port.name(),
        if u.udp_encap { "udp-4500" } else { "esp" },
        suppressed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use espada_dataplane::PortRole;
    use espada_dataplane::events::UnknownSpiClass;

    fn sample(src: &str, spi: u32) -> UnknownSpi {
        UnknownSpi {
            class: UnknownSpiClass::UnknownSource,
            src: src.parse().unwrap(),
            dst: "198.51.100.1".parse().unwrap(),
            spi,
            seq: 7,
            len: 120,
            udp_encap: false,
            port: PortRole::Outside,
        }
    }

    #[test]
    fn one_line_per_source_per_interval_however_many_arrive() {
        let mut log = UnknownSpiLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let lines: Vec<String> = (0..10_000)
            .filter_map(|i| {
                log.record(
                    &sample("203.0.113.9", 0xdead),
                    None,
                    t0 + Duration::from_micros(i),
                )
            })
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(
            lines[0],
            "unknown SPI: class=unknown-source src=203.0.113.9 dst=198.51.100.1 spi=0x0000dead seq=0x00000007 len=120 port=outside encap=esp suppressed_since_last=0"
        );
        // Another source logs at once; the first one again only after the interval.
        assert!(
            log.record(
                &sample("203.0.113.10", 0xdead),
                None,
                t0 + Duration::from_secs(1)
            )
            .is_some()
        );
        assert!(
            log.record(
                &sample("203.0.113.9", 0xdead),
                None,
                t0 + Duration::from_secs(9)
            )
            .is_none()
        );
        let again = log
            .record(
                &sample("203.0.113.9", 0xbeef),
                None,
                t0 + Duration::from_secs(11),
            )
            .unwrap();
        assert!(
            again.contains("spi=0x0000beef") && again.ends_with("suppressed_since_last=10000"),
            "{again}"
        );
        let recent = log.recent();
        assert_eq!(recent.len(), 3);
        assert_eq!(recent[0].count, 10_001);
    }

    #[test]
    fn a_flood_of_sources_stays_bounded() {
        let mut log = UnknownSpiLog::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let mut lines = 0;
        for i in 0..(MAX_SOURCES as u32 + 500) {
            let src = std::net::Ipv4Addr::from(0xc612_0000 + i).to_string(); // 198.18.0.0/15
            lines += usize::from(log.record(&sample(&src, 1), None, t0).is_some());
        }
        assert_eq!(lines, MAX_SOURCES);
        assert!(log.sources.len() <= MAX_SOURCES);
        assert_eq!(log.recent().len(), RECENT);
    }

    #[test]
    fn a_tombstone_sample_carries_the_cause_the_control_plane_knows() {
        let mut log = UnknownSpiLog::new(Duration::from_secs(10));
        let mut u = sample("198.51.100.2", 0x1234);
        u.class = UnknownSpiClass::Tombstone;
        let line = log
            .record(&u, Some("retired by rekey"), Instant::now())
            .unwrap();
        assert!(
            line.contains("class=tombstone cause=\"retired by rekey\" src=198.51.100.2"),
            "{line}"
        );
        assert_eq!(log.recent()[0].class, "tombstone (retired by rekey)");
    }
}
