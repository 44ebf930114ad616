//! Recovery in the strongSwan lab of `common/swan.rs`, under a sequenced UDP stream each way:
//! - charon killed with SIGKILL and started again 10 s later re-initiates with INITIAL_CONTACT:
//!   espada drops the dead peer's SAs at once and traffic is back within 1 s of its IKE_AUTH;
//! - espada killed and started again: the peer's ESP on the old SPIs is classified
//!   (`unknown_spi_known_peer`), starts a new IKE SA at once, and traffic is back within 1 s
//!   of its IKE_AUTH;
//! - a restarted charon that does not re-initiate: espada's DPD finds the IKE SA dead and
//!   restarts the tunnel within DPD delay + timeout + 2 s of the peer being back;
//! - espada behind a MASQUERADE NAT reaches charon over UDP 4500, and a NAT mapping change
//!   (new source port, conntrack flushed) is survived: the next authenticated IKE message
//!   (DPD) moves charon to the new port;
//! - charon behind a MASQUERADE NAT whose mapping changes: charon's next authenticated IKE
//!   request (its DPD) comes from the new port and espada's outbound SA follows it at once
//!   (not at the next rekey).

mod common;

use std::time::Duration;

use common::swan::{self, Opts, SwanLab};

#[test]
fn after_a_peer_restart_and_after_an_espada_restart_traffic_is_back_within_a_second_of_ike_auth() {
    if !swan::available() {
        return;
    }
    let mut lab = SwanLab::start(Opts::default());
    lab.wait_up();

    // The peer dies and comes back 10 s later, initiating with INITIAL_CONTACT.
    let stream = lab.stream(200, 25);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    lab.charon.kill();
    std::thread::sleep(Duration::from_secs(10));
    lab.charon.start(&[]);
    let report = stream.finish();
    let log = lab.daemon.log_text();
    let auth = swan::log_time(&log, "IKE SA established", killed)
        .unwrap_or_else(|| panic!("a new IKE SA after the peer's restart:\n{log}"));
    let back = report.back_after(killed + 1.0).expect("an outage");
    assert!(
        log.contains("InitialContact"),
        "the old SAs went on INITIAL_CONTACT:\n{log}"
    );
    assert!(
        back - auth <= 1.0,
        "traffic back {:.3} s after the restarted peer's IKE_AUTH: {report:?}",
        back - auth
    );
    let (a, b) = report.outages();
    assert!(
        a.len() <= 1 && b.len() <= 1,
        "one outage, the restart: {report:?}"
    );
    eprintln!(
        "peer restart: traffic back {:.3} s after its IKE_AUTH ({:.1} s after the kill)",
        back - auth,
        back - killed
    );
    std::thread::sleep(Duration::from_secs(2));
    let sas = lab.charon.sas();
    assert_eq!(sas.matches("state=INSTALLED").count(), 1, "{sas}");

    // espada dies and comes back: the peer's ESP on the old SPIs brings the tunnel back.
    let stream = lab.stream(200, 20);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    lab.crash_and_restart_espada("espada-restarted.log");
    let report = stream.finish();
    let log = lab.daemon.log_text();
    let running = swan::log_time(&log, "espada running", killed).unwrap();
    let auth = swan::log_time(&log, "IKE SA established", killed)
        .unwrap_or_else(|| panic!("a new IKE SA after espada's restart:\n{log}"));
    assert!(
        log.contains("on an unknown SPI and no IKE SA: initiating"),
        "{log}"
    );
    let drops = lab.daemon.drops();
    assert!(
        drops.total["unknown_spi_known_peer"] > 0,
        "the peer's ESP on old SPIs is classified: {:?}",
        drops.total
    );
    let back = report.back_after(killed + 0.5).expect("an outage");
    assert!(
        auth - running <= 2.0 && back - auth <= 1.0,
        "IKE SA {:.3} s after espada is running, traffic {:.3} s after that: {report:?}\n{log}",
        auth - running,
        back - auth
    );
    eprintln!(
        "espada restart: IKE SA {:.3} s after start, traffic back {:.3} s after IKE_AUTH",
        auth - running,
        back - auth
    );
    std::thread::sleep(Duration::from_secs(2));
    let sas = lab.charon.sas();
    assert_eq!(sas.matches("state=INSTALLED").count(), 1, "{sas}");
}

#[test]
fn dpd_restores_the_tunnel_when_the_restarted_peer_does_not_initiate() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts {
        tunnel_yaml: "    dpd: { delay: 2s, timeout: 4s, action: restart }\n",
        ..Opts::default()
    });
    lab.wait_up();
    let stream = lab.stream(200, 30);
    std::thread::sleep(Duration::from_secs(3));
    let killed = swan::epoch_now();
    lab.charon.kill();
    std::thread::sleep(Duration::from_secs(10));
    lab.charon.start(&["start_action=none"]);
    let ready = swan::epoch_now();
    let report = stream.finish();
    let log = lab.daemon.log_text();
    assert!(
        log.contains("is dead"),
        "DPD declared the peer dead:\n{log}"
    );
    let back = report.back_after(killed + 1.0).expect("an outage");
    assert!(
        back - ready <= 2.0 + 4.0 + 2.0,
        "traffic back {:.3} s after the peer is up again: {report:?}\n{log}",
        back - ready
    );
    eprintln!(
        "DPD restart: traffic back {:.3} s after the silent peer is up ({:.1} s after the kill)",
        back - ready,
        back - killed
    );
}

#[test]
fn espada_behind_a_masquerading_nat_reaches_strongswan_and_survives_a_mapping_change() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts {
        espada_initiates: true,
        nat: true,
        tunnel_yaml: "    dpd: { delay: 2s, timeout: 10s, action: restart }\n",
        ..Opts::default()
    });
    lab.wait_up();
    let log = lab.daemon.log_text();
    assert!(log.contains("NAT detected: UDP 4500"), "{log}");
    let nat = lab.nat.as_ref().unwrap();
    let stream = lab.stream(200, 25);
    std::thread::sleep(Duration::from_secs(3));
    // A new mapping with another source port: charon's packets to the old one are dropped by
    // the NAT until an authenticated IKE message from the new one moves charon over.
    let changed = swan::change_nat_mapping(nat, "pub0");
    let report = stream.finish();
    let back = report.back_after(changed + 0.1).unwrap_or(changed);
    let mapping = nat.exec(&["conntrack", "-L", "-p", "udp"]).unwrap();
    let mapping = String::from_utf8_lossy(&mapping.stdout);
    assert!(mapping.contains("dport=30"), "the new mapping: {mapping}");
    assert!(
        back - changed <= 2.0 * 2.0 + 2.0,
        "traffic back {:.3} s after the mapping changed: {report:?}\n{}",
        back - changed,
        lab.daemon.log_text()
    );
    let (a, b) = report.outages();
    assert!(a.len() <= 1 && b.len() <= 1, "{report:?}");
    eprintln!(
        "NAT mapping change: traffic back {:.3} s later",
        back - changed
    );
}

#[test]
fn a_peer_behind_a_nat_whose_mapping_changes_is_followed_by_espadas_outbound_sa() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts {
        peer_nat: true,
        // No rekey during the test: only the move can bring the traffic back.
        child_lifetime: "{ time: 600s, margin: 60s, jitter: 1s }",
        charon: vec!["dpd_delay=2s".into()],
        ..Opts::default()
    });
    lab.wait_up();
    let nat = lab.nat.as_ref().unwrap();
    let stream = lab.stream(200, 20);
    std::thread::sleep(Duration::from_secs(3));
    let changed = swan::change_nat_mapping(nat, "pub0");
    let report = stream.finish();
    let log = lab.daemon.log_text();
    let moved = swan::log_time(&log, "peer moved to 198.51.100.2:30", changed)
        .unwrap_or_else(|| panic!("espada saw the peer move:\n{log}"));
    let back = report
        .back_after(changed + 0.1)
        .expect("an outage towards the moved peer");
    assert!(
        back - moved <= 1.0 && back - changed <= 2.0 * 2.0 + 2.0,
        "traffic back {:.3} s after the move was seen, {:.3} s after the mapping changed: \
         {report:?}\n{log}",
        back - moved,
        back - changed
    );
    let (a, b) = report.outages();
    assert!(a.len() <= 1 && b.len() <= 1, "{report:?}");
    eprintln!(
        "peer NAT mapping change: seen {:.3} s later, traffic back {:.3} s after that",
        moved - changed,
        back - moved
    );
}
