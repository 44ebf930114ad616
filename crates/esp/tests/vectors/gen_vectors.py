#!/usr/bin/env python3
"""Known-answer vectors for espada-esp from an independent ESP implementation (scapy).

Usage:
  gen_vectors.py                 regenerate scapy_vectors.json beside this script (deterministic)
  gen_vectors.py --stdout        print the vectors instead of writing the file
  gen_vectors.py --check FILE    decrypt every espada packet listed in FILE with scapy and
                                 compare with the expected inner packet; exit 1 on mismatch

Every vector is a tunnel-mode ESP packet made by scapy's SecurityAssociation(ESP,
crypt_algo='AES-GCM', ...). The explicit IV is passed in as the 64-bit sequence number
(big-endian), which is what espada sends, and the outer header fields are set as espada sets
them (TTL/hop limit 64, DS field copied from the inner packet, IPv4 ID = low 16 bits of the
sequence number, DF copied from an inner IPv4 packet and set for inner IPv6), so that espada's
encapsulation of the same inner packet gives the same bytes (UDP checksum aside for IPv6
NAT-T, where scapy writes 0).

ESN: scapy takes the high 32 bits as `esn` and the low 32 bits as the sequence number, and
builds the AAD as SPI || esn || seq (RFC 4106 section 5).
"""
import json
import os
import struct
import sys

from scapy.all import IP, IPv6, UDP, ICMP, Raw, raw  # noqa: E402
from scapy.layers.inet6 import ICMPv6EchoRequest  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "scapy_vectors.json")

V4_LOCAL, V4_REMOTE = "192.0.2.1", "198.51.100.2"
V6_LOCAL, V6_REMOTE = "2001:db8::1", "2001:db8:ffff::2"


def key_for(i, size):
    """Deterministic key||salt of `size` key bytes plus 4 salt bytes."""
    return bytes((i * 31 + j * 7 + 1) & 0xFF for j in range(size + 4))


def payload(n, seed):
    return bytes((seed + j * 13) & 0xFF for j in range(n))


def inner_packet(version, length_seed, plen, tos, df):
    if version == 4:
        p = IP(src="198.18.0.1", dst="198.19.0.%d" % (1 + length_seed % 200), ttl=63, tos=tos,
               id=length_seed & 0xFFFF, flags="DF" if df else 0)
        p = p / UDP(sport=1000 + length_seed, dport=53) / Raw(payload(plen, length_seed))
    else:
        p = IPv6(src="2001:db8:1::1", dst="2001:db8:2::%x" % (1 + length_seed), hlim=63, tc=tos,
                 fl=length_seed & 0xFFFFF)
        if length_seed % 2:
            p = p / ICMPv6EchoRequest(id=length_seed, seq=1, data=payload(plen, length_seed))
        else:
            p = p / UDP(sport=2000 + length_seed, dport=4000) / Raw(payload(plen, length_seed))
    return raw(p)


def tunnel_header(outer, inner_bytes, seq):
    tos = inner_bytes[1] if inner_bytes[0] >> 4 == 4 else ((inner_bytes[0] & 0xF) << 4 | inner_bytes[1] >> 4)
    if inner_bytes[0] >> 4 == 4:
        df = struct.unpack("!H", inner_bytes[6:8])[0] & 0x4000 != 0
    else:
        df = True
    if outer == 4:
        return IP(src=V4_LOCAL, dst=V4_REMOTE, ttl=64, tos=tos, id=seq & 0xFFFF,
                  flags="DF" if df else 0)
    return IPv6(src=V6_LOCAL, dst=V6_REMOTE, hlim=64, tc=tos, fl=0)


def make_sa(spi, key, outer, natt, esn, seq, inner_bytes=None):
    th = tunnel_header(outer, inner_bytes or bytes([0x45, 0, 0, 0, 0, 0, 0, 0]), seq)
    return SecurityAssociation(
        ESP, spi=spi, seq_num=seq & 0xFFFFFFFF, crypt_algo="AES-GCM", crypt_key=key,
        auth_algo="NULL", tunnel_header=th,
        nat_t_header=UDP(sport=4500, dport=4500) if natt else None,
        esn_en=esn, esn=(seq >> 32) if esn else 0)


def encrypt(spi, key, outer, natt, esn, seq, inner_bytes, tfc):
    sa = make_sa(spi, key, outer, natt, esn, seq, inner_bytes)
    cls = IP if inner_bytes[0] >> 4 == 4 else IPv6
    # TFC padding (RFC 4303 section 2.7): extra bytes after the inner packet, inside the
    # encrypted payload; scapy keeps them as a Padding layer of the inner packet.
    pkt = cls(inner_bytes + bytes(tfc))
    iv = struct.pack("!Q", seq)
    out = sa.encrypt(pkt, seq_num=seq & 0xFFFFFFFF, iv=iv, esn_en=esn,
                     esn=(seq >> 32) if esn else 0)
    return raw(out)


def vectors():
    out = []
    i = 0
    cases = []
    for outer in (4, 6):
        for inner in (4, 6):
            for natt in (False, True):
                for ksize in (16, 32):
                    cases.append((outer, inner, natt, ksize))
    # Per combination: an even and an odd payload length, and rotate ESN / sequence / TFC.
    seqs = [1, 2, 0xFFFFFFFF, (1 << 32) + 5, (7 << 32) | 0xFFFFFFF0, 1000]
    for outer, inner, natt, ksize in cases:
        for plen in (0, 1, 2, 3, 100, 1371):
            esn = (i % 3) != 0
            seq = seqs[i % len(seqs)]
            if not esn:
                seq &= 0xFFFFFFFF
                seq = seq or 1
            tfc = [0, 0, 0, 7, 0, 32][i % 6]
            tos = [0x00, 0xB8, 0x02, 0x29][i % 4]
            df = i % 2 == 0
            spi = 0x1000 + i
            key = key_for(i, ksize)
            inner_bytes = inner_packet(inner, i, plen, tos, df)
            esp = encrypt(spi, key, outer, natt, esn, seq, inner_bytes, tfc)
            out.append({
                "name": "o%d_i%d_%s_aes%d_esn%d_len%d_tfc%d" % (
                    outer, inner, "natt" if natt else "esp", ksize * 8, int(esn), plen, tfc),
                "outer": outer, "inner": inner, "natt": natt, "esn": esn,
                "key": key.hex(), "spi": spi, "seq": seq, "tfc": tfc,
                "inner_packet": inner_bytes.hex(), "esp_packet": esp.hex(),
            })
            i += 1
    return out


def check(path):
    """Decrypts espada's packets with scapy; each entry has the fields of a vector."""
    with open(path) as f:
        items = json.load(f)
    bad = 0
    for v in items:
        key = bytes.fromhex(v["key"])
        sa = make_sa(v["spi"], key, v["outer"], v["natt"], v["esn"], v["seq"])
        cls = IP if v["outer"] == 4 else IPv6
        pkt = cls(bytes.fromhex(v["esp_packet"]))
        try:
            dec = sa.decrypt(pkt, esn_en=v["esn"], esn=(v["seq"] >> 32) if v["esn"] else 0)
            got = raw(dec)
            # Strip TFC padding (scapy keeps it as a Padding layer) by the inner header length.
            if got[0] >> 4 == 4:
                got = got[:struct.unpack("!H", got[2:4])[0]]
            else:
                got = got[:40 + struct.unpack("!H", got[4:6])[0]]
            got = got.hex()
        except Exception as e:  # noqa: BLE001 - report every failure
            got = "error: %r" % e
        if got != v["inner_packet"]:
            bad += 1
            print("MISMATCH %s: got %.80s... want %.80s..." % (v["name"], got, v["inner_packet"]))
    print("%d passed, %d failed" % (len(items) - bad, bad))
    return 1 if bad else 0


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2]))
    text = json.dumps(vectors(), indent=1) + "\n"
    if len(sys.argv) >= 2 and sys.argv[1] == "--stdout":
        sys.stdout.write(text)
    else:
        with open(OUT, "w") as f:
            f.write(text)
        print("wrote %s" % OUT)


if __name__ == "__main__":
    main()
