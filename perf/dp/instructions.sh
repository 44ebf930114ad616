#!/usr/bin/env bash
# Instructions a packet in espada's worker loop, counted by callgrind: a measure that does not
# move with the machine's noise (timings on these VMs swing by 2x between runs) and that needs
# no hardware performance counters (the guests have none). Runs espada-dp-bench (a build with
# line tables, in target/callgrind) under valgrind for a second of traffic on one SA, 64-byte
# frames, and prints the port loop's instructions a packet (all it calls included: the
# cipher, the stages, the TX of full bursts; not the RX burst) and the source lines that
# execute the most instructions a packet (the cipher itself not among them).
#
#   perf/dp/instructions.sh [decrypt|encrypt] [--lookahead on|off] [--top N]
#
# Under valgrind intel-ipsec-mb runs its AVX2 code (valgrind has no AVX-512), so the cipher's
# share differs from a real run's; espada's own lines are the same code. Needs root (DPDK)
# and valgrind (installed if missing). docs/performance.md, "Instructions a packet".
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=decrypt lookahead=off top=25
while [[ $# -gt 0 ]]; do
  case $1 in
    decrypt|encrypt) mode=$1; shift ;;
    --lookahead) lookahead=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || apt-get install -y -qq --no-install-recommends valgrind >/dev/null
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/callgrind \
  cargo build --release --locked -q -p espada-perf-dp
out=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" target/callgrind/release/espada-dp-bench \
  --mode "$mode" --size 64 --sas 1 --seconds 1 --warmup 0 --lookahead "$lookahead" >/dev/null 2>&1
callgrind_annotate --inclusive=yes --tree=caller "$out/cg.out" >"$out/tree.txt" 2>/dev/null
callgrind_annotate --auto=yes --show-percs=no "$out/cg.out" >"$out/lines.txt" 2>/dev/null
python3 - "$mode" "$lookahead" "$top" "$out/tree.txt" "$out/lines.txt" <<'PY'
import re, sys
mode, lookahead, top, tree, lines = sys.argv[1], sys.argv[2], int(sys.argv[3]), open(sys.argv[4]).read(), open(sys.argv[5]).read()
num = lambda s: int(s.replace(",", ""))
# The function called once a packet, and the port loop that calls it.
per_packet = {"decrypt": "pipeline::outside_classify", "encrypt": "pipeline::inside_frame"}[mode]
loop = {("decrypt", "on"): "worker::outside_burst", ("encrypt", "on"): "worker::frames"}.get((mode, lookahead), "worker::frames")
calls = [num(m) for m in re.findall(r"=> [^\n]*:espada_dataplane::%s \(([\d,]+)x\)" % per_packet, tree)]
if mode == "decrypt" and lookahead == "on":
    # The burst path inlines classification; count packets by the cipher calls instead.
    calls = [num(m) for m in re.findall(r"< [^\n]*GcmAead>::open \(([\d,]+)x\)", tree)]
incl = [num(m) for m in re.findall(r"\n\s*([\d,]+) \([^)]*\)\s+\*\s+\S*worker\.rs:espada_dataplane::%s\b" % loop, tree)]
if not calls or not incl:
    sys.exit("callgrind output not understood (function names changed?)")
n = max(calls)
cipher = max([num(m) for m in re.findall(r"\n\s*([\d,]+) \([^)]*\)\s+\*\s+[^\n]*libIPSec_MB", tree)] or [0])
print(f"{mode}, lookahead {lookahead}: {n} packets, {max(incl) / n:.1f} instructions a packet in {loop}, "
      f"{cipher / n:.1f} of them in intel-ipsec-mb")
rows, cur = [], None
for l in lines.split("\n"):
    m = re.match(r"-- Auto-annotated source: (.*)", l)
    if m:
        cur = m.group(1).strip()
        continue
    m = re.match(r"\s*([\d,]+)\s+(.*)$", l)
    if m and cur and "=>" not in m.group(2) and "events annotated" not in m.group(2) and re.search(r"(crates|dpdk)/", cur) and "route/trie.rs" not in cur:
        rows.append((num(m.group(1)) / n, cur.split("/")[-1], m.group(2).strip()[:100]))
rows.sort(reverse=True)
print(f"{'instr':>6}  file                source line (instructions a packet, self)")
for ir, f, src in rows[:top]:
    print(f"{ir:6.1f}  {f:18}  {src}")
PY
rm -rf "$out"
