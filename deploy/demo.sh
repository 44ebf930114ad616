#!/usr/bin/env bash
# The lab demo on virtual devices, from a fresh checkout: installs what is missing, builds
# espada, and runs two appliances site to site between two LAN namespaces (deploy/lab/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
deploy/install-deps.sh
cargo build --release --locked -p espada
exec deploy/lab/site-to-site.sh "${1:-udp}" "$PWD/target/release/espada"
