//! Cross-check with scapy (an independent Python implementation): our ARP reply, NA, NS and
//! echo replies are parsed by scapy, which also recomputes every checksum. Skips (passing)
//! when python3 or scapy is missing.

mod common;

use common::*;
use espada_hostpath::{HostOutput, PortRole, ndisc};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

const SCRIPT: &str = r#"
import sys
try:
    from scapy.all import Ether, ARP, IP, ICMP, IPv6, ICMPv6ND_NA, ICMPv6ND_NS, \
        ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, ICMPv6EchoReply, Raw
except Exception:
    print("SKIP")
    sys.exit(0)
for line in sys.stdin:
    b = bytes.fromhex(line.strip())
    p = Ether(b)
    if ARP in p:
        a = p[ARP]
        print(f"arp op={a.op} hwsrc={a.hwsrc} psrc={a.psrc} hwdst={a.hwdst} pdst={a.pdst} dst={p.dst}")
    elif ICMPv6ND_NA in p:
        na = p[ICMPv6ND_NA]
        q = Ether(b); del q[ICMPv6ND_NA].cksum; q = Ether(bytes(q))
        print(f"na R={na.R} S={na.S} O={na.O} tgt={na.tgt} ll={p[ICMPv6NDOptDstLLAddr].lladdr} "
              f"hlim={p[IPv6].hlim} src={p[IPv6].src} dst={p[IPv6].dst} "
              f"cksum_ok={na.cksum == q[ICMPv6ND_NA].cksum}")
    elif ICMPv6ND_NS in p:
        ns = p[ICMPv6ND_NS]
        q = Ether(b); del q[ICMPv6ND_NS].cksum; q = Ether(bytes(q))
        print(f"ns tgt={ns.tgt} ll={p[ICMPv6NDOptSrcLLAddr].lladdr} hlim={p[IPv6].hlim} "
              f"dst={p[IPv6].dst} edst={p.dst} cksum_ok={ns.cksum == q[ICMPv6ND_NS].cksum}")
    elif ICMPv6EchoReply in p:
        e = p[ICMPv6EchoReply]
        q = Ether(b); del q[ICMPv6EchoReply].cksum; q = Ether(bytes(q))
        print(f"echo6 id={e.id} seq={e.seq} data={bytes(e.data).hex()} "
              f"cksum_ok={e.cksum == q[ICMPv6EchoReply].cksum}")
    elif ICMP in p:
        i = p[ICMP]
        q = Ether(b); del q[IP].chksum; del q[ICMP].chksum; q = Ether(bytes(q))
        print(f"echo4 type={i.type} id={i.id} seq={i.seq} ttl={p[IP].ttl} "
              f"data={p[Raw].load.hex()} ipck_ok={p[IP].chksum == q[IP].chksum} "
              f"ck_ok={i.chksum == q[ICMP].chksum}")
    else:
        print("unknown " + p.summary())
"#;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Runs scapy over `frames`; `None` when python3 or scapy is unavailable.
fn scapy(frames: &[Vec<u8>]) -> Option<Vec<String>> {
    let mut child = match Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping scapy cross-check: python3 not runnable: {e}");
            return None;
        }
    };
    {
        let mut stdin = child.stdin.take().expect("stdin piped");
        for f in frames {
            writeln!(stdin, "{}", hex(f)).expect("write to python");
        }
    }
    let out = child.wait_with_output().expect("python output");
    assert!(out.status.success(), "python failed: {:?}", out.status);
    let text = String::from_utf8(out.stdout).expect("utf-8");
    if text.trim() == "SKIP" {
        eprintln!("skipping scapy cross-check: scapy not installed");
        return None;
    }
    Some(text.lines().map(str::to_owned).collect())
}

#[test]
fn scapy_parses_our_frames() {
    let mut h = host();
    let mut out = HostOutput::default();
    let now = Instant::now();
    h.handle_frame(PortRole::Outside, &ep_arp_request(OUT_V4), now, &mut out);
    h.handle_frame(PortRole::Outside, &ep_peer_ns(OUT_V6), now, &mut out);
    h.handle_frame(
        PortRole::Outside,
        &ep_echo_v4(PEER_V4, OUT_V4, OUT_MAC, 0x4242, 3, b"abc"),
        now,
        &mut out,
    );
    h.handle_frame(
        PortRole::Outside,
        &ep_echo_v6(PEER_V6, OUT_V6, OUT_MAC, 0x4343, 4, b"defg"),
        now,
        &mut out,
    );
    let mut frames: Vec<Vec<u8>> = out.frames.iter().map(|o| o.frame.clone()).collect();
    assert_eq!(frames.len(), 4, "four answers");
    frames.push(ndisc::build_solicit(OUT_MAC, OUT_V6, PEER_V6, None));

    let Some(lines) = scapy(&frames) else {
        return;
    };
    let expected = [
        "arp op=2 hwsrc=02:00:00:00:00:01 psrc=192.0.2.1 hwdst=02:00:00:00:00:99 \
         pdst=192.0.2.99 dst=02:00:00:00:00:99",
        "na R=1 S=1 O=1 tgt=2001:db8:1::1 ll=02:00:00:00:00:01 hlim=255 src=2001:db8:1::1 \
         dst=2001:db8:1::99 cksum_ok=True",
        // The frame is padded to 60 bytes; scapy puts that in a Padding layer after "abc".
        "echo4 type=0 id=16962 seq=3 ttl=64 data=616263 ipck_ok=True ck_ok=True",
        "echo6 id=17219 seq=4 data=64656667 cksum_ok=True",
        "ns tgt=2001:db8:1::99 ll=02:00:00:00:00:01 hlim=255 dst=ff02::1:ff00:99 \
         edst=33:33:ff:00:00:99 cksum_ok=True",
    ];
    assert_eq!(lines, expected);
}
