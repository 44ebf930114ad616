//! Golden tests of rendered error text, and of the warnings of files that load.
//! `UPDATE_GOLDEN=1` rewrites the `.expected` files.

use std::path::{Path, PathBuf};

const KEY_B_IN: &str = "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3";
const KEY_SHORT: &str = "0123456789abcdeffedcba9876543210";
const KEY_FILE_SHORT: &str = "deadbeefcafef00d0011223344556677";

fn env(name: &str) -> Option<String> {
    match name {
        "ESPADA_KEY_B_IN" => Some(KEY_B_IN.to_string()),
        "ESPADA_KEY_SHORT" => Some(format!("  {KEY_SHORT}\n")),
        "ESPADA_PSK_C" => Some("correct horse battery staple, espada".to_string()),
        _ => None,
    }
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn render(name: &str) -> String {
    let dir = golden_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    match espada_config::parse_str_with_env(&text, &format!("{name}.yaml"), &dir, &env) {
        Ok(loaded) => panic!("{name}.yaml loaded without error: {loaded:?}"),
        Err(e) => e.to_string(),
    }
}

/// The warnings of a file that loads, one per line.
fn render_warnings(name: &str) -> String {
    let dir = golden_dir();
    let text = std::fs::read_to_string(dir.join(format!("{name}.yaml"))).unwrap();
    match espada_config::parse_str_with_env(&text, &format!("{name}.yaml"), &dir, &env) {
        Ok(loaded) => loaded
            .warnings
            .iter()
            .map(|w| format!("warning: {w}\n"))
            .collect(),
        Err(e) => panic!("{name}.yaml did not load:\n{e}"),
    }
}

/// Files that load with warnings (their `.expected` holds the warnings).
const WARNING_CASES: &[&str] = &["warnings"];

/// Every error case in the corpus, so that a new `.yaml` without `.expected` fails the test.
const CASES: &[&str] = &[
    "bad-indentation",
    "bad-prefix",
    "duplicate-spi",
    "gateway-outside",
    "many-problems",
    "missing-env-key",
    "negotiation-problems",
    "out-of-range",
    "peer-twice",
    "selectors-overlap",
    "spi-reserved",
    "static-without-lab",
    "unknown-key",
    "unknown-variant",
    "workers-overlap",
    "wrong-key-length",
    "wrong-type",
];

#[test]
fn corpus_is_complete() {
    let mut found: Vec<String> = std::fs::read_dir(golden_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".yaml").map(str::to_string)
        })
        .collect();
    found.sort();
    let mut all: Vec<&str> = CASES.iter().chain(WARNING_CASES).copied().collect();
    all.sort();
    assert_eq!(found, all);
}

#[test]
fn golden_error_text() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    let cases = CASES
        .iter()
        .map(|n| (n, render(n)))
        .chain(WARNING_CASES.iter().map(|n| (n, render_warnings(n))));
    for (name, actual) in cases {
        let path = golden_dir().join(format!("{name}.expected"));
        if update {
            std::fs::write(&path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1", path.display()));
        if expected != actual {
            mismatches.push(format!(
                "--- {name}.expected\n{expected}+++ actual\n{actual}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn key_errors_never_contain_key_material() {
    let out = render("wrong-key-length");
    assert!(out.contains("16 bytes long; aes128gcm16 needs 20"), "{out}");
    assert!(out.contains("16 bytes long; aes256gcm16 needs 36"), "{out}");
    for secret in [
        KEY_SHORT,
        KEY_FILE_SHORT,
        &KEY_SHORT[..8],
        &KEY_FILE_SHORT[..8],
    ] {
        assert!(!out.contains(secret), "key material leaked into:\n{out}");
    }
}

#[test]
fn errors_name_file_line_column_and_key_path() {
    let out = render("spi-reserved");
    assert!(
        out.contains("error: tunnels[0].static_sa.inbound.spi: SPI 5 is reserved"),
        "{out}"
    );
    assert!(out.contains("--> spi-reserved.yaml:20:24"), "{out}");
    assert!(out.contains("help: "), "{out}");
    let out = render("unknown-key");
    assert!(out.contains("did you mean `replay_window`?"), "{out}");
    assert!(out.contains("tunnels[0].replay_windw"), "{out}");
}

#[test]
fn all_semantic_problems_are_collected() {
    let out = render("many-problems");
    let count = out.matches("\nerror: ").count() + usize::from(out.starts_with("error: "));
    // device, mtu, peer family, empty remote_ts, replay window, a negotiated tunnel without a
    // PSK, admin socket + summary line.
    assert_eq!(count, 8, "{out}");
    assert!(
        out.ends_with("error: 7 problems in many-problems.yaml\n"),
        "{out}"
    );
}
