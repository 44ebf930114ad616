#!/usr/bin/env python3
"""An independent IPsec peer and LAN host for espada's lab tests, built on scapy.

Every sub-command prints JSON lines on stdout. Receivers print {"ready": true} once sniffing.

  send-esp   seal inner packets with a scapy SecurityAssociation and send them (optionally
             as outer fragments, in order or reversed, or damaged: incomplete or overlapping)
  recv-esp   sniff ESP (raw or UDP 4500), open it with a scapy SA, print the inner packets
  send-clear send cleartext IPv4/IPv6 UDP packets
  recv-clear sniff cleartext packets from a source, print them
  send-junk  send ESP with a given SPI and junk payload (unknown-SPI tests)

Inner packets are UDP with a payload of --size bytes whose first 4 bytes are the packet index,
so receivers can check order and content byte for byte.
"""
import argparse
import json
import sys

from scapy.all import IP, IPv6, UDP, Raw, conf, fragment, fragment6, send, sniff
from scapy.layers.inet6 import IPv6ExtHdrFragment
from scapy.layers.ipsec import ESP, SecurityAssociation

conf.verb = 0


def inner_packet(args, i):
    payload = i.to_bytes(4, "big") + bytes((i * 7 + j) & 0xFF for j in range(max(args.size - 4, 0)))
    ip = IPv6 if ":" in args.inner_src else IP
    return ip(src=args.inner_src, dst=args.inner_dst) / UDP(sport=40000, dport=40001) / Raw(payload)


def make_sa(args, src, dst):
    key = bytes.fromhex(open(args.key).read().strip()) if args.key else bytes.fromhex(args.key_hex)
    outer = IPv6 if ":" in src else IP
    nat = UDP(sport=4500, dport=4500) if args.udp else None
    return SecurityAssociation(ESP, spi=int(args.spi, 0), crypt_algo="AES-GCM", crypt_key=key,
                               tunnel_header=outer(src=src, dst=dst), nat_t_header=nat)


def out(obj):
    print(json.dumps(obj), flush=True)


def cmd_send_esp(args):
    sa = make_sa(args, args.src, args.dst)
    pkts = []
    for i in range(args.count):
        p = sa.encrypt(inner_packet(args, i), seq_num=args.seq_start + i)
        pkts.append(p)
        out({"i": i, "seq": args.seq_start + i, "inner": bytes(inner_packet(args, i)).hex()})
    if args.tamper:
        raw = bytearray(bytes(pkts[-1]))
        raw[-20] ^= 0x01  # inside the ciphertext/ICV
        pkts[-1] = pkts[-1].__class__(bytes(raw))
    if args.replay:
        pkts.append(pkts[-1])
    if args.fragment:
        pkts = [f for p in pkts for f in damaged(fragments(p, args.fragment, args.reverse), args.damage)]
    for p in pkts:
        send(p, iface=args.iface)


def fragments(p, size, reverse):
    """The outer packet p cut into fragments of at most `size` bytes (IPv4 or IPv6)."""
    if p.haslayer(IPv6):
        head = p[IPv6].copy()
        head.remove_payload()
        del head.nh, head.plen  # recomputed: the fragment header goes in between
        frags = fragment6(head / IPv6ExtHdrFragment() / p[IPv6].payload, size)
    else:
        frags = fragment(p, fragsize=size)
    return list(reversed(frags)) if reverse else frags


def damaged(frags, how):
    """The fragments of one packet as `--damage` spoils them: `drop-last` leaves the final
    piece out (the datagram never completes), `duplicate` sends the second piece twice (an
    overlap, RFC 5722)."""
    if how == "drop-last":
        return frags[:-1]
    if how == "duplicate":
        return frags[:2] + frags[1:]
    return frags


def is_esp_from(p, src):
    if not p.haslayer(IP) and not p.haslayer(IPv6):
        return False
    ip = p[IP] if p.haslayer(IP) else p[IPv6]
    if ip.src != src:
        return False
    if p.haslayer(UDP) and p[UDP].dport == 4500 and p[UDP].sport == 4500:
        return len(bytes(p[UDP].payload)) > 8
    return p.haslayer(ESP)


def cmd_recv_esp(args):
    sa = make_sa(args, args.src, args.dst)
    got = []

    def handle(p):
        ip = p[IP] if p.haslayer(IP) else p[IPv6]
        try:
            if args.udp:
                # scapy decrypts a UDP-encapsulated packet from the outer IP layer down.
                inner = sa.decrypt(ip)
            else:
                inner = sa.decrypt(ip)
        except Exception as e:  # report, keep sniffing
            out({"error": str(e)})
            return
        got.append(1)
        out({"inner": bytes(inner).hex()})

    sniff(iface=args.iface, lfilter=lambda p: is_esp_from(p, args.src), prn=handle,
          count=args.count, timeout=args.timeout, started_callback=lambda: out({"ready": True}), store=False)


def cmd_send_clear(args):
    for i in range(args.count):
        p = inner_packet(args, i)
        out({"i": i, "inner": bytes(p).hex()})
        send(p, iface=args.iface)


def cmd_recv_clear(args):
    def match(p):
        for layer in (IP, IPv6):
            if p.haslayer(layer) and p[layer].src == args.src and p.haslayer(UDP) and p[UDP].dport == 40001:
                return True
        return False

    def handle(p):
        ip = p[IP] if p.haslayer(IP) else p[IPv6]
        out({"inner": bytes(ip).hex()})

    sniff(iface=args.iface, lfilter=match, prn=handle, count=args.count, timeout=args.timeout,
          started_callback=lambda: out({"ready": True}), store=False)


def cmd_send_junk(args):
    outer = IPv6 if ":" in args.src else IP
    packets = []
    for i in range(args.count):
        p = outer(src=args.src, dst=args.dst)
        if args.udp:
            p = p / UDP(sport=4500, dport=4500)
        packets.append(p / ESP(spi=int(args.spi, 0), seq=args.seq_start + i) / Raw(bytes(64)))
    # One send call for the whole flood: one socket, in order, in well under a second (a
    # socket per packet took ~30 ms each on a loaded machine, stretching the flood past the
    # 10 s log interval the test counts lines in).
    sock = (conf.L3socket6 if outer is IPv6 else conf.L3socket)(iface=args.iface)
    try:
        for p in packets:
            sock.send(p)
    finally:
        sock.close()
    out({"sent": args.count})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("send-esp", "recv-esp", "send-clear", "recv-clear", "send-junk"):
        p = sub.add_parser(name)
        p.add_argument("--iface", required=True)
        p.add_argument("--count", type=int, default=1)
        p.add_argument("--timeout", type=float, default=10)
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--src")
        p.add_argument("--dst")
        p.add_argument("--inner-src")
        p.add_argument("--inner-dst")
        p.add_argument("--spi", default="0")
        p.add_argument("--key", help="file with hex key||salt")
        p.add_argument("--key-hex")
        p.add_argument("--udp", action="store_true", help="UDP-encapsulated ESP (RFC 3948)")
        p.add_argument("--seq-start", type=int, default=1)
        p.add_argument("--replay", action="store_true", help="send the last packet twice")
        p.add_argument("--tamper", action="store_true", help="flip a bit in the last packet")
        p.add_argument("--fragment", type=int, default=0,
                       help="send-esp: cut each outer packet into fragments of at most N bytes")
        p.add_argument("--reverse", action="store_true", help="send-esp: fragments last first")
        p.add_argument("--damage", choices=["drop-last", "duplicate"],
                       help="send-esp --fragment: leave the last fragment out, or send the second twice")
    args = ap.parse_args()
    {"send-esp": cmd_send_esp, "recv-esp": cmd_recv_esp, "send-clear": cmd_send_clear,
     "recv-clear": cmd_recv_clear, "send-junk": cmd_send_junk}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
