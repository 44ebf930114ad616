//! The neighbour cache state machine under a fake clock: request rate limit, retry limit and
//! back-off, reachability expiry and stale confirmation, merge rule, capacity eviction.

use espada_hostpath::neighbor::{Learn, NeighborState};
use espada_hostpath::{Lookup, MacAddr, NeighborCache, NeighborConfig};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

const MAC_A: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xa]);
const MAC_B: MacAddr = MacAddr([2, 0, 0, 0, 0, 0xb]);

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

/// A fake clock: a fixed base plus an offset in milliseconds.
struct Clock(Instant);
impl Clock {
    fn at(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

fn cache() -> (NeighborCache, Clock) {
    (
        NeighborCache::new(NeighborConfig::default()),
        Clock(Instant::now()),
    )
}

const SEND: Lookup = Lookup::Miss { send_request: true };
const WAIT: Lookup = Lookup::Miss {
    send_request: false,
};

#[test]
fn requests_rate_limited_retried_three_times_then_back_off() {
    let (mut c, t) = cache();
    let a = ip(5);
    assert_eq!(c.lookup(a, t.at(0)), SEND);
    assert_eq!(c.lookup(a, t.at(10)), WAIT, "at most one per second");
    assert_eq!(c.lookup(a, t.at(999)), WAIT);
    assert_eq!(c.lookup(a, t.at(1000)), SEND, "second request");
    assert_eq!(c.lookup(a, t.at(1500)), WAIT);
    assert_eq!(c.lookup(a, t.at(2000)), SEND, "third request");
    assert_eq!(c.lookup(a, t.at(3000)), WAIT, "gave up after three");
    assert!(matches!(
        c.get(a).unwrap().state,
        NeighborState::Failed { .. }
    ));
    // Back-off (20 s by default): nothing is sent however often we ask.
    for ms in (3_000..23_000).step_by(500) {
        assert_eq!(c.lookup(a, t.at(ms)), WAIT, "at {ms} ms");
    }
    assert_eq!(
        c.lookup(a, t.at(23_000)),
        SEND,
        "after the back-off, try again"
    );
}

#[test]
fn poll_retransmits_without_traffic() {
    let (mut c, t) = cache();
    let a = ip(6);
    assert_eq!(c.lookup(a, t.at(0)), SEND);
    let mut due = Vec::new();
    c.poll(t.at(500), &mut due);
    assert!(due.is_empty());
    c.poll(t.at(1000), &mut due);
    assert_eq!(due, vec![a]);
    due.clear();
    c.poll(t.at(2000), &mut due);
    assert_eq!(due, vec![a]);
    due.clear();
    c.poll(t.at(3000), &mut due);
    assert!(due.is_empty(), "three requests in total");
    // A reply during back-off still resolves it.
    assert_eq!(c.learn(a, MAC_A, t.at(4000)), Learn::Resolved);
    assert_eq!(c.lookup(a, t.at(4001)), Lookup::Hit(MAC_A));
}

#[test]
fn reachable_expires_to_stale_and_unconfirmed_stale_fails() {
    let (mut c, t) = cache();
    let a = ip(7);
    assert_eq!(c.learn(a, MAC_A, t.at(0)), Learn::Created);
    assert_eq!(c.lookup(a, t.at(29_999)), Lookup::Hit(MAC_A));
    // 30 s reachable time lapsed: still usable, confirmation requested once per second.
    assert_eq!(
        c.lookup(a, t.at(30_000)),
        Lookup::Stale {
            mac: MAC_A,
            send_request: true
        }
    );
    assert_eq!(
        c.lookup(a, t.at(30_500)),
        Lookup::Stale {
            mac: MAC_A,
            send_request: false
        }
    );
    assert!(c.lookup(a, t.at(31_000)).send_request());
    assert!(c.lookup(a, t.at(32_000)).send_request());
    // Three confirmations unanswered: the neighbour is considered gone.
    assert_eq!(c.lookup(a, t.at(33_000)), WAIT);
    assert_eq!(c.lookup(a, t.at(33_000)).mac(), None);
}

#[test]
fn confirmation_brings_stale_back_to_reachable() {
    let (mut c, t) = cache();
    let a = ip(8);
    c.learn(a, MAC_A, t.at(0));
    assert!(c.lookup(a, t.at(31_000)).send_request());
    assert_eq!(c.learn(a, MAC_A, t.at(31_100)), Learn::Confirmed);
    assert_eq!(c.lookup(a, t.at(31_200)), Lookup::Hit(MAC_A));
}

#[test]
fn merge_updates_only_existing_entries() {
    let (mut c, t) = cache();
    let a = ip(9);
    assert_eq!(c.merge(a, MAC_A, t.at(0)), Learn::NotPresent);
    assert!(c.is_empty(), "merge never creates");
    c.learn(a, MAC_A, t.at(0));
    assert_eq!(c.merge(a, MAC_B, t.at(1)), Learn::Changed(MAC_A));
    assert_eq!(c.lookup(a, t.at(2)), Lookup::Hit(MAC_B));
    assert!(Learn::Changed(MAC_A).is_news() && !Learn::Confirmed.is_news());
    // An Incomplete entry is resolved by a merge (reply to our request).
    let b = ip(10);
    assert_eq!(c.lookup(b, t.at(0)), SEND);
    assert_eq!(c.merge(b, MAC_B, t.at(5)), Learn::Resolved);
    assert_eq!(c.lookup(b, t.at(6)), Lookup::Hit(MAC_B));
}

#[test]
fn capacity_evicts_least_recently_updated() {
    let cfg = NeighborConfig {
        capacity: 3,
        ..NeighborConfig::default()
    };
    let mut c = NeighborCache::new(cfg);
    let t = Clock(Instant::now());
    c.learn(ip(1), MAC_A, t.at(0));
    c.learn(ip(2), MAC_A, t.at(10));
    c.learn(ip(3), MAC_A, t.at(20));
    // Refresh ip(1): now ip(2) is the oldest.
    c.learn(ip(1), MAC_A, t.at(30));
    c.learn(ip(4), MAC_A, t.at(40));
    assert_eq!(c.len(), 3);
    assert!(c.get(ip(2)).is_none(), "oldest evicted");
    assert!(c.get(ip(1)).is_some() && c.get(ip(3)).is_some() && c.get(ip(4)).is_some());
    // Lookups of new targets also evict rather than grow.
    assert_eq!(c.lookup(ip(5), t.at(50)), SEND);
    assert_eq!(c.len(), 3);
    assert!(c.get(ip(3)).is_none());
}

#[test]
fn expire_ages_and_removes() {
    let cfg = NeighborConfig {
        stale_lifetime: Duration::from_secs(60),
        ..NeighborConfig::default()
    };
    let mut c = NeighborCache::new(cfg);
    let t = Clock(Instant::now());
    c.learn(ip(1), MAC_A, t.at(0));
    assert_eq!(c.lookup(ip(2), t.at(0)), SEND);
    let mut due = Vec::new();
    for s in 1..=3 {
        c.poll(t.at(s * 1000), &mut due);
    }
    assert_eq!(c.expire(t.at(10_000)), 0);
    assert!(matches!(
        c.get(ip(1)).unwrap().state,
        NeighborState::Reachable { .. }
    ));
    assert!(matches!(
        c.get(ip(2)).unwrap().state,
        NeighborState::Failed { .. }
    ));
    // At 31 s: the reachable entry lapsed to Stale; the failed one's back-off (3 s + 20 s)
    // is over, so it is removed.
    assert_eq!(c.expire(t.at(31_000)), 1);
    assert!(matches!(
        c.get(ip(1)).unwrap().state,
        NeighborState::Stale { .. }
    ));
    assert!(c.get(ip(2)).is_none());
    assert_eq!(c.expire(t.at(59_999)), 0);
    assert_eq!(
        c.expire(t.at(60_000)),
        1,
        "stale entry removed after its lifetime"
    );
    assert!(c.is_empty());
}

#[test]
fn iteration_and_snapshot() {
    let (mut c, t) = cache();
    c.learn(ip(3), MAC_B, t.at(0));
    c.learn(ip(1), MAC_A, t.at(0));
    assert_eq!(c.lookup(ip(2), t.at(0)), SEND);
    let usable: Vec<_> = c.iter().collect();
    assert_eq!(
        usable,
        vec![(ip(1), MAC_A), (ip(3), MAC_B)],
        "Incomplete excluded, sorted"
    );
    let snap = c.snapshot();
    assert_eq!(snap.len(), 3);
    assert_eq!(snap[1].ip, ip(2));
    assert_eq!(snap[1].mac, None);
    assert!(matches!(
        snap[1].state,
        NeighborState::Incomplete { requests: 1, .. }
    ));
}

#[test]
fn zero_capacity_and_huge_durations_do_not_panic() {
    let cfg = NeighborConfig {
        capacity: 0,
        reachable_time: Duration::MAX,
        retry_interval: Duration::MAX,
        failure_backoff: Duration::MAX,
        ..NeighborConfig::default()
    };
    let mut c = NeighborCache::new(cfg);
    let now = Instant::now();
    assert_eq!(c.lookup(ip(1), now), WAIT);
    assert_eq!(c.learn(ip(1), MAC_A, now), Learn::NotPresent);
    assert!(c.is_empty());
    let mut c = NeighborCache::new(NeighborConfig { capacity: 4, ..cfg });
    assert_eq!(c.learn(ip(1), MAC_A, now), Learn::Created);
    assert_eq!(
        c.lookup(ip(1), now + Duration::from_secs(86_400)),
        Lookup::Hit(MAC_A)
    );
}
