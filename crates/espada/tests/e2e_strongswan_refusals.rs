//! Bad input from and around the strongSwan lab of `common/swan.rs`: each refusal gets a clear
//! log line and a counter in `show ike`, installs nothing, and leaves established tunnels
//! alone.
//! - charon with the wrong PSK: AUTHENTICATION_FAILED, no SA;
//! - charon offering no proposal espada accepts: NO_PROPOSAL_CHOSEN, both offers in the line;
//! - charon asking for traffic selectors espada's tunnel does not allow: TS_UNACCEPTABLE, no
//!   CHILD_SA;
//! - 4,000 IKE_SA_INIT requests (4,000 per second) with random SPIs, half from random
//!   spoofed addresses (no configured peer: refused before any state, unanswered once
//!   cookies are demanded) and half spoofing the peer's own address (state until the cookie
//!   threshold of 512 half-open SAs, then stateless cookies, RFC 7296 §2.6), while a
//!   sequenced stream runs through the established tunnel: nothing of the stream is lost.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::swan::{self, Opts, PSK, SET_X25519, SwanLab};
use espada_admin::{IkeReport, Request, Response};
use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig};
use espada_ike::exchange::{Endpoint, RandomSpis};
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::SystemRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

fn ike(lab: &SwanLab) -> IkeReport {
    match lab.daemon.call(Request::ShowIke) {
        Response::Ike(r) => r,
        other => panic!("{other:?}"),
    }
}

/// Waits up to 20 s for a log line containing `needle`; the whole log.
fn wait_line(lab: &SwanLab, needle: &str) -> String {
    swan::wait_for(Duration::from_secs(20), || {
        lab.daemon.log_text().contains(needle)
    });
    lab.daemon.log_text()
}

#[test]
fn a_peer_with_the_wrong_psk_is_refused_with_a_clear_log_line_and_no_sa() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts {
        charon_psk: "not-the-hub-psk-0123456789abcdef",
        ..Opts::default()
    });
    let log = wait_line(&lab, "authentication with");
    assert!(
        log.lines()
            .any(|l| l.contains("authentication with 198.51.100.2")
                && l.contains("failed")
                && l.ends_with("tunnel=branch")),
        "a clear line for the failed authentication, naming the tunnel:\n{log}"
    );
    assert!(!log.contains("IKE SA established"), "{log}");
    assert!(
        !log.contains(PSK) && !log.contains("not-the-hub-psk"),
        "no PSK in the log"
    );
    let r = ike(&lab);
    assert!(r.counters["ike.authentication_failed"] >= 1, "{r:?}");
    assert_ne!(r.tunnels[0].state, "established", "{r:?}");
    assert!(lab.daemon.sas().is_empty(), "no SA installed");
}

#[test]
fn a_peer_offering_no_acceptable_proposal_is_refused_with_both_offers_named() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts {
        charon: vec!["ike_proposal=aes256-sha512-modp4096".into()],
        ..Opts::default()
    });
    let log = wait_line(&lab, "no proposal chosen with");
    let line = log
        .lines()
        .find(|l| l.contains("no proposal chosen with 198.51.100.2"))
        .unwrap_or_else(|| panic!("a line for the refused proposal:\n{log}"));
    assert!(
        line.contains(SET_X25519.0) && line.contains("aes256-sha512-prfsha512-modp4096"),
        "ours and theirs in the line: {line}"
    );
    let r = ike(&lab);
    assert!(r.counters["ike.no_proposal_chosen"] >= 1, "{r:?}");
    assert!(lab.daemon.sas().is_empty(), "no SA installed");
}

#[test]
fn traffic_selectors_the_tunnel_does_not_allow_are_refused_and_nothing_is_installed() {
    if !swan::available() {
        return;
    }
    // charon protects 198.18.99.0/24, which espada's tunnel (remote_ts 203.0.113.0/24) does
    // not cover.
    let lab = SwanLab::start(Opts {
        charon: vec!["local_ts=198.18.99.0/24".into()],
        ..Opts::default()
    });
    let log = wait_line(&lab, "TS_UNACCEPTABLE");
    assert!(
        log.lines()
            .any(|l| l.contains("TS_UNACCEPTABLE") && l.contains("tunnel=branch")),
        "a line naming the refusal and the tunnel:\n{log}"
    );
    let r = ike(&lab);
    assert!(r.counters["ike.ts_unacceptable"] >= 1, "{r:?}");
    assert!(lab.daemon.sas().is_empty(), "no CHILD_SA installed");
    assert!(!log.contains("CHILD_SA established"), "{log}");
}

/// One IKE_SA_INIT request as charon would send it from 198.51.100.2 (espada-ike builds it).
fn ike_sa_init() -> String {
    let peer = PeerConfig {
        name: "flood".into(),
        local_addr: IpAddr::from([198, 51, 100, 2]),
        remote_addr: Some(IpAddr::from([198, 51, 100, 1])),
        local_id: Identity::Fqdn("branch.example".into()),
        remote_id: Identity::Fqdn("hub.example".into()),
        auth: Authenticator::Psk(Secret::from_slice(b"the flood never gets to IKE_AUTH")),
        ike_proposals: vec![IkeProposal::parse(SET_X25519.0).unwrap()],
        esp_proposals: vec![EspProposal::parse(SET_X25519.1).unwrap()],
        local_ts: vec![ts::prefix(IpAddr::from([203, 0, 113, 0]), 24)],
        remote_ts: vec![ts::prefix(IpAddr::from([192, 0, 2, 0]), 24)],
        encapsulation: Encapsulation::Auto,
        fragmentation: true,
    };
    let mut ep = Endpoint::new(
        EndpointConfig::default(),
        vec![peer],
        Box::new(SystemRandom::new()),
        Box::new(RandomSpis::default()),
    );
    ep.initiate(Instant::now(), 0).unwrap();
    let t = ep.poll_transmit().unwrap();
    t.payload.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn an_ike_sa_init_flood_from_spoofed_sources_is_refused_cheaply_and_the_tunnel_keeps_its_traffic() {
    if !swan::available() {
        return;
    }
    let lab = SwanLab::start(Opts::default());
    lab.wait_up();
    let stream = lab.stream(200, 10);
    std::thread::sleep(Duration::from_secs(3));
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lab/ike_flood.py");
    let out = lab
        .peer
        .command("python3")
        .arg(tool)
        .args([
            &ike_sa_init(),
            "198.51.100.1",
            "4000",
            "4000",
            "198.18.128.0/17",
            "198.51.100.2",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "ike_flood.py: {out:?}");
    let report = stream.finish();
    let log = lab.daemon.log_text();
    assert_eq!(
        report.lost(),
        (0, 0),
        "the established tunnel keeps its traffic through the flood: {report:?}\n{log}"
    );
    let r = ike(&lab);
    let c = |k: &str| r.counters[k];
    assert!(
        c("ike.no_peer_config") == 2000,
        "spoofed strangers refused before any state: {r:?}"
    );
    assert!(
        c("ike.cookies_sent") >= 1400,
        "cookies once the half-open SAs passed the threshold: {r:?}"
    );
    // Lines, not a line per packet: the refusals and the answers towards unresolvable
    // spoofed sources are summarised at most every 10 s.
    let refused = log.matches("IKE_SA_INIT refused:").count();
    let unresolved = log.matches("next hop not resolved").count();
    assert!(
        (1..=3).contains(&refused) && unresolved <= 3,
        "{refused} refusal and {unresolved} unresolved lines:\n{log}"
    );
    assert_eq!(r.tunnels[0].state, "established", "{r:?}");
    eprintln!(
        "flood: {} refused without state, {} cookies, 0 lost ({})",
        c("ike.no_peer_config"),
        c("ike.cookies_sent"),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}
