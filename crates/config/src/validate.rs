//! Semantic validation: raw serde values → [`SiteConfig`], collecting every problem.

use crate::diag::Diagnostic;
use crate::model::*;
use crate::negotiate;
use crate::overlap;
use crate::raw::*;
use crate::secret::Secret;
use serde_saphyr::Location;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroize::Zeroizing;

/// Default anti-replay window.
pub const DEFAULT_REPLAY_WINDOW: u32 = 1024;
/// Default MTU.
pub const DEFAULT_MTU: u32 = 1500;
/// Default unknown-SPI log interval.
pub const DEFAULT_UNKNOWN_SPI_INTERVAL_MS: u64 = 10_000;
/// Default admin socket.
pub const DEFAULT_ADMIN_SOCKET: &str = "/run/espada/admin.sock";
/// DPDK's default `RTE_MAX_LCORE`.
const MAX_LCORE: u32 = 128;

pub(crate) struct Ctx<'a> {
    pub diags: Vec<Diagnostic>,
    pub warnings: Vec<String>,
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(base_dir: &'a Path, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Ctx {
            diags: Vec::new(),
            warnings: Vec::new(),
            base_dir,
            env,
        }
    }

    pub(crate) fn error(
        &mut self,
        at: &Location,
        path: &str,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        self.diags.push(Diagnostic {
            message: message.into(),
            path: path.to_string(),
            line: at.line().try_into().unwrap_or(u32::MAX),
            column: at.column().try_into().unwrap_or(u32::MAX),
            width: at.span().len().clamp(1, u64::from(u32::MAX)) as u32,
            label: label.into(),
            help,
        });
    }
}

pub(crate) fn site(raw: RawSite, cx: &mut Ctx<'_>) -> Option<SiteConfig> {
    let appliance = appliance(&raw.appliance, cx);
    let cores = cores(&raw.cores, cx);
    let outside = port(&raw.ports.outside, "ports.outside", cx);
    let inside = port(&raw.ports.inside, "ports.inside", cx);
    let lab = raw.appliance.lab.as_ref().map(|l| l.value).unwrap_or(false);
    let mut tunnels = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut inbound_spis: HashMap<u32, (usize, u64)> = HashMap::new();
    let mut facts = Vec::with_capacity(raw.tunnels.len());
    for (i, t) in raw.tunnels.iter().enumerate() {
        let path = format!("tunnels[{i}]");
        if let Some(first) = names.insert(t.name.value.clone(), i) {
            cx.error(
                &t.name.referenced,
                &format!("{path}.name"),
                format!("duplicate tunnel name `{}`", t.name.value),
                "already used",
                Some(format!(
                    "`tunnels[{first}]` has the same name; tunnel names must be unique"
                )),
            );
        }
        let families = (
            raw.ports.outside.value.ipv4.is_some(),
            raw.ports.outside.value.ipv6.is_some(),
        );
        let outside = (
            parse_addr(raw.ports.outside.value.ipv4.as_ref()),
            parse_addr(raw.ports.outside.value.ipv6.as_ref()),
        );
        let defaults = raw
            .defaults
            .as_ref()
            .map(RawNegotiation::as_ref)
            .unwrap_or_default();
        let tunnel = tunnel(t, &path, lab, families, outside, defaults, cx);
        facts.push(overlap::TunnelFacts {
            index: i,
            name: t.name.value.clone(),
            remote_ts: t
                .remote_ts
                .value
                .iter()
                .filter_map(|s| Some((s.value.parse::<Prefix>().ok()?, s.referenced)))
                .filter(|(p, _)| p.network() == *p)
                .collect(),
            allow_overlap: t.allow_overlap.unwrap_or(false),
            peer: t.peer.value.parse().ok().map(|a| (a, t.peer.referenced)),
            remote_id: tunnel
                .as_ref()
                .and_then(|t| t.negotiated.as_ref())
                .map(|n| n.remote_id.to_string()),
        });
        if let Some(sa) = t.static_sa.as_ref() {
            let spi = &sa.value.inbound.spi;
            if let Ok(v) = u32::try_from(spi.value)
                && v >= 256
            {
                if let Some((first, line)) = inbound_spis.get(&v) {
                    cx.error(
                        &spi.referenced,
                        &format!("{path}.static_sa.inbound.spi"),
                        format!("duplicate inbound SPI {v:#x}"),
                        "already used",
                        Some(format!(
                            "`tunnels[{first}].static_sa.inbound.spi` (line {line}) uses the same \
                             SPI; inbound SPIs identify the SA and must be unique"
                        )),
                    );
                } else {
                    inbound_spis.insert(v, (i, spi.referenced.line()));
                }
            }
        }
        tunnels.extend(tunnel);
    }
    overlap::remote_selectors(&facts, cx);
    overlap::peers(&facts, cx);
    let logging = logging(raw.logging.as_ref(), cx);
    let admin = admin(raw.admin.as_ref(), cx);
    let dpdk = dpdk(raw.dpdk.as_ref(), cx);
    if let (
        Some(cores),
        Some(outside),
        Some(inside),
        Some(appliance),
        Some(logging),
        Some(admin),
        Some(dpdk),
    ) = (cores, outside, inside, appliance, logging, admin, dpdk)
        && cx.diags.is_empty()
    {
        for t in &tunnels {
            if t.static_sa.is_some() {
                cx.warnings.push(format!(
                    "tunnel `{}` uses static (manually keyed) SAs: lab use only. AES-GCM with \
                     manual keys reuses nonces after a restart (RFC 8221 forbids it in production)",
                    t.name
                ));
            }
        }
        return Some(SiteConfig {
            appliance,
            cores,
            ports: Ports { outside, inside },
            tunnels,
            logging,
            admin,
            dpdk,
        });
    }
    None
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn appliance(raw: &RawAppliance, cx: &mut Ctx<'_>) -> Option<Appliance> {
    if !valid_name(&raw.name.value) {
        cx.error(
            &raw.name.referenced,
            "appliance.name",
            "invalid appliance name",
            "expected 1-63 letters, digits, `-`, `_` or `.`",
            None,
        );
        return None;
    }
    Some(Appliance {
        name: raw.name.value.clone(),
        lab: raw.lab.as_ref().map(|l| l.value).unwrap_or(false),
    })
}

fn cores(raw: &RawCores, cx: &mut Ctx<'_>) -> Option<Cores> {
    let before = cx.diags.len();
    let control = raw.control.value;
    if control >= MAX_LCORE {
        cx.error(
            &raw.control.referenced,
            "cores.control",
            format!("lcore {control} is out of range"),
            format!("expected an lcore id below {MAX_LCORE}"),
            None,
        );
    }
    if raw.workers.value.is_empty() {
        cx.error(
            &raw.workers.referenced,
            "cores.workers",
            "no worker cores",
            "expected at least one worker lcore id",
            Some("e.g. `workers: [1]`".into()),
        );
    }
    let mut seen = HashMap::new();
    for (i, w) in raw.workers.value.iter().enumerate() {
        let path = format!("cores.workers[{i}]");
        if w.value >= MAX_LCORE {
            cx.error(
                &w.referenced,
                &path,
                format!("lcore {} is out of range", w.value),
                format!("expected an lcore id below {MAX_LCORE}"),
                None,
            );
        } else if w.value == control {
            cx.error(
                &w.referenced,
                &path,
                format!("lcore {} is also the control core", w.value),
                "workers must not share the control core",
                Some(format!(
                    "`cores.control` is {control}: pick another lcore for this worker \
                     or move the control thread"
                )),
            );
        } else if let Some(first) = seen.insert(w.value, i) {
            cx.error(
                &w.referenced,
                &path,
                format!("lcore {} is listed twice", w.value),
                "duplicate worker lcore",
                Some(format!("`cores.workers[{first}]` is the same lcore")),
            );
        }
    }
    (cx.diags.len() == before).then(|| Cores {
        control,
        workers: raw.workers.value.iter().map(|w| w.value).collect(),
        polling: match raw.polling {
            Some(RawPolling::Busy) => Polling::Busy,
            Some(RawPolling::Adaptive) | None => Polling::Adaptive,
        },
    })
}

/// Parses a DPDK device string: PCI `[dddd:]bb:dd.f` or vdev `net_<driver>[,key=value]*`.
pub(crate) fn parse_device(s: &str) -> Result<Device, &'static str> {
    if s.starts_with("net_") {
        let mut parts = s.split(',');
        let name = parts.next().unwrap_or_default();
        if name.len() <= 4
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err("a vdev name is `net_` followed by lowercase letters, digits or `_`");
        }
        let mut args = Vec::new();
        for arg in parts {
            let (k, v) = arg
                .split_once('=')
                .ok_or("vdev arguments are `,key=value` pairs")?;
            if k.is_empty()
                || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                || v.is_empty()
                || v.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                return Err("vdev arguments are `,key=value` pairs with non-empty keys and values");
            }
            args.push((k.to_string(), v.to_string()));
        }
        return Ok(Device::Vdev {
            name: name.to_string(),
            args,
        });
    }
    let hex = |t: &str, max_len: usize| -> Option<u32> {
        (!t.is_empty() && t.len() <= max_len && t.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(t, 16).ok())
            .flatten()
    };
    let bad =
        "expected a PCI address like `0000:03:00.0` or a vdev like `net_af_packet0,iface=eth0`";
    let (rest, function) = s.rsplit_once('.').ok_or(bad)?;
    let fields: Vec<&str> = rest.split(':').collect();
    let (domain, bus, device) = match fields.as_slice() {
        [d, b, dev] => (
            hex(d, 4).ok_or(bad)?,
            hex(b, 2).ok_or(bad)?,
            hex(dev, 2).ok_or(bad)?,
        ),
        [b, dev] => (0, hex(b, 2).ok_or(bad)?, hex(dev, 2).ok_or(bad)?),
        _ => return Err(bad),
    };
    let function = hex(function, 1).ok_or(bad)?;
    if device > 0x1f || function > 7 {
        return Err("PCI device numbers go up to 1f and functions up to 7");
    }
    Ok(Device::Pci {
        domain: domain as u16,
        bus: bus as u8,
        device: device as u8,
        function: function as u8,
    })
}

fn prefix_help(example: &str) -> Option<String> {
    Some(format!(
        "write an address with its prefix length, e.g. `{example}`"
    ))
}

/// Parses an interface prefix of the given family (host bits allowed).
fn iface_prefix(s: &S<String>, v4: bool, path: &str, cx: &mut Ctx<'_>) -> Option<Prefix> {
    let example = if v4 {
        "198.51.100.1/24"
    } else {
        "2001:db8:1::1/64"
    };
    let family = if v4 { "IPv4" } else { "IPv6" };
    match s.value.parse::<Prefix>() {
        Ok(p) if p.is_ipv4() == v4 => Some(p),
        Ok(_) => {
            cx.error(
                &s.referenced,
                path,
                format!("`{}` is not an {family} prefix", s.value),
                format!("expected an {family} address/length"),
                prefix_help(example),
            );
            None
        }
        Err(e) => {
            cx.error(
                &s.referenced,
                path,
                format!("invalid prefix `{}`", s.value),
                prefix_error_label(e, family),
                prefix_help(example),
            );
            None
        }
    }
}

fn prefix_error_label(e: PrefixError, family: &str) -> String {
    match e {
        PrefixError::MissingLength => "missing `/length`".into(),
        PrefixError::BadAddress => format!("expected an {family} address before `/`"),
        PrefixError::BadLength => "prefix length must be 0-32 (IPv4) or 0-128 (IPv6)".into(),
    }
}

fn gateway(
    raw: Option<&S<String>>,
    net: Option<Prefix>,
    v4: bool,
    path: &str,
    cx: &mut Ctx<'_>,
) -> Option<Option<IpAddr>> {
    let Some(raw) = raw else { return Some(None) };
    let (family, key) = if v4 {
        ("IPv4", "ipv4")
    } else {
        ("IPv6", "ipv6")
    };
    let ip = match raw.value.parse::<IpAddr>() {
        Ok(ip) if ip.is_ipv4() == v4 => ip,
        _ => {
            cx.error(
                &raw.referenced,
                path,
                format!("invalid gateway `{}`", raw.value),
                format!("expected an {family} address (no prefix length)"),
                None,
            );
            return None;
        }
    };
    match net {
        Some(net) if net.contains(ip) => Some(Some(ip)),
        Some(net) => {
            cx.error(
                &raw.referenced,
                path,
                format!(
                    "gateway {ip} is outside the port's network {}",
                    net.network()
                ),
                format!("not in {}", net.network()),
                Some(format!(
                    "the gateway must be reachable on the link: use an address in {} or fix \
                     the `{key}` prefix",
                    net.network()
                )),
            );
            None
        }
        // The missing address was already reported by the caller.
        None => None,
    }
}

fn port(raw: &S<RawPort>, path: &str, cx: &mut Ctx<'_>) -> Option<Port> {
    let before = cx.diags.len();
    let p = &raw.value;
    let device = match parse_device(&p.device.value) {
        Ok(d) => Some(d),
        Err(why) => {
            cx.error(
                &p.device.referenced,
                &format!("{path}.device"),
                format!("invalid device `{}`", p.device.value),
                why,
                Some("PCI: `0000:03:00.0` (see `dpdk-devbind.py --status`); vdev: `net_af_packet0,iface=eth0`".into()),
            );
            None
        }
    };
    if p.ipv4.is_none() && p.ipv6.is_none() {
        cx.error(
            &raw.referenced,
            path,
            "port has no address",
            "expected `ipv4`, `ipv6` or both",
            Some("e.g. `ipv4: 198.51.100.1/24`".into()),
        );
    }
    let ipv4 = p
        .ipv4
        .as_ref()
        .and_then(|s| iface_prefix(s, true, &format!("{path}.ipv4"), cx));
    let ipv6 = p
        .ipv6
        .as_ref()
        .and_then(|s| iface_prefix(s, false, &format!("{path}.ipv6"), cx));
    for (gw, addr, key, v4) in [
        (&p.gateway4, &p.ipv4, "gateway4", true),
        (&p.gateway6, &p.ipv6, "gateway6", false),
    ] {
        if let (Some(gw), None) = (gw, addr) {
            cx.error(
                &gw.referenced,
                &format!("{path}.{key}"),
                format!(
                    "`{key}` without an {} address",
                    if v4 { "IPv4" } else { "IPv6" }
                ),
                "no prefix to check it against",
                Some(format!(
                    "add `{}` to this port",
                    if v4 { "ipv4" } else { "ipv6" }
                )),
            );
        }
    }
    let gateway4 = gateway(
        p.gateway4.as_ref(),
        ipv4,
        true,
        &format!("{path}.gateway4"),
        cx,
    );
    let gateway6 = gateway(
        p.gateway6.as_ref(),
        ipv6,
        false,
        &format!("{path}.gateway6"),
        cx,
    );
    let mtu = p.mtu.as_ref().map(|m| m.value).unwrap_or(DEFAULT_MTU);
    let min_mtu = if p.ipv6.is_some() { 1280 } else { 576 };
    if let Some(m) = &p.mtu
        && !(min_mtu..=9216).contains(&m.value)
    {
        cx.error(
            &m.referenced,
            &format!("{path}.mtu"),
            format!("MTU {} is out of range", m.value),
            format!("expected {min_mtu}..=9216"),
            (p.ipv6.is_some() && m.value < 1280)
                .then(|| "IPv6 needs an MTU of at least 1280 (RFC 8200)".into()),
        );
    }
    if cx.diags.len() != before {
        return None;
    }
    Some(Port {
        device: device?,
        ipv4,
        ipv6,
        gateway4: gateway4?,
        gateway6: gateway6?,
        mtu,
        rx_queues: rx_queues(p, path, cx)?,
        neighbors: neighbors(p, ipv4, ipv6, path, cx)?,
    })
}

/// A MAC address written `aa:bb:cc:dd:ee:ff` (or with `-`).
fn parse_mac(s: &str) -> Option<espada_wire::MacAddr> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut b = [0u8; 6];
    for (o, p) in b.iter_mut().zip(parts) {
        if p.len() != 2 {
            return None;
        }
        *o = u8::from_str_radix(p, 16).ok()?;
    }
    Some(espada_wire::MacAddr(b))
}

fn neighbors(
    p: &RawPort,
    ipv4: Option<Prefix>,
    ipv6: Option<Prefix>,
    path: &str,
    cx: &mut Ctx<'_>,
) -> Option<Vec<Neighbor>> {
    let Some(list) = &p.neighbors else {
        return Some(Vec::new());
    };
    let before = cx.diags.len();
    let mut out: Vec<Neighbor> = Vec::new();
    for (i, n) in list.value.iter().enumerate() {
        let at = format!("{path}.neighbors[{i}]");
        let ip = match n.value.ip.value.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                cx.error(
                    &n.value.ip.referenced,
                    &format!("{at}.ip"),
                    format!("invalid address `{}`", n.value.ip.value),
                    "expected an IPv4 or IPv6 address (no prefix length)",
                    None,
                );
                continue;
            }
        };
        let net = if ip.is_ipv4() { ipv4 } else { ipv6 };
        if !net.is_some_and(|net| net.contains(ip)) {
            cx.error(
                &n.value.ip.referenced,
                &format!("{at}.ip"),
                format!("neighbour {ip} is not on the port's network"),
                match net {
                    Some(net) => format!("not in {}", net.network()),
                    None => "the port has no address of that family".into(),
                },
                Some("a static neighbour is a next hop on the link".into()),
            );
            continue;
        }
        let mac = match parse_mac(&n.value.mac.value) {
            Some(m) if m.is_unicast() => m,
            _ => {
                cx.error(
                    &n.value.mac.referenced,
                    &format!("{at}.mac"),
                    format!("invalid MAC address `{}`", n.value.mac.value),
                    "expected a unicast MAC address such as 02:00:00:00:00:04",
                    None,
                );
                continue;
            }
        };
        if out.iter().any(|o| o.ip == ip) {
            cx.error(
                &n.value.ip.referenced,
                &format!("{at}.ip"),
                format!("neighbour {ip} is listed twice"),
                "one MAC per address",
                None,
            );
            continue;
        }
        out.push(Neighbor { ip, mac });
    }
    (cx.diags.len() == before).then_some(out)
}

fn rx_queues(p: &RawPort, path: &str, cx: &mut Ctx<'_>) -> Option<Option<u16>> {
    match &p.rx_queues {
        None => Some(None),
        Some(q) if (1..=64).contains(&q.value) => Some(Some(q.value)),
        Some(q) => {
            cx.error(
                &q.referenced,
                &format!("{path}.rx_queues"),
                format!("invalid RX queue count {}", q.value),
                "expected 1..=64",
                Some("leave it out to poll one RX queue per worker".into()),
            );
            None
        }
    }
}

/// EAL options espada derives itself from `cores` and `ports`.
const DERIVED_EAL_OPTIONS: &[&str] = &[
    "-l",
    "--lcores",
    "--main-lcore",
    "--vdev",
    "-a",
    "--allow",
    "-c",
    "--file-prefix",
];

/// MSS values `mss_clamp` takes (RFC 9293 §3.7.1: 536 is IPv4's default; 65495 the largest
/// that an IPv4 TCP segment can carry).
const MSS_CLAMP: std::ops::RangeInclusive<u32> = 536..=65495;

/// Fewest and most mbufs `dpdk.mbufs` may ask for.
const MBUFS: std::ops::RangeInclusive<u32> = 1024..=16_777_215;

fn dpdk(raw: Option<&RawDpdk>, cx: &mut Ctx<'_>) -> Option<Dpdk> {
    let mut ok = true;
    let mbufs = match raw.and_then(|d| d.mbufs.as_ref()) {
        None => None,
        Some(n) if MBUFS.contains(&n.value) => Some(n.value),
        Some(n) => {
            cx.error(
                &n.referenced,
                "dpdk.mbufs",
                format!("{} mbufs is out of range", n.value),
                format!("expected {} to {}", MBUFS.start(), MBUFS.end()),
                Some("leave it out to size the pool from ports, queues, workers and rings".into()),
            );
            ok = false;
            None
        }
    };
    let args = raw.and_then(|d| d.args.as_ref());
    for (i, a) in args.iter().flat_map(|a| a.value.iter()).enumerate() {
        let opt = a.value.split('=').next().unwrap_or("");
        if DERIVED_EAL_OPTIONS.contains(&opt) {
            cx.error(
                &a.referenced,
                &format!("dpdk.args[{i}]"),
                format!("EAL option `{opt}` is set by espada"),
                "lcores come from `cores`, devices from `ports`",
                Some("remove it from `dpdk.args`".into()),
            );
            ok = false;
        }
    }
    ok.then(|| Dpdk {
        args: args
            .iter()
            .flat_map(|a| a.value.iter().map(|a| a.value.clone()))
            .collect(),
        mbufs,
    })
}

fn selectors(raw: &S<Vec<S<String>>>, path: &str, cx: &mut Ctx<'_>) -> Vec<Prefix> {
    if raw.value.is_empty() {
        cx.error(
            &raw.referenced,
            path,
            "no traffic selectors",
            "expected at least one prefix",
            Some("e.g. `[192.0.2.0/24]`".into()),
        );
    }
    let mut out = Vec::new();
    for (i, s) in raw.value.iter().enumerate() {
        let p = format!("{path}[{i}]");
        match s.value.parse::<Prefix>() {
            Ok(prefix) if prefix.network() != prefix => cx.error(
                &s.referenced,
                &p,
                format!("traffic selector `{}` has host bits set", s.value),
                "expected a network address",
                Some(format!("did you mean `{}`?", prefix.network())),
            ),
            Ok(prefix) => out.push(prefix),
            Err(e) => cx.error(
                &s.referenced,
                &p,
                format!("invalid prefix `{}`", s.value),
                prefix_error_label(e, "IP"),
                prefix_help("192.0.2.0/24"),
            ),
        }
    }
    out
}

/// The address of an `ipv4:`/`ipv6:` port key (`198.51.100.1/24` → `198.51.100.1`), if valid.
fn parse_addr(v: Option<&S<String>>) -> Option<IpAddr> {
    v?.value.split('/').next()?.parse().ok()
}

fn tunnel(
    raw: &RawTunnel,
    path: &str,
    lab: bool,
    (outside_v4, outside_v6): (bool, bool),
    (local_v4, local_v6): (Option<IpAddr>, Option<IpAddr>),
    defaults: NegotiationRef<'_>,
    cx: &mut Ctx<'_>,
) -> Option<Tunnel> {
    let before = cx.diags.len();
    if !valid_name(&raw.name.value) {
        cx.error(
            &raw.name.referenced,
            &format!("{path}.name"),
            "invalid tunnel name",
            "expected 1-63 letters, digits, `-`, `_` or `.`",
            None,
        );
    }
    let peer = match raw.peer.value.parse::<IpAddr>() {
        Ok(ip) => {
            let (has, key) = if ip.is_ipv4() {
                (outside_v4, "ipv4")
            } else {
                (outside_v6, "ipv6")
            };
            if !has {
                cx.error(
                    &raw.peer.referenced,
                    &format!("{path}.peer"),
                    format!("peer {ip} cannot be reached: the outside port has no {key} address"),
                    "address family not configured on `ports.outside`",
                    Some(format!(
                        "add `ports.outside.{key}`, or use a peer address of the other family"
                    )),
                );
            }
            Some(ip)
        }
        Err(_) => {
            cx.error(
                &raw.peer.referenced,
                &format!("{path}.peer"),
                format!("invalid peer address `{}`", raw.peer.value),
                "expected an IPv4 or IPv6 address",
                None,
            );
            None
        }
    };
    let local_ts = selectors(&raw.local_ts, &format!("{path}.local_ts"), cx);
    let remote_ts = selectors(&raw.remote_ts, &format!("{path}.remote_ts"), cx);
    let replay_window = match &raw.replay_window {
        None => DEFAULT_REPLAY_WINDOW,
        Some(w) if w.value == 0 => {
            cx.warnings.push(format!(
                "tunnel `{}`: replay_window 0 turns anti-replay off (RFC 4303 §3.4.3): replayed \
                 ESP packets are accepted. Lab use only",
                raw.name.value
            ));
            0
        }
        Some(w) if (32..=65536).contains(&w.value) => w.value,
        Some(w) => {
            let near = w.value.clamp(32, 65536);
            cx.error(
                &w.referenced,
                &format!("{path}.replay_window"),
                format!("replay window {} is not supported", w.value),
                "expected 32 to 65536 packets (RFC 4303 §3.4.3; 64 is the RFC's default, 1024 \
                 espada's), or 0 to turn anti-replay off in a lab",
                Some(format!("e.g. `replay_window: {near}`")),
            );
            DEFAULT_REPLAY_WINDOW
        }
    };
    let mss_clamp = match &raw.mss_clamp {
        None => None,
        Some(v) if (MSS_CLAMP).contains(&v.value) => Some(v.value as u16),
        Some(v) => {
            cx.error(
                &v.referenced,
                &format!("{path}.mss_clamp"),
                format!("MSS {} is out of range", v.value),
                format!(
                    "expected {} to {} (e.g. 1360 for a 1500-byte path)",
                    MSS_CLAMP.start(),
                    MSS_CLAMP.end()
                ),
                None,
            );
            None
        }
    };
    let static_sa = raw
        .static_sa
        .as_ref()
        .and_then(|sa| static_sa(sa, &format!("{path}.static_sa"), lab, cx));
    let negotiated = match &raw.static_sa {
        Some(sa) => {
            if raw.has_negotiation_keys() {
                cx.error(
                    &sa.referenced,
                    &format!("{path}.static_sa"),
                    "a tunnel has static SAs or IKEv2 settings, not both",
                    "static SAs here",
                    Some("remove `static_sa` to negotiate the tunnel with IKEv2".into()),
                );
            }
            if let Some(RawEncapsulation::Auto) = raw.encapsulation {
                cx.error(
                    &sa.referenced,
                    &format!("{path}.encapsulation"),
                    "`encapsulation: auto` needs IKEv2 to detect NAT",
                    "static SAs cannot detect NAT",
                    Some("use `encapsulation: udp` or `encapsulation: esp`".into()),
                );
            }
            None
        }
        None => {
            let local = match peer {
                Some(IpAddr::V6(_)) => local_v6,
                _ => local_v4,
            };
            negotiate::negotiated(
                raw.negotiation(),
                defaults,
                path,
                &raw.name,
                local,
                peer,
                cx,
            )
        }
    };
    if cx.diags.len() != before {
        return None;
    }
    Some(Tunnel {
        name: raw.name.value.clone(),
        peer: peer?,
        encapsulation: match (raw.encapsulation, &negotiated) {
            (Some(RawEncapsulation::Esp), _) => Encapsulation::Esp,
            (Some(RawEncapsulation::Udp), _) | (None, None) => Encapsulation::Udp,
            (Some(RawEncapsulation::Auto), _) | (None, Some(_)) => Encapsulation::Auto,
        },
        local_ts,
        remote_ts,
        replay_window,
        mss_clamp,
        fragmentation: match raw.fragmentation {
            None | Some(RawFragmentation::BeforeEncryption) => Fragmentation::BeforeEncryption,
            Some(RawFragmentation::AfterEncryption) => Fragmentation::AfterEncryption,
        },
        crypto: match raw.crypto {
            None | Some(RawCrypto::Auto) => Crypto::Auto,
            Some(RawCrypto::Ring) => Crypto::Ring,
            Some(RawCrypto::Rustcrypto) => Crypto::RustCrypto,
            Some(RawCrypto::IpsecMb) => Crypto::IpsecMb,
        },
        esn: raw.esn.unwrap_or(false),
        static_sa,
        negotiated,
    })
}

fn static_sa(raw: &S<RawStaticSa>, path: &str, lab: bool, cx: &mut Ctx<'_>) -> Option<StaticSa> {
    if !lab {
        cx.error(
            &raw.referenced,
            path,
            "static (manually keyed) SAs are only allowed in lab mode",
            "requires `appliance.lab: true`",
            Some(
                "RFC 8221 forbids AES-GCM with manual keys in production (a restart resets the \
                 sequence number and reuses nonces); use IKEv2, or set `appliance.lab: true` \
                 on a lab box"
                    .into(),
            ),
        );
    }
    let inbound = sa(&raw.value.inbound, &format!("{path}.inbound"), cx);
    let outbound = sa(&raw.value.outbound, &format!("{path}.outbound"), cx);
    let lifetime = raw
        .value
        .lifetime
        .as_ref()
        .map(|l| lifetime(l, &format!("{path}.lifetime"), cx))
        .unwrap_or_default();
    Some(StaticSa {
        inbound: inbound?,
        outbound: outbound?,
        lifetime,
    })
}

fn lifetime(raw: &RawLifetime, path: &str, cx: &mut Ctx<'_>) -> Lifetime {
    for (soft, hard, what) in [
        (&raw.soft_bytes, &raw.hard_bytes, "bytes"),
        (&raw.soft_packets, &raw.hard_packets, "packets"),
    ] {
        for (v, key) in [(soft, "soft"), (hard, "hard")] {
            if let Some(v) = v
                && v.value == 0
            {
                cx.error(
                    &v.referenced,
                    &format!("{path}.{key}_{what}"),
                    format!("{key} {what} limit of 0"),
                    "expected a positive limit",
                    Some("leave the key out for no limit".into()),
                );
            }
        }
        if let (Some(s), Some(h)) = (soft, hard)
            && s.value >= h.value
            && s.value != 0
        {
            cx.error(
                &s.referenced,
                &format!("{path}.soft_{what}"),
                format!(
                    "soft {what} limit {} is not below the hard limit {}",
                    s.value, h.value
                ),
                format!("expected less than hard_{what}"),
                Some("the soft limit triggers a rekey before the hard limit stops the SA".into()),
            );
        }
    }
    Lifetime {
        soft_bytes: raw.soft_bytes.as_ref().map(|v| v.value),
        hard_bytes: raw.hard_bytes.as_ref().map(|v| v.value),
        soft_packets: raw.soft_packets.as_ref().map(|v| v.value),
        hard_packets: raw.hard_packets.as_ref().map(|v| v.value),
    }
}

fn sa(raw: &RawSa, path: &str, cx: &mut Ctx<'_>) -> Option<SaKeys> {
    let spi = match u32::try_from(raw.spi.value) {
        Ok(v) if v >= 256 => Some(v),
        Ok(v) => {
            cx.error(
                &raw.spi.referenced,
                &format!("{path}.spi"),
                if v == 0 {
                    "SPI 0 is invalid".to_string()
                } else {
                    format!("SPI {v} is reserved")
                },
                "expected an SPI of at least 256 (0x100)",
                Some(
                    "SPIs 1-255 are reserved by RFC 4303 §2.1 and 0 is invalid; e.g. `spi: 0x1000`"
                        .into(),
                ),
            );
            None
        }
        Err(_) => {
            cx.error(
                &raw.spi.referenced,
                &format!("{path}.spi"),
                format!("SPI {} does not fit in 32 bits", raw.spi.value),
                "expected 256..=0xffffffff",
                None,
            );
            None
        }
    };
    let algorithm = match raw.algorithm {
        RawAlgorithm::Aes128gcm16 => Algorithm::Aes128Gcm16,
        RawAlgorithm::Aes256gcm16 => Algorithm::Aes256Gcm16,
    };
    let key = key(&raw.key, algorithm, &format!("{path}.key"), cx);
    Some(SaKeys {
        spi: spi?,
        algorithm,
        key: key?,
    })
}

/// The mode of a file group or others may read (as ssh refuses such private keys, espada warns).
#[cfg(unix)]
fn group_or_other_readable(p: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(p).ok()?.permissions().mode() & 0o7777;
    (mode & 0o044 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn group_or_other_readable(_: &std::path::Path) -> Option<u32> {
    None
}

/// The text of a secret (`kind`: "key", "PSK") from the environment or a file relative to the
/// configuration's directory, and a description of its source; a file group or others can read
/// gets a warning. Errors name the source, never the content; `not_text` labels a file that is
/// not UTF-8 and `env_help` says what to export when the variable is unset.
pub(crate) fn secret_text(
    raw: &S<RawKey>,
    path: &str,
    kind: &str,
    not_text: &str,
    env_help: impl Fn(&str) -> String,
    cx: &mut Ctx<'_>,
) -> Option<(Zeroizing<String>, String)> {
    match &raw.value {
        RawKey::Env(name) => match (cx.env)(name) {
            Some(v) => Some((Zeroizing::new(v), format!("environment variable `{name}`"))),
            None => {
                cx.error(
                    &raw.referenced,
                    path,
                    format!("environment variable `{name}` is not set"),
                    format!("{kind} source not found"),
                    Some(env_help(name)),
                );
                None
            }
        },
        RawKey::File(file) => {
            let full: PathBuf = cx.base_dir.join(file);
            match std::fs::read(&full) {
                Ok(bytes) => {
                    let bytes = Zeroizing::new(bytes);
                    if let Some(mode) = group_or_other_readable(&full) {
                        cx.warnings.push(format!(
                            "{path}: {kind} file `{file}` is readable by group or others (mode \
                             {mode:04o}); `chmod 600 {file}`"
                        ));
                    }
                    match std::str::from_utf8(&bytes) {
                        Ok(s) => Some((
                            Zeroizing::new(s.to_string()),
                            format!("{kind} file `{file}`"),
                        )),
                        Err(_) => {
                            cx.error(
                                &raw.referenced,
                                path,
                                format!("{kind} file `{file}` is not text"),
                                not_text,
                                None,
                            );
                            None
                        }
                    }
                }
                Err(e) => {
                    cx.error(
                        &raw.referenced,
                        path,
                        format!("cannot read {kind} file `{file}`: {}", io_reason(&e)),
                        format!("{kind} source not found"),
                        Some(format!(
                            "{kind} file paths are relative to the directory of the \
                             configuration file"
                        )),
                    );
                    None
                }
            }
        }
    }
}

fn key(raw: &S<RawKey>, algorithm: Algorithm, path: &str, cx: &mut Ctx<'_>) -> Option<Secret> {
    let help = |name: &str| {
        format!(
            "export {name}=<{} hex bytes: key then salt> before starting espada, \
             or use `key: {{ file: PATH }}`",
            algorithm.key_material_len()
        )
    };
    let (text, source) = secret_text(raw, path, "key", "expected hex digits", help, cx)?;
    match decode_hex(&text) {
        Err(HexError::BadDigit(pos)) => {
            cx.error(
                &raw.referenced,
                path,
                format!("key from {source} is not hex (bad character at position {pos})"),
                "expected hex digits, optionally prefixed by 0x",
                None,
            );
            None
        }
        Err(HexError::OddLength(n)) => {
            cx.error(
                &raw.referenced,
                path,
                format!("key from {source} has an odd number of hex digits ({n})"),
                "expected two hex digits per byte",
                None,
            );
            None
        }
        Ok(bytes) if bytes.len() != algorithm.key_material_len() => {
            cx.error(
                &raw.referenced,
                path,
                format!(
                    "key from {source} is {} bytes long; {} needs {} ({}-byte key + 4-byte salt)",
                    bytes.len(),
                    algorithm.name(),
                    algorithm.key_material_len(),
                    algorithm.key_len()
                ),
                "wrong key length",
                Some(format!(
                    "generate one with `head -c {} /dev/urandom | xxd -p -c 64`",
                    algorithm.key_material_len()
                )),
            );
            None
        }
        Ok(bytes) => Some(Secret::new(bytes)),
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

enum HexError {
    BadDigit(usize),
    OddLength(usize),
}

/// Hex with whitespace anywhere and an optional `0x`; the result is the only copy of the bytes.
/// Hex digits (optionally after `0x`, whitespace ignored) → bytes; `None` when not hex.
pub(crate) fn decode_hex_bytes(text: &str) -> Option<Vec<u8>> {
    decode_hex(text).ok()
}

fn decode_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let trimmed = text.trim();
    let body = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let digits: Zeroizing<Vec<u8>> =
        Zeroizing::new(body.bytes().filter(|b| !b.is_ascii_whitespace()).collect());
    if let Some(pos) = digits.iter().position(|b| !b.is_ascii_hexdigit()) {
        return Err(HexError::BadDigit(pos));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(HexError::OddLength(digits.len()));
    }
    let nibble = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    };
    Ok(digits
        .chunks_exact(2)
        .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
        .collect())
}

fn logging(raw: Option<&RawLogging>, cx: &mut Ctx<'_>) -> Option<Logging> {
    let ms = raw
        .and_then(|l| l.unknown_spi_interval_ms.as_ref())
        .map(|v| (v.value, Some(v)))
        .unwrap_or((DEFAULT_UNKNOWN_SPI_INTERVAL_MS, None));
    if let (0, Some(v)) = ms {
        cx.error(
            &v.referenced,
            "logging.unknown_spi_interval_ms",
            "an interval of 0 would log every unknown-SPI packet",
            "expected at least 1 ms",
            Some("an attacker can send unknown SPIs at line rate; keep a rate limit".into()),
        );
        return None;
    }
    Some(Logging {
        unknown_spi_interval: Duration::from_millis(ms.0),
    })
}

fn admin(raw: Option<&RawAdmin>, cx: &mut Ctx<'_>) -> Option<Admin> {
    match raw.and_then(|a| a.socket.as_ref()) {
        None => Some(Admin {
            socket: PathBuf::from(DEFAULT_ADMIN_SOCKET),
        }),
        Some(s) if Path::new(&s.value).is_absolute() => Some(Admin {
            socket: PathBuf::from(&s.value),
        }),
        Some(s) => {
            cx.error(
                &s.referenced,
                "admin.socket",
                format!("admin socket path `{}` is relative", s.value),
                "expected an absolute path",
                Some(format!("e.g. `socket: {DEFAULT_ADMIN_SOCKET}`")),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices() {
        assert_eq!(
            parse_device("0000:03:00.0"),
            Ok(Device::Pci {
                domain: 0,
                bus: 3,
                device: 0,
                function: 0
            })
        );
        assert!(matches!(
            parse_device("af:1f.7"),
            Ok(Device::Pci { bus: 0xaf, .. })
        ));
        assert!(parse_device("0000:03:20.0").is_err());
        assert!(parse_device("0000:03:00.8").is_err());
        assert!(parse_device("00000:03:00.0").is_err());
        assert!(parse_device("eth0").is_err());
        assert!(parse_device("").is_err());
        let v = parse_device("net_af_packet0,iface=esp-a-out").unwrap();
        assert_eq!(v.to_string(), "net_af_packet0,iface=esp-a-out");
        assert!(parse_device("net_").is_err());
        assert!(parse_device("net_ring0,").is_err());
        assert!(parse_device("net_ring0,a=").is_err());
        assert!(parse_device("net_Ring0").is_err());
    }

    #[test]
    fn hex_keys() {
        assert_eq!(decode_hex(" 0x0aFF\n").ok(), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("0a ff\n00").ok(), Some(vec![0x0a, 0xff, 0]));
        assert!(matches!(decode_hex("0a f"), Err(HexError::OddLength(3))));
        assert!(matches!(decode_hex("0g"), Err(HexError::BadDigit(1))));
    }
}
