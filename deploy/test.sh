#!/usr/bin/env bash
# Runs every check and test of espada from a fresh checkout: installs what is missing first.
# Needs root (network namespaces, raw sockets, DPDK af_packet ports); uses sudo otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi

deploy/install-deps.sh

export ESPADA_REQUIRE_SCAPY=1 # the scapy interop tests fail instead of skipping
export ESPADA_REQUIRE_STRONGSWAN=1 # so do the strongSwan (charon) interop tests of espada-ike

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== loom models: QSBR epoch primitive, SA directory, route table publication, SA lifecycle"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked -p espada-qsbr --release --test loom
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked -p espada-lookup --release --test sad_loom --test route_loom \
    --test lifecycle_loom

echo "== doc tests"
cargo test --workspace --locked --doc

echo "== all tests (nextest: one process per test, so each test owns its DPDK EAL)"
cargo nextest run --workspace --locked --no-fail-fast
