#!/usr/bin/env bash
# Installs everything espada needs to build, run its lab demo and run its tests on a fresh
# Debian bookworm machine. Idempotent: does nothing that is already done.
set -euo pipefail

APT_PACKAGES=(
  libdpdk-dev dpdk-dev
  libipsec-mb-dev # intel-ipsec-mb: the ipsec-mb AES-GCM backend (crates/ipsec-mb-sys)
  libclang-dev pkg-config gcc
  iproute2 ethtool iputils-ping iptables conntrack
  python3 python3-pip
  tcpdump
  charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins # deploy/lab/ike
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  [[ "$p" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import scapy.layers.ipsec, cryptography' 2>/dev/null; then
  echo "install-deps: installing scapy and cryptography (pip)"
  python3 -m pip install -q --disable-pip-version-check scapy cryptography 2>/dev/null \
    || python3 -m pip install -q --disable-pip-version-check --break-system-packages scapy cryptography
fi

if ! command -v cargo >/dev/null; then
  echo "install-deps: cargo is missing; install the Rust toolchain (rustup) first" >&2
  exit 1
fi
if ! command -v cargo-nextest >/dev/null; then
  echo "install-deps: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
