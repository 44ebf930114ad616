//! espada-ike over real UDP sockets: a reader thread per socket (500, 4500) feeds a channel;
//! the test's thread owns the [`Endpoint`], feeds it datagrams and timeouts, drains actions
//! (into a [`DataPlane`] model), transmits (onto the socket of `local.port()`) and events.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use espada_ike::exchange::{Action, ChildId, Endpoint, Event};
use espada_ike::msgs::{ExchangeType, Header};

/// What the data plane would hold, built only from the endpoint's actions.
#[derive(Debug, Default)]
pub struct DataPlane {
    /// Inbound SPI → tunnel.
    pub inbound: BTreeMap<u32, ChildId>,
    /// Inbound SPIs retired by a rekey (still decrypting for a grace period).
    pub retired: BTreeMap<u32, ChildId>,
    /// Outbound SPI → tunnel.
    pub outbound: BTreeMap<u32, ChildId>,
    /// Tunnel → the outbound SPI it sends on.
    pub active: BTreeMap<ChildId, u32>,
    /// Actions that make no sense for the state they were applied to.
    pub violations: Vec<String>,
    /// Installs that are not ESP-in-UDP on port 4500 at both ends (charon always encapsulates).
    pub not_udp_encapsulated: Vec<String>,
}

impl DataPlane {
    /// Applies one action; returns a line for the trace (no key material).
    fn apply(&mut self, a: &Action) -> String {
        if let Action::InstallInbound(p) | Action::InstallOutbound(p) = a
            && !(p.udp_encap
                && p.local.port() == espada_ike::NATT_PORT
                && p.remote.port() == espada_ike::NATT_PORT)
        {
            self.not_udp_encapsulated.push(format!(
                "SA {:08x}: udp_encap={} local {} remote {}",
                p.spi, p.udp_encap, p.local, p.remote
            ));
        }
        match a {
            Action::InstallInbound(p) => {
                if self.inbound.insert(p.spi, p.child).is_some()
                    || self.retired.contains_key(&p.spi)
                {
                    self.violations
                        .push(format!("inbound {:08x} installed twice", p.spi));
                }
                format!(
                    "install-in {:08x} {:?} encap={} {}->{}",
                    p.spi, p.child, p.udp_encap, p.remote, p.local
                )
            }
            Action::InstallOutbound(p) => {
                if self.outbound.insert(p.spi, p.child).is_some() {
                    self.violations
                        .push(format!("outbound {:08x} installed twice", p.spi));
                }
                format!(
                    "install-out {:08x} {:?} encap={} {}->{}",
                    p.spi, p.child, p.udp_encap, p.local, p.remote
                )
            }
            Action::SwitchOutbound { child, spi } => {
                if self.outbound.get(spi) != Some(child) {
                    self.violations.push(format!(
                        "switch {child:?} to {spi:08x}, not an outbound SA of it"
                    ));
                }
                self.active.insert(*child, *spi);
                format!("switch {child:?} -> {spi:08x}")
            }
            Action::RetireInbound { child, spi } => {
                match self.inbound.remove(spi) {
                    Some(c) => {
                        self.retired.insert(*spi, c);
                    }
                    None => self
                        .violations
                        .push(format!("retire of unknown inbound {spi:08x}")),
                }
                format!("retire-in {spi:08x} {child:?}")
            }
            Action::RemoveOutbound { child, spi } => {
                if self.outbound.remove(spi).is_none() {
                    self.violations
                        .push(format!("remove of unknown outbound {spi:08x}"));
                }
                if self.active.get(child) == Some(spi) {
                    self.active.remove(child);
                }
                format!("remove-out {spi:08x} {child:?}")
            }
        }
    }
}

/// One received datagram: (our address, the sender, the UDP payload).
type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// The endpoint on its sockets.
pub struct Espada {
    /// The endpoint under test.
    pub ep: Endpoint,
    /// Port 500 and port 4500.
    socks: [Arc<UdpSocket>; 2],
    rx: Receiver<Datagram>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
    /// The data-plane model.
    pub dp: DataPlane,
    /// Every event, in order.
    pub events: Vec<Event>,
    /// Datagrams other than IKE_SA_INIT that went out from or to port 500 (after NAT
    /// detection everything belongs on 4500).
    pub sent_on_500: Vec<String>,
    start: Instant,
}

/// A one-line summary of an IKE datagram (`payload` as on the wire, marker included on 4500).
fn summary(port: u16, payload: &[u8]) -> String {
    let msg = if port == espada_ike::NATT_PORT {
        payload.get(4..).unwrap_or(&[])
    } else {
        payload
    };
    match Header::parse(msg) {
        Ok(h) => format!(
            "{} {} {} spis {:016x}_{:016x} ({} B)",
            h.exchange,
            if h.is_response() {
                "response"
            } else {
                "request"
            },
            h.message_id,
            h.spi_i,
            h.spi_r,
            payload.len()
        ),
        Err(_) => format!("non-IKE ({} B)", payload.len()),
    }
}

impl Espada {
    /// The endpoint on `sock500` and `sock4500`.
    pub fn new(ep: Endpoint, sock500: UdpSocket, sock4500: UdpSocket) -> Espada {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let socks = [Arc::new(sock500), Arc::new(sock4500)];
        let readers = socks
            .iter()
            .map(|s| {
                let (s, tx, stop) = (Arc::clone(s), tx.clone(), Arc::clone(&stop));
                s.set_read_timeout(Some(Duration::from_millis(50)))
                    .expect("read timeout");
                let local = s.local_addr().expect("local address");
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while !stop.load(Ordering::Relaxed) {
                        match s.recv_from(&mut buf) {
                            Ok((n, from)) => {
                                if tx.send((local, from, buf[..n].to_vec())).is_err() {
                                    return;
                                }
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(e) => {
                                eprintln!("recv on {local}: {e}");
                                return;
                            }
                        }
                    }
                })
            })
            .collect();
        Espada {
            ep,
            socks,
            rx,
            stop,
            readers,
            dp: DataPlane::default(),
            events: Vec::new(),
            sent_on_500: Vec::new(),
            start: Instant::now(),
        }
    }

    /// Seconds since the driver started.
    pub fn t(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// A line of the trace on stderr (the harness shows it when the test fails).
    pub fn log(&mut self, s: String) {
        eprintln!("{:8.3} {s}", self.t());
    }

    /// Drains the endpoint: actions, then transmits, then events.
    pub fn drain(&mut self) {
        while let Some(a) = self.ep.poll_action() {
            let line = self.dp.apply(&a);
            self.log(format!("action {line}"));
        }
        while let Some(t) = self.ep.poll_transmit() {
            let sock = match t.local.port() {
                espada_ike::IKE_PORT => &self.socks[0],
                espada_ike::NATT_PORT => &self.socks[1],
                p => panic!("transmit from unexpected port {p}"),
            };
            let ours = sock.local_addr().expect("local address");
            assert_eq!(
                t.local, ours,
                "transmit from an address we have no socket for"
            );
            let line = format!(
                "send {} -> {} {}",
                t.local,
                t.remote,
                summary(t.local.port(), &t.payload)
            );
            let init =
                Header::parse(&t.payload).is_ok_and(|h| h.exchange == ExchangeType::IKE_SA_INIT);
            if (t.local.port() == espada_ike::IKE_PORT || t.remote.port() == espada_ike::IKE_PORT)
                && !init
            {
                self.sent_on_500.push(line.clone());
            }
            if let Err(e) = sock.send_to(&t.payload, t.remote) {
                self.log(format!("{line}: send failed: {e}"));
            } else {
                self.log(line);
            }
        }
        while let Some(e) = self.ep.poll_event() {
            self.log(format!("event {e:?}"));
            self.events.push(e);
        }
    }

    /// Runs the endpoint until `deadline`: datagrams as they arrive, timeouts when due.
    pub fn pump_until(&mut self, deadline: Instant) {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            if self.ep.poll_timeout().is_some_and(|t| t <= now) {
                self.ep.handle_timeout(now);
                self.drain();
                continue;
            }
            let wake = self.ep.poll_timeout().map_or(deadline, |t| t.min(deadline));
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok((local, remote, payload)) => {
                    let line = format!(
                        "recv {remote} -> {local} {}",
                        summary(local.port(), &payload)
                    );
                    self.log(line);
                    self.ep
                        .handle_datagram(Instant::now(), local, remote, &payload);
                    self.drain();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => panic!("socket readers are gone"),
            }
        }
    }

    /// Runs the endpoint for `d`.
    pub fn pump_for(&mut self, d: Duration) {
        self.pump_until(Instant::now() + d);
    }

    /// Runs a command on the endpoint with the current time, then drains it.
    pub fn command<R>(&mut self, f: impl FnOnce(&mut Endpoint, Instant) -> R) -> R {
        let r = f(&mut self.ep, Instant::now());
        self.drain();
        r
    }

    /// Runs the endpoint until `cond` holds, for at most `timeout`.
    pub fn wait(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&Espada) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            self.pump_until((Instant::now() + Duration::from_millis(20)).min(deadline));
        }
    }

    /// Runs the endpoint until an event after index `since` matches `pred`; returns it.
    pub fn wait_event(
        &mut self,
        since: usize,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<Event, String> {
        self.wait(timeout, what, |e| e.events[since..].iter().any(&pred))?;
        Ok(self.events[since..]
            .iter()
            .find(|e| pred(e))
            .cloned()
            .expect("matched above"))
    }

    /// Runs `cmd` (e.g. swanctl) to completion while the endpoint keeps answering charon;
    /// kills it after `timeout`.
    pub fn run_process(
        &mut self,
        mut cmd: Command,
        timeout: Duration,
    ) -> Result<ExitStatus, String> {
        let mut child = cmd.spawn().map_err(|e| format!("spawn {cmd:?}: {e}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("wait: {e}"))? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{cmd:?} did not finish within {timeout:?}"));
            }
            self.pump_for(Duration::from_millis(10));
        }
    }
}

impl Drop for Espada {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}
