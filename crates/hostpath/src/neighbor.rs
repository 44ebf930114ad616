//! A neighbour cache for one port: IP → MAC with resolution state, in the spirit of RFC 4861
//! §7.3 (INCOMPLETE / REACHABLE / STALE) and RFC 1122 §2.3.2 (ARP cache validation, request
//! flooding limit of one per second per destination), with the RFC 826 merge rule for learning.
//!
//! Time is passed in (`now`), so the cache is deterministic under a fake clock.

use espada_wire::ether::MacAddr;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Tunables of a [`NeighborCache`] (defaults follow RFC 4861 §10 and RFC 1122 §2.3.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Maximum number of entries; inserting beyond it evicts the least recently updated.
    pub capacity: usize,
    /// How long a confirmed entry stays Reachable (RFC 4861 `REACHABLE_TIME`, 30 s).
    pub reachable_time: Duration,
    /// Minimum spacing of requests for one target (RFC 4861 `RETRANS_TIMER` 1 s; RFC 1122
    /// §2.3.2.1: at most one per second per destination).
    pub retry_interval: Duration,
    /// Requests sent before giving up (RFC 4861 `MAX_MULTICAST_SOLICIT` 3).
    pub max_requests: u8,
    /// After giving up, how long lookups fail without sending anything.
    pub failure_backoff: Duration,
    /// How long an unused Stale entry is kept before [`NeighborCache::expire`] drops it.
    pub stale_lifetime: Duration,
}

impl Default for NeighborConfig {
    fn default() -> Self {
        NeighborConfig {
            capacity: 1024,
            reachable_time: Duration::from_secs(30),
            retry_interval: Duration::from_secs(1),
            max_requests: 3,
            failure_backoff: Duration::from_secs(20),
            stale_lifetime: Duration::from_secs(600),
        }
    }
}

/// Resolution state of an entry (RFC 4861 §7.3.2, simplified: DELAY/PROBE are folded into
/// Stale's probe counter, and a Failed state rate-limits targets that did not answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeighborState {
    /// Requests sent, no answer yet.
    Incomplete {
        /// Requests sent so far.
        requests: u8,
        /// When the next request may be sent.
        next_request: Instant,
    },
    /// Confirmed; usable without question until `expires`.
    Reachable {
        /// End of the reachability period.
        expires: Instant,
    },
    /// Usable but unconfirmed; traffic to it triggers re-confirmation requests.
    Stale {
        /// Confirmation requests sent since becoming stale.
        probes: u8,
        /// When the next confirmation request may be sent.
        next_probe: Instant,
    },
    /// Resolution failed; nothing is sent for this target until `retry_at`.
    Failed {
        /// End of the back-off period.
        retry_at: Instant,
    },
}

/// One cache entry as reported by [`NeighborCache::snapshot`] (RFC 4861 §5.1 Neighbor Cache
/// entry: address, link-layer address, state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeighborEntry {
    /// Neighbour's IP address.
    pub ip: IpAddr,
    /// Its MAC address, if known (not for Incomplete / Failed).
    pub mac: Option<MacAddr>,
    /// Resolution state.
    pub state: NeighborState,
    /// Last time the entry was created or updated from the network.
    pub updated: Instant,
}

/// Result of [`NeighborCache::lookup`] (RFC 4861 §7.2.2 / §7.3.3 sending rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Reachable: use this MAC.
    Hit(MacAddr),
    /// Stale: use this MAC, and send a (unicast) confirmation request if `send_request`.
    Stale {
        /// The cached MAC.
        mac: MacAddr,
        /// True when the caller should send a request now.
        send_request: bool,
    },
    /// Unknown: drop or queue the packet, and send a (broadcast/multicast) request if
    /// `send_request`.
    Miss {
        /// True when the caller should send a request now.
        send_request: bool,
    },
}

impl Lookup {
    /// The MAC to use, if any (RFC 4861 §7.3.3: Stale entries are still used).
    pub fn mac(&self) -> Option<MacAddr> {
        match *self {
            Lookup::Hit(m) | Lookup::Stale { mac: m, .. } => Some(m),
            Lookup::Miss { .. } => None,
        }
    }

    /// True when the caller should send a request now (RFC 1122 §2.3.2.1 rate limit applied).
    pub fn send_request(&self) -> bool {
        match *self {
            Lookup::Hit(_) => false,
            Lookup::Stale { send_request, .. } | Lookup::Miss { send_request } => send_request,
        }
    }
}

/// What [`NeighborCache::learn`] / [`NeighborCache::merge`] did (RFC 826 merge outcome).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learn {
    /// A new entry was created.
    Created,
    /// An Incomplete or Failed entry got its MAC.
    Resolved,
    /// The MAC of a known entry changed (from the given one).
    Changed(MacAddr),
    /// The known MAC was confirmed.
    Confirmed,
    /// `merge` found no entry and created none.
    NotPresent,
}

impl Learn {
    /// True when the MAC to use for this neighbour is new or different (worth publishing;
    /// RFC 826 merge changed the translation table).
    pub fn is_news(&self) -> bool {
        matches!(self, Learn::Created | Learn::Resolved | Learn::Changed(_))
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    mac: Option<MacAddr>,
    state: NeighborState,
    updated: Instant,
}

/// A capacity-bounded neighbour cache for one port (RFC 4861 §7.3, RFC 826, RFC 1122 §2.3.2).
#[derive(Clone, Debug)]
pub struct NeighborCache {
    config: NeighborConfig,
    entries: BTreeMap<IpAddr, Entry>,
}

impl NeighborCache {
    /// An empty cache (RFC 4861 §7.3).
    pub fn new(config: NeighborConfig) -> Self {
        NeighborCache {
            config,
            entries: BTreeMap::new(),
        }
    }

    /// The configuration in force (RFC 4861 §10 style constants).
    pub fn config(&self) -> &NeighborConfig {
        &self.config
    }

    /// Number of entries in any RFC 4861 §7.3.2 state.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries (RFC 4861 §5.1 Neighbor Cache empty).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Looks up `ip` for sending a packet at `now`, creating an Incomplete entry on a miss and
    /// telling the caller when to send a request (RFC 4861 §7.2.2, §7.3.3; RFC 1122 §2.3.2.1:
    /// at most one request per `retry_interval` per target, give up after `max_requests`, then
    /// stay silent for `failure_backoff`).
    pub fn lookup(&mut self, ip: IpAddr, now: Instant) -> Lookup {
        let cfg = self.config;
        let Some(e) = self.entries.get_mut(&ip) else {
            if cfg.capacity == 0 || cfg.max_requests == 0 {
                return Lookup::Miss {
                    send_request: false,
                };
            }
            self.insert(
                ip,
                Entry {
                    mac: None,
                    state: NeighborState::Incomplete {
                        requests: 1,
                        next_request: after(now, cfg.retry_interval),
                    },
                    updated: now,
                },
            );
            return Lookup::Miss { send_request: true };
        };
        match (e.state, e.mac) {
            (NeighborState::Reachable { expires }, Some(mac)) if now < expires => Lookup::Hit(mac),
            (NeighborState::Reachable { .. }, Some(mac)) => {
                // Reachability lapsed: stale, and confirm it now (RFC 4861 §7.3.3).
                e.state = NeighborState::Stale {
                    probes: 1,
                    next_probe: after(now, cfg.retry_interval),
                };
                Lookup::Stale {
                    mac,
                    send_request: true,
                }
            }
            (NeighborState::Stale { probes, next_probe }, Some(mac)) => {
                if now < next_probe {
                    Lookup::Stale {
                        mac,
                        send_request: false,
                    }
                } else if probes < cfg.max_requests {
                    e.state = NeighborState::Stale {
                        probes: probes + 1,
                        next_probe: after(now, cfg.retry_interval),
                    };
                    Lookup::Stale {
                        mac,
                        send_request: true,
                    }
                } else {
                    // Confirmation failed: the neighbour is gone (RFC 4861 §7.3.3 PROBE).
                    e.mac = None;
                    e.state = NeighborState::Failed {
                        retry_at: after(now, cfg.failure_backoff),
                    };
                    Lookup::Miss {
                        send_request: false,
                    }
                }
            }
            (NeighborState::Incomplete { .. }, _) => Lookup::Miss {
                send_request: Self::retry_incomplete(e, now, &cfg),
            },
            (NeighborState::Failed { retry_at }, _) => {
                if now < retry_at {
                    Lookup::Miss {
                        send_request: false,
                    }
                } else {
                    e.mac = None;
                    e.state = NeighborState::Incomplete {
                        requests: 1,
                        next_request: after(now, cfg.retry_interval),
                    };
                    Lookup::Miss { send_request: true }
                }
            }
            // A MAC-less Reachable/Stale entry cannot be built; treat it as unknown.
            (_, None) => {
                e.state = NeighborState::Incomplete {
                    requests: 1,
                    next_request: after(now, cfg.retry_interval),
                };
                Lookup::Miss { send_request: true }
            }
        }
    }

    /// Advances an Incomplete entry at `now`; true if a request is due.
    fn retry_incomplete(e: &mut Entry, now: Instant, cfg: &NeighborConfig) -> bool {
        let NeighborState::Incomplete {
            requests,
            next_request,
        } = e.state
        else {
            return false;
        };
        if now < next_request {
            return false;
        }
        if requests < cfg.max_requests {
            e.state = NeighborState::Incomplete {
                requests: requests + 1,
                next_request: after(now, cfg.retry_interval),
            };
            true
        } else {
            e.state = NeighborState::Failed {
                retry_at: after(now, cfg.failure_backoff),
            };
            false
        }
    }

    /// Retransmission timer (RFC 4861 §7.2.2): appends to `due` every Incomplete target whose
    /// next request is due at `now`, advancing its state (and failing targets that exhausted
    /// their requests), without needing new traffic.
    pub fn poll(&mut self, now: Instant, due: &mut Vec<IpAddr>) {
        let cfg = self.config;
        for (ip, e) in &mut self.entries {
            if Self::retry_incomplete(e, now, &cfg) {
                due.push(*ip);
            }
        }
    }

    /// Records that `ip` is at `mac`, from an answer to our request or a packet addressed to us
    /// (RFC 826: "Am I the target protocol address? If Merge_flag is false, add the triplet";
    /// RFC 4861 §7.2.3/§7.2.5). Creates the entry if needed; the entry becomes Reachable.
    pub fn learn(&mut self, ip: IpAddr, mac: MacAddr, now: Instant) -> Learn {
        let outcome = self.merge(ip, mac, now);
        if outcome != Learn::NotPresent || self.config.capacity == 0 {
            return outcome;
        }
        let expires = after(now, self.config.reachable_time);
        self.insert(
            ip,
            Entry {
                mac: Some(mac),
                state: NeighborState::Reachable { expires },
                updated: now,
            },
        );
        Learn::Created
    }

    /// RFC 826 merge: if `ip` is already in the cache, update its MAC and make it Reachable;
    /// never creates an entry (for packets not addressed to us, e.g. gratuitous ARP).
    pub fn merge(&mut self, ip: IpAddr, mac: MacAddr, now: Instant) -> Learn {
        let Some(e) = self.entries.get_mut(&ip) else {
            return Learn::NotPresent;
        };
        let outcome = match e.mac {
            None => Learn::Resolved,
            Some(old) if old != mac => Learn::Changed(old),
            Some(_) => Learn::Confirmed,
        };
        e.mac = Some(mac);
        e.state = NeighborState::Reachable {
            expires: after(now, self.config.reachable_time),
        };
        e.updated = now;
        outcome
    }

    /// Removes `ip` (RFC 4861 §7.3.3 garbage collection); returns whether it was present.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        self.entries.remove(&ip).is_some()
    }

    /// Ages entries at `now` (RFC 4861 §7.3.3): lapsed Reachable entries become Stale, Stale
    /// entries not updated for `stale_lifetime` and Failed entries past their back-off are
    /// removed. Returns the number removed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let cfg = self.config;
        let before = self.entries.len();
        self.entries.retain(|_, e| match e.state {
            NeighborState::Reachable { expires } => {
                if now >= expires {
                    e.state = NeighborState::Stale {
                        probes: 0,
                        next_probe: now,
                    };
                }
                true
            }
            NeighborState::Stale { .. } => {
                now.saturating_duration_since(e.updated) < cfg.stale_lifetime
            }
            NeighborState::Failed { retry_at } => now < retry_at,
            NeighborState::Incomplete { .. } => true,
        });
        before - self.entries.len()
    }

    /// The entry for `ip`, if any (RFC 4861 §5.1).
    pub fn get(&self, ip: IpAddr) -> Option<NeighborEntry> {
        self.entries.get(&ip).map(|e| NeighborEntry {
            ip,
            mac: e.mac,
            state: e.state,
            updated: e.updated,
        })
    }

    /// All entries (RFC 4861 §5.1), ordered by IP address, for `show` commands.
    pub fn snapshot(&self) -> Vec<NeighborEntry> {
        self.entries
            .iter()
            .map(|(ip, e)| NeighborEntry {
                ip: *ip,
                mac: e.mac,
                state: e.state,
                updated: e.updated,
            })
            .collect()
    }

    /// The usable (RFC 4861 Reachable or Stale) IP → MAC pairs, ordered by IP, for publishing a
    /// read-only copy to the data plane.
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, MacAddr)> + '_ {
        self.entries.iter().filter_map(|(ip, e)| match e.state {
            NeighborState::Reachable { .. } | NeighborState::Stale { .. } => {
                e.mac.map(|m| (*ip, m))
            }
            _ => None,
        })
    }

    /// Inserts, evicting the least recently updated entry when full.
    fn insert(&mut self, ip: IpAddr, entry: Entry) {
        if self.entries.len() >= self.config.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.updated)
                .map(|(k, _)| *k)
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(ip, entry);
    }
}

/// `now + d` without panicking on overflow: a huge `d` (meaning "never") becomes ~100 years.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}
