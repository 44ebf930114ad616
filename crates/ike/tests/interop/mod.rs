//! Interop harness against strongSwan: the lab (namespaces + charon), espada on UDP sockets,
//! charon's view of its SAs, and a [`Session`] tying them together with the checks the
//! scenarios share.

pub mod driver;
pub mod lab;
pub mod vici;

use std::net::IpAddr;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::exchange::{ChildId, Endpoint, Event, IkeSaId, RandomSpis};
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::SystemRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

use driver::Espada;
use lab::Lab;
use vici::IkeView;

/// The lab's pre-shared key (charon's side; espada's unless a test wants a wrong one).
pub const PSK: &str = "espada-lab-psk-0123456789";
/// How long charon and espada get to agree again after an exchange (the old CHILD_SA stays
/// listed as DELETED for `delete_rekeyed_delay` = 1 s).
const CONVERGE: Duration = Duration::from_secs(8);
/// Bound of one swanctl call.
const SWANCTL: Duration = Duration::from_secs(12);

/// Lines of charon's log that name a problem. Chosen against a clean charon-vs-charon
/// session of the same lab (establish, both rekeys from both sides, delete), in which none
/// matches outside the excluded lines.
const LOG_PROBLEMS: &[&str] = &[
    "error",
    "fail",
    "unknown",
    "does not belong",
    "invalid",
    "retransmit",
    "not found",
    "unable",
    "unaccept",
    "no proposal",
    "mismatch",
    "discard",
    "ignor",
    "drop",
    "reject",
    "timeout",
    "timed out",
    "cannot",
    "could not",
    "malformed",
    "unexpected",
    "collision",
    "giving up",
    "not supported",
    "unsupported",
    // "local/remote endpoint changed from ...[4500] to ...[500]": the SA left port 4500. (A
    // responder's move from [500] to [4500] at IKE_AUTH is normal and logged too.)
    "changed from 198.18.10.1[4500]",
    "changed from 198.18.10.2[4500]",
];
/// Lines that match [`LOG_PROBLEMS`] in every clean session: the configuration dump
/// (`dpd_timeout = 0`), "dropped capabilities" at startup, and IPv6 router solicitations on
/// the TUN device that no policy covers.
const LOG_BENIGN: &[&str] = &[
    "[CFG]",
    "dropped capabilities",
    "no matching outbound IPsec policy for fe80:",
];

/// charon's log lines that name a problem.
pub fn log_problems(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            let lower = l.to_lowercase();
            LOG_PROBLEMS.iter().any(|p| lower.contains(p))
                && !LOG_BENIGN.iter().any(|b| l.contains(b))
        })
        .map(String::from)
        .collect()
}

/// espada and charon agree on one IKE SA with one CHILD_SA: what both sides show.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// espada's IKE SA.
    pub ike: IkeSaId,
    /// Its SPIi, SPIr (equal to charon's).
    pub spis: (u64, u64),
    /// espada's tunnel slot.
    pub child: ChildId,
    /// espada's inbound SPI (charon's outbound).
    pub spi_in: u32,
    /// espada's outbound SPI (charon's inbound).
    pub spi_out: u32,
    /// espada is the initiator of the IKE SA (I flag).
    pub espada_initiator: bool,
    /// charon's listing of it.
    pub charon: IkeView,
}

/// One lab with espada and charon configured for each other.
pub struct Session {
    /// espada; dropped first (its sockets close before the namespaces go).
    pub esp: Espada,
    /// The lab.
    pub lab: Lab,
    started: Instant,
    /// Checks that failed without stopping the scenario (reported by [`Session::finish`]).
    failed: Vec<String>,
}

/// espada's peer configuration for charon.
fn peer(psk: &str, ike: &str, esp: &str) -> PeerConfig {
    let net = |s: &str| ts::prefix(s.parse::<IpAddr>().expect("address"), 24);
    PeerConfig {
        name: "charon".into(),
        local_addr: lab::ESPADA_ADDR.parse().expect("address"),
        remote_addr: Some(lab::CHARON_ADDR.parse().expect("address")),
        local_id: Identity::Fqdn("left.example.com".into()),
        remote_id: Identity::Fqdn("right.example.com".into()),
        auth: Authenticator::Psk(Secret::from_slice(psk.as_bytes())),
        ike_proposals: vec![IkeProposal::parse(ike).expect("IKE proposal")],
        esp_proposals: vec![EspProposal::parse(esp).expect("ESP proposal")],
        local_ts: vec![net("198.19.1.0")],
        remote_ts: vec![net("198.19.2.0")],
        encapsulation: Encapsulation::Auto,
        fragmentation: true,
    }
}

impl Session {
    /// Starts the lab, charon with proposals `ike`/`esp` and the lab PSK, and espada with
    /// the same proposals and `espada_psk`. `None` when the machine cannot run the lab.
    pub fn start(test: &str, espada_psk: &str, ike: &str, esp: &str) -> Option<Session> {
        let started = Instant::now();
        let lab = lab::lab_or_skip(test)?;
        lab.start_charon(&[
            &format!("ike_proposal={ike}"),
            &format!("esp_proposal={esp}"),
        ]);
        let config = EndpointConfig {
            retransmit: Retransmit {
                base: Duration::from_secs(1),
                factor: 2.0,
                max_wait: Duration::from_secs(4),
                tries: 4,
            },
            initial_child_activation: Duration::from_secs(1),
            ..EndpointConfig::default()
        };
        let ep = Endpoint::new(
            config,
            vec![peer(espada_psk, ike, esp)],
            Box::new(SystemRandom::new()),
            Box::new(RandomSpis::default()),
        );
        let (s500, s4500) = lab.espada_sockets();
        let mut esp = Espada::new(ep, s500, s4500);
        esp.log(format!(
            "{test}: lab and charon up in {:?}",
            started.elapsed()
        ));
        Some(Session {
            esp,
            lab,
            started,
            failed: Vec::new(),
        })
    }

    /// Time since [`Session::start`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A check that does not stop the scenario: a failure is logged at once and fails the
    /// test in [`Session::finish`], so one run shows every deviation.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let msg = what();
            self.esp.log(format!("CHECK FAILED: {msg}"));
            self.failed.push(msg);
        }
    }

    /// Marks a step in the trace.
    pub fn step(&mut self, what: &str) {
        self.esp.log(format!("=== {what}"));
    }

    /// Fails the test with `msg`, charon's view and the tail of its log.
    pub fn fail(&mut self, msg: &str) -> ! {
        let sas = self.try_list_sas();
        let log = self.lab.charon_log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| {
                ["[IKE]", "[ENC]", "[NET]", "[CHD]"]
                    .iter()
                    .any(|t| l.contains(t))
            })
            .collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        panic!(
            "{msg}\n--- espada IKE SAs: {:?}\n--- espada data plane: {:x?}\n--- charon list-sas: {sas:x?}\n\
             --- charon log (last IKE/ENC/NET/CHD lines):\n{tail}",
            self.esp.ep.ike_sas().collect::<Vec<_>>(),
            self.esp.dp,
        );
    }

    /// Runs `swanctl ARGS` while espada keeps running; (status, stdout, stderr).
    pub fn swanctl(&mut self, args: &[&str]) -> (ExitStatus, String, String) {
        let (cmd, out, err) = self.lab.ctl(args);
        let status = match self.esp.run_process(cmd, SWANCTL) {
            Ok(s) => s,
            Err(e) => self.fail(&format!("swanctl {args:?}: {e}")),
        };
        let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
        (status, read(&out), read(&err))
    }

    /// `swanctl ARGS`, which must succeed.
    pub fn swanctl_ok(&mut self, args: &[&str]) -> String {
        let (status, out, err) = self.swanctl(args);
        if !status.success() {
            self.fail(&format!("swanctl {args:?} failed ({status}): {out}{err}"));
        }
        self.esp.log(format!("swanctl {args:?}: ok"));
        out
    }

    fn try_list_sas(&mut self) -> Result<Vec<IkeView>, String> {
        let (cmd, out, err) = self.lab.ctl(&["--list-sas", "--raw"]);
        let status = self.esp.run_process(cmd, SWANCTL)?;
        let out = std::fs::read_to_string(out).unwrap_or_default();
        if !status.success() {
            return Err(format!(
                "list-sas failed: {}",
                std::fs::read_to_string(err).unwrap_or_default()
            ));
        }
        vici::parse_list_sas(&out)
    }

    /// charon's IKE_SAs.
    pub fn list_sas(&mut self) -> Vec<IkeView> {
        match self.try_list_sas() {
            Ok(v) => v,
            Err(e) => self.fail(&e),
        }
    }

    /// Whether espada and charon show exactly one IKE SA with one CHILD_SA, the same SPIs,
    /// and espada's data plane holds exactly that CHILD_SA's SAs and sends on it.
    fn agreement(&self, sas: &[IkeView]) -> Result<Snapshot, String> {
        let ikes: Vec<_> = self.esp.ep.ike_sas().collect();
        let [sa] = ikes.as_slice() else {
            return Err(format!("espada has {} IKE SAs", ikes.len()));
        };
        if !sa.is_established() {
            return Err(format!("espada's IKE SA is {}", sa.state_name()));
        }
        let [c] = sa.children() else {
            return Err(format!(
                "espada's IKE SA has {} CHILD_SAs",
                sa.children().len()
            ));
        };
        if !c.is_current() {
            return Err("espada's CHILD_SA is not current".into());
        }
        let dp = &self.esp.dp;
        let only = |m: &std::collections::BTreeMap<u32, ChildId>, spi: u32| {
            m.len() == 1 && m.get(&spi) == Some(&c.id)
        };
        if !only(&dp.inbound, c.spi_in) || !only(&dp.outbound, c.spi_out) {
            return Err(format!(
                "espada's data plane holds inbound {:x?} outbound {:x?}, its CHILD_SA is {:08x}/{:08x}",
                dp.inbound, dp.outbound, c.spi_in, c.spi_out
            ));
        }
        if dp.active.len() != 1 || dp.active.get(&c.id) != Some(&c.spi_out) {
            return Err(format!(
                "espada sends on {:x?}, not {:08x}",
                dp.active, c.spi_out
            ));
        }
        let [ch] = sas else {
            return Err(format!("charon has {} IKE_SAs", sas.len()));
        };
        if ch.state != "ESTABLISHED" {
            return Err(format!("charon's IKE_SA is {}", ch.state));
        }
        if (ch.spi_i, ch.spi_r) != sa.spis() {
            return Err(format!(
                "IKE SPIs differ: charon {:016x}_{:016x}, espada {:016x}_{:016x}",
                ch.spi_i,
                ch.spi_r,
                sa.spis().0,
                sa.spis().1
            ));
        }
        let espada_initiator = sa.local_spi() == sa.spis().0;
        if ch.initiator == espada_initiator {
            return Err(format!(
                "both or neither are initiator (charon: {})",
                ch.initiator
            ));
        }
        let [cc] = ch.children.as_slice() else {
            return Err(format!(
                "charon has {} CHILD_SAs: {:?}",
                ch.children.len(),
                ch.children
                    .iter()
                    .map(|c| format!("{} {:08x}/{:08x}", c.state, c.spi_in, c.spi_out))
                    .collect::<Vec<_>>()
            ));
        };
        if cc.state != "INSTALLED" {
            return Err(format!("charon's CHILD_SA is {}", cc.state));
        }
        if (cc.spi_in, cc.spi_out) != (c.spi_out, c.spi_in) {
            return Err(format!(
                "CHILD_SA SPIs differ: charon in/out {:08x}/{:08x}, espada in/out {:08x}/{:08x}",
                cc.spi_in, cc.spi_out, c.spi_in, c.spi_out
            ));
        }
        Ok(Snapshot {
            ike: sa.id(),
            spis: sa.spis(),
            child: c.id,
            spi_in: c.spi_in,
            spi_out: c.spi_out,
            espada_initiator,
            charon: ch.clone(),
        })
    }

    /// Waits (bounded) until espada and charon agree on exactly one IKE SA with one CHILD_SA
    /// (old ones deleted on both sides); fails the test otherwise.
    pub fn converge(&mut self, step: &str) -> Snapshot {
        let t0 = Instant::now();
        let deadline = t0 + CONVERGE;
        loop {
            let sas = self.list_sas();
            match self.agreement(&sas) {
                Ok(s) => {
                    self.esp.log(format!(
                        "{step}: agreed after {:?}: IKE {:016x}_{:016x} CHILD in {:08x} out {:08x}",
                        t0.elapsed(),
                        s.spis.0,
                        s.spis.1,
                        s.spi_in,
                        s.spi_out
                    ));
                    return s;
                }
                Err(e) if Instant::now() >= deadline => self.fail(&format!(
                    "{step}: espada and charon disagree after {CONVERGE:?}: {e}"
                )),
                Err(_) => self.esp.pump_for(Duration::from_millis(100)),
            }
        }
    }

    /// Waits (bounded) until neither side has an IKE SA left.
    pub fn wait_all_gone(&mut self, step: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let sas = self.list_sas();
            let dp = &self.esp.dp;
            let espada_empty = self.esp.ep.ike_sas().count() == 0
                && dp.inbound.is_empty()
                && dp.outbound.is_empty()
                && dp.active.is_empty();
            if sas.is_empty() && espada_empty {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "{step}: SAs remain: charon {} IKE_SAs, espada {} IKE SAs",
                    sas.len(),
                    self.esp.ep.ike_sas().count()
                ));
            }
            self.esp.pump_for(Duration::from_millis(100));
        }
    }

    /// Runs espada until an event after `since` matches; fails the test after `timeout`.
    pub fn expect_event(
        &mut self,
        since: usize,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Event {
        match self
            .esp
            .wait_event(since, Duration::from_secs(10), what, pred)
        {
            Ok(e) => e,
            Err(e) => self.fail(&e),
        }
    }

    /// Ends the scenario. With `clean`, the session must have had no problem line in charon's
    /// log, no failure event and no AUTHENTICATION_FAILED on espada; always: no error counter,
    /// no inconsistent data-plane action, SAs ESP-in-UDP and IKE on 4500 after IKE_SA_INIT,
    /// and every [`Session::check`] held.
    pub fn finish(mut self, clean: bool) {
        let problems = if clean {
            log_problems(&self.lab.charon_log())
        } else {
            Vec::new()
        };
        let bad_events: Vec<String> = self
            .esp
            .events
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::ExchangeFailed { .. }
                        | Event::PeerDead { .. }
                        | Event::NoProposalChosen { .. }
                        | Event::AuthenticationFailed { .. }
                )
            })
            .filter(|_| clean)
            .map(|e| format!("{e:?}"))
            .collect();
        let st = self.esp.ep.stats().clone();
        let counters = [
            ("invalid_header", st.invalid_header),
            ("invalid_major_version", st.invalid_major_version),
            ("non_ike_on_natt_port", st.non_ike_on_natt_port),
            ("unknown_ike_spi", st.unknown_ike_spi),
            ("invalid_syntax", st.invalid_syntax),
            ("unsupported_critical", st.unsupported_critical),
            ("integrity_failed", st.integrity_failed),
            ("retransmitted_requests", st.retransmitted_requests),
            ("out_of_window", st.out_of_window),
            ("retransmits", st.retransmits),
            ("no_proposal_chosen", st.no_proposal_chosen),
            (
                "authentication_failed",
                if clean { st.authentication_failed } else { 0 },
            ),
            ("ts_unacceptable", st.ts_unacceptable),
            ("temporary_failure_sent", st.temporary_failure_sent),
            ("temporary_failure_received", st.temporary_failure_received),
            ("child_sa_not_found_sent", st.child_sa_not_found_sent),
            ("fragments_dropped", st.fragments_dropped),
        ];
        let nonzero: Vec<String> = counters
            .iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let failed = std::mem::take(&mut self.failed);
        let mut report = Vec::new();
        for (what, list) in [
            ("charon log problems", &problems),
            ("espada failure events", &bad_events),
            ("espada error counters", &nonzero),
            ("data-plane violations", &self.esp.dp.violations),
            (
                "SAs not ESP-in-UDP on 4500",
                &self.esp.dp.not_udp_encapsulated,
            ),
            (
                "IKE datagrams on port 500 after IKE_SA_INIT",
                &self.esp.sent_on_500,
            ),
            ("failed checks", &failed),
        ] {
            if !list.is_empty() {
                report.push(format!(" {what}:\n   {}", list.join("\n   ")));
            }
        }
        if !report.is_empty() {
            let msg = format!("session not clean:\n{}", report.join("\n"));
            self.fail(&msg);
        }
        self.esp.log(format!(
            "clean after {:?}; espada stats: {st:?}",
            self.elapsed()
        ));
    }
}
