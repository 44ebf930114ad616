//! Plain-text tables for operators, and the `--json` form.
//!
//! Conventions: SPIs as `0x%08x`; numbers in table columns are raw and right-aligned (one
//! token per column, so `awk` still works); numbers in the per-SA blocks are grouped by
//! thousands with spaces (`9 000 packets`); `kB` is 1000 bytes, rounded down; `-` means
//! "none". Timestamps are UTC. Lines never end in spaces.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::proto::Response;
use crate::view::{
    Direction, DropsView, IkeReport, LifetimeView, SaView, TunnelSaView, TunnelView, WorkerView,
};

/// Rendering choices beyond the defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// `show drops`: list reasons at zero one by one instead of one summary line.
    pub all_drop_reasons: bool,
}

/// Renders a response as text tables with default options.
pub fn render_table(resp: &Response) -> String {
    render_table_with(resp, &RenderOptions::default())
}

/// Renders a response as text tables.
pub fn render_table_with(resp: &Response, opts: &RenderOptions) -> String {
    match resp {
        Response::Sa(sas) => render_sas(sas),
        Response::Tunnels(tunnels) => render_tunnels(tunnels),
        Response::Drops(drops) => render_drops(drops, opts),
        Response::Workers(workers) => render_workers(workers),
        Response::Pong { version } => format!("espada {version}\n"),
        Response::Ike(v) => render_ike(v),
        Response::Done { message } => format!("{message}\n"),
    }
}

/// The `--json` form: the response's `ok` payload, pretty-printed, with a final newline.
pub fn render_json(resp: &Response) -> String {
    let mut s = serde_json::to_string_pretty(resp)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode: {e}\"}}"));
    s.push('\n');
    s
}

/// `1234567` → `"1 234 567"`.
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// An SPI as `0x%08x`.
pub fn spi_hex(spi: u32) -> String {
    format!("0x{spi:08x}")
}

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc_timestamp(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        unix_ms % 1000
    )
}

/// A column-aligned table: two spaces between columns, numeric columns right-aligned.
struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as `(header, right_aligned)`.
    fn new(cols: &[(&'static str, bool)]) -> Table {
        Table {
            headers: cols.iter().map(|c| c.0).collect(),
            right: cols.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(cell.chars().count());
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
}

fn opt_spi(spi: Option<u32>) -> String {
    spi.map_or_else(|| "-".into(), spi_hex)
}

/// `replay 3, auth-failed 1` (non-zero only), or `none`.
fn reasons_inline(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = sorted_nonzero(counts)
        .into_iter()
        .map(|(reason, n)| format!("{reason} {}", group_thousands(n)))
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Non-zero counters, largest first, then by name.
fn sorted_nonzero(counts: &BTreeMap<String, u64>) -> Vec<(&str, u64)> {
    let mut v: Vec<(&str, u64)> = counts
        .iter()
        .filter(|&(_, &n)| n != 0)
        .map(|(k, &n)| (k.as_str(), n))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v
}

fn kb(bytes: u64) -> String {
    format!("{} kB", group_thousands(bytes / 1000))
}

fn lifetime_line(l: &LifetimeView) -> String {
    let bytes = match l.hard_bytes {
        Some(hard) => format!("{} / {}", kb(l.bytes_left().unwrap_or(0)), kb(hard)),
        None => "no byte limit".into(),
    };
    let packets = match l.hard_packets {
        Some(hard) => format!(
            "{} / {} packets",
            group_thousands(l.packets_left().unwrap_or(0)),
            group_thousands(hard)
        ),
        None => "no packet limit".into(),
    };
    let mut line = format!("lifetime left {bytes}, {packets}");
    let soft: Vec<String> = [
        l.soft_bytes.map(kb),
        l.soft_packets
            .map(|p| format!("{} packets", group_thousands(p))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !soft.is_empty() {
        let _ = write!(line, "  (soft limit {})", soft.join(", "));
    }
    line
}

fn render_sa(sa: &SaView, out: &mut String) {
    let (from, to) = match sa.direction {
        Direction::Inbound => (sa.remote, sa.local),
        Direction::Outbound => (sa.local, sa.remote),
    };
    let _ = writeln!(
        out,
        "tunnel {}  {}  spi {} ({})  worker {}  {}{}  {}  {} -> {}",
        sa.tunnel,
        sa.direction.as_str(),
        spi_hex(sa.spi),
        sa.spi,
        sa.owner_worker,
        sa.algorithm,
        if sa.crypto.is_empty() {
            String::new()
        } else {
            format!(" ({})", sa.crypto)
        },
        sa.encapsulation,
        from,
        to
    );
    let seq_kind = match sa.direction {
        Direction::Inbound => "highest received",
        Direction::Outbound => "last sent",
    };
    let _ = writeln!(
        out,
        "  state {}  esn {}  seq {} (0x{:x}, {seq_kind})",
        sa.state,
        if sa.esn { "on" } else { "off" },
        group_thousands(sa.seq),
        sa.seq
    );
    if sa.direction == Direction::Inbound {
        let bitmap = match sa.replay_bitmap.as_deref() {
            Some(b) if b.starts_with("0x") => b.to_owned(),
            Some(b) => format!("0x{b}"),
            None => "-".into(),
        };
        let _ = writeln!(out, "  replay window {}  bitmap {bitmap}", sa.replay_window);
    }
    let _ = writeln!(out, "  {}", lifetime_line(&sa.lifetime));
    let _ = writeln!(
        out,
        "  counters {} packets, {} bytes",
        group_thousands(sa.counters.packets),
        group_thousands(sa.counters.bytes)
    );
    let _ = writeln!(out, "  drops {}", reasons_inline(&sa.counters.drops));
}

fn render_sas(sas: &[SaView]) -> String {
    if sas.is_empty() {
        return "no SAs\n".into();
    }
    let mut out = String::new();
    for (i, sa) in sas.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        render_sa(sa, &mut out);
    }
    out
}

fn render_tunnels(tunnels: &[TunnelView]) -> String {
    if tunnels.is_empty() {
        return "no tunnels configured\n".into();
    }
    let mut t = Table::new(&[
        ("NAME", false),
        ("PEER", false),
        ("ENCAP", false),
        ("IN-SPI", false),
        ("OUT-SPI", false),
        ("PKTS-IN", true),
        ("PKTS-OUT", true),
        ("DROPS", true),
        ("ICMP", true),
        ("PMTU", true),
        ("IKE", false),
        ("REKEY", true),
        ("DPD", true),
    ]);
    for tun in tunnels {
        t.row(vec![
            tun.name.clone(),
            tun.peer.to_string(),
            tun.encapsulation.clone(),
            opt_spi(tun.inbound_spi),
            opt_spi(tun.outbound_spi),
            tun.packets_in.to_string(),
            tun.packets_out.to_string(),
            tun.drops.to_string(),
            tun.icmp_errors.to_string(),
            tun.pmtu.map_or_else(|| "-".into(), |m| m.to_string()),
            tun.ike_state.clone().unwrap_or_else(|| "static".into()),
            secs(tun.next_rekey_s),
            tun.last_dpd_s
                .map_or_else(|| "-".into(), |s| format!("{s}s ago")),
        ]);
    }
    let mut out = String::new();
    t.render(&mut out);
    if tunnels.iter().any(|t| !t.sas.is_empty()) {
        out.push_str("\nSAs (oldest first):\n");
        let mut s = Table::new(&[("TUNNEL", false), ("SAS", false)]);
        for tun in tunnels.iter().filter(|t| !t.sas.is_empty()) {
            s.row(vec![tun.name.clone(), sa_states(&tun.sas)]);
        }
        s.render(&mut out);
    }
    out
}

/// `in 0x… live, in 0x… retiring; out 0x… active`.
fn sa_states(sas: &[TunnelSaView]) -> String {
    let dir = |d: Direction| {
        let tag = if d == Direction::Inbound { "in" } else { "out" };
        sas.iter()
            .filter(|s| s.direction == d)
            .map(|s| format!("{tag} {} {}", spi_hex(s.spi), s.state))
            .collect::<Vec<_>>()
            .join(", ")
    };
    [dir(Direction::Inbound), dir(Direction::Outbound)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn secs(s: Option<u64>) -> String {
    s.map_or_else(|| "-".into(), |s| format!("{s}s"))
}

fn render_ike(r: &IkeReport) -> String {
    let v = &r.tunnels;
    if v.is_empty() {
        return "no negotiated tunnels configured\n".into();
    }
    let mut t = Table::new(&[
        ("NAME", false),
        ("STATE", false),
        ("IKE-SPIS", false),
        ("IN-SPI", false),
        ("OUT-SPI", false),
        ("CHILD-REKEY", true),
        ("IKE-REKEY", true),
        ("REKEYS", true),
        ("LAST-DPD", true),
    ]);
    for i in v {
        t.row(vec![
            i.name.clone(),
            i.state.clone(),
            i.ike_spis
                .as_ref()
                .map_or_else(|| "-".into(), |(a, b)| format!("{a}_i {b}_r")),
            opt_spi(i.child_spis.map(|s| s.0)),
            opt_spi(i.child_spis.map(|s| s.1)),
            secs(i.next_child_rekey_s),
            secs(i.next_ike_rekey_s),
            format!("{}/{}", i.child_rekeys, i.ike_rekeys),
            i.last_dpd_s
                .map_or_else(|| "-".into(), |s| format!("{s}s ago")),
        ]);
    }
    let mut out = String::new();
    t.render(&mut out);
    let nonzero = sorted_nonzero(&r.counters);
    if !nonzero.is_empty() {
        out.push('\n');
        let mut c = Table::new(&[("COUNTER", false), ("COUNT", true)]);
        for (name, n) in nonzero {
            c.row(vec![name.to_string(), n.to_string()]);
        }
        c.render(&mut out);
    }
    out
}

fn render_drops(d: &DropsView, opts: &RenderOptions) -> String {
    let mut out = String::new();
    let mut t = Table::new(&[("REASON", false), ("COUNT", true), ("DESCRIPTION", false)]);
    let describe = |r: &str| d.descriptions.get(r).cloned().unwrap_or_default();
    let nonzero = sorted_nonzero(&d.total);
    for &(reason, n) in &nonzero {
        t.row(vec![reason.to_owned(), n.to_string(), describe(reason)]);
    }
    let zeros: Vec<&str> = d
        .total
        .iter()
        .filter(|&(_, &n)| n == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    if opts.all_drop_reasons {
        for &reason in &zeros {
            t.row(vec![reason.to_owned(), "0".into(), describe(reason)]);
        }
    }
    if nonzero.is_empty() && !opts.all_drop_reasons {
        out.push_str("no drops\n");
    } else {
        t.render(&mut out);
    }
    if !opts.all_drop_reasons && !zeros.is_empty() {
        let _ = writeln!(
            out,
            "{} other reason{} at 0",
            zeros.len(),
            if zeros.len() == 1 { "" } else { "s" }
        );
    }

    let busy_workers: Vec<(usize, &BTreeMap<String, u64>)> = d
        .per_worker
        .iter()
        .enumerate()
        .filter(|(_, m)| m.values().any(|&n| n != 0))
        .collect();
    if !busy_workers.is_empty() {
        out.push_str("\nper worker:\n");
        for (id, counts) in busy_workers {
            let _ = writeln!(out, "  worker {id}  {}", reasons_inline(counts));
        }
    }

    out.push('\n');
    if d.recent_unknown_spi.is_empty() {
        out.push_str("no recent unknown-SPI packets\n");
        return out;
    }
    out.push_str("recent unknown-SPI packets (newest first):\n");
    let mut t = Table::new(&[
        ("AT", false),
        ("CLASS", false),
        ("SRC -> DST", false),
        ("SPI", false),
        ("SEQ", false),
        ("LEN", true),
        ("PORT", false),
        ("COUNT", true),
    ]);
    for e in &d.recent_unknown_spi {
        t.row(vec![
            utc_timestamp(e.at_unix_ms),
            e.class.clone(),
            format!("{} -> {}", e.src, e.dst),
            spi_hex(e.spi),
            format!("0x{:08x}", e.seq),
            e.len.to_string(),
            e.port.clone(),
            e.count.to_string(),
        ]);
    }
    t.render(&mut out);
    out
}

fn render_workers(workers: &[WorkerView]) -> String {
    if workers.is_empty() {
        return "no workers\n".into();
    }
    let mut t = Table::new(&[
        ("ID", true),
        ("LCORE", true),
        ("RXQ", false),
        ("RX", true),
        ("TX", true),
        ("DECAP", true),
        ("ENCAP", true),
        ("HANDOFF-OUT", true),
        ("HANDOFF-IN", true),
        ("PUNT", true),
        ("DROPS", true),
        ("BUSY%", true),
        ("GEN", true),
        ("SAS", true),
        ("KEY-MISS", true),
    ]);
    for w in workers {
        t.row(vec![
            w.id.to_string(),
            w.lcore.to_string(),
            if w.rx_queues.is_empty() {
                "-".into()
            } else {
                w.rx_queues.join(",")
            },
            w.rx_packets.to_string(),
            w.tx_packets.to_string(),
            w.esp_decap.to_string(),
            w.esp_encap.to_string(),
            w.handoff_out.to_string(),
            w.handoff_in.to_string(),
            w.punted.to_string(),
            w.drops.to_string(),
            w.busy_percent()
                .map_or_else(|| "-".into(), |p| format!("{p:.1}")),
            w.table_generation.to_string(),
            w.owned_sas.to_string(),
            w.key_cache_misses.to_string(),
        ]);
    }
    let mut out = String::new();
    t.render(&mut out);
    // The counters without a column, summed over the workers, when not zero.
    let mut other: BTreeMap<&str, u64> = BTreeMap::new();
    for w in workers {
        for (k, v) in &w.counters {
            if !IN_COLUMNS.contains(&k.as_str()) {
                *other.entry(k).or_default() += v;
            }
        }
    }
    other.retain(|_, v| *v != 0);
    if !other.is_empty() {
        out.push_str("\ncounters (all workers):\n");
        let mut t = Table::new(&[("COUNTER", false), ("VALUE", true)]);
        for (k, v) in other {
            t.row(vec![k.to_string(), group_thousands(v)]);
        }
        t.render(&mut out);
    }
    out
}

/// The worker counters `show workers` has a column for (or that are not counts).
const IN_COLUMNS: &[&str] = &[
    "rx_outside",
    "rx_inside",
    "tx_outside",
    "tx_inside",
    "esp_decap",
    "esp_encap",
    "handoff_out",
    "handoff_in",
    "punted",
    "busy_polls",
    "idle_polls",
    "table_generation",
    "key_cache_hits",
    "key_cache_misses",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped_with_spaces() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1 000");
        assert_eq!(group_thousands(9_000), "9 000");
        assert_eq!(group_thousands(1_234_567), "1 234 567");
        assert_eq!(group_thousands(u64::MAX), "18 446 744 073 709 551 615");
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (leap day) 12:34:56.789
        assert_eq!(utc_timestamp(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(utc_timestamp(1_795_478_400_000), "2026-11-24T00:00:00.000Z");
    }

    #[test]
    fn lifetime_line_handles_missing_and_exhausted_limits() {
        let none = LifetimeView::default();
        assert_eq!(
            lifetime_line(&none),
            "lifetime left no byte limit, no packet limit"
        );
        let over = LifetimeView {
            bytes: 2_000,
            packets: 20,
            hard_bytes: Some(1_000),
            hard_packets: Some(10),
            ..LifetimeView::default()
        };
        assert_eq!(
            lifetime_line(&over),
            "lifetime left 0 kB / 1 kB, 0 / 10 packets"
        );
    }

    #[test]
    fn busy_percent_is_dash_before_the_first_poll() {
        let w = WorkerView {
            id: 0,
            lcore: 1,
            rx_queues: vec![],
            rx_packets: 0,
            tx_packets: 0,
            esp_decap: 0,
            esp_encap: 0,
            handoff_out: 0,
            handoff_in: 0,
            punted: 0,
            drops: 0,
            busy_polls: 0,
            idle_polls: 0,
            table_generation: 0,
            owned_sas: 0,
            key_cache_hits: 0,
            key_cache_misses: 0,
            counters: BTreeMap::new(),
        };
        let text = render_workers(&[w]);
        let row = text.lines().nth(1).unwrap();
        assert!(row.contains(" - "), "{row}");
    }
}
