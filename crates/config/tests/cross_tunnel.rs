//! Checks across tunnels (issue 15 item 5) and the replay window range (item 4): overlapping
//! remote selectors, two negotiated tunnels IKE could not tell apart, replay windows 0 and 32.

use espada_config::parse_str_with_env;
use std::path::Path;

fn env(name: &str) -> Option<String> {
    (name == "PSK").then(|| "a long enough pre-shared key for tests".to_string())
}

/// One tunnel entry. `extra` is more YAML lines of the tunnel (each indented by 4 spaces).
fn tunnel(name: &str, peer: &str, remote_ts: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    peer: {peer}\n    local_ts: [192.0.2.0/24]\n    remote_ts: [{remote_ts}]\n    \
         psk: {{ env: PSK }}\n{extra}"
    )
}

fn load(tunnels: &[String]) -> Result<Vec<String>, String> {
    let text = format!(
        "appliance: {{ name: t, lab: true }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
         outside: {{ device: \"net_null0\", ipv4: 198.51.100.1/24 }}\n  \
         inside: {{ device: \"net_null1\", ipv4: 192.0.2.1/24 }}\ntunnels:\n{}admin: {{ socket: /run/t.sock }}\n",
        tunnels.concat()
    );
    parse_str_with_env(&text, "site.yaml", Path::new("/"), &env)
        .map(|l| l.warnings)
        .map_err(|e| e.to_string())
}

#[test]
fn overlapping_remote_selectors_are_an_error_naming_both_tunnels() {
    let err = load(&[
        tunnel("wide", "198.51.100.2", "10.0.0.0/8", ""),
        tunnel("narrow", "198.51.100.3", "10.1.2.0/24", ""),
    ])
    .unwrap_err();
    assert!(
        err.contains("tunnels[1].remote_ts[0]: remote selector 10.1.2.0/24 overlaps 10.0.0.0/8")
            && err.contains("`wide` (tunnels[0]) and `narrow` (tunnels[1])")
            && err.contains("allow_overlap: true"),
        "{err}"
    );
    // Listed the other way round, the same overlap is found.
    let err = load(&[
        tunnel("narrow", "198.51.100.3", "10.1.2.0/24", ""),
        tunnel("wide", "198.51.100.2", "10.0.0.0/8", ""),
    ])
    .unwrap_err();
    assert!(err.contains("10.1.2.0/24 overlaps 10.0.0.0/8"), "{err}");
    // IPv6 too, and an overlap with a tunnel's second selector.
    let err = load(&[
        tunnel("a", "198.51.100.2", "192.0.2.128/25, 2001:db8::/32", ""),
        tunnel("b", "198.51.100.3", "2001:db8:5::/48", ""),
    ])
    .unwrap_err();
    assert!(
        err.contains("2001:db8:5::/48 overlaps 2001:db8::/32"),
        "{err}"
    );
}

#[test]
fn allow_overlap_loads_with_a_warning_that_names_the_winner() {
    let warnings = load(&[
        tunnel(
            "wide",
            "198.51.100.2",
            "10.0.0.0/8",
            "    allow_overlap: true\n",
        ),
        tunnel("narrow", "198.51.100.3", "10.1.2.0/24", ""),
    ])
    .unwrap();
    assert!(
        warnings.iter().any(|w| w.contains(
            "10.0.0.0/8 of `wide` contains 10.1.2.0/24 of `narrow`; traffic to 10.1.2.0/24 goes to `narrow`"
        )),
        "{warnings:?}"
    );
}

#[test]
fn identical_prefixes_on_two_tunnels_are_an_error_even_with_allow_overlap() {
    let err = load(&[
        tunnel(
            "a",
            "198.51.100.2",
            "10.1.0.0/16",
            "    allow_overlap: true\n",
        ),
        tunnel(
            "b",
            "198.51.100.3",
            "10.1.0.0/16",
            "    allow_overlap: true\n",
        ),
    ])
    .unwrap_err();
    assert!(err.contains("the same prefix on two tunnels"), "{err}");
}

#[test]
fn disjoint_selectors_and_adjacent_prefixes_load_without_a_word() {
    let warnings = load(&[
        tunnel("a", "198.51.100.2", "10.0.0.0/9", ""),
        tunnel("b", "198.51.100.3", "10.128.0.0/9, 2001:db8:1::/48", ""),
        tunnel("c", "198.51.100.4", "2001:db8:2::/48", ""),
    ])
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn one_peer_on_two_negotiated_tunnels_needs_two_identities() {
    let err = load(&[
        tunnel("a", "198.51.100.2", "10.1.0.0/16", ""),
        tunnel("b", "198.51.100.2", "10.2.0.0/16", ""),
    ])
    .unwrap_err();
    assert!(
        err.contains("tunnels[1].peer: peer 198.51.100.2 with remote_id `198.51.100.2` is already the peer of `a` (tunnels[0])"),
        "{err}"
    );
    load(&[
        tunnel(
            "a",
            "198.51.100.2",
            "10.1.0.0/16",
            "    remote_id: fqdn:a.example.net\n",
        ),
        tunnel(
            "b",
            "198.51.100.2",
            "10.2.0.0/16",
            "    remote_id: fqdn:b.example.net\n",
        ),
    ])
    .unwrap();
}

#[test]
fn replay_window_32_loads_0_warns_and_16_is_refused() {
    assert!(
        load(&[tunnel(
            "a",
            "198.51.100.2",
            "10.1.0.0/16",
            "    replay_window: 32\n"
        )])
        .unwrap()
        .is_empty()
    );
    let warnings = load(&[tunnel(
        "a",
        "198.51.100.2",
        "10.1.0.0/16",
        "    replay_window: 0\n",
    )])
    .unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("replay_window 0 turns anti-replay off")),
        "{warnings:?}"
    );
    let err = load(&[tunnel(
        "a",
        "198.51.100.2",
        "10.1.0.0/16",
        "    replay_window: 16\n",
    )])
    .unwrap_err();
    assert!(err.contains("replay window 16 is not supported"), "{err}");
}

#[test]
fn mss_clamp_takes_536_to_65495() {
    for (v, ok) in [
        (1360u32, true),
        (536, true),
        (65495, true),
        (535, false),
        (70000, false),
    ] {
        let r = load(&[tunnel(
            "a",
            "198.51.100.2",
            "10.1.0.0/16",
            &format!("    mss_clamp: {v}\n"),
        )]);
        assert_eq!(r.is_ok(), ok, "{v}: {r:?}");
        if !ok {
            assert!(
                r.unwrap_err()
                    .contains(&format!("tunnels[0].mss_clamp: MSS {v} is out of range"))
            );
        }
    }
}

#[test]
fn fragmentation_is_before_or_after_encryption_and_nothing_else() {
    let text = |extra: &str| {
        format!(
            "appliance: {{ name: t, lab: true }}\ncores: {{ control: 0, workers: [1] }}\nports:\n  \
             outside: {{ device: \"net_null0\", ipv4: 198.51.100.1/24 }}\n  \
             inside: {{ device: \"net_null1\", ipv4: 192.0.2.1/24 }}\ntunnels:\n{}admin: {{ socket: /run/t.sock }}\n",
            tunnel("a", "198.51.100.2", "10.1.0.0/16", extra)
        )
    };
    for (extra, want) in [
        ("", espada_config::Fragmentation::BeforeEncryption),
        (
            "    fragmentation: before-encryption\n",
            espada_config::Fragmentation::BeforeEncryption,
        ),
        (
            "    fragmentation: after-encryption\n",
            espada_config::Fragmentation::AfterEncryption,
        ),
    ] {
        let l = parse_str_with_env(&text(extra), "site.yaml", Path::new("/"), &env).unwrap();
        assert_eq!(l.config.tunnels[0].fragmentation, want, "{extra:?}");
    }
    let err = parse_str_with_env(
        &text("    fragmentation: sideways\n"),
        "site.yaml",
        Path::new("/"),
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tunnels[0].fragmentation"), "{err}");
    assert!(err.contains("after-encryption"), "names the choices: {err}");
}
