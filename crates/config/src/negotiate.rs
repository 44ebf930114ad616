//! Validation of the IKEv2 keys of a tunnel (`ike`, `esp`, `local_id`, `remote_id`, `psk`,
//! `ike_lifetime`, `child_lifetime`, `dpd`, `start`), each taken from the tunnel or else from the
//! top-level `defaults:`, else from espada's defaults. Errors point at the key that was used.

use std::net::IpAddr;
use std::time::Duration;

use espada_ike::config::Identity;
use espada_ike::proposal::{EspProposal, IkeProposal};

use crate::model::{Dpd, DpdAction, Negotiated, RekeyTiming, StartAction};
use crate::raw::{NegotiationRef, RawDpdAction, RawKey, RawRekey, RawStart, S};
use crate::secret::Secret;
use crate::validate::{Ctx, decode_hex_bytes, secret_text};

/// Default IKE proposals (RFC 8247 "MUST"/"SHOULD" algorithms that espada implements).
pub const DEFAULT_IKE: &str =
    "aes256gcm16-prfsha384-ecp384-x25519,aes128gcm16-prfsha256-x25519-ecp256-modp2048";
/// Default ESP proposals (no PFS on rekeys unless configured).
pub const DEFAULT_ESP: &str = "aes256gcm16,aes128gcm16";
/// Default IKE SA lifetime, margin and jitter.
pub const DEFAULT_IKE_LIFETIME: RekeyTiming = RekeyTiming {
    time: Duration::from_secs(4 * 3600),
    margin: Duration::from_secs(600),
    jitter: Duration::from_secs(300),
};
/// Default CHILD SA lifetime, margin and jitter.
pub const DEFAULT_CHILD_LIFETIME: RekeyTiming = RekeyTiming {
    time: Duration::from_secs(3600),
    margin: Duration::from_secs(540),
    jitter: Duration::from_secs(180),
};
/// Default dead peer detection.
pub const DEFAULT_DPD: Dpd = Dpd {
    delay: Duration::from_secs(30),
    timeout: Duration::from_secs(30),
    action: DpdAction::Restart,
};
/// PSKs shorter than this get a warning (RFC 7296 §2.15: a PSK is only as strong as its
/// entropy; 16 random bytes or a long passphrase).
const SHORT_PSK: usize = 16;

/// The key that applies, and the YAML path it was found at.
fn pick<'a, T>(
    tunnel: Option<&'a S<T>>,
    defaults: Option<&'a S<T>>,
    path: &str,
    key: &str,
) -> Option<(&'a S<T>, String)> {
    match (tunnel, defaults) {
        (Some(v), _) => Some((v, format!("{path}.{key}"))),
        (None, Some(v)) => Some((v, format!("defaults.{key}"))),
        (None, None) => None,
    }
}

/// Validates one negotiated tunnel.
pub(crate) fn negotiated(
    tunnel: NegotiationRef<'_>,
    defaults: NegotiationRef<'_>,
    path: &str,
    whole: &S<String>,
    local: Option<IpAddr>,
    peer: Option<IpAddr>,
    cx: &mut Ctx<'_>,
) -> Option<Negotiated> {
    let before = cx.diags.len();
    let ike = match pick(tunnel.ike, defaults.ike, path, "ike") {
        Some((v, p)) => proposals(v, &p, IkeProposal::parse, cx),
        None => proposal_list(DEFAULT_IKE, IkeProposal::parse),
    };
    let esp = match pick(tunnel.esp, defaults.esp, path, "esp") {
        Some((v, p)) => proposals(v, &p, EspProposal::parse, cx),
        None => proposal_list(DEFAULT_ESP, EspProposal::parse),
    };
    let local_id = match pick(tunnel.local_id, defaults.local_id, path, "local_id") {
        Some((v, p)) => identity(v, &p, cx),
        None => local.map(Identity::Addr),
    };
    let remote_id = match pick(tunnel.remote_id, defaults.remote_id, path, "remote_id") {
        Some((v, p)) => identity(v, &p, cx),
        None => peer.map(Identity::Addr),
    };
    let psk = match pick(tunnel.psk, defaults.psk, path, "psk") {
        Some((v, p)) => psk(v, &p, cx),
        None => {
            cx.error(
                &whole.referenced,
                &format!("{path}.psk"),
                format!("tunnel `{}` has no pre-shared key", whole.value),
                "negotiated tunnels authenticate with a PSK",
                Some(
                    "add `psk: { file: PATH }` (a file readable only by espada) or \
                     `psk: { env: NAME }`, on the tunnel or under `defaults:`"
                        .into(),
                ),
            );
            None
        }
    };
    let ike_lifetime = match pick(
        tunnel.ike_lifetime,
        defaults.ike_lifetime,
        path,
        "ike_lifetime",
    ) {
        Some((v, p)) => rekey(v, &p, DEFAULT_IKE_LIFETIME, false, cx).map(|(t, _, _)| t),
        None => Some(DEFAULT_IKE_LIFETIME),
    };
    let child = match pick(
        tunnel.child_lifetime,
        defaults.child_lifetime,
        path,
        "child_lifetime",
    ) {
        Some((v, p)) => rekey(v, &p, DEFAULT_CHILD_LIFETIME, true, cx),
        None => Some((DEFAULT_CHILD_LIFETIME, None, None)),
    };
    let dpd = match pick(tunnel.dpd, defaults.dpd, path, "dpd") {
        Some((v, p)) => dpd(v, &p, cx),
        None => Some(DEFAULT_DPD),
    };
    let start = match pick(tunnel.start, defaults.start, path, "start") {
        Some((v, _)) => match v.value {
            RawStart::None => StartAction::None,
            RawStart::Start => StartAction::Start,
            RawStart::Trap => StartAction::Trap,
        },
        None => StartAction::None,
    };
    if cx.diags.len() != before {
        return None;
    }
    let (child_lifetime, child_bytes, child_packets) = child?;
    Some(Negotiated {
        ike: ike?,
        esp: esp?,
        local_id: local_id?,
        remote_id: remote_id?,
        psk: psk?,
        ike_lifetime: ike_lifetime?,
        child_lifetime,
        child_bytes,
        child_packets,
        dpd: dpd?,
        start,
    })
}

fn proposal_list<T, E>(s: &str, parse: fn(&str) -> Result<T, E>) -> Option<Vec<T>> {
    s.split(',').map(|p| parse(p.trim()).ok()).collect()
}

/// A comma-separated list of strongSwan-style proposals.
fn proposals<T>(
    v: &S<String>,
    path: &str,
    parse: fn(&str) -> Result<T, espada_ike::proposal::ProposalSyntax>,
    cx: &mut Ctx<'_>,
) -> Option<Vec<T>> {
    let mut out = Vec::new();
    for p in v.value.split(',').map(str::trim) {
        if p.is_empty() {
            cx.error(
                &v.referenced,
                path,
                "empty proposal",
                "expected proposals separated by commas",
                Some(format!(
                    "e.g. `{}`",
                    DEFAULT_IKE.split(',').next().unwrap_or("")
                )),
            );
            return None;
        }
        match parse(p) {
            Ok(x) => out.push(x),
            Err(e) => {
                cx.error(
                    &v.referenced,
                    path,
                    e.0,
                    "not a proposal espada implements",
                    None,
                );
                return None;
            }
        }
    }
    Some(out)
}

/// An identity as strongSwan writes it: an address, `fqdn:`/`email:`/`keyid:` prefixes, or a
/// bare name (`user@host` is an RFC 822 address, anything else an FQDN).
fn identity(v: &S<String>, path: &str, cx: &mut Ctx<'_>) -> Option<Identity> {
    let s = v.value.trim();
    let id = if let Ok(ip) = s.parse::<IpAddr>() {
        Some(Identity::Addr(ip))
    } else if let Some(rest) = s.strip_prefix("fqdn:") {
        (!rest.is_empty()).then(|| Identity::Fqdn(rest.to_string()))
    } else if let Some(rest) = s.strip_prefix("email:") {
        (!rest.is_empty()).then(|| Identity::Rfc822(rest.to_string()))
    } else if let Some(rest) = s.strip_prefix("keyid:") {
        decode_hex_bytes(rest)
            .filter(|k| !k.is_empty())
            .map(Identity::KeyId)
    } else if s.is_empty() || s.contains(char::is_whitespace) {
        None
    } else if s.contains('@') {
        Some(Identity::Rfc822(s.to_string()))
    } else {
        Some(Identity::Fqdn(s.to_string()))
    };
    if id.is_none() {
        cx.error(
            &v.referenced,
            path,
            format!("invalid identity `{s}`"),
            "expected an address, a name, user@domain, or keyid:HEX",
            Some("e.g. `local_id: hub.example.net` or `remote_id: 203.0.113.7`".into()),
        );
    }
    id
}

/// The PSK from a file or the environment: text as is (a trailing newline removed), or hex
/// after `0x`. Messages never contain it.
fn psk(v: &S<RawKey>, path: &str, cx: &mut Ctx<'_>) -> Option<Secret> {
    let help = |name: &str| format!("export {name}=<the pre-shared key> before starting espada");
    let not_text = "expected the key as text, or hex after 0x";
    let (text, source) = secret_text(v, path, "PSK", not_text, help, cx)?;
    let t = text.strip_suffix('\n').unwrap_or(&text);
    let t = t.strip_suffix('\r').unwrap_or(t);
    let bytes = match t.strip_prefix("0x") {
        Some(hex) => match decode_hex_bytes(hex) {
            Some(b) => b,
            None => {
                cx.error(
                    &v.referenced,
                    path,
                    format!("PSK from {source} starts with 0x but is not hex"),
                    "expected two hex digits per byte after 0x",
                    None,
                );
                return None;
            }
        },
        None => t.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        cx.error(
            &v.referenced,
            path,
            format!("PSK from {source} is empty"),
            "expected a pre-shared key",
            None,
        );
        return None;
    }
    if bytes.len() < SHORT_PSK {
        cx.warnings.push(format!(
            "{path}: the PSK from {source} is only {} bytes; use at least {SHORT_PSK} random \
             bytes (`head -c 32 /dev/urandom | xxd -p -c 64`, written as 0x…)",
            bytes.len()
        ));
    }
    Some(Secret::new(bytes))
}

/// `500ms`, `30s`, `10m`, `4h`, `1d`, or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(ms).map(Duration::from_millis)
}

fn duration(v: &S<String>, path: &str, cx: &mut Ctx<'_>) -> Option<Duration> {
    let d = parse_duration(&v.value);
    if d.is_none() {
        cx.error(
            &v.referenced,
            path,
            format!("invalid duration `{}`", v.value),
            "expected a number with ms, s, m, h or d",
            Some("e.g. `30s`, `10m`, `4h`".into()),
        );
    }
    d
}

type ChildLimits = (RekeyTiming, Option<u64>, Option<u64>);

/// A lifetime block; `limits` allows `bytes` and `packets` (CHILD SAs only).
fn rekey(
    v: &S<RawRekey>,
    path: &str,
    default: RekeyTiming,
    limits: bool,
    cx: &mut Ctx<'_>,
) -> Option<ChildLimits> {
    let r = &v.value;
    let before = cx.diags.len();
    let get = |d: &Option<S<String>>, key: &str, dflt: Duration, cx: &mut Ctx<'_>| match d {
        Some(x) => duration(x, &format!("{path}.{key}"), cx),
        None => Some(dflt),
    };
    let time = get(&r.time, "time", default.time, cx);
    // Margins scale with a configured time when only the time is given.
    let scale = |d: Duration| match (r.time.is_some(), time) {
        (true, Some(t)) => d.mul_f64(t.as_secs_f64() / default.time.as_secs_f64()),
        _ => d,
    };
    let margin = get(&r.margin, "margin", scale(default.margin), cx);
    let jitter = get(&r.jitter, "jitter", scale(default.jitter), cx);
    for (x, key) in [(&r.bytes, "bytes"), (&r.packets, "packets")] {
        let Some(x) = x else { continue };
        if !limits {
            cx.error(
                &x.referenced,
                &format!("{path}.{key}"),
                format!("`{key}` applies to CHILD SAs only"),
                "not an IKE SA limit",
                Some(format!("move it to `child_lifetime.{key}`")),
            );
        } else if x.value == 0 {
            cx.error(
                &x.referenced,
                &format!("{path}.{key}"),
                format!("{key} limit of 0"),
                "expected a positive limit",
                Some("leave the key out for no limit".into()),
            );
        }
    }
    if let (Some(t), Some(m), Some(j)) = (time, margin, jitter) {
        if t < Duration::from_secs(1) {
            cx.error(
                &v.referenced,
                &format!("{path}.time"),
                format!("lifetime {t:?} is shorter than a second"),
                "too short to rekey",
                None,
            );
        } else if m + j >= t {
            cx.error(
                &v.referenced,
                path,
                format!("margin {m:?} plus jitter {j:?} is not below the lifetime {t:?}"),
                "the rekey would be due at once",
                Some("the soft lifetime is time - margin - random(0..jitter)".into()),
            );
        }
    }
    if cx.diags.len() != before {
        return None;
    }
    Some((
        RekeyTiming {
            time: time?,
            margin: margin?,
            jitter: jitter?,
        },
        r.bytes.as_ref().map(|b| b.value),
        r.packets.as_ref().map(|p| p.value),
    ))
}

fn dpd(v: &S<crate::raw::RawDpd>, path: &str, cx: &mut Ctx<'_>) -> Option<Dpd> {
    let r = &v.value;
    let delay = match &r.delay {
        Some(d) => duration(d, &format!("{path}.delay"), cx),
        None => Some(DEFAULT_DPD.delay),
    };
    let timeout = match &r.timeout {
        Some(d) => duration(d, &format!("{path}.timeout"), cx),
        None => Some(DEFAULT_DPD.timeout),
    };
    if let (Some(t), Some(d)) = (timeout, r.timeout.as_ref())
        && t.is_zero()
    {
        cx.error(
            &d.referenced,
            &format!("{path}.timeout"),
            "DPD timeout of 0",
            "expected how long to wait for an answer",
            Some("e.g. `timeout: 30s`".into()),
        );
        return None;
    }
    let action = match r.action.as_ref().map(|a| a.value) {
        Some(RawDpdAction::Clear) => DpdAction::Clear,
        Some(RawDpdAction::Restart) | None => DpdAction::Restart,
        Some(RawDpdAction::Trap) => DpdAction::Trap,
    };
    Some(Dpd {
        delay: delay?,
        timeout: timeout?,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        for (s, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("30", 30_000),
            ("10m", 600_000),
            ("4h", 14_400_000),
            ("1d", 86_400_000),
        ] {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "s", "10x", "-1s", "1.5h", "99999999999999999999d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_default_proposals_parse() {
        assert_eq!(
            proposal_list(DEFAULT_IKE, IkeProposal::parse).map(|v| v.len()),
            Some(2)
        );
        assert_eq!(
            proposal_list(DEFAULT_ESP, EspProposal::parse).map(|v| v.len()),
            Some(2)
        );
    }
}
