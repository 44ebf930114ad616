//! Two espada control planes negotiate over a simulated network, each over a simulated data
//! plane that behaves as `espada_dataplane::lifecycle` does: every call is acknowledged only
//! after a delay (the workers' adoption), a switch needs an acknowledged standby, an inbound SA
//! decrypts only once acknowledged and for a grace period after its retirement. Data flows both
//! ways every few milliseconds while both ends rekey CHILD and IKE SAs on their own schedules
//! (jittered, so they collide): nothing may be lost, duplicated or sent on an SPI the
//! receiving data plane does not decrypt.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use espada_config::{Dpd, DpdAction, RekeyTiming, StartAction};
use espada_control::{
    ControlPlane, DataPlane, DpNotice, Level, SpiCause, Ticket, TunnelId, TunnelSettings,
};
use espada_ike::auth::Authenticator;
use espada_ike::config::{Encapsulation, EndpointConfig, Identity, PeerConfig, Retransmit};
use espada_ike::exchange::ChildSaParams;
use espada_ike::proposal::{EspProposal, IkeProposal};
use espada_ike::rng::TestRandom;
use espada_ike::secret::Secret;
use espada_ike::ts;

const GRACE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct InSa {
    key: Vec<u8>,
    /// Acknowledged (every worker decrypts it).
    live_at: Instant,
    /// Retired: decrypts until then.
    until: Option<Instant>,
    packets: u64,
}

/// A data plane with the lifecycle's rules and delayed acknowledgements.
#[derive(Debug, Default)]
struct SimDp {
    ack_delay: Duration,
    now: Option<Instant>,
    next_spi: u32,
    reserved: HashMap<u32, TunnelId>,
    inbound: HashMap<u32, InSa>,
    /// Outbound SPI → (key, acknowledged at).
    outbound: HashMap<u32, (Vec<u8>, Instant)>,
    active: HashMap<TunnelId, u32>,
    acks: VecDeque<(Instant, Ticket)>,
    next_ticket: u64,
    violations: Vec<String>,
    /// Outbound SAs told to follow a peer that moved: (SPI, where).
    retargeted: Vec<(u32, SocketAddr)>,
}

impl SimDp {
    fn new(ack_delay: Duration, spi_base: u32) -> SimDp {
        SimDp {
            ack_delay,
            next_spi: spi_base,
            ..SimDp::default()
        }
    }

    fn now(&self) -> Instant {
        self.now.expect("polled before use")
    }

    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        let t = Ticket(self.next_ticket);
        let at = self.now() + self.ack_delay;
        self.acks.push_back((at, t));
        t
    }

    /// The SPI and key the tunnel sends on, if its outbound SA is acknowledged.
    fn send(&self) -> Option<(u32, Vec<u8>)> {
        let spi = *self.active.get(&0)?;
        let (key, at) = self.outbound.get(&spi)?;
        (*at <= self.now()).then(|| (spi, key.clone()))
    }

    /// A data packet arrived: true when an SA decrypts it.
    fn receive(&mut self, spi: u32, key: &[u8]) -> bool {
        let now = self.now();
        match self.inbound.get_mut(&spi) {
            Some(sa) if sa.live_at <= now && sa.until.is_none_or(|u| now <= u) && sa.key == key => {
                sa.packets += 1;
                true
            }
            _ => false,
        }
    }
}

impl DataPlane for SimDp {
    fn allocate_spi(&mut self, tunnel: TunnelId) -> Option<u32> {
        self.next_spi += 1;
        self.reserved.insert(self.next_spi, tunnel);
        Some(self.next_spi)
    }

    fn release_spi(&mut self, _tunnel: TunnelId, spi: u32) {
        if self.reserved.remove(&spi).is_none() {
            self.violations
                .push(format!("release of {spi:08x}, never reserved"));
        }
    }

    fn install_inbound(&mut self, _t: TunnelId, sa: &ChildSaParams) -> Result<Ticket, String> {
        self.reserved
            .remove(&sa.spi)
            .ok_or_else(|| format!("{:08x} not reserved", sa.spi))?;
        let live_at = self.now() + self.ack_delay;
        self.inbound.insert(
            sa.spi,
            InSa {
                key: sa.keys.expose().to_vec(),
                live_at,
                until: None,
                packets: 0,
            },
        );
        Ok(self.ticket())
    }

    fn install_outbound(&mut self, _t: TunnelId, sa: &ChildSaParams) -> Result<Ticket, String> {
        let at = self.now() + self.ack_delay;
        self.outbound
            .insert(sa.spi, (sa.keys.expose().to_vec(), at));
        Ok(self.ticket())
    }

    fn switch_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String> {
        match self.outbound.get(&spi) {
            Some((_, at)) if *at <= self.now() => {
                self.active.insert(tunnel, spi);
                Ok(self.ticket())
            }
            _ => Err(format!("switch to {spi:08x}: not an acknowledged standby")),
        }
    }

    fn retire_inbound(&mut self, _t: TunnelId, spi: u32, now: Instant) -> Result<Ticket, String> {
        match self.inbound.get_mut(&spi) {
            Some(sa) if sa.live_at <= now && sa.until.is_none() => {
                sa.until = Some(now + GRACE);
                Ok(self.ticket())
            }
            _ => Err(format!("retire {spi:08x}: not live")),
        }
    }

    fn remove_outbound(&mut self, tunnel: TunnelId, spi: u32) -> Result<Ticket, String> {
        self.outbound
            .remove(&spi)
            .ok_or_else(|| format!("remove {spi:08x}: no such SA"))?;
        if self.active.get(&tunnel) == Some(&spi) {
            self.active.remove(&tunnel);
        }
        Ok(self.ticket())
    }

    fn retarget_outbound(
        &mut self,
        _t: TunnelId,
        spi: u32,
        remote: SocketAddr,
    ) -> Result<Ticket, String> {
        self.retargeted.push((spi, remote));
        Ok(self.ticket())
    }

    fn inbound_packets(&self, _t: TunnelId, spi: u32) -> Option<u64> {
        self.inbound.get(&spi).map(|s| s.packets)
    }

    fn poll(&mut self, now: Instant) {
        self.now = Some(now);
    }

    fn poll_ack(&mut self) -> Option<(Ticket, Result<(), String>)> {
        let &(at, t) = self.acks.front()?;
        (at <= self.now()).then(|| {
            self.acks.pop_front();
            (t, Ok(()))
        })
    }

    fn poll_notice(&mut self) -> Option<DpNotice> {
        None
    }
}

fn addr(side: usize) -> IpAddr {
    [IpAddr::from([198, 18, 0, 1]), IpAddr::from([198, 18, 0, 2])][side]
}

fn peer_with(side: usize, encapsulation: Encapsulation) -> PeerConfig {
    let ids = ["a.example", "b.example"];
    let nets = ["198.19.1.0", "198.19.2.0"];
    PeerConfig {
        name: "t".into(),
        local_addr: addr(side),
        remote_addr: Some(addr(1 - side)),
        local_id: Identity::Fqdn(ids[side].into()),
        remote_id: Identity::Fqdn(ids[1 - side].into()),
        auth: Authenticator::Psk(Secret::from_slice(b"a sufficiently long test key")),
        ike_proposals: vec![IkeProposal::parse("aes128gcm16-prfsha256-x25519").unwrap()],
        esp_proposals: vec![EspProposal::parse("aes128gcm16-x25519").unwrap()],
        local_ts: vec![ts::prefix(nets[side].parse().unwrap(), 24)],
        remote_ts: vec![ts::prefix(nets[1 - side].parse().unwrap(), 24)],
        encapsulation,
        fragmentation: true,
    }
}

fn settings(start: StartAction, child: RekeyTiming, ike: RekeyTiming) -> TunnelSettings {
    // The initiator restarts a dead tunnel, the responder clears (the usual hub/branch split;
    // both restarting at once is the collision case of issue 14, not built yet).
    let action = match start {
        StartAction::Start => DpdAction::Restart,
        _ => DpdAction::Clear,
    };
    TunnelSettings {
        name: "t".into(),
        tunnel: 0,
        start,
        ike_lifetime: ike,
        child_lifetime: child,
        dpd: Dpd {
            delay: Duration::from_secs(2),
            timeout: Duration::from_secs(10),
            action,
        },
    }
}

fn endpoint_config() -> EndpointConfig {
    EndpointConfig {
        retransmit: Retransmit {
            base: Duration::from_millis(500),
            factor: 2.0,
            max_wait: Duration::from_secs(2),
            tries: 4,
        },
        ..EndpointConfig::default()
    }
}

fn plane(
    i: usize,
    s: TunnelSettings,
    seed: u64,
    encapsulation: Encapsulation,
    ack_delay: Duration,
) -> ControlPlane<SimDp> {
    ControlPlane::new(
        endpoint_config(),
        vec![peer_with(i, encapsulation)],
        vec![s],
        SimDp::new(
            ack_delay,
            0x1000_0000 * (i as u32 + 1) + (seed as u32 & 0xff) * 0x10_0000,
        ),
        Box::new(TestRandom::new(seed * 2 + i as u64)),
        Box::new(TestRandom::new(seed * 7 + i as u64)),
    )
}

struct Net {
    cp: Vec<ControlPlane<SimDp>>,
    now: Instant,
    /// IKE datagrams in flight: (arrival, to, local, remote, bytes).
    ike: VecDeque<(Instant, usize, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Data packets in flight: (arrival, to, spi, key, seq).
    data: VecDeque<(Instant, usize, u32, Vec<u8>, u64)>,
    latency: Duration,
    sent: [u64; 2],
    received: [u64; 2],
    /// Packets a side could not send (no acknowledged outbound SA).
    unsent: [u64; 2],
    lost: Vec<String>,
    /// Drop everything to/from side 1 while set.
    cut: bool,
    /// A NAT in front of side 0 maps its port to this one.
    nat0: Option<u16>,
}

impl Net {
    fn new(ack_delay: Duration, s: [TunnelSettings; 2], seed: u64) -> Net {
        Net::with_encapsulation(ack_delay, s, seed, Encapsulation::Auto)
    }

    /// Side `i` restarts: a fresh control plane and data plane, no state.
    fn restart(&mut self, i: usize, s: TunnelSettings, seed: u64) {
        self.cp[i] = plane(i, s, seed, Encapsulation::Auto, Duration::from_millis(2));
        self.ike.retain(|m| m.1 != i);
    }

    fn with_encapsulation(
        ack_delay: Duration,
        s: [TunnelSettings; 2],
        seed: u64,
        encapsulation: Encapsulation,
    ) -> Net {
        let cp = (0..2)
            .map(|i| plane(i, s[i].clone(), seed, encapsulation, ack_delay))
            .collect();
        Net {
            cp,
            now: Instant::now(),
            ike: VecDeque::new(),
            data: VecDeque::new(),
            latency: Duration::from_millis(5),
            sent: [0; 2],
            received: [0; 2],
            unsent: [0; 2],
            lost: Vec::new(),
            cut: false,
            nat0: None,
        }
    }

    /// Runs for `d` in 1 ms steps, sending one data packet each way every `every`.
    fn run(&mut self, d: Duration, every: Option<Duration>) {
        let end = self.now + d;
        let mut next_data = self.now;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let now = self.now;
            for side in 0..2 {
                let cp = &mut self.cp[side];
                cp.poll(now);
                if cp.poll_timeout().is_some_and(|t| t <= now) {
                    cp.handle_timeout(now);
                }
                cp.poll(now);
                while let Some(t) = cp.poll_transmit() {
                    let from = match self.nat0 {
                        Some(p) if side == 0 => SocketAddr::new(t.local.ip(), p),
                        _ => t.local,
                    };
                    if !self.cut {
                        self.ike.push_back((
                            now + self.latency,
                            1 - side,
                            t.remote,
                            from,
                            t.payload,
                        ));
                    }
                }
            }
            while self.ike.front().is_some_and(|m| m.0 <= now) {
                let (_, to, mut local, remote, bytes) = self.ike.pop_front().unwrap();
                if to == 0 && self.nat0 == Some(local.port()) {
                    local.set_port(4500);
                }
                self.cp[to].handle_datagram(now, local, remote, &bytes);
            }
            if let Some(every) = every
                && now >= next_data
            {
                next_data = now + every;
                for side in 0..2 {
                    match self.cp[side].dataplane().send() {
                        Some((spi, key)) => {
                            self.sent[side] += 1;
                            if !self.cut {
                                self.data.push_back((
                                    now + self.latency,
                                    1 - side,
                                    spi,
                                    key,
                                    self.sent[side],
                                ));
                            }
                        }
                        None => self.unsent[side] += 1,
                    }
                }
            }
            while self.data.front().is_some_and(|p| p.0 <= now) {
                let (_, to, spi, key, seq) = self.data.pop_front().unwrap();
                let mut dp = self.cp[to].dataplane_mut();
                dp.poll(now);
                if dp.receive(spi, &key) {
                    self.received[1 - to] += 1;
                    if self.received[1 - to] != seq {
                        self.lost.push(format!(
                            "{seq} from {} arrived as #{}",
                            1 - to,
                            self.received[1 - to]
                        ));
                        self.received[1 - to] = seq;
                    }
                } else {
                    drop(dp);
                    self.lost
                        .push(format!("packet {seq} to {to} on {spi:08x} not decrypted"));
                    // The data plane's unknown-SPI sample from a configured peer.
                    self.cp[to].unknown_spi(now, addr(1 - to));
                }
            }
        }
    }

    /// Forgets the counts of the warm-up, once nothing is in flight.
    fn reset_counts(&mut self) {
        assert!(self.data.is_empty());
        (self.sent, self.received, self.unsent) = ([0; 2], [0; 2], [0; 2]);
        self.lost.clear();
    }

    fn errors(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        for cp in &mut self.cp {
            while let Some(l) = cp.poll_log() {
                if l.level == Level::Error {
                    v.push(l.text);
                }
            }
            v.extend(cp.dataplane().violations.iter().cloned());
        }
        v
    }
}

fn timing(time: u64, margin: u64, jitter: u64) -> RekeyTiming {
    RekeyTiming {
        time: Duration::from_secs(time),
        margin: Duration::from_secs(margin),
        jitter: Duration::from_secs(jitter),
    }
}

#[test]
fn both_ends_rekeying_on_their_own_schedules_lose_nothing() {
    for seed in 1..=4 {
        let child = timing(6, 2, 2);
        let ike = timing(14, 3, 3);
        let mut n = Net::new(
            Duration::from_millis(3),
            [
                settings(StartAction::Start, child, ike),
                settings(StartAction::None, child, ike),
            ],
            seed,
        );
        n.cp[0].start(n.now);
        n.run(Duration::from_secs(1), None);
        // Warm-up: the responder switches to its outbound SA on the first packet it gets.
        n.run(Duration::from_millis(200), Some(Duration::from_millis(5)));
        n.run(Duration::from_millis(50), None);
        n.reset_counts();
        n.run(Duration::from_secs(60), Some(Duration::from_millis(5)));
        n.run(Duration::from_millis(100), None);
        let errors = n.errors();
        assert!(errors.is_empty(), "seed {seed}: {errors:?}");
        assert!(
            n.lost.is_empty(),
            "seed {seed}: {} lost: {:?}",
            n.lost.len(),
            &n.lost[..n.lost.len().min(5)]
        );
        assert_eq!(
            n.unsent,
            [0, 0],
            "seed {seed}: the tunnel always had an outbound SA"
        );
        assert_eq!(n.sent, n.received, "seed {seed}");
        let st: Vec<_> = n.cp.iter().map(|c| c.status(n.now)[0].clone()).collect();
        let rekeys: u64 = st.iter().map(|s| s.child_rekeys).sum();
        assert!(
            rekeys >= 10,
            "seed {seed}: only {rekeys} CHILD_SA rekeys: {st:?}"
        );
        assert!(
            st.iter().map(|s| s.ike_rekeys).sum::<u64>() >= 3,
            "seed {seed}: {st:?}"
        );
        let (a, b) = (st[0].child_spis.unwrap(), st[1].child_spis.unwrap());
        assert_eq!(
            (a.0, a.1),
            (b.1, b.0),
            "seed {seed}: one CHILD_SA pair, mirrored"
        );
        assert!(
            n.cp.iter().all(|c| c.stats().held_transmits > 0),
            "seed {seed}: messages were held for acks"
        );
    }
}

#[test]
fn slow_acknowledgements_hold_the_peer_back_instead_of_losing_packets() {
    // 150 ms per acknowledgement, 30× the network latency: without holding the response,
    // the peer would send on the new inbound SPI long before it decrypts.
    let child = timing(5, 2, 1);
    let ike = timing(3600, 60, 60);
    let mut n = Net::new(
        Duration::from_millis(150),
        [
            settings(StartAction::Start, child, ike),
            settings(StartAction::None, child, ike),
        ],
        9,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(3), None);
    n.run(Duration::from_millis(500), Some(Duration::from_millis(2)));
    n.run(Duration::from_millis(50), None);
    n.reset_counts();
    n.run(Duration::from_secs(30), Some(Duration::from_millis(2)));
    n.run(Duration::from_secs(1), None);
    assert!(n.errors().is_empty());
    assert!(n.lost.is_empty(), "{:?}", &n.lost[..n.lost.len().min(5)]);
    assert_eq!(n.sent, n.received);
    let st = n.cp[0].status(n.now);
    assert!(st[0].child_rekeys >= 4, "{st:?}");
    assert!(
        n.cp.iter().any(|c| c.stats().deferred_calls > 0),
        "switches waited for their standby"
    );
}

#[test]
fn a_silent_peer_is_detected_and_the_tunnel_restarts_when_it_is_back() {
    let child = timing(3600, 60, 60);
    let ike = timing(3600, 60, 60);
    let mut n = Net::new(
        Duration::from_millis(2),
        [
            settings(StartAction::Start, child, ike),
            settings(StartAction::None, child, ike),
        ],
        5,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(2), Some(Duration::from_millis(10)));
    assert!(n.lost.is_empty());
    let first = n.cp[0].status(n.now)[0].child_spis.unwrap();
    n.cut = true;
    // DPD after 2 s idle, then the retransmission schedule (0.5+1+2+2 s) gives up.
    n.run(Duration::from_secs(12), None);
    let mut lines = Vec::new();
    while let Some(l) = n.cp[0].poll_log() {
        lines.push(l.text);
    }
    assert!(n.cp[0].stats().dpd_checks >= 1, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("is dead")), "{lines:?}");
    assert_eq!(
        n.cp[0].spi_cause(first.0),
        Some(SpiCause::PeerDead),
        "late ESP on the old SPI means the peer is back"
    );
    n.cut = false;
    n.run(Duration::from_secs(8), None);
    let st = n.cp[0].status(n.now);
    assert_eq!(st[0].ike_state, "established", "{st:?}");
    let again = st[0].child_spis.unwrap();
    assert_ne!(again, first, "a new CHILD_SA");
    n.reset_counts();
    n.run(Duration::from_millis(200), Some(Duration::from_millis(10)));
    n.run(Duration::from_millis(50), None);
    n.reset_counts();
    n.run(Duration::from_secs(2), Some(Duration::from_millis(10)));
    n.run(Duration::from_millis(100), None);
    assert!(n.lost.is_empty(), "{:?}", n.lost);
    assert_eq!(n.sent, n.received, "traffic flows again both ways");
}

#[test]
fn the_dpd_timeout_declares_a_silent_peer_dead_before_the_retransmissions_give_up() {
    let long = timing(3600, 60, 60);
    let mut quick = settings(StartAction::Start, long, long);
    quick.dpd.timeout = Duration::from_millis(1500);
    let mut n = Net::new(
        Duration::from_millis(2),
        [quick, settings(StartAction::None, long, long)],
        13,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(2), Some(Duration::from_millis(10)));
    n.cut = true;
    // An idle look within 2 s of the last packet, the next one finds the tunnel idle (≤ 4 s)
    // and sends a liveness check: 1.5 s later (≤ 5.5 s) the peer is dead. The
    // retransmission schedule alone (0.5+1+2+2 s after the check) would end at ≥ 7.5 s.
    n.run(Duration::from_millis(6000), None);
    let lines: Vec<String> = std::iter::from_fn(|| n.cp[0].poll_log())
        .map(|l| l.text)
        .collect();
    assert!(lines.iter().any(|l| l.contains("is dead")), "{lines:?}");
    assert_eq!(n.cp[0].stats().dpd_timeouts, 1, "{lines:?}");
    // The peer answering again proves the check, not a lost packet, decided: no timeout.
    n.cut = false;
    n.run(Duration::from_secs(8), None);
    assert_eq!(n.cp[0].status(n.now)[0].ike_state, "established");
    n.run(Duration::from_secs(10), None);
    assert_eq!(
        n.cp[0].stats().dpd_timeouts,
        1,
        "answered checks time nothing out"
    );
    assert!(n.cp[0].stats().dpd_checks >= 3, "idle checks went on");
}

#[test]
fn a_dpd_restart_keeps_trying_after_the_returning_peer_refuses_the_first_attempt() {
    // Side 1 is the responder (`start: none`) whose DPD action is `restart`; side 0 dies and
    // comes back first without the tunnel's configuration (it refuses every proposal, as a
    // charon whose swanctl.conf is not loaded yet does), then with it.
    let long = timing(3600, 60, 60);
    let mut responder = settings(StartAction::None, long, long);
    responder.dpd.action = DpdAction::Restart;
    responder.dpd.timeout = Duration::from_secs(2);
    let initiator = settings(StartAction::Start, long, long);
    let mut n = Net::new(Duration::from_millis(2), [initiator.clone(), responder], 17);
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(2), Some(Duration::from_millis(10)));
    assert_eq!(n.cp[1].status(n.now)[0].ike_state, "established");
    n.cut = true;
    n.run(Duration::from_secs(8), None);
    let mut passive = initiator.clone();
    passive.start = StartAction::None;
    let mut refusing = peer_with(0, Encapsulation::Auto);
    refusing.ike_proposals = vec![IkeProposal::parse("aes256gcm16-prfsha384-ecp384").unwrap()];
    n.cp[0] = ControlPlane::new(
        endpoint_config(),
        vec![refusing],
        vec![passive.clone()],
        SimDp::new(Duration::from_millis(2), 0x7000_0000),
        Box::new(TestRandom::new(41)),
        Box::new(TestRandom::new(43)),
    );
    n.ike.clear();
    n.cut = false;
    // The attempt started during the cut is retransmitted within 2 s.
    n.run(Duration::from_secs(3), None);
    let lines: Vec<String> = std::iter::from_fn(|| n.cp[1].poll_log())
        .map(|l| l.text)
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("no proposal chosen")),
        "the first attempt was refused: {lines:?}"
    );
    // The peer's configuration is loaded; nobody but side 1 initiates.
    n.restart(0, passive, 19);
    n.run(Duration::from_secs(7), None);
    assert_eq!(
        n.cp[1].status(n.now)[0].ike_state,
        "established",
        "retried {:?} after the refusal",
        espada_control::RETRY_AFTER
    );
    n.reset_counts();
    n.run(Duration::from_secs(1), Some(Duration::from_millis(10)));
    n.run(Duration::from_millis(100), None);
    assert!(n.lost.is_empty(), "{:?}", n.lost);
    assert!(n.received.iter().all(|&r| r > 0), "traffic both ways");
}

#[test]
fn a_trapped_tunnel_negotiates_on_traffic_and_again_after_dpd_finds_the_peer_dead() {
    let long = timing(3600, 60, 60);
    let mut trapped = settings(StartAction::Trap, long, long);
    trapped.dpd.action = DpdAction::Trap;
    let mut n = Net::new(
        Duration::from_millis(2),
        [trapped, settings(StartAction::None, long, long)],
        23,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(3), None);
    assert_eq!(
        n.cp[0].status(n.now)[0].ike_state,
        "none",
        "no traffic, no SA"
    );
    // The data plane's acquire: cleartext for the tunnel met no outbound SA.
    let now = n.now;
    n.cp[0].acquire(now, 0);
    n.cp[0].acquire(now, 0);
    assert_eq!(
        n.cp[0].stats().acquires,
        1,
        "one negotiation per acquire period"
    );
    n.run(Duration::from_secs(1), None);
    assert_eq!(n.cp[0].status(n.now)[0].ike_state, "established");
    let now = n.now + Duration::from_secs(2);
    n.cp[0].acquire(now, 0);
    assert_eq!(n.cp[0].stats().acquires, 1, "established: nothing to do");
    // The peer goes silent: DPD's trap action waits for traffic instead of restarting.
    n.cut = true;
    n.run(Duration::from_secs(14), None);
    n.cut = false;
    n.run(Duration::from_secs(5), None);
    assert_eq!(
        n.cp[0].status(n.now)[0].ike_state,
        "none",
        "re-armed, not restarted"
    );
    let now = n.now;
    n.cp[0].acquire(now, 0);
    n.run(Duration::from_secs(1), None);
    assert_eq!(n.cp[0].status(n.now)[0].ike_state, "established");
    assert_eq!(n.cp[0].stats().acquires, 2);
}

#[test]
fn a_peer_whose_nat_mapping_changed_is_followed_by_the_outbound_sa_on_its_next_request() {
    let long = timing(3600, 60, 60);
    let mut n = Net::with_encapsulation(
        Duration::from_millis(2),
        [
            settings(StartAction::Start, long, long),
            settings(StartAction::None, long, long),
        ],
        29,
        Encapsulation::Udp,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(3), Some(Duration::from_millis(10)));
    let (old_in, out) = n.cp[1].status(n.now)[0].child_spis.unwrap();
    assert_eq!(n.cp[1].spi_cause(old_in), None, "live");
    n.nat0 = Some(40_000);
    n.run(Duration::from_millis(100), None);
    assert!(
        n.cp[1].dataplane().retargeted.is_empty(),
        "nothing heard yet"
    );
    let now = n.now;
    n.cp[0].rekey(now, "t", false).unwrap();
    n.run(Duration::from_secs(1), None);
    let moved = SocketAddr::new(addr(0), 40_000);
    // The current SA, and the rekey's new one if its install came first: all to the new port.
    let r = n.cp[1].dataplane().retargeted.clone();
    assert!(r.contains(&(out, moved)), "{r:?}");
    assert!(r.iter().all(|&(_, to)| to == moved), "{r:?}");
    assert_eq!(n.cp[1].stats().peer_moves, 1);
    assert_eq!(n.cp[1].spi_cause(old_in), Some(SpiCause::RetiredByRekey));
    let lines: Vec<String> = std::iter::from_fn(|| n.cp[1].poll_log())
        .map(|l| l.text)
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("peer moved to 198.18.0.1:40000")),
        "{lines:?}"
    );
}

#[test]
fn udp_encapsulated_tunnels_send_natt_keepalives() {
    let long = timing(3600, 60, 60);
    let mut n = Net::with_encapsulation(
        Duration::from_millis(2),
        [
            settings(StartAction::Start, long, long),
            settings(StartAction::None, long, long),
        ],
        11,
        Encapsulation::Udp,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(65), None);
    for side in 0..2 {
        assert_eq!(
            n.cp[side].stats().keepalives,
            3,
            "side {side}: one per 20 s"
        );
        assert_eq!(
            n.cp[1 - side].endpoint().stats().natt_keepalives,
            3,
            "side {side}'s keepalives reached the peer on port 4500"
        );
    }
}

#[test]
fn after_a_restart_the_peers_esp_on_stale_spis_brings_the_tunnel_back_at_once() {
    let long = timing(3600, 60, 60);
    let mut n = Net::new(
        Duration::from_millis(2),
        [
            settings(StartAction::Start, long, long),
            settings(StartAction::None, long, long),
        ],
        21,
    );
    n.cp[0].start(n.now);
    n.run(Duration::from_secs(1), Some(Duration::from_millis(10)));
    // Side 1 (the responder, `start: none`) restarts; side 0 keeps sending on the old SAs.
    n.restart(1, settings(StartAction::None, long, long), 99);
    let restarted = n.now;
    n.run(Duration::from_millis(1500), Some(Duration::from_millis(10)));
    assert!(
        n.cp[1].stats().recoveries >= 1,
        "the stale ESP started a recovery: {} lost, sent {:?}, {:?}",
        n.lost.len(),
        n.sent,
        n.cp[1].stats()
    );
    let st = n.cp[1].status(n.now);
    assert_eq!(st[0].ike_state, "established", "{st:?}");
    assert!(n.now.duration_since(restarted) <= Duration::from_millis(1500));
    n.run(Duration::from_millis(100), None);
    n.reset_counts();
    n.run(Duration::from_secs(1), Some(Duration::from_millis(10)));
    n.run(Duration::from_millis(100), None);
    assert!(n.lost.is_empty(), "{:?}", n.lost);
    assert_eq!(n.sent, n.received, "traffic flows both ways again");
}
