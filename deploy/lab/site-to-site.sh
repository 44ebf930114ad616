#!/usr/bin/env bash
# The lab appliance demo: two espada appliances back to back on virtual devices.
#
#   LAN A 192.0.2.10 ── espada "site-a" ══ ESP over a veth "WAN" ══ espada "site-b" ── LAN B 203.0.113.10
#
# Each espada runs in its own network namespace with two DPDK af_packet ports, a static
# (manually keyed, lab-only) AES-256-GCM SA pair with random keys, and its admin socket. The
# demo pings across, streams 20 MB of TCP checked by SHA-256, shows what the operator sees
# (`espada show tunnels / sa / workers / drops`), then stops both and removes everything.
# Usage: site-to-site.sh [esp|udp] [path/to/espada]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/netns.sh"
encap=${1:-udp}
ESPADA=${2:-$here/../../target/release/espada}
work=$(mktemp -d /tmp/espada-demo.XXXXXX)
NS=(esp-demo-lana esp-demo-a esp-demo-b esp-demo-lanb)
cleanup() {
  lab_down "${NS[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
lab_down "${NS[@]}"

echo "== building the lab: 4 namespaces, 3 veth links"
for ns in "${NS[@]}"; do lab_ns "$ns"; done
lab_veth esp-demo-lana host0 esp-demo-a lan0
lab_veth esp-demo-a wan0 esp-demo-b wan0
lab_veth esp-demo-b lan0 esp-demo-lanb host0
# The kernel side of the WAN link takes 1600 bytes; espada's af_packet ports run at 1500 (DPDK's
# af_packet allows no more): full-size DF packets get "fragmentation needed" and TCP adapts.
ip -n esp-demo-a link set wan0 mtu 1600
ip -n esp-demo-b link set wan0 mtu 1600
ip -n esp-demo-lana addr add 192.0.2.10/24 dev host0
ip -n esp-demo-lana route add default via 192.0.2.1
ip -n esp-demo-lanb addr add 203.0.113.10/24 dev host0
ip -n esp-demo-lanb route add default via 203.0.113.1

# Mirrored SAs: A's inbound is B's outbound (SPI 0x1000), and the other way (SPI 0x2000).
python3 -c 'import os; print(os.urandom(36).hex())' >"$work/1000.hex"
python3 -c 'import os; print(os.urandom(36).hex())' >"$work/2000.hex"
site() { # name outside inside peer local_ts remote_ts spi_in spi_out
  cat >"$work/$1.yaml" <<YAML
appliance: { name: $1, lab: true }
cores: { control: 0, workers: [1] }
ports:
  outside: { device: "net_af_packet0,iface=wan0", ipv4: $2 }
  inside: { device: "net_af_packet1,iface=lan0", ipv4: $3 }
tunnels:
  - name: to-$4
    peer: $5
    encapsulation: $encap
    local_ts: [$6]
    remote_ts: [$7]
    static_sa:
      inbound: { spi: $8, algorithm: aes256gcm16, key: { file: ${8#0x}.hex } }
      outbound: { spi: $9, algorithm: aes256gcm16, key: { file: ${9#0x}.hex } }
admin: { socket: $work/$1.sock }
dpdk: { args: [--no-huge, -m, "512", --no-shconf, --log-level, "error"] }
YAML
}
site site-a 198.51.100.1/24 192.0.2.1/24 site-b 198.51.100.2 192.0.2.0/24 203.0.113.0/24 0x1000 0x2000
site site-b 198.51.100.2/24 203.0.113.1/24 site-a 198.51.100.1 203.0.113.0/24 192.0.2.0/24 0x2000 0x1000
"$ESPADA" check --config "$work/site-a.yaml"
"$ESPADA" check --config "$work/site-b.yaml"

echo "== starting espada site-a and site-b (logs: $work/*.log)"
for s in a b; do
  ip netns exec esp-demo-$s env NO_COLOR=1 "$ESPADA" run --config "$work/site-$s.yaml" 2>"$work/site-$s.log" &
done
for s in a b; do
  for _ in $(seq 100); do
    "$ESPADA" show workers --socket "$work/site-$s.sock" >/dev/null 2>&1 && break
    sleep 0.2
  done
done

echo "== ping LAN A -> LAN B through the tunnel"
ip netns exec esp-demo-lana ping -c 1 -W 2 203.0.113.10 >/dev/null || true # resolves neighbours
ip netns exec esp-demo-lana ping -c 5 -i 0.2 203.0.113.10

echo "== TCP: 20 MB from LAN A to LAN B, checked by SHA-256"
ip netns exec esp-demo-lanb python3 "$here/tcp_stream.py" server 5001 >/dev/null &
sleep 0.5
ip netns exec esp-demo-lana python3 "$here/tcp_stream.py" client 203.0.113.10 5001 20000000

for s in a b; do
  echo; echo "== espada show tunnels   (site-$s)"; "$ESPADA" show tunnels --socket "$work/site-$s.sock"
done
echo; echo "== espada show sa        (site-a)"; "$ESPADA" show sa --socket "$work/site-a.sock"
echo; echo "== espada show workers   (site-a)"; "$ESPADA" show workers --socket "$work/site-a.sock"
echo; echo "== unknown SPI from a stranger: counted and logged once"
# The stranger needs an address on B's WAN link for its kernel to route the junk to A.
ip -n esp-demo-b addr add 198.51.100.99/24 dev wan0
ip netns exec esp-demo-b python3 "$here/esp_peer.py" send-junk --iface wan0 --spi 0xbad0bad0 \
  --src 198.51.100.99 --dst 198.51.100.1 --count 100 >/dev/null
ip -n esp-demo-b addr del 198.51.100.99/24 dev wan0
sleep 0.3
"$ESPADA" show drops --socket "$work/site-a.sock"
grep "unknown SPI" "$work/site-a.log" | sed 's/^/  log: /'
echo; echo "== stopping (SIGTERM)"
for s in a b; do kill -TERM $(ip netns pids esp-demo-$s) 2>/dev/null || true; done
sleep 1
grep -h "stopped" "$work"/site-*.log | sed 's/^/  /'
echo "demo OK"
