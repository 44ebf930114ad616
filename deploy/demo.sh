#!/usr/bin/env bash
# The lab demo on virtual devices, from a fresh checkout: installs what is missing, builds, runs.
# Today: espada's DPDK io forwarder beside dpdk-testpmd on the same net_null ports.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
deploy/install-deps.sh
cargo build --release --locked -p espada-perf-fwd
exec perf/fwd/compare.sh "${SECONDS_PER_RUN:-5}"
