#!/usr/bin/env bash
# Overload and recovery: SIPp offers more calls than the gateway can take,
# then half as many, and this records what the gateway does meanwhile.
#
#  1. lab data (scripts/gen_lab.py, small) and a cidgate config with
#     `[server] workers = N` and the admin API on 127.0.0.1:<admin-port>;
#  2. optional CPU cap (--cpu-pct): on a 2-core machine SIPp cannot offer
#     more than cidgate handles, so the gateway's process is put in a cgroup
#     (v1 cpu or v2) limited to that share of one CPU; the cap makes the
#     capacity low enough for SIPp to exceed it. Needs root; without it the
#     run is uncapped and may never be overloaded;
#  3. phase "over": --rate for --seconds; phase "after": --low-rate for
#     --seconds (scripts/load.sh each, failures expected in "over");
#  4. every second: VmRSS and VmHWM of the gateway, and the shed and refused
#     counters from /metrics (rss.csv); a summary at the end.
# Bounded in calls and time; every process started here is killed by pid.
#
# usage: scripts/overload.sh --cidgate target/release/cidgate [options]
#   --workers N        [server] workers (2)
#   --rate R           offered rate in phase "over", calls/s      (2000)
#   --low-rate R       rate in phase "after"                      (rate / 2)
#   --seconds S        length of each phase                        (20)
#   --cpu-pct P        cap the gateway at P % of one CPU (0: no cap) (0)
#   --admin-port P     admin API port                             (18090)
#   --out DIR          (/tmp/cidgate-lab/overload-<time>)
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
CIDGATE=""; WORKERS=2; RATE=2000; LOW=""; SECS=20; CPUPCT=0; ADMIN=18090; OUT=""
die() { echo "overload.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cidgate) CIDGATE=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --low-rate) LOW=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    --cpu-pct) CPUPCT=$2; shift 2;;
    --admin-port) ADMIN=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -x "$CIDGATE" ] || die "--cidgate PATH (executable) needed"
[ -n "$LOW" ] || LOW=$(( RATE / 2 ))
[ -n "$OUT" ] || OUT=/tmp/cidgate-lab/overload-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
port_busy() { [ -n "$(ss -Hln "( sport = :$1 )" 2>/dev/null)" ]; }
for p in 5060 5070 5080 "$ADMIN"; do port_busy "$p" && die "port $p already in use"; done

GW_PID=""; SAMPLER=""; CG=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null && wait "$SAMPLER" 2>/dev/null
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GW_PID" 2>/dev/null; wait "$GW_PID" 2>/dev/null
  fi
  [ -n "$CG" ] && rmdir "$CG" 2>/dev/null
  SAMPLER=""; GW_PID=""; CG=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

python3 "$HERE/scripts/gen_lab.py" --seed 1 --queues 2000 --numbers 20000 --calls 20000 --out "$OUT/lab" >/dev/null || exit 1
CFG="$OUT/lab/cidgate.toml"
sed -i -e "s/^\[server\]\$/[server]\nworkers = $WORKERS/" -e "s/^admin  *= .*/admin  = \"127.0.0.1:$ADMIN\"/" "$CFG"
"$CIDGATE" run --config "$CFG" >"$OUT/cidgate.log" 2>&1 &
GW_PID=$!
for _ in $(seq 300); do
  kill -0 "$GW_PID" 2>/dev/null || { tail -5 "$OUT/cidgate.log" >&2; GW_PID=""; die "cidgate exited"; }
  port_busy 5060 && break; sleep 0.1
done
port_busy 5060 || die "cidgate did not open port 5060"

# put every thread of the gateway into a CPU-capped cgroup
if [ "$CPUPCT" -gt 0 ]; then
  quota=$(( CPUPCT * 1000 ))
  if [ -d /sys/fs/cgroup/cpu ] && mkdir -p /sys/fs/cgroup/cpu/cidgate-overload-$$ 2>/dev/null; then
    CG=/sys/fs/cgroup/cpu/cidgate-overload-$$
    echo 100000 > "$CG/cpu.cfs_period_us" && echo "$quota" > "$CG/cpu.cfs_quota_us"
    for t in /proc/"$GW_PID"/task/*; do echo "${t##*/}" > "$CG/tasks"; done
  elif [ -f /sys/fs/cgroup/cgroup.controllers ] && mkdir /sys/fs/cgroup/cidgate-overload-$$ 2>/dev/null; then
    CG=/sys/fs/cgroup/cidgate-overload-$$
    echo "$quota 100000" > "$CG/cpu.max" && echo "$GW_PID" > "$CG/cgroup.procs"
  else
    die "--cpu-pct: cannot create a cgroup (needs root and a cpu controller)"
  fi
  echo "gateway capped at $CPUPCT % of one CPU ($CG)"
fi

metric() {  # sum of a counter's series on /metrics
  curl -s --max-time 1 "http://127.0.0.1:$ADMIN/metrics" | awk -v m="$1" -v f="${2:-}" \
    '$1 ~ "^"m"({|$)" && index($1, f) { s += $2 } END { printf "%d", s }'
}
sample() {
  echo "t,phase,vmrss_kib,vmhwm_kib,shed,refused_503"
  local t0; t0=$(date +%s)
  while kill -0 "$GW_PID" 2>/dev/null; do
    local rss hwm
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null)
    hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null)
    echo "$(( $(date +%s) - t0 )),$(cat "$OUT/phase" 2>/dev/null),$rss,$hwm,$(metric cidgate_worker_shed_total),$(metric cidgate_requests_refused_total 'code="503"')"
    sleep 1
  done
}
echo idle > "$OUT/phase"
sample > "$OUT/rss.csv" &
SAMPLER=$!
sleep 2

phase() {  # NAME RATE
  echo "$1" > "$OUT/phase"
  echo "== $1: $2 calls/s for $SECS s (workers = $WORKERS)"
  "$HERE/scripts/load.sh" --rate "$2" --calls $(( $2 * SECS )) --pid "$GW_PID" --calls-file "$OUT/lab/calls.csv" --max-failed-pct 100 \
    --timeout $(( SECS + 40 )) --outdir "$OUT/$1" >"$OUT/$1.txt" 2>&1
  grep -E 'PBX/UAC|failure reasons|carrier/UAS  |gateway |^RESULT' "$OUT/$1.txt" | sed 's/^ */  /'
}
phase over "$RATE"
phase after "$LOW"
echo settled > "$OUT/phase"
sleep 3

echo "== gateway memory and shedding (every second: $OUT/rss.csv)"
python3 - "$OUT/rss.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["vmrss_kib"]]
def by(phase):
    return [r for r in rows if r["phase"] == phase]
for p in ("idle", "over", "after", "settled"):
    rs = by(p)
    if not rs:
        continue
    rss = [int(r["vmrss_kib"]) for r in rs]
    print("  %-8s %3d s  VmRSS %6.1f .. %6.1f MiB (last %6.1f)  VmHWM %6.1f MiB  shed %s  refused 503 %s"
          % (p, len(rs), min(rss) / 1024, max(rss) / 1024, rss[-1] / 1024,
             int(rs[-1]["vmhwm_kib"]) / 1024, rs[-1]["shed"], rs[-1]["refused_503"]))
PY
echo "(details: $OUT)"
