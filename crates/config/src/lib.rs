//! YAML site configuration for espada.
//!
//! [`load`] reads a site file, deserializes it with serde-saphyr (locations kept through
//! [`serde_saphyr::Spanned`]), validates it, loads static-SA keys from the environment or from
//! files, and returns a [`SiteConfig`]: plain, validated Rust values (the desired state of the
//! appliance) plus warnings the daemon must log loudly.
//!
//! Problems are reported as [`ConfigErrors`], rendered rustc-style with file, line, column,
//! key path, what was expected and a `help:` hint. A syntax or type error stops
//! deserialization, so it is reported alone; semantic problems are all collected.
//!
//! ```
//! let text = "
//! appliance: { name: lab-a }
//! cores: { control: 0, workers: [1] }
//! ports:
//!   outside: { device: 'net_af_packet0,iface=a', ipv4: 198.51.100.1/24 }
//!   inside: { device: '0000:03:00.0', ipv4: 192.0.2.1/24 }
//! ";
//! let loaded = espada_config::parse_str(text, "site.yaml", std::path::Path::new(".")).unwrap();
//! assert_eq!(loaded.config.cores.workers, vec![1]);
//!
//! let err = espada_config::parse_str("appliance: { nam: x }", "site.yaml", ".".as_ref())
//!     .unwrap_err();
//! assert!(err.to_string().contains("did you mean `name`?"));
//! ```

#![forbid(unsafe_code)]

mod diag;
mod model;
mod negotiate;
mod overlap;
mod raw;
mod secret;
mod validate;

pub use diag::{ConfigErrors, Diagnostic};
pub use model::{
    Admin, Algorithm, Appliance, Cores, Crypto, Device, Dpd, DpdAction, Dpdk, Encapsulation,
    Fragmentation, Lifetime, Logging, Negotiated, Neighbor, Polling, Port, Ports, Prefix,
    PrefixError, RekeyTiming, SaKeys, SiteConfig, StartAction, StaticSa, Tunnel,
};
pub use negotiate::{
    DEFAULT_CHILD_LIFETIME, DEFAULT_DPD, DEFAULT_ESP, DEFAULT_IKE, DEFAULT_IKE_LIFETIME,
};
pub use secret::Secret;
pub use validate::{
    DEFAULT_ADMIN_SOCKET, DEFAULT_MTU, DEFAULT_REPLAY_WINDOW, DEFAULT_UNKNOWN_SPI_INTERVAL_MS,
};

use std::path::Path;

/// Largest configuration file accepted (a hub with thousands of tunnels fits easily).
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// A successfully loaded configuration.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: SiteConfig,
    /// Things that are allowed but dangerous (e.g. static SAs in lab mode): log them loudly.
    pub warnings: Vec<String>,
}

/// Reads and validates the site configuration at `path`. Key files are resolved relative to the
/// file's directory; `{ env: NAME }` keys come from the process environment.
pub fn load(path: &Path) -> Result<Loaded, ConfigErrors> {
    let origin = path.display().to_string();
    let size = std::fs::metadata(path)
        .map_err(|e| ConfigErrors::whole_file(&origin, format!("cannot read {origin}: {e}"), None))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(ConfigErrors::whole_file(
            &origin,
            format!("{origin} is {size} bytes; the limit is {MAX_FILE_SIZE}"),
            None,
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        ConfigErrors::whole_file(&origin, format!("cannot read {origin}: {e}"), None)
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        ConfigErrors::whole_file(
            &origin,
            format!(
                "{origin} is not valid UTF-8 (at byte {})",
                e.utf8_error().valid_up_to()
            ),
            Some("save the file as UTF-8".into()),
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_str(&text, &origin, base)
}

/// Parses and validates configuration text. `origin_name` names the file in messages and
/// `base_dir` is where relative key-file paths are resolved. Environment keys come from the
/// process environment.
pub fn parse_str(text: &str, origin_name: &str, base_dir: &Path) -> Result<Loaded, ConfigErrors> {
    parse_str_with_env(text, origin_name, base_dir, &|name| {
        std::env::var(name).ok()
    })
}

/// Like [`parse_str`], with `env` answering `{ env: NAME }` key look-ups (for tests and for
/// callers that keep secrets elsewhere).
pub fn parse_str_with_env(
    text: &str,
    origin_name: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigErrors> {
    let raw = deserialize(text).map_err(|d| ConfigErrors::new(origin_name, text, vec![d]))?;
    let mut cx = validate::Ctx::new(base_dir, env);
    match validate::site(raw, &mut cx) {
        Some(config) if cx.diags.is_empty() => Ok(Loaded {
            config,
            warnings: cx.warnings,
        }),
        _ => Err(ConfigErrors::new(origin_name, text, cx.diags)),
    }
}

/// Runs serde-saphyr, recording the key path of a failure with serde_path_to_error.
fn deserialize(text: &str) -> Result<raw::RawSite, Diagnostic> {
    let mut path = String::new();
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    });
    result.map_err(|e| syntax_diagnostic(&e, &clean_path(&path), text))
}

/// The scalar at `line`:`column` (1-based), for "found `…`" in type errors.
fn token_at(text: &str, line: u32, column: u32, width: u32) -> Option<String> {
    let line = text.lines().nth(line.checked_sub(1)? as usize)?;
    let token: String = line
        .chars()
        .skip(column.checked_sub(1)? as usize)
        .take(width.min(40) as usize)
        .collect();
    let token = token.trim();
    (!token.is_empty() && !token.chars().any(char::is_control)).then(|| token.to_string())
}

/// Splits serde's "unknown field `x`, expected one of a, b" (or variant) message.
fn split_unknown<'m>(message: &'m str, what: &str) -> Option<(&'m str, Vec<&'m str>)> {
    let rest = message.strip_prefix(what)?;
    let (name, expected) = rest.split_once('`')?;
    let expected = expected
        .trim_start_matches(", expected one of ")
        .trim_start_matches(", expected ")
        .split(", ")
        .map(|s| s.trim_matches('`'))
        .filter(|s| !s.is_empty() && !s.contains(' '))
        .collect();
    Some((name, expected))
}

/// Removes the `.value` segments that `Spanned` adds, and the root marker `.`.
fn clean_path(path: &str) -> String {
    if path == "." || path == "?" {
        return String::new();
    }
    let mut out = path.to_string();
    for (from, to) in [(".value.", "."), (".value[", "[")] {
        while let Some(i) = out.find(from) {
            out.replace_range(i..i + from.len(), to);
        }
    }
    if let Some(stripped) = out.strip_suffix(".value") {
        out = stripped.to_string();
    }
    out
}

/// Every key the schema knows, for "did you mean" on unknown ones.
const KNOWN_KEYS: &[&str] = &[
    "appliance",
    "name",
    "lab",
    "cores",
    "control",
    "workers",
    "polling",
    "ports",
    "outside",
    "inside",
    "device",
    "ipv4",
    "ipv6",
    "gateway4",
    "gateway6",
    "mtu",
    "neighbors",
    "ip",
    "mac",
    "tunnels",
    "peer",
    "encapsulation",
    "local_ts",
    "remote_ts",
    "replay_window",
    "mbufs",
    "allow_overlap",
    "mss_clamp",
    "fragmentation",
    "crypto",
    "esn",
    "static_sa",
    "inbound",
    "outbound",
    "spi",
    "algorithm",
    "key",
    "env",
    "file",
    "lifetime",
    "soft_bytes",
    "hard_bytes",
    "soft_packets",
    "hard_packets",
    "logging",
    "unknown_spi_interval_ms",
    "admin",
    "socket",
];

fn syntax_diagnostic(e: &serde_saphyr::Error, path: &str, text: &str) -> Diagnostic {
    let options = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let mut message = e.render_with_options(options);
    let (line, column, width) = match e.location() {
        Some(l) => (
            l.line().try_into().unwrap_or(u32::MAX),
            l.column().try_into().unwrap_or(u32::MAX),
            l.span().len().clamp(1, 200) as u32,
        ),
        None => (0, 0, 0),
    };
    // The plain rendering carries its own location; ours is in the `-->` line.
    for pattern in [
        format!("line {line} column {column}: "),
        format!(" at line {line} column {column}"),
        format!(" at line {line}, column {column}"),
    ] {
        message = message.replace(&pattern, "");
    }
    let mut message = message.trim().to_string();
    let mut label = String::new();
    let mut help = None;
    if let Some((field, expected)) = split_unknown(&message, "unknown field `") {
        label = "unknown key".into();
        help = match diag::suggest(field, &expected) {
            Some(s) => Some(format!("did you mean `{s}`?")),
            None if KNOWN_KEYS.contains(&field) => Some(format!(
                "`{field}` is not allowed here; expected one of: {}",
                expected.join(", ")
            )),
            None if !expected.is_empty() => {
                Some(format!("expected one of: {}", expected.join(", ")))
            }
            None => None,
        };
    } else if let Some((variant, expected)) = split_unknown(&message, "unknown variant `") {
        label = "unknown value".into();
        help = diag::suggest(variant, &expected).map(|s| format!("did you mean `{s}`?"));
    } else if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        label = "in this mapping".into();
        help = Some(format!(
            "add `{field}:` to this mapping (or check the indentation of the lines around it)"
        ));
    } else if let Some(ty) = message.strip_prefix("invalid ")
        && matches!(ty, "u8" | "u16" | "u32" | "u64" | "bool")
    {
        let expected = if ty == "bool" {
            "`true` or `false`".to_string()
        } else {
            let max = match ty {
                "u8" => u64::from(u8::MAX),
                "u16" => u64::from(u16::MAX),
                "u32" => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            format!("a whole number from 0 to {max} (decimal or 0x hex)")
        };
        message = match token_at(text, line, column, width) {
            Some(found) => format!("expected {expected}, found `{found}`"),
            None => format!("expected {expected}"),
        };
        label = "wrong type or out of range".into();
    } else if message.starts_with("invalid") {
        label = "wrong type or value".into();
    }
    Diagnostic {
        message,
        path: path.to_string(),
        line,
        column,
        width,
        label,
        help,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_extraction() {
        assert_eq!(
            token_at("a: 1\nb: lots\n", 2, 4, 4).as_deref(),
            Some("lots")
        );
        assert_eq!(token_at("a: 1\n", 3, 1, 1), None);
        assert_eq!(token_at("a: 1\n", 0, 1, 1), None);
    }

    #[test]
    fn path_cleanup() {
        assert_eq!(clean_path("."), "");
        assert_eq!(clean_path("tunnels[0].spi.value"), "tunnels[0].spi");
        assert_eq!(
            clean_path("tunnels[0].static_sa.value.inbound.spi.value"),
            "tunnels[0].static_sa.inbound.spi"
        );
        assert_eq!(
            clean_path("cores.workers.value[1].value"),
            "cores.workers[1]"
        );
    }
}
