#!/usr/bin/env bash
# Helpers for lab networks in esp-* network namespaces. Source it; every function is idempotent
# enough for demos and cleans up with lab_down.
set -euo pipefail

# lab_ns NAME: create namespace NAME with loopback up.
lab_ns() {
  ip netns add "$1" 2>/dev/null || true
  ip -n "$1" link set lo up
}

# lab_veth NS_A DEV_A NS_B DEV_B: veth pair between two namespaces, up, IPv6 off, TX csum off.
lab_veth() {
  ip -n "$1" link add "$2" type veth peer name "$4" netns "$3"
  for nd in "$1 $2" "$3 $4"; do
    set -- $nd
    ip netns exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    ip -n "$1" link set "$2" up
    ip netns exec "$1" ethtool -K "$2" tx off >/dev/null 2>&1 || true
  done
}

# lab_down NS...: kill what runs in the namespaces and delete them.
lab_down() {
  for ns in "$@"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
  done
  sleep 0.3
  for ns in "$@"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
