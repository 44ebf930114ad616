#!/usr/bin/env bash
# The lab demo on virtual devices, from a fresh checkout: installs what is missing, builds
# espada, and runs it in network namespaces (deploy/lab/):
#   deploy/demo.sh                 espada as an IKEv2 hub with two strongSwan branches, one
#                                  behind a NAT (deploy/lab/hub.sh)
#   deploy/demo.sh static [udp|esp] two espadas site to site with static lab SAs
#                                  (deploy/lab/site-to-site.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
  exec sudo -E env "PATH=$PATH" "$0" "$@"
fi
deploy/install-deps.sh
cargo build --release --locked -p espada
case "${1:-hub}" in
  hub) exec deploy/lab/hub.sh "$PWD/target/release/espada" ;;
  static) exec deploy/lab/site-to-site.sh "${2:-udp}" "$PWD/target/release/espada" ;;
  *) echo "usage: deploy/demo.sh [hub | static [udp|esp]]" >&2; exit 2 ;;
esac
