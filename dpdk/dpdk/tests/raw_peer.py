#!/usr/bin/env python3
"""Raw Ethernet peer for the af_packet test, run inside the peer network namespace.

  raw_peer.py recv IFACE COUNT TIMEOUT   print "ready", then each received 0x88b5 frame as hex
  raw_peer.py send IFACE                 read hex frames from stdin, one per line, send each
"""
import socket
import sys

ETH_P_TEST = 0x88B5

def main():
    mode, iface = sys.argv[1], sys.argv[2]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
    s.bind((iface, ETH_P_TEST))
    # Room for a whole test burst while Python prints (root may exceed rmem_max).
    s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 16 << 20)
    if mode == "recv":
        count, timeout = int(sys.argv[3]), float(sys.argv[4])
        s.settimeout(timeout)
        print("ready", flush=True)
        got = 0
        while got < count:
            try:
                frame, addr = s.recvfrom(65535)
            except socket.timeout:
                break
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            print(frame.hex(), flush=True)
            got += 1
    elif mode == "send":
        for line in sys.stdin:
            line = line.strip()
            if line:
                s.send(bytes.fromhex(line))
    else:
        sys.exit("unknown mode " + mode)

main()
