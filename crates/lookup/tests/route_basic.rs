//! Route tables: named cases — default routes, host routes, nesting and removal of covering
//! prefixes, errors, pool exhaustion and reclamation by epoch.

mod route_common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use espada_lookup::route::{
    Ipv4Writer, Ipv6Writer, MAX_GROUPS, MAX_VALUE, RouteError, RouteWriter, V4, V6,
};
use route_common::Harness;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn empty_tables_answer_nothing() {
    let w4 = Ipv4Writer::new(4).unwrap();
    let w6 = Ipv6Writer::new(4, 4).unwrap();
    for a in ["0.0.0.0", "10.1.2.3", "255.255.255.255"] {
        assert_eq!(w4.table().lookup(v4(a)), None);
    }
    for a in [
        "::",
        "2001:db8::1",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    ] {
        assert_eq!(w6.table().lookup(v6(a)), None);
    }
    assert!(w4.is_empty() && w6.is_empty());
}

#[test]
fn default_route_and_host_routes_v4() {
    let mut w = Ipv4Writer::new(4).unwrap();
    let t = w.table();
    assert_eq!(w.insert(v4("0.0.0.0"), 0, 7).unwrap(), None);
    assert_eq!(t.lookup(v4("1.2.3.4")), Some(7));
    assert_eq!(t.lookup(v4("255.255.255.255")), Some(7));
    w.insert(v4("198.51.100.7"), 32, 9).unwrap();
    assert_eq!(t.lookup(v4("198.51.100.7")), Some(9));
    assert_eq!(t.lookup(v4("198.51.100.6")), Some(7));
    assert_eq!(t.lookup(v4("198.51.100.8")), Some(7));
    assert_eq!(w.stats().groups_in_use, 1);
    // Replacing the default route keeps the host route and its group.
    assert_eq!(w.insert(v4("0.0.0.0"), 0, 8).unwrap(), Some(7));
    assert_eq!(t.lookup(v4("198.51.100.6")), Some(8));
    assert_eq!(t.lookup(v4("198.51.100.7")), Some(9));
    // Removing the host route collapses the group into the default route.
    assert_eq!(w.remove(v4("198.51.100.7"), 32).unwrap(), Some(9));
    assert_eq!(t.lookup(v4("198.51.100.7")), Some(8));
    assert_eq!(w.stats().groups_in_use, 0);
    assert_eq!(w.stats().groups_retired, 1);
    assert_eq!(w.remove(v4("0.0.0.0"), 0).unwrap(), Some(8));
    assert_eq!(t.lookup(v4("198.51.100.7")), None);
    assert_eq!(w.remove(v4("0.0.0.0"), 0).unwrap(), None);
}

#[test]
fn default_route_and_host_routes_v6() {
    let mut w = Ipv6Writer::new(32, 8).unwrap();
    let t = w.table();
    w.insert(v6("::"), 0, 1).unwrap();
    w.insert(v6("2001:db8::1"), 128, 2).unwrap();
    // A lone route below a first-level entry is one tail record, no group.
    let s = w.stats();
    assert_eq!((s.groups_in_use, s.tails_in_use), (0, 1));
    assert_eq!(t.lookup(v6("2001:db8::1")), Some(2));
    assert_eq!(t.lookup(v6("2001:db8::2")), Some(1));
    w.insert(v6("2001:db8::"), 64, 3).unwrap();
    assert_eq!(t.lookup(v6("2001:db8::1")), Some(2));
    assert_eq!(t.lookup(v6("2001:db8::2")), Some(3));
    assert_eq!(t.lookup(v6("2001:db8:0:1::")), Some(1));
    assert_eq!(t.lookup(v6("::1")), Some(1));
    // Two rules below: groups down to the /64's level (6), where the /128 is a tail again.
    let s = w.stats();
    assert_eq!((s.groups_in_use, s.tails_in_use), (6, 1));
    assert_eq!(s.tails_retired, 1);
    w.remove(v6("2001:db8::1"), 128).unwrap();
    assert_eq!(t.lookup(v6("2001:db8::1")), Some(3));
    // The /64 alone: its chain of groups becomes one tail.
    let s = w.stats();
    assert_eq!((s.groups_in_use, s.tails_in_use), (0, 1));
    assert_eq!(t.lookup(v6("2001:db8::ffff")), Some(3));
    w.remove(v6("2001:db8::"), 64).unwrap();
    let s = w.stats();
    assert_eq!((s.groups_in_use, s.tails_in_use), (0, 0));
    assert_eq!(t.lookup(v6("2001:db8::1")), Some(1));
}

#[test]
fn tail_values_and_fallbacks_change_in_place() {
    let mut w = Ipv6Writer::new(4, 4).unwrap();
    let t = w.table();
    w.insert(v6("2001:db8:1::"), 48, 1).unwrap();
    assert_eq!(w.insert(v6("2001:db8:1::"), 48, 2).unwrap(), Some(1));
    assert_eq!(t.lookup(v6("2001:db8:1::5")), Some(2));
    assert_eq!(t.lookup(v6("2001:db8:2::5")), None);
    // A covering /16 becomes the tail's fallback; removing it takes it back.
    w.insert(v6("2001::"), 16, 3).unwrap();
    assert_eq!(t.lookup(v6("2001:db8:2::5")), Some(3));
    assert_eq!(t.lookup(v6("2001:db8:1::5")), Some(2));
    let s = w.stats();
    assert_eq!(
        (s.groups_in_use, s.tails_in_use, s.tails_retired),
        (0, 1, 0)
    );
    w.remove(v6("2001::"), 16).unwrap();
    assert_eq!(t.lookup(v6("2001:db8:2::5")), None);
    assert_eq!(t.lookup(v6("2001:db8:1::5")), Some(2));
}

#[test]
fn nested_prefixes_and_removal_of_covering_ones() {
    let mut h = Harness::<V4>::new(8, 0);
    let routes = [
        (0x0a00_0000u128, 8, 1),
        (0x0a01_0000, 16, 2),
        (0x0a01_0200, 23, 3),
        (0x0a01_0200, 24, 4),
        (0x0a01_0280, 25, 5),
        (0x0a01_02c0, 26, 6),
        (0x0a01_02c1, 32, 7),
    ];
    let mut probes: Vec<u128> = Vec::new();
    for &(key, len, value) in &routes {
        h.insert(key, len, value);
        probes.extend(h.model.edges(key, len));
    }
    h.check(&probes);
    // Covering prefixes first: each removal must hand its entries to the next covering one.
    for &(key, len, _) in &routes {
        h.remove(key, len);
        h.check(&probes);
    }
    assert_eq!(h.writer.stats().groups_in_use, 0);
}

#[test]
fn short_prefix_added_over_longer_ones_keeps_them() {
    let mut h = Harness::<V6>::new(32, 32);
    let routes = [
        (0x2001_0db8_0001_0000_0000_0000_0000_0001u128, 128, 1),
        (0x2001_0db8_0001_0000_0000_0000_0000_0000, 64, 2),
        (0x2001_0db8_0001_0000_0000_0000_0000_0000, 48, 3),
        (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, 4),
        (0x2001_0000_0000_0000_0000_0000_0000_0000, 16, 5),
        (0x2000_0000_0000_0000_0000_0000_0000_0000, 3, 6),
    ];
    let mut probes: Vec<u128> = Vec::new();
    for &(key, len, value) in &routes {
        h.insert(key, len, value);
        probes.extend(h.model.edges(key, len));
        h.check(&probes);
    }
    for &(key, len, _) in routes.iter().rev() {
        h.remove(key, len);
        h.check(&probes);
    }
}

#[test]
fn host_bits_are_ignored() {
    let mut w = Ipv4Writer::new(2).unwrap();
    w.insert(v4("10.1.2.3"), 16, 5).unwrap();
    assert_eq!(w.get(v4("10.1.0.0"), 16), Some(5));
    assert_eq!(w.table().lookup(v4("10.1.255.255")), Some(5));
    assert_eq!(w.remove(v4("10.1.99.99"), 16).unwrap(), Some(5));
    assert!(w.is_empty());
}

#[test]
fn invalid_arguments_are_errors() {
    let mut w4 = Ipv4Writer::new(1).unwrap();
    let mut w6 = Ipv6Writer::new(1, 1).unwrap();
    assert_eq!(
        w4.insert(v4("10.0.0.0"), 33, 1),
        Err(RouteError::PrefixLength { len: 33, max: 32 })
    );
    assert_eq!(
        w4.remove(v4("10.0.0.0"), 200),
        Err(RouteError::PrefixLength { len: 200, max: 32 })
    );
    assert_eq!(
        w6.insert(v6("::"), 129, 1),
        Err(RouteError::PrefixLength { len: 129, max: 128 })
    );
    assert_eq!(
        w4.insert(v4("10.0.0.0"), 8, MAX_VALUE + 1),
        Err(RouteError::ValueTooLarge {
            value: MAX_VALUE + 1
        })
    );
    assert_eq!(w4.get(v4("10.0.0.0"), 40), None);
    w4.insert(v4("10.0.0.0"), 8, MAX_VALUE).unwrap();
    assert_eq!(w4.table().lookup(v4("10.9.9.9")), Some(MAX_VALUE));
    assert!(matches!(
        Ipv4Writer::new(MAX_GROUPS + 1),
        Err(RouteError::PoolTooLarge { .. })
    ));
    assert!(w4.insert(v4("0.0.0.0"), 0, u32::MAX).is_err());
    assert_eq!(w4.len(), 1);
}

#[test]
fn exhausted_pool_is_an_error_and_changes_nothing() {
    let mut w = Ipv4Writer::new(1).unwrap();
    let t = w.table();
    w.insert(v4("10.0.0.0"), 25, 1).unwrap();
    // Another /24 needs a second group.
    assert_eq!(
        w.insert(v4("10.0.1.0"), 25, 2),
        Err(RouteError::PoolExhausted {
            needed: 1,
            free: 0,
            retired: 0
        })
    );
    assert_eq!(t.lookup(v4("10.0.1.1")), None);
    assert_eq!(w.get(v4("10.0.1.0"), 25), None);
    assert_eq!(w.len(), 1);
    // Prefixes within the existing group and short prefixes need no group.
    w.insert(v4("10.0.0.128"), 25, 3).unwrap();
    w.insert(v4("10.0.1.0"), 24, 4).unwrap();
    assert_eq!(t.lookup(v4("10.0.1.1")), Some(4));

    // IPv6: two /64s under one first-level entry need groups down to level 6 and two tails.
    let mut w6 = Ipv6Writer::new(5, 4).unwrap();
    w6.insert(v6("2001:db8::"), 64, 1).unwrap();
    assert_eq!(
        w6.insert(v6("2001:db8:0:1::"), 64, 2),
        Err(RouteError::PoolExhausted {
            needed: 6,
            free: 5,
            retired: 0
        })
    );
    // Two /64s parting at bit 31 need groups at levels 1 and 2 and a tail for each.
    let mut w6 = Ipv6Writer::new(6, 1).unwrap();
    w6.insert(v6("2001:db8::"), 64, 1).unwrap();
    assert_eq!(
        w6.insert(v6("2001:db9::"), 64, 2),
        Err(RouteError::TailsExhausted {
            needed: 2,
            free: 0,
            retired: 0
        })
    );
    let s = w6.stats();
    assert_eq!((s.groups_free, s.tails_in_use), (6, 1));
    assert_eq!(w6.table().lookup(v6("2001:db9::1")), None);
    assert_eq!(w6.table().lookup(v6("2001:db8::1")), Some(1));
    // Same-/64 neighbours part only at level 6, where both end: no tail needed.
    w6.insert(v6("2001:db8:0:1::"), 64, 3).unwrap();
    let s = w6.stats();
    assert_eq!(
        (s.groups_in_use, s.tails_in_use, s.tails_retired),
        (6, 0, 1)
    );
    assert_eq!(w6.table().lookup(v6("2001:db8:0:1::1")), Some(3));
}

#[test]
fn removal_without_a_free_tail_keeps_the_group_and_stays_correct() {
    let mut w = Ipv6Writer::new(8, 2).unwrap();
    let t = w.table();
    w.insert(v6("2001:db8::"), 32, 1).unwrap(); // a tail at level 0
    w.insert(v6("2001:db8:1::"), 48, 2).unwrap(); // split: groups at levels 1 and 2
    w.insert(v6("2001:db8:2::"), 48, 3).unwrap();
    let s = w.stats();
    assert_eq!(
        (s.groups_in_use, s.tails_in_use, s.tails_retired),
        (4, 0, 2)
    );
    w.set_epoch(1);
    assert_eq!(w.reclaim(1), 2);
    // Use both records elsewhere, then leave the /32 alone under its groups.
    w.insert(v6("fd00::"), 64, 4).unwrap();
    w.insert(v6("fe80::"), 64, 5).unwrap();
    w.remove(v6("2001:db8:1::"), 48).unwrap();
    w.remove(v6("2001:db8:2::"), 48).unwrap();
    let s = w.stats();
    assert_eq!(
        (s.groups_in_use, s.tails_free),
        (2, 0),
        "the /32's groups stay"
    );
    assert_eq!(t.lookup(v6("2001:db8:1::1")), Some(1));
    assert_eq!(t.lookup(v6("2001:db9::1")), None);
    w.remove(v6("2001:db8::"), 32).unwrap();
    assert_eq!(w.stats().groups_in_use, 0);
    assert_eq!(t.lookup(v6("2001:db8:1::1")), None);
    assert_eq!(t.lookup(v6("fd00::1")), Some(4));
}

#[test]
fn unlinked_group_is_reused_only_after_its_epoch_has_passed() {
    let mut w = Ipv4Writer::new(1).unwrap();
    let t = w.table();
    w.set_epoch(5);
    w.insert(v4("10.0.0.0"), 25, 1).unwrap();
    w.remove(v4("10.0.0.0"), 25).unwrap();
    let stats = w.stats();
    assert_eq!((stats.groups_retired, stats.groups_free), (1, 0));
    // Unlinked at epoch 5: not free while a reader may still be in an epoch ≤ 5.
    assert!(matches!(
        w.insert(v4("10.0.1.0"), 25, 2),
        Err(RouteError::PoolExhausted { retired: 1, .. })
    ));
    assert_eq!(w.reclaim(0), 0);
    assert_eq!(w.reclaim(5), 0);
    assert_eq!(w.stats().groups_retired, 1);
    assert_eq!(w.reclaim(6), 1);
    assert_eq!(w.stats().groups_free, 1);
    w.insert(v4("10.0.1.0"), 25, 2).unwrap();
    assert_eq!(t.lookup(v4("10.0.1.1")), Some(2));
    assert_eq!(t.lookup(v4("10.0.0.1")), None);
}

#[test]
fn retire_list_frees_in_epoch_order_and_epochs_never_go_back() {
    let mut w = Ipv4Writer::new(3).unwrap();
    for (epoch, a) in [(1, "10.0.0.0"), (2, "10.0.1.0"), (3, "10.0.2.0")] {
        w.set_epoch(epoch);
        w.insert(v4(a), 32, 1).unwrap();
        w.remove(v4(a), 32).unwrap();
    }
    w.set_epoch(1);
    assert_eq!(w.epoch(), 3);
    assert_eq!(w.reclaim(3), 2);
    assert_eq!(w.stats().groups_retired, 1);
    assert_eq!(w.reclaim(u64::MAX), 1);
    assert_eq!(w.stats().groups_free, 3);
}

#[test]
fn route_writer_dispatches_by_family_and_shares_the_epoch() {
    let mut w = RouteWriter::new(2, 8, 8).unwrap();
    let routes = w.routes();
    let a4: IpAddr = "192.0.2.1".parse().unwrap();
    let a6: IpAddr = "2001:db8::1".parse().unwrap();
    w.insert(a4, 32, 1).unwrap();
    w.insert(a6, 64, 2).unwrap();
    assert_eq!(routes.lookup(a4), Some(1));
    assert_eq!(routes.lookup(a6), Some(2));
    assert_eq!(w.get(a6, 64), Some(2));
    assert_eq!(routes.clone().lookup("192.0.2.2".parse().unwrap()), None);
    w.set_epoch(4);
    w.remove(a4, 32).unwrap();
    w.remove(a6, 64).unwrap();
    // A tbl8 group and a tail record.
    assert_eq!(w.retired(), 2);
    assert_eq!(w.reclaim(4), 0);
    assert_eq!(w.reclaim(5), 2);
    assert_eq!(w.v4().stats().groups_free, 2);
    assert_eq!(w.v6().stats().tails_free, 8);
    assert_eq!(routes.lookup(a6), None);
}

#[test]
fn stats_report_memory() {
    let w = Ipv4Writer::new(16).unwrap();
    let s = w.stats();
    assert_eq!(s.table_bytes, (1 << 24) * 4 + 16 * 256 * 4);
    assert_eq!(s.used_bytes, (1 << 24) * 4);
    assert_eq!(s.shadow_bytes, (1 << 24) + 16 * 256 + 16 * 4);
    let w6 = Ipv6Writer::new(16, 100).unwrap();
    assert_eq!(
        w6.stats().table_bytes,
        (1 << 16) * 4 + 16 * 256 * 4 + 100 * 32
    );
    assert_eq!(w6.stats().shadow_bytes, (1 << 16) + 16 * 256 + 16 * 4);
    assert_eq!(w6.table().bytes(), w6.stats().table_bytes);
}

/// The words a prefetch asks for are the ones the lookup reads: the first-level word of an
/// address, and for an IPv4 address under a longer prefix its `tbl8` word, whose neighbours
/// are the words of the neighbouring addresses; no second word where the lookup stops at the
/// first.
#[test]
fn prefetch_words_are_the_lookups_own() {
    let mut w = Ipv4Writer::new(4).unwrap();
    let t = w.table();
    w.insert(v4("10.0.0.0"), 8, 1).unwrap();
    let a = v4("10.1.2.3");
    assert!(t.word_at(a, 0).is_some());
    assert_eq!(t.word_at(a, 1), None, "a /8 stops at tbl24");
    w.insert(v4("10.1.2.3"), 32, 2).unwrap();
    let at = |s: &str| t.word_at(v4(s), 1).expect("extended") as usize;
    assert_eq!(at("10.1.2.4") - at("10.1.2.3"), 4, "adjacent tbl8 words");
    assert_eq!(at("10.1.2.3") - at("10.1.2.0"), 12);
    assert_eq!(
        t.word_at(a, 0),
        t.word_at(v4("10.1.2.200"), 0),
        "one tbl24 word per /24"
    );
    assert_ne!(t.word_at(a, 0), t.word_at(v4("10.1.3.3"), 0));
    assert_eq!(t.lookup(a), Some(2));
    let w6 = Ipv6Writer::new(4, 4).unwrap();
    assert!(w6.table().first_word(v6("2001:db8::1")).is_some());
}
