#!/usr/bin/env bash
# DPDK's ipsec-secgw on the pcap and SAs espada-dp-bench wrote (--pcap-dir DIR), on the same
# vdevs and core: prints its Mpps (the better of its cpu-crypto and no-offload modes, both on
# the aesni_gcm cryptodev, i.e. intel-ipsec-mb) and a JSON line. Builds it first, from
# Debian's dpdk-doc examples against the installed DPDK, into target/ipsec-secgw, with the one
# change virtual devices need (it demands RX checksum offloads they do not have).
#
#   perf/dp/secgw.sh MODE DIR SECONDS        # MODE: decrypt | encrypt
#
# Its anti-replay window is 0 (no -w), as espada's SAs in these runs. With HUGE_DIR set (a
# hugetlbfs mount), its EAL memory is in huge pages instead of --no-huge's 4 KiB pages.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=$1 dir=$2 secs=${3:-4}
build=target/ipsec-secgw
bin=$build/ipsec-secgw/build/ipsec-secgw
if [[ ! -x $bin ]]; then
  [[ -d /usr/share/dpdk/examples/ipsec-secgw ]] || apt-get install -y -qq --no-install-recommends dpdk-doc >/dev/null
  rm -rf "$build" && mkdir -p "$build"
  cp -r /usr/share/dpdk/examples/ipsec-secgw /usr/share/dpdk/examples/common "$build/"
  python3 - "$build/ipsec-secgw/ipsec-secgw.c" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
old = "\t/* Check that all required capabilities are supported */\n"
new = ("\t/* espada perf/dp: virtual devices have no checksum offloads; use what the device has. */\n"
       "\tlocal_port_conf.rxmode.offloads &= dev_info.rx_offload_capa;\n"
       "\tlocal_port_conf.txmode.offloads &= dev_info.tx_offload_capa;\n" + old)
assert old in s
open(p, "w").write(s.replace(old, new, 1))
PY
  make -s -C "$build/ipsec-secgw" -j2 >/dev/null
fi
cfg=$(mktemp)
eal_mem=(--no-huge); [[ -n ${HUGE_DIR:-} ]] && eal_mem=(--huge-dir "$HUGE_DIR" --in-memory)
pcap=$dir/esp.pcap; [[ $mode == encrypt ]] && pcap=$dir/clear.pcap
best=0
for type in cpu-crypto no-offload; do
  python3 - "$mode" "$dir/sas.txt" "$type" >"$cfg" <<'PY'
import sys
mode, sas, typ = sys.argv[1], sys.argv[2], sys.argv[3]
alg = None
for line in open(sas):
    t, spi_in, spi_out, peer, remote, k_in, k_out = line.split()
    alg = "aes-128-gcm" if len(k_in.split(":")) == 20 else "aes-256-gcm"
    # Both directions of every tunnel (it wants inbound SAs for its unprotected port even when
    # it only encrypts), as espada has them.
    si, so = int(spi_in, 16), int(spi_out, 16)
    print(f"sp ipv4 in esp protect {si} pri 1 dst 192.0.2.0/24 sport 0:65535 dport 0:65535")
    print(f"sa in {si} aead_algo {alg} aead_key {k_in} mode ipv4-tunnel src {peer} dst 198.51.100.1 type {typ}")
    print(f"sp ipv4 out esp protect {so} pri 1 dst {remote}/32 sport 0:65535 dport 0:65535")
    print(f"sa out {so} aead_algo {alg} aead_key {k_out} mode ipv4-tunnel src 198.51.100.1 dst {peer} type {typ}")
print("rt ipv4 dst 192.0.2.0/24 port 1")
print("rt ipv4 dst 198.18.0.0/15 port 0")
PY
  if [[ $mode == decrypt ]]; then
    vdevs=(--vdev "net_pcap0,rx_pcap=$pcap,infinite_rx=1" --vdev net_null1,no-rx=1)
  else
    vdevs=(--vdev net_null0,no-rx=1 --vdev "net_pcap1,rx_pcap=$pcap,infinite_rx=1")
  fi
  frames=$(wc -l <"$dir/sas.txt"); mbufs=$(( frames > 4096 ? 2 * frames + 65536 : 65536 ))
  log=$(mktemp)
  timeout -s INT $((secs + 3)) "$bin" -l 1 "${eal_mem[@]}" -m $(( mbufs * 3 / 1000 + 1024 )) --no-pci \
    --no-shconf --file-prefix "sgw$$" --log-level error "${vdevs[@]}" --vdev crypto_aesni_gcm0 -- \
    -p 0x3 -P -u 0x1 --config "(0,0,1),(1,0,1)" -f "$cfg" -l -t 1 -s "$mbufs" >"$log" 2>&1 || true
  # Packets sent per second between its last two statistics screens (one second apart).
  mpps=$(awk '/Total packets sent:/ {p=c; c=$4} END {printf "%.3f", (c-p)/1e6}' "$log")
  drops=$(awk '/Total packets dropped:/ {d=$4} END {print d+0}' "$log")
  echo "  ipsec-secgw $mode $type: $mpps Mpps (dropped in total: $drops)"
  best=$(awk -v a="$best" -v b="$mpps" 'BEGIN {print (b > a) ? b : a}')
  rm -f "$log"
done
rm -f "$cfg"
echo "JSON {\"secgw_mpps\": $best}"
