#!/usr/bin/env bash
# strongSwan against strongSwan, no espada: the baseline that espada's own rekey, collision and
# restart results are compared with (docs/strongswan-baseline.md). Needs root, charon-systemd and
# swanctl (deploy/install-deps.sh). Creates its own namespaces esp-bl-l / esp-bl-r through
# deploy/lab/ike/swan.sh (veth 198.18.10.1 <-> .2, inside 198.19.1.1 <-> 198.19.2.1, kernel-libipsec)
# and deletes them at the end; runs a udp_seq.py stream of BL_PPS (500) packets/s each way
# between the inside addresses through every scenario and prints a summary per scenario.
#
#   deploy/lab/swan-baseline.sh [SCENARIO...]     (default: all of them, about 17 minutes)
#
#   storm                each charon schedules a CHILD_SA rekey 10-20 s after the last (rekey_time=20s,
#                        rand_time=10s) and the IKE_SA every 40.5-45 s, 130 s of stream
#   collide              20 times, both ends ask their charon to rekey the CHILD_SA in the same
#                        instant (one process writes both vici requests back to back), 1.5 s apart
#   restart-init         SIGKILL the left charon 10 s into the stream, start it again 10 s later;
#                        it initiates (start_action=start)
#   restart-dpd          the same, but the restarted one does not initiate (start_action=none);
#                        the survivor has dpd_delay=10s and strongSwan's default dpd_action;
#                        watched for 210 s after the restart
#   restart-dpd-restart  as restart-dpd, the survivor's CHILD_SA has dpd_action=restart
#
# Results (streams' JSON, charon logs, list-sas, summary.txt) stay in $BL_DIR (/tmp/espada-bl)/run-*/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SWAN=$HERE/ike/swan.sh
UDP=$HERE/udp_seq.py
BASE=${BL_DIR:-/tmp/espada-bl}
PPS=${BL_PPS:-500}
PORT=5301
export SWAN_NS_L=esp-bl-l SWAN_NS_R=esp-bl-r SWAN_STATE=$BASE/state

die() { echo "swan-baseline.sh: $*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
command -v charon-systemd >/dev/null || die "charon-systemd not found (deploy/install-deps.sh)"

RUN=$BASE/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$RUN"
STREAM_PIDS=()

cleanup() {
  local p
  for p in "${STREAM_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$SWAN" down >/dev/null 2>&1 || true
}
trap cleanup EXIT

now() { date +%s.%N; }
ev() { echo "$1 $(now)" >>"$D/events"; } # an event's wall-clock time, for the analysis

# One vici client writes the same rekey request to both charons back to back (a few µs apart),
# alternating which one comes first; swanctl started twice in the background is milliseconds
# apart and collided in only 1 of 5 tries here.
cat >"$RUN/vici_rekey.py" <<'PY'
import socket, struct, sys, time
child, first, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
kv = {"child": child}
msg = b"".join(bytes([3, len(k)]) + k.encode() + struct.pack("!H", len(v)) + v.encode() for k, v in kv.items())
body = bytes([0, 5]) + b"rekey" + msg  # CMD_REQUEST "rekey"
pkt = struct.pack("!I", len(body)) + body
socks = []
for p in paths[first:] + paths[:first]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(p)
    socks.append(s)
t0 = time.monotonic()
for s in socks:
    s.sendall(pkt)
t1 = time.monotonic()
for s in socks:
    n = struct.unpack("!I", s.recv(4))[0]
    d = b""
    while len(d) < n:
        d += s.recv(n - len(d))
    if d[0] != 1 or b"success\x00\x03yes" not in d:
        sys.exit("rekey refused: %r" % d)
print("%.0f" % ((t1 - t0) * 1e6))
PY

# lab SCEN [left key=value...] -- [right key=value...]: configs in $RUN/SCEN/{l,r}, both started
lab() {
  D=$RUN/$1
  shift
  local left=() right=() side=left a
  for a in "$@"; do
    if [[ $a == -- ]]; then side=right; continue; fi
    if [[ $side == left ]]; then left+=("$a"); else right+=("$a"); fi
  done
  mkdir -p "$D"
  "$SWAN" down >/dev/null 2>&1 || true
  "$SWAN" up-ns >/dev/null
  # time_add_ms: log lines carry milliseconds (swan.sh's time_format is %H:%M:%S)
  "$SWAN" conf "$D/l" log=time_add_ms=yes "${left[@]}" >/dev/null
  "$SWAN" conf "$D/r" log=time_add_ms=yes local_addr=198.18.10.2 remote_addr=198.18.10.1 \
    local_id=right.example.com remote_id=left.example.com local_ts=198.19.2.0/24 remote_ts=198.19.1.0/24 \
    "${right[@]}" >/dev/null
}

start_both() {
  "$SWAN" start bl-r esp-bl-r "$D/r" >/dev/null
  "$SWAN" start bl-l esp-bl-l "$D/l" >/dev/null
}

established() { # initiate from SIDE (l|r) unless "auto", wait for the CHILD_SA on both ends
  [[ $1 == auto ]] || "$SWAN" ctl "bl-$1" --initiate --child lab >/dev/null
  "$SWAN" wait-sa bl-l lab 20
  "$SWAN" wait-sa bl-r lab 20
}

stream() { # SECONDS: both udp_seq.py in the background
  STREAM_PIDS=()
  ev stream
  ip netns exec esp-bl-l python3 "$UDP" 198.19.1.1 $PORT 198.19.2.1 "$PPS" "$1" >"$D/l.json" &
  STREAM_PIDS+=($!)
  ip netns exec esp-bl-r python3 "$UDP" 198.19.2.1 $PORT 198.19.1.1 "$PPS" "$1" >"$D/r.json" &
  STREAM_PIDS+=($!)
}

stream_wait() {
  local p
  for p in "${STREAM_PIDS[@]}"; do wait "$p"; done
  STREAM_PIDS=()
}

sas() { # list-sas of both ends into $D/{l,r}.sas
  "$SWAN" ctl bl-l --list-sas --raw >"$D/l.sas" 2>&1 || true
  "$SWAN" ctl bl-r --list-sas --raw >"$D/r.sas" 2>&1 || true
}

finish() {
  sas
  "$SWAN" ctl bl-r --version --daemon >"$D/version" 2>&1 || true
  cat /proc/loadavg >"$D/loadavg"
  "$SWAN" down >/dev/null 2>&1 || true
  analyse "$1" | tee "$D/summary.txt"
  cat "$D/summary.txt" >>"$RUN/summary.txt"
}

kill_left() { # SIGKILL the left charon; keep its log (swan.sh's filelog does not append)
  local pid
  pid=$(cat "$SWAN_STATE/bl-l/pid")
  kill -KILL "$pid"
  ev kill
  KILLED=$(now)
  # gone, or a zombie that only its new parent can reap
  while kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; do sleep 0.05; done
  cp "$D/l/charon.log" "$D/l/charon.log.killed"
}

restart_left() { # 10 s after the kill
  sleep "$(python3 -c "import time; print(max(0.0, $KILLED + 10 - time.time()))")"
  ev restart
  "$SWAN" start bl-l esp-bl-l "$D/l" >/dev/null
  ev started
}

sc_storm() {
  lab storm rekey_time=20s rand_time=10s ike_rekey_time=45s -- rekey_time=20s rand_time=10s ike_rekey_time=45s
  start_both
  established l
  stream 130
  stream_wait
  finish storm
}

sc_collide() {
  lab collide
  start_both
  established l
  stream 42
  sleep 3
  local i
  for i in $(seq 20); do
    ev "rekey$i"
    echo "$(python3 "$RUN/vici_rekey.py" lab $((i % 2)) "$D/l/charon.vici" "$D/r/charon.vici")" >>"$D/spread_us"
    sleep 1.5
  done
  stream_wait
  finish collide
}

sc_restart_init() {
  lab restart-init start_action=start -- start_action=none
  start_both
  established auto
  stream 45
  sleep 10
  kill_left
  restart_left
  stream_wait
  finish restart-init
}

restart_dpd() { # SCEN [dpd_action for the survivor's CHILD_SA]
  lab "$1" start_action=none -- start_action=none dpd_delay=10s
  if [[ -n ${2:-} ]]; then
    sed -i "s/^\( *\)start_action = none$/&\n\1dpd_action = $2/" "$D/r/swanctl.conf"
    grep -q "dpd_action = $2" "$D/r/swanctl.conf" || die "could not set dpd_action in $D/r/swanctl.conf"
  fi
  start_both
  established r
  stream 230
  sleep 10
  kill_left
  restart_left
  stream_wait
  finish "$1"
}

analyse() {
  python3 - "$D" "$1" "$PPS" <<'PY'
import datetime, glob, json, os, re, sys

d, scen, pps = sys.argv[1], sys.argv[2], float(sys.argv[3])
J = {s: json.load(open(f"{d}/{s}.json")) for s in "lr"}
events = {}
for line in open(f"{d}/events"):
    k, v = line.split()
    events[k] = float(v)
day = datetime.datetime.fromtimestamp(events["stream"]).date()


def lines(path):
    return open(path, errors="replace").read().splitlines() if os.path.exists(path) else []


def ts(line):  # "HH:MM:SS.mmm ..." -> epoch seconds (local time, the run's day)
    if not re.match(r"\d\d:\d\d:\d\d\.\d{3} ", line):
        return float("-inf")
    t = datetime.datetime.strptime(line[:12], "%H:%M:%S.%f").time()
    return datetime.datetime.combine(day, t).timestamp()


def first(log, pattern):
    for l in log:
        if re.search(pattern, l) and ts(l) > float("-inf"):
            return ts(l)
    return None


logs = {s: lines(f"{d}/{s}/charon.log.killed") + lines(f"{d}/{s}/charon.log") for s in "lr"}
t0 = events["stream"]
rel = lambda t: None if t is None else round(t - t0, 3)
daemon = " ".join(open(f"{d}/version").read().split()) if os.path.exists(f"{d}/version") else "?"
out = [f"== {scen}  ({d}; 1-min load average at the end {open(d + '/loadavg').read().split()[0]}; daemon: {daemon})"]
for a, b, name in (("l", "r", "L->R"), ("r", "l", "R->L")):
    s, r = J[a], J[b]
    lost = s["sent"] - r["received"]
    start_lost = sum(1 for m in r["missing"] if m < 50)
    # an outage that never ended has no end (udp_seq.py: [start, null])
    outs = [(round(x - t0, 3), round(y - x, 3) if y else "never ended") for x, y in r["outages"]]
    tail = ""
    if r["last"] is not None and r["last"] < t0 + s["sent"] / pps - 1:
        tail = f"  no packet after t={rel(r['last'])} s"
    out.append(
        f"{name}: sent {s['sent']} received {r['received']} lost {lost} (of which {start_lost} in the first 0.1 s,"
        f" before the peer's socket was bound) duplicates {r['duplicates']} reordered {r['reordered']}"
        f" outages [t s, length s] {outs}{tail}"
    )
for s in "lr":
    log = logs[s]
    n = lambda p: sum(1 for l in log if re.search(p, l))
    counts = [
        ("CHILD rekeys initiated", r"generating CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\)"),
        ("answered", r"parsed CREATE_CHILD_SA request \d+ \[ N\(REKEY_SA\)"),
        ("IKE rekeys initiated", r"generating CREATE_CHILD_SA request \d+ \[ SA No KE \]"),
        ("answered", r"parsed CREATE_CHILD_SA request \d+ \[ SA No KE \]"),
        ("CHILD rekey collisions", r"detected CHILD_REKEY collision with CHILD_REKEY"),
        ("won", r"CHILD_SA rekey collision won"),
        ("lost", r"CHILD_SA rekey collision lost"),
        ("IKE rekeys completed", r"IKE_SA lab\[\d+\] rekeyed between"),
        ("IKE rekey collisions", r"detected IKE_REKEY collision with IKE_REKEY"),
        ("'does not belong to an installed SA'", r"does not belong to an installed SA"),
        ("'unknown SPI'", r"(?i)unknown SPI"),
    ]
    out.append(f"{s}: " + ", ".join(f"{k} {n(p)}" for k, p in counts))
    if os.path.exists(f"{d}/{s}/charon.log.killed"):
        un = lambda path: sum(1 for l in lines(path) if "does not belong to an installed SA" in l)
        out.append(f"{s}: 'does not belong to an installed SA' before the kill {un(f'{d}/{s}/charon.log.killed')},"
                   f" in the restarted charon {un(f'{d}/{s}/charon.log')}")
    sas = open(f"{d}/{s}.sas").read() if os.path.exists(f"{d}/{s}.sas") else ""
    out.append(
        f"{s}: at the end {sas.count('state=ESTABLISHED')} IKE_SA ESTABLISHED, "
        f"{sas.count('state=INSTALLED')} CHILD_SA INSTALLED, {sas.count('state=REKEYED')} REKEYED, "
        f"{sas.count('state=DELETED')} DELETED"
    )
if os.path.exists(f"{d}/spread_us"):
    sp = [int(x) for x in open(f"{d}/spread_us").read().split()]
    out.append(f"rekey requests to both charons {len(sp)}, written {min(sp)}-{max(sp)} us apart")
if "kill" in events:
    k = events["kill"]
    new = lines(f"{d}/l/charon.log")
    auth = first(new, r"(generating|parsed) IKE_AUTH request")
    child = first(new, r"CHILD_SA lab\{\d+\} established")
    out.append(
        f"left killed at t={rel(k)} s, start at t={rel(events['restart'])} s (vici up at t={rel(events['started'])} s);"
        f" restarted charon: first IKE_AUTH at t={rel(auth)} s, CHILD_SA established at t={rel(child)} s"
    )
    for a, b, name in (("l", "r", "L->R"), ("r", "l", "R->L")):
        r = J[b]
        hit = [o for o in r["outages"] if o[0] <= k + 0.5 and (o[1] is None or o[1] >= k)]
        if hit and hit[0][1] is not None:
            x, y = hit[0]
            since = f", {round(y - auth, 3)} s after the first IKE_AUTH" if auth else ""
            out.append(f"{name}: outage t={rel(x)}..{rel(y)} s ({round(y - x, 3)} s), flowing again {round(y - k, 3)} s after the kill{since}")
        else:
            out.append(f"{name}: not flowing again by the end of the stream (last packet t={rel(r['last'])} s, stream end t={rel(t0 + J[a]['sent'] / pps)} s)")
    surv = lines(f"{d}/r/charon.log")
    pats = (r"sending DPD request", r"retransmit \d+ of request", r"giving up after", r"restarting CHILD_SA",
            r"initiating IKE_SA", r"IKE_SA lab\[\d+\] established", r"CHILD_SA lab\{\d+\} established",
            r"deleting IKE_SA", r"received DELETE for IKE_SA", r"destroying IKE_SA", r"INITIAL_CONTACT")
    end = t0 + J["r"]["sent"] / pps + 3  # the stream and its linger; the lab's teardown comes after
    seen = [l for l in surv if any(re.search(p, l) for p in pats) and k - 0.5 <= ts(l) <= end]
    if seen:
        out.append("survivor's log after the kill (t = seconds since the kill):")
        out += [f"  t={round(ts(l) - k, 3):8.3f}  {l[13:].strip()}" for l in seen[:30]]
print("\n".join(out))
PY
}

all=(storm collide restart-init restart-dpd restart-dpd-restart)
(($#)) || set -- "${all[@]}"
{
  echo "swan-baseline.sh $* — $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') ($(nproc) cores)"
  echo "strongSwan: $(dpkg-query -W -f '${Version}' charon-systemd 2>/dev/null || echo '?') (Debian package charon-systemd)"
  echo "stream: $PPS packets/s each way, udp_seq.py, port $PORT"
} | tee "$RUN/summary.txt"
for sc in "$@"; do
  case $sc in
    storm) sc_storm ;;
    collide) sc_collide ;;
    restart-init) sc_restart_init ;;
    restart-dpd) restart_dpd restart-dpd ;;
    restart-dpd-restart) restart_dpd restart-dpd-restart restart ;;
    *) die "unknown scenario '$sc' (${all[*]})" ;;
  esac
done
echo "summary: $RUN/summary.txt"
