#!/usr/bin/env bash
# The negotiated lab demo: espada as a hub, two strongSwan branches (charon with
# kernel-libipsec), one of them behind a NAT, all tunnels up by IKEv2 with pre-shared keys.
#
#   LAN 192.0.2.10 ── espada "hub" ── WAN bridge 198.51.100.0/24 ─┬─ branch-a 198.51.100.2   (203.0.113.1)
#                                                                 └─ NAT 198.51.100.3 ── branch-b 198.18.0.2 (203.0.113.129)
#
# The demo waits for both tunnels, pings each branch, streams TCP through each (checked by
# SHA-256) while each CHILD_SA is rekeyed (branch-a by `espada rekey`, branch-b by swanctl),
# shows what the operator sees (`espada show ike / tunnels / sa / drops`), then stops
# everything and removes the namespaces.
# Usage: hub.sh [path/to/espada]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/netns.sh"
ESPADA=${1:-$here/../../target/release/espada}
SWAN=$here/ike/swan.sh
work=$(mktemp -d /tmp/espada-hub.XXXXXX)
NS=(esp-hub-lan esp-hub esp-hub-wan esp-hub-a esp-hub-nat esp-hub-b)
export SWAN_STATE=$work/swan
cleanup() {
  bash "$SWAN" stop branch-a >/dev/null 2>&1 || true
  bash "$SWAN" stop branch-b >/dev/null 2>&1 || true
  lab_down "${NS[@]}"
  rm -rf "$work"
}
trap cleanup EXIT
lab_down "${NS[@]}"

echo "== building the lab: 6 namespaces, a WAN bridge, a NAT (iptables MASQUERADE)"
for ns in "${NS[@]}"; do lab_ns "$ns"; done
ip -n esp-hub-wan link add br0 type bridge
ip -n esp-hub-wan link set br0 up
lab_veth esp-hub-lan host0 esp-hub lan0
lab_veth esp-hub wan0 esp-hub-wan br-hub
lab_veth esp-hub-a wan0 esp-hub-wan br-a
lab_veth esp-hub-nat wan0 esp-hub-wan br-nat
lab_veth esp-hub-nat lan0 esp-hub-b wan0
for p in br-hub br-a br-nat; do ip -n esp-hub-wan link set "$p" master br0; done
ip -n esp-hub-lan addr add 192.0.2.10/24 dev host0
ip -n esp-hub-lan route add default via 192.0.2.1
ip -n esp-hub-a addr add 198.51.100.2/24 dev wan0
ip -n esp-hub-a addr add 203.0.113.1/32 dev lo
ip -n esp-hub-nat addr add 198.51.100.3/24 dev wan0
ip -n esp-hub-nat addr add 198.18.0.1/24 dev lan0
ip netns exec esp-hub-nat sysctl -qw net.ipv4.ip_forward=1
ip netns exec esp-hub-nat iptables -t nat -A POSTROUTING -o wan0 -j MASQUERADE
ip -n esp-hub-b addr add 198.18.0.2/24 dev wan0
ip -n esp-hub-b addr add 203.0.113.129/32 dev lo
ip -n esp-hub-b route add default via 198.18.0.1

psk() { python3 -c 'import os; print("0x" + os.urandom(32).hex())'; }
psk >"$work/branch-a.psk"
psk >"$work/branch-b.psk"
chmod 600 "$work"/*.psk
cat >"$work/hub.yaml" <<YAML
appliance: { name: hub }
cores: { control: 0, workers: [1] }
ports:
  outside: { device: "net_af_packet0,iface=wan0", ipv4: 198.51.100.1/24 }
  inside: { device: "net_af_packet1,iface=lan0", ipv4: 192.0.2.1/24 }
defaults:
  ike: aes256gcm16-prfsha384-ecp384,aes128gcm16-prfsha256-x25519
  esp: aes256gcm16,aes128gcm16
  local_id: hub.example
  dpd: { delay: 10s, timeout: 30s, action: clear }
tunnels:
  - name: branch-a
    peer: 198.51.100.2
    local_ts: [192.0.2.0/24]
    remote_ts: [203.0.113.0/25]
    remote_id: branch-a.example
    psk: { file: branch-a.psk }
  - name: branch-b          # behind the NAT: its IKE and ESP arrive from 198.51.100.3, UDP 4500
    peer: 198.51.100.3
    local_ts: [192.0.2.0/24]
    remote_ts: [203.0.113.128/25]
    remote_id: branch-b.example
    psk: { file: branch-b.psk }
admin: { socket: $work/hub.sock }
dpdk: { args: [--no-huge, -m, "512", --no-shconf, --log-level, "error"] }
YAML
"$ESPADA" check --config "$work/hub.yaml"

echo "== starting espada (log: $work/hub.log)"
ip netns exec esp-hub env NO_COLOR=1 "$ESPADA" run --config "$work/hub.yaml" 2>"$work/hub.log" &
for _ in $(seq 100); do
  "$ESPADA" show workers --socket "$work/hub.sock" >/dev/null 2>&1 && break
  sleep 0.2
done

echo "== starting strongSwan on both branches (they initiate)"
branch() { # name ns local_addr inside_net psk_file
  bash "$SWAN" conf "$work/$1" local_addr="$3" remote_addr=198.51.100.1 local_id="$1.example" \
    remote_id=hub.example psk="$(cat "$5")" ike_proposal=aes256gcm16-prfsha384-ecp384 \
    esp_proposal=aes256gcm16 local_ts="$4" remote_ts=192.0.2.0/24 start_action=start \
    dpd_delay=10s conn=hub delete_rekeyed_delay=2 >/dev/null
  bash "$SWAN" start "$1" "$2" "$work/$1" >/dev/null
}
branch branch-a esp-hub-a 198.51.100.2 203.0.113.0/25 "$work/branch-a.psk"
branch branch-b esp-hub-b 198.18.0.2 203.0.113.128/25 "$work/branch-b.psk"
bash "$SWAN" wait-sa branch-a hub 30
bash "$SWAN" wait-sa branch-b hub 30

echo "== espada show ike"
"$ESPADA" show ike --socket "$work/hub.sock"

for b in 203.0.113.1 203.0.113.129; do
  echo; echo "== ping LAN -> $b through its tunnel"
  ip netns exec esp-hub-lan ping -c 3 -i 0.5 -W 2 "$b" >/dev/null || true # neighbours, activation
  ip netns exec esp-hub-lan ping -c 5 -i 0.2 "$b"
done

echo; echo "== TCP: 10 MB to each branch, checked by SHA-256, while each CHILD_SA is rekeyed"
ip netns exec esp-hub-a python3 "$here/tcp_stream.py" server 5001 >/dev/null &
ip netns exec esp-hub-b python3 "$here/tcp_stream.py" server 5001 >/dev/null &
sleep 0.5
ip netns exec esp-hub-lan python3 "$here/tcp_stream.py" client 203.0.113.1 5001 10000000 &
ta=$!
ip netns exec esp-hub-lan python3 "$here/tcp_stream.py" client 203.0.113.129 5001 10000000 &
tb=$!
sleep 0.3
"$ESPADA" rekey branch-a --socket "$work/hub.sock"
bash "$SWAN" ctl branch-b --rekey --child hub >/dev/null && echo "branch-b: CHILD_SA rekey started by strongSwan"
wait "$ta"
wait "$tb"
sleep 1

echo; echo "== espada show ike (after the rekeys)"; "$ESPADA" show ike --socket "$work/hub.sock"
echo; echo "== espada show tunnels"; "$ESPADA" show tunnels --socket "$work/hub.sock"
echo; echo "== espada show sa"; "$ESPADA" show sa --socket "$work/hub.sock"
echo; echo "== espada show drops"; "$ESPADA" show drops --socket "$work/hub.sock"
echo; echo "== state changes in the log"
grep -E "established|rekeyed|deleted|dead" "$work/hub.log" | sed 's/^[^ ]* *//; s/^/  /'
if grep -q "does not belong to an installed SA" "$work"/branch-*/charon.log; then
  echo "strongSwan saw ESP on an SPI it did not have" >&2
  exit 1
fi
echo; echo "== stopping (SIGTERM)"
kill -TERM $(ip netns pids esp-hub) 2>/dev/null || true
sleep 1
grep -h "stopped" "$work/hub.log" | sed 's/^/  /'
echo "demo OK"
