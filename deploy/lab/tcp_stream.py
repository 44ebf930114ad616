#!/usr/bin/env python3
"""TCP stream check for the lab: the client sends N random bytes, the server answers with their
length and SHA-256; the client prints both sides' digests as JSON and exits 0 when they match.

  tcp_stream.py server PORT            (serves one connection, then exits)
  tcp_stream.py client HOST PORT BYTES
"""
import hashlib
import json
import os
import socket
import sys


def server(port):
    s = socket.socket(socket.AF_INET6 if ":" in os.environ.get("BIND", "") else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((os.environ.get("BIND", "0.0.0.0"), port))
    s.listen(1)
    print(json.dumps({"ready": True}), flush=True)
    s.settimeout(60)
    c, _ = s.accept()
    c.settimeout(60)
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.sendall(json.dumps({"bytes": n, "sha256": h.hexdigest()}).encode())
    c.close()


def client(host, port, nbytes):
    data = os.urandom(nbytes)
    c = socket.create_connection((host, port), timeout=60)
    c.sendall(data)
    c.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        b = c.recv(4096)
        if not b:
            break
        reply += b
    theirs = json.loads(reply)
    ours = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    print(json.dumps({"sent": ours, "received": theirs}), flush=True)
    sys.exit(0 if ours == theirs else 1)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
