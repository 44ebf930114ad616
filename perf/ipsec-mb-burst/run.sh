#!/bin/sh
# intel-ipsec-mb's direct GCM API against its job API in bursts of 32, on CPU ${CPU:-1}
# (docs/performance.md, "Which AES-GCM"). Needs libipsec-mb-dev and a C compiler.
set -eu
out=${TMPDIR:-/tmp}/espada-ipsec-mb-burst
cc -O2 -o "$out" "$(dirname "$0")/burst.c" -lIPSec_MB
for size in 64 256 1420; do
  taskset -c "${CPU:-1}" "$out" "$size" 300000
done
