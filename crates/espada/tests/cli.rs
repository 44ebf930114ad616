//! The operator CLI without a running daemon: `check` passes a good file and points at the
//! exact line, column and key of a bad one; `show` says what to do when espada is not running.

use std::process::Command;

fn espada(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_espada"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("espada-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const GOOD: &str = "appliance: { name: a }\ncores: { control: 0, workers: [1] }\nports:\n  \
outside: { device: net_null0, ipv4: 198.51.100.1/24 }\n  inside: { device: net_null1, ipv4: 192.0.2.1/24 }\n";

#[test]
fn check_accepts_a_good_file_and_locates_errors_in_a_bad_one() {
    let good = write("good.yaml", GOOD);
    let (ok, out, _) = espada(&["check", "--config", good.to_str().unwrap()]);
    assert!(ok);
    assert!(out.contains("configuration OK (0 tunnels)"), "{out}");

    let bad = write(
        "bad.yaml",
        &GOOD
            .replace("workers: [1]", "workers: [0]")
            .replace("198.51.100.1/24", "198.51.100.1/33"),
    );
    let (ok, _, err) = espada(&["check", "--config", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.yaml:2:"),
        "control/worker overlap located on line 2: {err}"
    );
    assert!(
        err.contains("bad.yaml:4:"),
        "bad prefix located on line 4: {err}"
    );
    assert!(err.contains("ports.outside.ipv4"), "{err}");
}

#[test]
fn show_without_a_daemon_says_what_is_wrong() {
    let (ok, _, err) = espada(&[
        "show",
        "tunnels",
        "--socket",
        "/tmp/espada-no-such-dir/admin.sock",
    ]);
    assert!(!ok);
    assert!(err.contains("is espada running"), "{err}");
    let (ok, _, err) = espada(&["show", "sa", "0xzz"]);
    assert!(!ok);
    assert!(err.contains("invalid SPI"), "{err}");
}
