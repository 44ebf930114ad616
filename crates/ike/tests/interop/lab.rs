//! One strongSwan lab per test: two `esp-` namespaces wired by `deploy/lab/ike/swan.sh up-ns`
//! (left: espada at 198.18.10.1, right: charon at 198.18.10.2), a charon instance started with
//! `swan.sh start`, and a guard that runs `swan.sh down` even when the test fails.
//!
//! Namespace names, the swan.sh state directory and the work directory are unique per test
//! process and per lab, so tests run in parallel (cargo-nextest runs one process per test).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use espada_testnet::Netns;

/// Address of espada (left namespace).
pub const ESPADA_ADDR: &str = "198.18.10.1";
/// Address of charon (right namespace).
pub const CHARON_ADDR: &str = "198.18.10.2";
/// Name of the charon instance in swan.sh's state.
const INSTANCE: &str = "charon";

/// The lab; dropping it stops charon and deletes both namespaces.
pub struct Lab {
    left: Netns,
    right: Netns,
    state: PathBuf,
    work: PathBuf,
    ctl_runs: u32,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/lab/ike/swan.sh")
}

/// The lab for `test`, or `None` (after a skip note) when this machine cannot run it; with
/// `ESPADA_REQUIRE_STRONGSWAN=1` a missing prerequisite fails the test instead.
pub fn lab_or_skip(test: &str) -> Option<Lab> {
    let missing = espada_testnet::strongswan_missing();
    if !missing.is_empty() {
        let msg = format!(
            "{test}: strongSwan interop needs {} (deploy/install-deps.sh, run as root)",
            missing.join(", ")
        );
        if std::env::var("ESPADA_REQUIRE_STRONGSWAN").is_ok_and(|v| v == "1") {
            panic!("{msg}; ESPADA_REQUIRE_STRONGSWAN=1 forbids skipping");
        }
        eprintln!("skipping {msg}");
        return None;
    }
    Some(Lab::new(test).unwrap_or_else(|e| panic!("{test}: lab setup failed: {e}")))
}

impl Lab {
    fn new(test: &str) -> Result<Lab, String> {
        let left = Netns::new("swl").map_err(|e| format!("namespace: {e}"))?;
        let right = Netns::new("swr").map_err(|e| format!("namespace: {e}"))?;
        // esp-swl-<pid>-<n>: the tail makes the directory unique per process and lab.
        let tail = left.name().trim_start_matches("esp-swl-").to_string();
        let work = std::env::temp_dir().join(format!("espada-interop-{test}-{tail}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let lab = Lab {
            left,
            right,
            state: work.join("state"),
            work,
            ctl_runs: 0,
        };
        lab.swan(&["up-ns"])?;
        Ok(lab)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(script())
            .args(args)
            .env("SWAN_NS_L", self.left.name())
            .env("SWAN_NS_R", self.right.name())
            .env("SWAN_STATE", &self.state);
        c
    }

    fn swan(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("swan.sh {args:?}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "swan.sh {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes charon's configuration (right side of the lab: local 198.18.10.2,
    /// right.example.com, 198.19.2.0/24; the peer is espada) with extra `swan.sh conf` keys,
    /// and starts charon in the right namespace.
    pub fn start_charon(&self, extra: &[&str]) {
        let dir = self.work.join("charon");
        let dir_s = dir.to_string_lossy().into_owned();
        let mut args = vec![
            "conf",
            &dir_s,
            "local_addr=198.18.10.2",
            "remote_addr=198.18.10.1",
            "local_id=right.example.com",
            "remote_id=left.example.com",
            "local_ts=198.19.2.0/24",
            "remote_ts=198.19.1.0/24",
            // Rekeyed CHILD_SAs stay listed (DELETED) this long; 5 s by default.
            "delete_rekeyed_delay=1",
        ];
        args.extend_from_slice(extra);
        self.swan(&args).unwrap_or_else(|e| panic!("{e}"));
        self.swan(&["start", INSTANCE, self.right.name(), &dir_s])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// `swanctl ARGS...` against charon, not yet started; stdout and stderr go to files
    /// (returned) so a long listing can never block it on a full pipe.
    pub fn ctl(&mut self, args: &[&str]) -> (Command, PathBuf, PathBuf) {
        self.ctl_runs += 1;
        let out = self.work.join(format!("ctl-{}.out", self.ctl_runs));
        let err = self.work.join(format!("ctl-{}.err", self.ctl_runs));
        let mut full = vec!["ctl", INSTANCE];
        full.extend_from_slice(args);
        let mut c = self.command(&full);
        let open =
            |p: &Path| std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        c.stdin(Stdio::null()).stdout(open(&out)).stderr(open(&err));
        (c, out, err)
    }

    /// charon's log so far.
    pub fn charon_log(&self) -> String {
        std::fs::read_to_string(self.work.join("charon/charon.log")).unwrap_or_default()
    }

    /// UDP sockets on espada's address, ports 500 and 4500, in the left namespace (opened by
    /// a short-lived thread that enters it; the test's threads stay where they are).
    pub fn espada_sockets(&self) -> (UdpSocket, UdpSocket) {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.left
                    .enter_current_thread()
                    .expect("enter the left namespace");
                let bind = |port: u16| {
                    UdpSocket::bind((ESPADA_ADDR, port))
                        .unwrap_or_else(|e| panic!("bind {ESPADA_ADDR}:{port}: {e}"))
                };
                (bind(espada_ike::IKE_PORT), bind(espada_ike::NATT_PORT))
            })
            .join()
            .expect("socket thread")
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = self.swan(&["down"]) {
            eprintln!("lab cleanup: {e}");
        }
        if std::thread::panicking() {
            eprintln!(
                "lab kept for inspection: {} (charon log: charon/charon.log)",
                self.work.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}
