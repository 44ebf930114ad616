//! Two espada IKE endpoints negotiate, rekey and delete over a loss-free simulated network.

mod common;

use std::time::Duration;

use common::{Pair, Side};
use espada_ike::exchange::Event;

fn established(p: &mut Pair) {
    p.initiate(Side::A);
    p.run_for(Duration::from_secs(1));
    p.run_with_traffic(Duration::from_millis(200), Duration::from_millis(20));
    assert!(p.violations.is_empty(), "{}", p.dump());
    p.check_converged()
        .unwrap_or_else(|e| panic!("{e}\n{}", p.dump()));
}

#[test]
fn ike_sa_and_first_child_sa_established() {
    let mut p = Pair::standard(1);
    established(&mut p);
    for s in [Side::A, Side::B] {
        assert!(
            p.events[s.idx()]
                .iter()
                .any(|e| matches!(e, Event::IkeEstablished { .. })),
            "{:?}",
            p.events[s.idx()]
        );
        assert!(
            p.events[s.idx()]
                .iter()
                .any(|e| matches!(e, Event::ChildEstablished { .. }))
        );
    }
    assert!(p.dp[0].packets_received > 0 && p.dp[1].packets_received > 0);
}

#[test]
fn child_rekey_from_either_side_is_make_before_break() {
    for side in [Side::A, Side::B] {
        let mut p = Pair::standard(2);
        established(&mut p);
        let (child, old_in, _) = p.tunnels(side)[0];
        let now = p.now;
        p.ep[side.idx()].rekey_child(now, child).unwrap();
        p.drain(side);
        p.run_with_traffic(Duration::from_secs(2), Duration::from_millis(10));
        assert!(p.violations.is_empty(), "{}", p.dump());
        p.check_converged()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.dump()));
        assert_ne!(
            p.tunnels(side)[0].1,
            old_in,
            "new SPI after the rekey\n{}",
            p.dump()
        );
        assert!(
            p.dp[side.idx()].retired.contains_key(&old_in),
            "old inbound retired"
        );
    }
}

#[test]
fn ike_rekey_from_either_side_moves_children() {
    for side in [Side::A, Side::B] {
        let mut p = Pair::standard(3);
        established(&mut p);
        let old = p.established(side)[0];
        let tunnels = p.tunnels(side);
        let now = p.now;
        p.ep[side.idx()].rekey_ike(now, old).unwrap();
        p.drain(side);
        p.run_with_traffic(Duration::from_secs(2), Duration::from_millis(10));
        assert!(p.violations.is_empty(), "{}", p.dump());
        p.check_converged()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.dump()));
        assert_ne!(p.established(side)[0], old);
        assert_eq!(p.tunnels(side), tunnels, "CHILD_SAs unchanged");
        // The moved CHILD_SA can still be rekeyed on the new IKE SA.
        let now = p.now;
        p.ep[side.other().idx()]
            .rekey_child(now, tunnels[0].0)
            .unwrap();
        p.drain(side.other());
        p.run_with_traffic(Duration::from_secs(2), Duration::from_millis(10));
        assert!(p.violations.is_empty(), "{}", p.dump());
        p.check_converged()
            .unwrap_or_else(|e| panic!("{e}\n{}", p.dump()));
    }
}

#[test]
fn delete_ike_sa_removes_everything_on_both_sides() {
    let mut p = Pair::standard(4);
    established(&mut p);
    let ike = p.established(Side::B)[0];
    let now = p.now;
    p.ep[1].delete_ike(now, ike).unwrap();
    p.drain(Side::B);
    p.run_for(Duration::from_secs(2));
    assert!(p.violations.is_empty(), "{}", p.dump());
    for s in [Side::A, Side::B] {
        assert_eq!(p.ep[s.idx()].ike_sas().count(), 0, "{}", p.dump());
        assert!(
            p.dp[s.idx()].active.is_empty()
                && p.dp[s.idx()].inbound.is_empty()
                && p.dp[s.idx()].outbound.is_empty()
        );
    }
}
