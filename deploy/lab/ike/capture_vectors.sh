#!/usr/bin/env bash
# Regenerates crates/ike/tests/vectors/strongswan/*.json: for each vector, two charons (left =
# IKE_SA initiator in esp-ike-l, right = responder in esp-ike-r) log every secret (ike = 4,
# chd = 4) while tcpdump records the veth. One session per vector:
#   IKE_SA_INIT, IKE_AUTH (PSK, FQDN IDs) with the first CHILD_SA, one ping through it,
#   CHILD_SA rekey (CREATE_CHILD_SA + INFORMATIONAL DELETE), ping, IKE_SA rekey (CREATE_CHILD_SA
#   + INFORMATIONAL DELETE), ping, INFORMATIONAL DELETE of the IKE_SA.
# capture_vectors.py then turns pcap + logs into JSON and checks it (key derivation, decryption of
# every SK payload and ESP packet, PSK AUTH); it fails when anything does not match.
#
# Usage: capture_vectors.sh [-o OUTDIR] [-k] [VECTOR...]   (-k keeps the work directory)
# Vectors: see the table below. Needs root, strongSwan, tcpdump, python3 with scapy+cryptography.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
S=$here/swan.sh
out=$here/../../../crates/ike/tests/vectors/strongswan
keep=0
while getopts "o:k" o; do
  case $o in
    o) out=$OPTARG ;;
    k) keep=1 ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))

# name | IKE proposal | ESP proposal | side that initiates the rekeys and the final delete
VECTORS=(
  "aes256gcm16-prfsha384-ecp384|aes256gcm16-prfsha384-ecp384|aes256gcm16-modp2048|left"
  "aes128gcm16-prfsha256-x25519|aes128gcm16-prfsha256-x25519|aes128gcm16|left"
  "aes128gcm16-prfsha256-x25519-responder-rekeys|aes128gcm16-prfsha256-x25519|aes128gcm16|right"
)
PSK=espada-lab-psk-0123456789
L_ADDR=198.18.10.1 R_ADDR=198.18.10.2
L_ID=left.example.com R_ID=right.example.com
L_TS=198.19.1.0/24 R_TS=198.19.2.0/24
L_IN=198.19.1.1 R_IN=198.19.2.1

work=$(mktemp -d /tmp/espada-swan-capture.XXXXXX)
export SWAN_STATE=$work/state
tdpid=""
cleanup() {
  [[ -n $tdpid ]] && kill "$tdpid" 2>/dev/null || true
  "$S" down >/dev/null 2>&1 || true
  if ((keep)); then echo "capture: work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

die() { echo "capture_vectors.sh: $*" >&2; exit 1; }

# wait_count FILE REGEX N: wait (10 s max) until REGEX matches at least N lines of FILE.
wait_count() {
  local i
  for i in $(seq 100); do
    (($(grep -cE "$2" "$1" || true) >= $3)) && return 0
    sleep 0.1
  done
  die "timeout: fewer than $3 lines match '$2' in $1"
}

now() { date +%s.%N; }
step() { # LABEL START: print how long the step took
  awk -v l="$1" -v a="$2" -v b="$(now)" 'BEGIN { printf "  %-34s %6.0f ms\n", l, (b - a) * 1000 }'
}

run_vector() {
  local name=$1 ikep=$2 espp=$3 who=$4 d=$work/$1 t
  echo "== $name (IKE $ikep, ESP $espp, rekeys by $who)"
  mkdir -p "$d"
  "$S" down >/dev/null
  "$S" up-ns >/dev/null
  "$S" conf "$d/left" keylog=1 ike_proposal="$ikep" esp_proposal="$espp" psk="$PSK" \
    local_addr=$L_ADDR remote_addr=$R_ADDR local_id=$L_ID remote_id=$R_ID \
    local_ts=$L_TS remote_ts=$R_TS >/dev/null
  "$S" conf "$d/right" keylog=1 ike_proposal="$ikep" esp_proposal="$espp" psk="$PSK" \
    local_addr=$R_ADDR remote_addr=$L_ADDR local_id=$R_ID remote_id=$L_ID \
    local_ts=$R_TS remote_ts=$L_TS >/dev/null
  t=$(now); "$S" start left esp-ike-l "$d/left" >/dev/null; step "start charon (left)" "$t"
  "$S" start right esp-ike-r "$d/right" >/dev/null
  ip netns exec esp-ike-l tcpdump -i ike0 -n -U --immediate-mode -Z root -w "$d/capture.pcap" 'udp port 500 or udp port 4500' \
    2>"$d/tcpdump.err" &
  tdpid=$!
  wait_count "$d/tcpdump.err" "listening on" 1

  local rlog=$d/$who/charon.log
  t=$(now)
  "$S" ctl left --initiate --child lab >"$d/initiate.out" || { cat "$d/initiate.out"; die "initiate failed"; }
  "$S" wait-sa left lab
  step "IKE_SA_INIT + IKE_AUTH" "$t"
  ip netns exec esp-ike-l ping -c 1 -W 2 -I $L_IN $R_IN >/dev/null || die "ping through CHILD_SA #1 failed"

  t=$(now)
  "$S" ctl "$who" --rekey --child lab >/dev/null
  wait_count "$rlog" "parsed CREATE_CHILD_SA response" 1
  wait_count "$rlog" "parsed INFORMATIONAL response" 1
  step "CHILD_SA rekey (+ DELETE)" "$t"
  ip netns exec esp-ike-l ping -c 1 -W 2 -I $L_IN $R_IN >/dev/null || die "ping through CHILD_SA #2 failed"

  t=$(now)
  "$S" ctl "$who" --rekey --ike lab >/dev/null
  wait_count "$rlog" "parsed CREATE_CHILD_SA response" 2
  wait_count "$rlog" "parsed INFORMATIONAL response" 2
  step "IKE_SA rekey (+ DELETE)" "$t"
  ip netns exec esp-ike-l ping -c 1 -W 2 -I $L_IN $R_IN >/dev/null || die "ping after IKE_SA rekey failed"

  t=$(now)
  "$S" ctl "$who" --terminate --ike lab >/dev/null
  wait_count "$rlog" "parsed INFORMATIONAL response" 3
  step "IKE_SA DELETE" "$t"
  sleep 0.3
  kill -INT "$tdpid"
  wait "$tdpid" 2>/dev/null || true
  tdpid=""
  "$S" stop left >/dev/null
  "$S" stop right >/dev/null
  python3 "$here/capture_vectors.py" --name "$name" --pcap "$d/capture.pcap" \
    --left-log "$d/left/charon.log" --right-log "$d/right/charon.log" \
    --ike-proposal "$ikep" --esp-proposal "$espp" --psk "$PSK" \
    --left "$L_ADDR,$L_ID,$L_TS" --right "$R_ADDR,$R_ID,$R_TS" --rekeyed-by "$who" \
    --out "$out/$name.json"
}

[[ $(id -u) -eq 0 ]] || die "must run as root"
mkdir -p "$out"
for v in "${VECTORS[@]}"; do
  IFS='|' read -r name ikep espp who <<<"$v"
  if (($#)); then
    [[ " $* " == *" $name "* ]] || continue
  fi
  run_vector "$name" "$ikep" "$espp" "$who"
done
