#!/usr/bin/env bash
# espada's data plane beside the I/O floor and the cipher limit, per size and direction, in one
# run on the same vdevs and core (docs/performance.md, "The real data plane").
#
#   perf/dp/run.sh [--seconds S] [--sas N] [--workers N] [--aes 128|256] [--natt]
#                  [--sizes "64 128 ... imix"] [--modes "decrypt encrypt"] [--out DIR]
#                  [--paced-seconds S (0: skip)] [--rx-ring N] [--huge-dir DIR]
#
# For each mode and size: espada-dp-bench (the real worker loop and pipeline: net_pcap with
# infinite_rx in, net_null out); DPDK's ipsec-secgw on the very same pcap, SAs, vdevs and core
# (perf/dp/secgw.sh: the better of its cpu-crypto and no-offload modes); dpdk-testpmd
# --forward-mode=io on the same pcap and vdevs (the I/O floor: what moving the packets costs
# without any IPsec); the bare AEAD of exactly the ESP payloads with espada's default
# implementation (the cipher limit). Prints a table with espada/secgw, espada/limit and
# espada's own work = espada ns − I/O floor ns − cipher ns, writes DIR/results.jsonl and
# DIR/mpps.svg. Then the zero-drop step, per mode at 64 bytes: espada's maximum with a paced
# input (`--rate` far above it: a ring port another core fills, as a NIC would), then that
# input at 90 % of the maximum for --paced-seconds (60) with an RX ring of --rx-ring (4096)
# mbufs, reporting offered, sent, refused at the RX ring, dropped and zero loss
# (DIR/paced.jsonl). With --huge-dir (a hugetlbfs mount with enough 2 MiB pages free: about
# 1.5 GiB at one SA), every program's EAL memory is in huge pages (as on an appliance) and
# espada's own tables are in transparent huge pages (glibc.malloc.hugetlb=1), instead of
# --no-huge's 4 KiB pages. Needs root (DPDK). Benchmarks, not tests: figures go to
# docs/performance.md with this command, the CPU flags and the date.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=5 sas=1 workers=1 aes=128 natt="" out=target/perf-dp paced_secs=60 rx_ring=4096 huge=()
sizes="64 128 256 512 1024 1420 imix" modes="decrypt encrypt"
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) secs=$2; shift 2 ;;
    --sas) sas=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --aes) aes=$2; shift 2 ;;
    --natt) natt=--natt; shift ;;
    --sizes) sizes=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --paced-seconds) paced_secs=$2; shift 2 ;;
    --rx-ring) rx_ring=$2; shift 2 ;;
    --huge-dir) huge=(--huge-dir "$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
cargo build --release --locked -q -p espada-perf-dp
BENCH=target/release/espada-dp-bench
if (( ${#huge[@]} )); then
  export GLIBC_TUNABLES=glibc.malloc.hugetlb=1 HUGE_DIR=${huge[1]}
  eal_mem=("${huge[@]}" --in-memory)
else
  eal_mem=(--no-huge)
fi
mkdir -p "$out"
res="$out/results.jsonl"
: >"$res"
mem=$(( sas > 100000 ? 4096 : 1024 ))

# dpdk-testpmd io forwarding of PCAP into net_null for S seconds: Mpps leaving the null port.
testpmd_io() {
  local pcap=$1 log
  log=$(mktemp)
  timeout -s INT $((secs + 4)) dpdk-testpmd -l 0,1 "${eal_mem[@]}" -m "$mem" --no-pci --no-shconf \
    --file-prefix "tpio$$" --log-level error \
    --vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null1,no-rx=1 -- \
    --forward-mode=io --total-num-mbufs=$(( sas > 4096 ? 2 * sas + 65536 : 65536 )) \
    --stats-period 2 -a >"$log" 2>&1 || true
  # The last statistics block of port 1 (the sink): its Tx-pps.
  awk '/NIC statistics for port 1/ {p=1} p && /Tx-pps/ {v=$2; p=0} END {printf "%.3f", v/1e6}' "$log"
  rm -f "$log"
}

for mode in $modes; do
  for size in $sizes; do
    dir="$out/pcap-$mode-$size"
    mkdir -p "$dir"
    line=$("$BENCH" --mode "$mode" --size "$size" --sas "$sas" --workers "$workers" --aes "$aes" \
      $natt --seconds "$secs" --pcap-dir "$dir" "${huge[@]}" | sed -n 's/^JSON //p')
    pcap="$dir/esp.pcap"; [[ $mode == encrypt ]] && pcap="$dir/clear.pcap"
    io=$(testpmd_io "$pcap")
    secgw=$(perf/dp/secgw.sh "$mode" "$dir" "$secs" | sed -n 's/^JSON //p')
    cipher=$("$BENCH" --mode cipher --size "$size" --aes "$aes" | sed -n 's/^JSON //p')
    rm -rf "$dir"
    python3 - "$line" "$io" "$cipher" "$secgw" >>"$res" <<'PY'
import json, sys
e, io, c = json.loads(sys.argv[1]), float(sys.argv[2]), json.loads(sys.argv[3])
e["secgw_mpps"] = json.loads(sys.argv[4])["secgw_mpps"]
e["io_floor_mpps"] = io
e["cipher_ns"] = c["open_ns"] if e["mode"] == "decrypt" else c["seal_ns"]
print(json.dumps(e))
PY
  done
done

python3 - "$res" "$out/mpps.svg" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'mode':8} {'size':>5} {'espada Mpps':>11} {'ns/pkt':>7} {'secgw Mpps':>10} {'espada/secgw':>12} "
      f"{'I/O floor Mpps':>14} {'cipher ns':>9} {'limit Mpps':>10} {'espada/limit':>12} {'own ns':>7} drops")
for r in rows:
    ns = 1e3 / r["mpps"] if r["mpps"] else float("inf")
    io_ns = 1e3 / r["io_floor_mpps"] if r["io_floor_mpps"] else 0.0
    limit_ns = io_ns + r["cipher_ns"]
    limit = 1e3 / limit_ns if limit_ns else 0.0
    own = ns - limit_ns
    drops = ",".join(f"{k}={v}" for k, v in r["drops"].items()) or "none"
    sg = r["secgw_mpps"]
    print(f"{r['mode']:8} {r['size']:>5} {r['mpps']:11.3f} {ns:7.1f} {sg:10.3f} {r['mpps'] / sg if sg else 0:12.2f} "
          f"{r['io_floor_mpps']:14.2f} {r['cipher_ns']:9.1f} {limit:10.3f} {r['mpps'] / limit if limit else 0:12.2f} {own:7.1f} {drops}")
# Mpps against size (IMIX drawn at its mean frame size), one line per series.
def x_of(r):
    return (7 * 64 + 4 * 594 + 1460) / 12 if r["size"] == "imix" else float(r["size"])
series = {}
for r in rows:
    io_ns = 1e3 / r["io_floor_mpps"] if r["io_floor_mpps"] else 0.0
    series.setdefault(f"espada {r['mode']}", []).append((x_of(r), r["mpps"]))
    series.setdefault(f"ipsec-secgw {r['mode']}", []).append((x_of(r), r["secgw_mpps"]))
    series.setdefault(f"limit {r['mode']} (I/O floor + cipher)", []).append(
        (x_of(r), 1e3 / (io_ns + r["cipher_ns"])))
W, H, L, B = 720, 420, 60, 40
xmax = 1500.0
ymax = max(y for pts in series.values() for _, y in pts) * 1.1 or 1
colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<line x1="{L}" y1="{H-B}" x2="{W-10}" y2="{H-B}" stroke="black"/>',
       f'<line x1="{L}" y1="10" x2="{L}" y2="{H-B}" stroke="black"/>',
       f'<text x="{W/2}" y="{H-8}" text-anchor="middle">cleartext frame size (bytes; IMIX at its mean)</text>',
       f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">Mpps</text>']
sx = lambda x: L + (W - L - 10) * x / xmax
sy = lambda y: H - B - (H - B - 10) * y / ymax
for i in range(6):
    y = ymax * i / 5
    svg.append(f'<text x="{L-6}" y="{sy(y)+4}" text-anchor="end">{y:.1f}</text>')
for x in (64, 256, 512, 1024, 1420):
    svg.append(f'<text x="{sx(x)}" y="{H-B+14}" text-anchor="middle">{x}</text>')
for k, (name, pts) in enumerate(sorted(series.items())):
    pts.sort()
    c = colours[k % len(colours)]
    dash = (' stroke-dasharray="5,4"' if name.startswith("limit")
            else ' stroke-dasharray="1,3"' if name.startswith("ipsec-secgw") else "")
    svg.append(f'<polyline fill="none" stroke="{c}" stroke-width="2"{dash} points="' +
               " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts) + '"/>')
    svg.append(f'<text x="{W-250}" y="{24+16*k}" fill="{c}">{name}</text>')
svg.append("</svg>")
open(sys.argv[2], "w").write("\n".join(svg) + "\n")
print(f"results: {sys.argv[1]}, plot: {sys.argv[2]}")
PY

# The zero-drop step: the paced maximum, then 90 % of it for --paced-seconds.
(( paced_secs > 0 )) || exit 0
paced="$out/paced.jsonl"
: >"$paced"
for mode in $modes; do
  common=(--mode "$mode" --size 64 --sas "$sas" --aes "$aes" $natt --rx-ring "$rx_ring" "${huge[@]}")
  max=$("$BENCH" "${common[@]}" --rate 100 --seconds "$secs" | sed -n 's/^JSON //p' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["mpps"])')
  rate=$(python3 -c "print(round(0.9 * $max, 3))")
  "$BENCH" "${common[@]}" --rate "$rate" --seconds "$paced_secs" | sed -n 's/^JSON //p' |
    python3 -c "import json, sys; r = json.load(sys.stdin); r['paced']['max_mpps'] = $max; print(json.dumps(r))" >>"$paced"
done
python3 - "$paced" <<'PY'
import json, sys
print(f"{'mode':8} {'max Mpps':>8} {'rate':>6} {'seconds':>7} {'offered':>11} {'sent':>11} {'refused':>9} {'dropped':>8} zero loss")
for l in open(sys.argv[1]):
    r = json.loads(l)
    p = r["paced"]
    print(f"{r['mode']:8} {p['max_mpps']:8.3f} {p['rate_mpps']:6.3f} {r['seconds']:7.1f} {p['offered']:11} {p['sent']:11} "
          f"{p['rx_ring_full']:9} {p['dropped']:8} {'yes' if p['zero_loss'] else 'no'}")
print(f"paced: {sys.argv[1]}")
PY
