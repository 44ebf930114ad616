//! Golden tests of the rendered tables. Set `ESPADA_BLESS=1` to rewrite the golden files
//! after an intended change, then review the diff.

mod common;

use std::path::PathBuf;

use espada_admin::Response;
use espada_admin::render::{RenderOptions, render_json, render_table, render_table_with};

fn check_golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("ESPADA_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with ESPADA_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "rendering changed ({}); if intended, rerun with ESPADA_BLESS=1 and review the diff",
        path.display()
    );
}

#[test]
fn show_sa_golden() {
    check_golden("show_sa.txt", &render_table(&Response::Sa(common::sas())));
}

#[test]
fn show_tunnels_golden() {
    check_golden(
        "show_tunnels.txt",
        &render_table(&Response::Tunnels(common::tunnels())),
    );
}

#[test]
fn show_ike_golden() {
    check_golden("show_ike.txt", &render_table(&Response::Ike(common::ike())));
}

#[test]
fn show_drops_golden() {
    check_golden(
        "show_drops.txt",
        &render_table(&Response::Drops(common::drops())),
    );
}

#[test]
fn show_drops_all_golden() {
    let opts = RenderOptions {
        all_drop_reasons: true,
    };
    check_golden(
        "show_drops_all.txt",
        &render_table_with(&Response::Drops(common::drops()), &opts),
    );
}

#[test]
fn show_workers_golden() {
    check_golden(
        "show_workers.txt",
        &render_table(&Response::Workers(common::workers())),
    );
}

#[test]
fn show_sa_json_golden() {
    let one = common::sas().into_iter().take(1).collect();
    check_golden("show_sa.json", &render_json(&Response::Sa(one)));
}

#[test]
fn empty_answers_say_so() {
    assert_eq!(render_table(&Response::Sa(vec![])), "no SAs\n");
    assert_eq!(
        render_table(&Response::Tunnels(vec![])),
        "no tunnels configured\n"
    );
    assert_eq!(render_table(&Response::Workers(vec![])), "no workers\n");
    let text = render_table(&Response::Drops(Default::default()));
    assert_eq!(text, "no drops\n\nno recent unknown-SPI packets\n");
    assert_eq!(
        render_table(&Response::Pong {
            version: "1.2.3".into()
        }),
        "espada 1.2.3\n"
    );
}

#[test]
fn sa_block_has_both_directions_and_every_detail() {
    let text = render_table(&Response::Sa(common::sas()));
    // Inbound shows traffic peer -> us, outbound us -> peer.
    assert!(text.contains(
        "tunnel site-b  inbound  spi 0x00001000 (4096)  worker 1  aes128gcm16 (ipsec-mb)  udp-4500  198.51.100.2 -> 198.51.100.1\n"
    ));
    assert!(text.contains("outbound  spi 0xc0ffee01"));
    assert!(text.contains("198.51.100.1 -> 198.51.100.2\n"));
    assert!(text.contains("lifetime left 912 kB / 1 000 kB, 9 000 / 10 000 packets"));
    assert!(text.contains("replay window 64  bitmap 0xfffffffffffffffe"));
    // Replay-window lines only for inbound SAs: two of three here.
    assert_eq!(text.matches("replay window").count(), 2);
    assert!(
        text.contains("drops auth-failed 1, replay 3")
            || text.contains("drops replay 3, auth-failed 1")
    );
    assert!(
        !text.lines().any(|l| l.ends_with(' ')),
        "trailing spaces:\n{text}"
    );
}

#[test]
fn table_columns_are_aligned() {
    let text = render_table(&Response::Tunnels(common::tunnels()));
    // The tunnel table: header and one row per tunnel, before the SA list.
    let lines: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 3);
    // Right-aligned numeric columns end at the same offset as their header.
    let pkts_in_end = lines[0].find("PKTS-IN").unwrap() + "PKTS-IN".len();
    for row in &lines[1..] {
        assert!(row.as_bytes()[pkts_in_end - 1].is_ascii_digit(), "{row}");
        assert_eq!(row.as_bytes()[pkts_in_end], b' ', "{row}");
    }
    // SPI columns are 0x%08x or '-'.
    assert!(lines[2].contains("0x00042001  -"));
}

#[test]
fn drops_put_nonzero_first_and_collapse_zeros() {
    let text = render_table(&Response::Drops(common::drops()));
    let reasons: Vec<&str> = text
        .lines()
        .skip(1)
        .take(3)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(reasons, ["no-sa", "replay", "auth-failed"]);
    assert!(text.contains("\n3 other reasons at 0\n"));
    assert!(!text.contains("ring-full"));
    assert!(text.contains("0x00000fff  0x0000002a"));
    assert!(text.contains("198.51.100.2 -> 198.51.100.1"));
    let all = render_table_with(
        &Response::Drops(common::drops()),
        &RenderOptions {
            all_drop_reasons: true,
        },
    );
    assert!(all.contains("ring-full"));
    assert!(!all.contains("other reasons at 0"));
}
