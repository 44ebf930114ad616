//! Fuzz-style property tests: the loader never panics, whatever the input.

use proptest::prelude::*;
use std::path::Path;

const EXAMPLE: &str = include_str!("examples/lab-static.yaml");

fn env(name: &str) -> Option<String> {
    match name {
        "ESPADA_KEY_B_IN" => Some("a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3".to_string()),
        "ESPADA_PSK_C" => {
            Some("0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f".into())
        }
        _ => None,
    }
}

fn run(text: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    match espada_config::parse_str_with_env(text, "fuzz.yaml", &dir, &env) {
        Ok(loaded) => {
            let _ = format!("{loaded:?}");
        }
        Err(e) => {
            let rendered = e.to_string();
            assert!(rendered.starts_with("error: "), "{rendered}");
            assert!(!e.is_empty());
        }
    }
}

/// One edit of the example: delete, insert or replace a span of bytes.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, String),
    Replace(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    let snippet = prop_oneof![
        "[ -~\n]{1,8}",
        Just(":".to_string()),
        Just("\n  - ".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("&a ".to_string()),
        Just("*a".to_string()),
        Just("0x".to_string()),
        Just("99999999999999999999".to_string()),
        Just("/".to_string()),
        Just("\t".to_string()),
        Just("é".to_string()),
    ];
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), snippet.clone()).prop_map(|(p, s)| Edit::Insert(p, s)),
        (any::<usize>(), snippet).prop_map(|(p, s)| Edit::Replace(p, s)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match e {
            Edit::Delete(p, n) => {
                let start = at(*p, bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Edit::Insert(p, s) => {
                let start = at(*p, bytes.len());
                bytes.splice(start..start, s.bytes());
            }
            Edit::Replace(p, s) => {
                let start = at(*p, bytes.len());
                let end = (start + s.len()).min(bytes.len());
                bytes.splice(start..end, s.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn example_is_valid() {
    // The mutation base must load, or the mutations below only test the error path.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/examples");
    assert!(espada_config::parse_str_with_env(EXAMPLE, "x.yaml", &dir, &env).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        run(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_yamlish_text_never_panics(text in "[a-z_:{}\\[\\], \n0-9x./-]{0,300}") {
        run(&text);
    }

    #[test]
    fn mutated_example_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        run(&apply(EXAMPLE, &edits));
    }
}
