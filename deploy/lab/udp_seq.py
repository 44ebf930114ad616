#!/usr/bin/env python3
"""Sequenced UDP stream for the lab: measures loss, duplicates, reordering and outages of a
tunnel while it is rekeyed, collided or restarted.

  udp_seq.py LOCAL_ADDR PORT REMOTE_ADDR PPS SECONDS [LINGER]

Binds LOCAL_ADDR:PORT, waits 0.5 s (for the peer's instance to bind), sends PPS packets per second for SECONDS to REMOTE_ADDR:PORT (each one
carries its sequence number and the send time), receives the peer's stream on the same socket
until LINGER seconds (default 3) after its own last send, then prints one JSON object:

  sent, received (unique), duplicates, reordered (arrived below the highest seen),
  highest (highest sequence number received + 1), missing (sequence numbers below `highest`
  never received), outages ([start, end] wall-clock times of gaps of more than 0.2 s between
  consecutive arrivals), first and last (wall-clock arrival times).

Run one on each side with the same PPS and SECONDS; the loss of the stream A -> B is
A.sent - B.received. Payload: 8-byte sequence number, 8-byte send time (ns), padding to 64 B.
"""
import json
import socket
import struct
import sys
import time

GAP = 0.2
STARTUP = 0.5


def main(local, port, remote, pps, seconds, linger=3.0):
    family = socket.AF_INET6 if ":" in local else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind((local, port))
    s.setblocking(False)
    total = int(pps * seconds)
    # The peer's instance is started at about the same time: give it time to bind before
    # the first packet, or that packet meets a closed port and counts as lost.
    start = time.monotonic() + STARTUP
    seen = bytearray(total + 1)
    received = duplicates = reordered = highest = 0
    outages, first, last = [], None, None
    sent = 0
    end = start + seconds + linger
    pad = bytes(48)
    while True:
        now = time.monotonic()
        if sent < total and now >= start + sent / pps:
            try:
                s.sendto(struct.pack("!QQ", sent, time.time_ns()) + pad, (remote, port))
            except OSError:
                pass  # no route during an outage: the packet counts as sent and lost
            sent += 1
            continue
        if now >= end:
            break
        try:
            data = s.recv(2048)
        except BlockingIOError:
            wait = (start + sent / pps) - now if sent < total else 0.001
            time.sleep(max(0.0, min(wait, 0.001)))
            continue
        if len(data) < 16:
            continue
        seq = struct.unpack("!Q", data[:8])[0]
        wall = time.time()
        if last is not None and wall - last > GAP:
            outages.append([round(last, 3), round(wall, 3)])
        first = wall if first is None else first
        last = wall
        if seq >= len(seen):
            seen.extend(bytes(seq + 1 - len(seen)))
        if seen[seq]:
            duplicates += 1
            continue
        seen[seq] = 1
        received += 1
        if seq < highest - 1:
            reordered += 1
        highest = max(highest, seq + 1)
    # The peer's last send is about when ours was: silence from before then to the end is an
    # outage that never ended (null end).
    quiet_since = last if last is not None else time.time() - (time.monotonic() - start)
    if time.time() - linger - quiet_since > GAP:
        outages.append([round(quiet_since, 3), None])
    missing = [i for i in range(highest) if not seen[i]]
    print(
        json.dumps(
            {
                "sent": sent,
                "received": received,
                "duplicates": duplicates,
                "reordered": reordered,
                "highest": highest,
                "missing": missing[:100],
                "missing_count": len(missing),
                "outages": outages,
                "first": first,
                "last": last,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) not in (5, 6):
        sys.exit(__doc__)
    main(a[0], int(a[1]), a[2], float(a[3]), float(a[4]), *(float(x) for x in a[5:]))
