//! espada-ike against strongSwan's charon (5.9.8, kernel-libipsec) over real UDP sockets in
//! two network namespaces (deploy/lab/ike/swan.sh): establishment, CHILD_SA and IKE_SA rekeys
//! started by either side, deletion by either side, and authentication failures both ways.
//! Every step is checked against charon's own view (`swanctl --list-sas --raw`: the same IKE
//! and CHILD_SA SPIs, one SA of each once the old ones are gone) and its log.
//!
//! A step that cannot go on (no agreement on the SAs, an expected event missing, swanctl
//! failing) fails the test at once; other checks are collected and fail it at the end, so one
//! run shows every deviation.
//!
//! Needs root and strongSwan; skips with a note otherwise, fails with
//! `ESPADA_REQUIRE_STRONGSWAN=1` (CI).

mod interop;

use std::time::Duration;

use espada_ike::exchange::{DeleteReason, Event};
use interop::{PSK, Session, Snapshot};

const IKE_384: &str = "aes256gcm16-prfsha384-ecp384";
const ESP_384: &str = "aes256gcm16-modp2048";
const IKE_128: &str = "aes128gcm16-prfsha256-x25519";
const ESP_128: &str = "aes128gcm16";

/// Each scenario must end well within this (CI runs them in parallel on 2 cores).
const SCENARIO_BUDGET: Duration = Duration::from_secs(60);

fn field<'a>(f: &'a std::collections::BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    f.get(k).map(String::as_str)
}

/// charon lists the IKE SA with these algorithms.
fn check_ike_algs(s: &mut Session, snap: &Snapshot, keysize: &str, prf: &str, dh: &str) {
    let f = &snap.charon.fields;
    let got = (
        field(f, "encr-alg"),
        field(f, "encr-keysize"),
        field(f, "prf-alg"),
        field(f, "dh-group"),
    );
    let want = (Some("AES_GCM_16"), Some(keysize), Some(prf), Some(dh));
    s.check(got == want, || {
        format!("charon's IKE_SA algorithms {got:?}, expected {want:?}")
    });
}

/// charon lists the CHILD_SA with this cipher and PFS group (`None`: no KE in its exchange).
fn check_child_algs(s: &mut Session, snap: &Snapshot, keysize: &str, dh: Option<&str>) {
    let f = &snap.charon.children[0].fields;
    let got = (
        field(f, "encr-alg"),
        field(f, "encr-keysize"),
        field(f, "dh-group"),
    );
    let want = (Some("AES_GCM_16"), Some(keysize), dh);
    s.check(got == want, || {
        format!("charon's CHILD_SA algorithms {got:?}, expected {want:?}")
    });
}

/// NAT-T is on for both: charon fakes a NAT (kernel-libipsec needs ESP in UDP), so espada's
/// IkeEstablished says `nat: true` and charon's CHILD_SA is UDP-encapsulated.
fn check_natt(s: &mut Session, snap: &Snapshot, established: &Event) {
    let nat_any = field(&snap.charon.fields, "nat-any");
    s.check(nat_any == Some("yes"), || {
        format!("charon nat-any={nat_any:?}")
    });
    let encap = field(&snap.charon.children[0].fields, "encap");
    s.check(encap == Some("yes"), || {
        format!("charon's CHILD_SA encap={encap:?}")
    });
    let ok = matches!(established, Event::IkeEstablished { nat: true, remote, .. }
        if remote.port() == espada_ike::NATT_PORT);
    s.check(ok, || {
        format!("espada {established:?}: expected nat: true with the peer on port 4500")
    });
}

/// A CHILD_SA rekey (by espada or, with `by_charon`, by charon) gave the tunnel new SPIs on
/// both sides, on the same IKE SA.
fn child_rekey(s: &mut Session, before: &Snapshot, by_charon: bool) -> Snapshot {
    let who = if by_charon { "charon" } else { "espada" };
    s.step(&format!("CHILD_SA rekey by {who}"));
    let n = s.esp.events.len();
    if by_charon {
        s.swanctl_ok(&["--rekey", "--child", "lab"]);
    } else {
        let child = before.child;
        s.esp
            .command(|ep, now| ep.rekey_child(now, child))
            .expect("rekey_child");
    }
    let ev = s.expect_event(n, "ChildRekeyed", |e| {
        matches!(e, Event::ChildRekeyed { .. })
    });
    let after = s.converge(&format!("CHILD_SA rekey by {who}"));
    assert_eq!(after.child, before.child, "the tunnel slot stays");
    assert_eq!(
        (after.ike, after.spis),
        (before.ike, before.spis),
        "same IKE SA"
    );
    assert!(
        after.spi_in != before.spi_in && after.spi_out != before.spi_out,
        "new SPIs"
    );
    let want = Event::ChildRekeyed {
        ike: before.ike,
        child: before.child,
        old: (before.spi_in, before.spi_out),
        new: (after.spi_in, after.spi_out),
    };
    s.check(ev == want, || format!("event {ev:?}, expected {want:?}"));
    let rekeys: Vec<String> = s.esp.events[n..]
        .iter()
        .filter(|e| matches!(e, Event::ChildRekeyed { .. }))
        .map(|e| format!("{e:?}"))
        .collect();
    s.check(rekeys.len() == 1, || {
        format!(
            "CHILD_SA rekey by {who}: {} rekeys instead of one: {rekeys:?}",
            rekeys.len()
        )
    });
    after
}

/// An IKE SA rekey (by espada or charon) gave new IKE SPIs on both sides and moved the
/// CHILD_SA unchanged; whoever rekeyed is the new SA's initiator.
fn ike_rekey(s: &mut Session, before: &Snapshot, by_charon: bool) -> Snapshot {
    let who = if by_charon { "charon" } else { "espada" };
    s.step(&format!("IKE_SA rekey by {who}"));
    let n = s.esp.events.len();
    if by_charon {
        s.swanctl_ok(&["--rekey", "--ike", "lab"]);
    } else {
        let ike = before.ike;
        s.esp
            .command(|ep, now| ep.rekey_ike(now, ike))
            .expect("rekey_ike");
    }
    let ev = s.expect_event(n, "IkeRekeyed", |e| matches!(e, Event::IkeRekeyed { .. }));
    let after = s.converge(&format!("IKE_SA rekey by {who}"));
    assert_ne!(after.ike, before.ike, "a new IKE SA");
    assert!(
        after.spis.0 != before.spis.0 && after.spis.1 != before.spis.1,
        "new IKE SPIs"
    );
    let ok =
        matches!(ev, Event::IkeRekeyed { old, new, .. } if old == before.ike && new == after.ike);
    s.check(ok, || {
        format!(
            "event {ev:?}, expected old {:?} new {:?}",
            before.ike, after.ike
        )
    });
    assert_eq!(
        (after.child, after.spi_in, after.spi_out),
        (before.child, before.spi_in, before.spi_out),
        "the CHILD_SA moved unchanged"
    );
    s.check(after.espada_initiator != by_charon, || {
        format!(
            "after a rekey by {who}, espada_initiator = {}",
            after.espada_initiator
        )
    });
    after
}

fn budget(s: &mut Session) {
    let t = s.elapsed();
    s.step(&format!("scenario done in {t:?}"));
    s.check(t < SCENARIO_BUDGET, || format!("took {t:?}"));
}

#[test]
fn espada_initiator_aes256_ecp384_modp2048_pfs() {
    let Some(mut s) = Session::start("init384", PSK, IKE_384, ESP_384) else {
        return;
    };

    s.step("espada initiates");
    let ike = s
        .esp
        .command(|ep, now| ep.initiate(now, 0))
        .expect("initiate");
    let est = s.expect_event(0, "IkeEstablished", |e| {
        matches!(e, Event::IkeEstablished { .. })
    });
    s.expect_event(0, "ChildEstablished", |e| {
        matches!(e, Event::ChildEstablished { .. })
    });
    let s0 = s.converge("established");
    assert!(s0.espada_initiator);
    assert_eq!(s0.ike, ike);
    s.check(
        matches!(est, Event::IkeEstablished { spis, .. } if spis == s0.spis),
        || format!("{est:?}: SPIs differ from the SA's"),
    );
    check_natt(&mut s, &s0, &est);
    check_ike_algs(&mut s, &s0, "256", "PRF_HMAC_SHA2_384", "ECP_384");
    check_child_algs(&mut s, &s0, "256", None);

    let s1 = child_rekey(&mut s, &s0, false);
    check_child_algs(&mut s, &s1, "256", Some("MODP_2048"));
    let s2 = child_rekey(&mut s, &s1, true);
    check_child_algs(&mut s, &s2, "256", Some("MODP_2048"));
    let s3 = ike_rekey(&mut s, &s2, false);
    check_ike_algs(&mut s, &s3, "256", "PRF_HMAC_SHA2_384", "ECP_384");
    let s4 = ike_rekey(&mut s, &s3, true);
    check_ike_algs(&mut s, &s4, "256", "PRF_HMAC_SHA2_384", "ECP_384");

    s.step("espada deletes the IKE SA");
    let n = s.esp.events.len();
    let ike = s4.ike;
    s.esp
        .command(|ep, now| ep.delete_ike(now, ike))
        .expect("delete_ike");
    let ev = s.expect_event(n, "IkeDeleted", |e| matches!(e, Event::IkeDeleted { .. }));
    let want = Event::IkeDeleted {
        ike,
        reason: DeleteReason::Local,
    };
    s.check(ev == want, || format!("event {ev:?}, expected {want:?}"));
    s.wait_all_gone("delete by espada");
    budget(&mut s);
    s.finish(true);
}

#[test]
fn espada_responder_aes128_x25519() {
    let Some(mut s) = Session::start("resp128", PSK, IKE_128, ESP_128) else {
        return;
    };

    s.step("charon initiates");
    s.swanctl_ok(&["--initiate", "--child", "lab", "--timeout", "10"]);
    let est = s.expect_event(0, "IkeEstablished", |e| {
        matches!(e, Event::IkeEstablished { .. })
    });
    s.expect_event(0, "ChildEstablished", |e| {
        matches!(e, Event::ChildEstablished { .. })
    });
    let s0 = s.converge("established");
    assert!(!s0.espada_initiator);
    s.check(
        matches!(est, Event::IkeEstablished { spis, .. } if spis == s0.spis),
        || format!("{est:?}: SPIs differ from the SA's"),
    );
    check_natt(&mut s, &s0, &est);
    check_ike_algs(&mut s, &s0, "128", "PRF_HMAC_SHA2_256", "CURVE_25519");
    check_child_algs(&mut s, &s0, "128", None);

    let s1 = child_rekey(&mut s, &s0, true);
    check_child_algs(&mut s, &s1, "128", None);
    let s2 = child_rekey(&mut s, &s1, false);
    check_child_algs(&mut s, &s2, "128", None);
    let s3 = ike_rekey(&mut s, &s2, true);
    check_ike_algs(&mut s, &s3, "128", "PRF_HMAC_SHA2_256", "CURVE_25519");
    let s4 = ike_rekey(&mut s, &s3, false);
    check_ike_algs(&mut s, &s4, "128", "PRF_HMAC_SHA2_256", "CURVE_25519");

    s.step("charon terminates the IKE SA");
    let n = s.esp.events.len();
    s.swanctl_ok(&["--terminate", "--ike", "lab", "--timeout", "10"]);
    let ev = s.expect_event(n, "IkeDeleted", |e| matches!(e, Event::IkeDeleted { .. }));
    let want = Event::IkeDeleted {
        ike: s4.ike,
        reason: DeleteReason::Peer,
    };
    s.check(ev == want, || format!("event {ev:?}, expected {want:?}"));
    s.wait_all_gone("terminate by charon");
    budget(&mut s);
    s.finish(true);
}

#[test]
fn wrong_psk_fails_cleanly_both_ways() {
    let Some(mut s) = Session::start("badpsk", "not-the-lab-psk", IKE_128, ESP_128) else {
        return;
    };

    s.step("espada initiates with a wrong PSK");
    s.esp
        .command(|ep, now| ep.initiate(now, 0))
        .expect("initiate");
    let ev = s.expect_event(0, "AuthenticationFailed", |e| {
        matches!(e, Event::AuthenticationFailed { .. })
    });
    s.check(
        matches!(ev, Event::AuthenticationFailed { by_peer: true, .. }),
        || format!("{ev:?}: charon refused our AUTH, expected by_peer: true"),
    );
    s.wait_all_gone("espada's IKE_AUTH refused");
    let log = s.lab.charon_log();
    s.check(log.contains("but MAC mismatched"), || {
        "charon did not log that espada's AUTH was wrong".into()
    });
    s.check(
        log.contains("generating IKE_AUTH response 1 [ N(AUTH_FAILED) ]"),
        || "charon did not answer IKE_AUTH with AUTHENTICATION_FAILED".into(),
    );

    s.step("charon initiates, espada's PSK is wrong");
    let n = s.esp.events.len();
    let (status, out, err) = s.swanctl(&["--initiate", "--child", "lab", "--timeout", "10"]);
    s.check(!status.success(), || {
        format!("charon's initiate must fail: {out}{err}")
    });
    let ev = s.expect_event(n, "AuthenticationFailed", |e| {
        matches!(e, Event::AuthenticationFailed { .. })
    });
    s.check(
        matches!(ev, Event::AuthenticationFailed { by_peer: false, .. }),
        || format!("{ev:?}: we refused charon's AUTH, expected by_peer: false"),
    );
    s.wait_all_gone("charon's IKE_AUTH refused");
    let log = s.lab.charon_log();
    s.check(
        log.contains("received AUTHENTICATION_FAILED notify error"),
        || "charon did not log that espada refused its AUTH".into(),
    );
    let established = s.esp.events.iter().any(|e| {
        matches!(
            e,
            Event::IkeEstablished { .. } | Event::ChildEstablished { .. }
        )
    });
    s.check(!established, || {
        "espada established something with a wrong PSK".into()
    });
    budget(&mut s);
    s.finish(false);
}
