#!/usr/bin/env bash
# espada-fwd vs dpdk-testpmd --forward-mode=io: same net_null vdevs, same worker lcore, one run
# after the other. Prints both rates and their ratio. Usage: compare.sh [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-5}
rounds=${2:-1}
FWD=target/release/espada-fwd
[[ -x $FWD ]] || cargo build --release --locked -p espada-perf-fwd
EAL=(-l 0,1 --no-huge -m 512 --no-pci --no-shconf --log-level error --vdev net_null0 --vdev net_null1)
for r in $(seq "$rounds"); do
  log=$(mktemp)
  # testpmd prints per-port Rx-pps every stats period; the two ports' rates add up to its total.
  timeout -s INT $((secs + 2)) dpdk-testpmd "${EAL[@]}" --file-prefix "tp$$" -- \
    --forward-mode=io --total-num-mbufs=16384 --stats-period "$secs" -a >"$log" 2>&1 || true
  tp=$(grep -E "Rx-pps" "$log" | tail -2 | awk '{s+=$2} END {printf "%.2f", s/1e6}')
  rm -f "$log"
  es=$($FWD --seconds "$secs" -- "${EAL[@]}" --file-prefix "fwd$$" | awk '/Mpps total/ {print $2}')
  ratio=$(awk -v a="$es" -v b="$tp" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }')
  echo "round $r: dpdk-testpmd io ${tp} Mpps | espada-fwd ${es} Mpps | espada/testpmd ${ratio}%"
done
