//! Test networks in Linux network namespaces.
//!
//! Every namespace is named `esp-<tag>-<pid>-<n>` and deleted when its [`Netns`] guard drops,
//! so tests leave nothing behind even when they fail. Addresses used by tests come from
//! 198.18.0.0/15 and the documentation ranges only.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace created for a test; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

/// Runs a command and fails with its stderr when it exits non-zero.
pub fn run(cmd: &[&str]) -> io::Result<Output> {
    let out = Command::new(cmd[0]).args(&cmd[1..]).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{:?} failed: {}",
            cmd,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// True when this process may create network namespaces (root with `ip` available).
pub fn available() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
        && rustix::process::geteuid().is_root()
}

/// True when `program` is an executable file in a `PATH` directory.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// What a strongSwan (charon in a namespace) test needs and this machine lacks; empty when it
/// can run.
pub fn strongswan_missing() -> Vec<&'static str> {
    [
        (!available()).then_some("root and iproute2 (network namespaces)"),
        (!on_path("charon-systemd")).then_some("charon-systemd"),
        (!on_path("swanctl")).then_some("swanctl"),
        (!on_path("ethtool")).then_some("ethtool"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

impl Netns {
    /// Creates `esp-<tag>-<pid>-<n>` with its loopback up. `tag` should be short: interface
    /// and namespace names derived from it must stay readable.
    pub fn new(tag: &str) -> io::Result<Netns> {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let name = format!("esp-{tag}-{}-{n}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace; fails when it exits non-zero.
    pub fn exec(&self, cmd: &[&str]) -> io::Result<Output> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(cmd);
        run(&full)
    }

    /// A `Command` that runs `program` inside the namespace (for background processes).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Creates a veth pair with end `a` in this namespace and end `b` in `other`, both up, IPv6
    /// off on both (no router/neighbour solicitations as noise) and TX checksum offload off (so
    /// the kernel never hands a DPDK port a packet with an unfilled checksum).
    pub fn veth_to(&self, a: &str, other: &Netns, b: &str) -> io::Result<()> {
        self.exec(&[
            "ip",
            "link",
            "add",
            a,
            "type",
            "veth",
            "peer",
            "name",
            b,
            "netns",
            &other.name,
        ])?;
        for (ns, dev) in [(self, a), (other, b)] {
            ns.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{dev}.disable_ipv6=1"),
            ])?;
            ns.exec(&["ip", "link", "set", dev, "up"])?;
            // Not every kernel lets every offload be changed; a failure here is not fatal.
            let _ = ns.exec(&["ethtool", "-K", dev, "tx", "off"]);
        }
        Ok(())
    }

    /// Moves the calling thread into this namespace: sockets it opens from now on (including
    /// a DPDK `net_af_packet` port probed from it) live here. Other threads are not affected.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        let f = File::open(format!("/var/run/netns/{}", self.name))?;
        rustix::thread::move_into_link_name_space(
            std::os::fd::AsFd::as_fd(&f),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).output();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_created_wired_and_removed() {
        if !available() {
            eprintln!("skipping: needs root and iproute2");
            return;
        }
        let a = Netns::new("tn").unwrap();
        let b = Netns::new("tn").unwrap();
        a.veth_to("esp-x0", &b, "esp-x1").unwrap();
        a.exec(&["ip", "addr", "add", "198.18.0.1/30", "dev", "esp-x0"])
            .unwrap();
        b.exec(&["ip", "addr", "add", "198.18.0.2/30", "dev", "esp-x1"])
            .unwrap();
        a.exec(&["ping", "-c", "1", "-W", "2", "198.18.0.2"])
            .unwrap();
        let name = a.name().to_string();
        drop(a);
        let list = run(&["ip", "netns", "list"]).unwrap();
        assert!(!String::from_utf8_lossy(&list.stdout).contains(&name));
    }
}
