#!/usr/bin/env bash
# Soak: cidgate under a steady SIPp load for a long, bounded time, with its
# memory sampled every second.
#
#  1. scripts/gen_lab.py makes the lab data (default 10 000 queues, 100 000
#     claimed numbers, 100 000 calls cycling through every outcome).
#  2. "<cidgate> run --config <generated toml>" on 127.0.0.1:5060 (UDP+TCP).
#  3. a sampler writes VmRSS and VmHWM of the gateway from /proc/PID/status
#     once a second into rss.csv (seconds since the load started, kB, kB).
#  4. scripts/load.sh runs SIPp at --rate for --seconds (calls = rate x
#     seconds, hard time limit from load.sh), reporting failed calls and the
#     gateway's CPU per call.
#  5. a summary: failed calls, peak RSS, RSS when the gateway was ready, at
#     60 s and at the end of the load, the largest RSS after 60 s, CPU per call.
# Everything runs on loopback; every process started here is killed by pid.
#
# usage: scripts/soak.sh --cidgate target/release/cidgate --rate R [options]
#   --seconds S          length of the load                         (300)
#   --transport udp|tcp                                             (udp)
#   --queues Q --numbers N --calls C --seed S   lab size           (10000 100000 100000 1)
#   --admin-port P       cidgate's admin port on 127.0.0.1          (8080)
#   --tail S             keep sampling S seconds after the load     (0)
#   --max-rss-mb M       verdict FAIL when peak RSS exceeds M MiB   (200)
#   --max-growth-pct P   ... or when the RSS after 60 s grows more than P %
#                        above the RSS at 60 s                      (10)
#   --out DIR            everything goes here       (/tmp/cidgate-lab/soak-<time>)
# Prints a human summary and one machine line starting with "SOAK".
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
CIDGATE=""; RATE=""; SECONDS_=300; TRANSPORT=udp; QUEUES=10000; NUMBERS=100000; CALLS=100000; SEED=1
ADMIN=8080; TAIL=0; MAXRSS=200; MAXGROWTH=10; OUT=""
die() { echo "soak.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cidgate) CIDGATE=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --seconds) SECONDS_=$2; shift 2;;
    --transport) TRANSPORT=$2; shift 2;;
    --queues) QUEUES=$2; shift 2;;
    --numbers) NUMBERS=$2; shift 2;;
    --calls) CALLS=$2; shift 2;;
    --seed) SEED=$2; shift 2;;
    --admin-port) ADMIN=$2; shift 2;;
    --tail) TAIL=$2; shift 2;;
    --max-rss-mb) MAXRSS=$2; shift 2;;
    --max-growth-pct) MAXGROWTH=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -x "$CIDGATE" ] || die "--cidgate PATH (executable) is required"
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -gt 0 ]] || die "--rate R (calls per second) is required"
[[ "$SECONDS_" =~ ^[0-9]+$ && "$SECONDS_" -gt 0 && "$SECONDS_" -le 3600 ]] || die "--seconds must be 1..3600"
[[ "$TAIL" =~ ^[0-9]+$ && "$TAIL" -le 600 ]] || die "--tail must be 0..600"
case "$TRANSPORT" in udp|tcp) ;; *) die "--transport udp|tcp";; esac
command -v sipp >/dev/null || die "sipp not installed (apt-get install sip-tester)"
[ -n "$OUT" ] || OUT=/tmp/cidgate-lab/soak-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

GW_PID=""; SAMPLER_PID=""; LOAD_PID=""
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
  fi
  LOAD_PID=""; SAMPLER_PID=""; GW_PID=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

port_busy() { [ -n "$(ss -Hln "( sport = :$1 )" 2>/dev/null)" ]; }
for p in 5060 5070 5080 "$ADMIN"; do port_busy "$p" && die "port $p already in use on this machine"; done

echo "== lab data"
python3 "$HERE/scripts/gen_lab.py" --seed "$SEED" --queues "$QUEUES" --numbers "$NUMBERS" --calls "$CALLS" --out "$OUT/lab" || exit 1
CFG="$OUT/lab/cidgate.toml"
sed -i "s/^admin  = .*/admin  = \"127.0.0.1:$ADMIN\"/" "$CFG"
[ "$TRANSPORT" = tcp ] && sed -i 's/transport=udp/transport=tcp/' "$CFG"

echo "== cidgate ($CIDGATE)"
"$CIDGATE" run --config "$CFG" >"$OUT/cidgate.log" 2>&1 &
GW_PID=$!
T_START=$(date +%s.%N)
ready=0
for _ in $(seq 600); do   # up to 60 s: the inventory is loaded and compiled before the port opens
  kill -0 "$GW_PID" 2>/dev/null || { tail -5 "$OUT/cidgate.log" >&2; GW_PID=""; die "cidgate exited"; }
  port_busy 5060 && { ready=1; break; }
  sleep 0.1
done
[ "$ready" = 1 ] || die "cidgate did not open port 5060 in 60 s"
sleep 1
T_READY=$(date +%s.%N)
rss_line() { awk '/^VmRSS:/{r=$2} /^VmHWM:/{h=$2} END{print r","h}' "/proc/$1/status" 2>/dev/null; }
READY_MEM=$(rss_line "$GW_PID")
echo "  ready after $(python3 -c "print('%.1f' % ($T_READY - $T_START))") s, VmRSS,VmHWM = $READY_MEM kB"

# The sampler: one line a second, time relative to the start of the load,
# bounded (load + tail + 2 minutes).
python3 - "$GW_PID" "$OUT/rss.csv" $((SECONDS_ + TAIL + 120)) <<'PY' &
import sys, time
pid, path, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.monotonic()
with open(path, "w", buffering=1) as out:
    out.write("t_s,vmrss_kb,vmhwm_kb\n")
    for n in range(limit + 1):
        try:
            status = open("/proc/%s/status" % pid).read()
        except OSError:
            break
        kb = {l.split(":")[0]: l.split()[1] for l in status.splitlines() if l.startswith(("VmRSS:", "VmHWM:"))}
        out.write("%.1f,%s,%s\n" % (time.monotonic() - t0, kb.get("VmRSS", "0"), kb.get("VmHWM", "0")))
        time.sleep(max(0.0, n + 1 - (time.monotonic() - t0)))
PY
SAMPLER_PID=$!
T_LOAD=$(date +%s.%N)

echo "== load: $RATE calls/s for $SECONDS_ s ($((RATE * SECONDS_)) calls, $TRANSPORT)"
"$HERE/scripts/load.sh" --rate "$RATE" --calls $((RATE * SECONDS_)) --transport "$TRANSPORT" \
  --target 127.0.0.1:5060 --pid "$GW_PID" --calls-file "$OUT/lab/calls.csv" --max-failed 0 \
  --outdir "$OUT/load" > "$OUT/load.txt" 2>&1 &
LOAD_PID=$!; wait "$LOAD_PID"; LOAD_RC=$?; LOAD_PID=""
T_END=$(python3 -c "print($(date +%s.%N) - $T_LOAD)")
cat "$OUT/load.txt"
[ "$TAIL" -gt 0 ] && { echo "  sampling $TAIL s more"; sleep "$TAIL"; }
kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""
FINAL_MEM=$(rss_line "$GW_PID")
kill -0 "$GW_PID" 2>/dev/null || echo "  cidgate is no longer running!"
cleanup

echo "== summary"
python3 - "$OUT" "$RATE" "$SECONDS_" "$READY_MEM" "$FINAL_MEM" "$T_END" "$MAXRSS" "$MAXGROWTH" "$LOAD_RC" <<'PY'
import csv, re, sys
out, rate, secs, ready, final, t_end, maxrss, maxgrowth, load_rc = sys.argv[1:]
t_end, maxrss, maxgrowth = float(t_end), float(maxrss), float(maxgrowth)
rows = [(float(r["t_s"]), int(r["vmrss_kb"]), int(r["vmhwm_kb"])) for r in csv.DictReader(open(out + "/rss.csv"))]
mib = lambda kb: kb / 1024.0
def at(t):
    return min(rows, key=lambda r: abs(r[0] - t))
result = open(out + "/load.txt").read()
m = re.search(r"^RESULT .*$", result, re.M)
kv = dict(x.split("=", 1) for x in (m.group(0).split()[1:] if m else []) if "=" in x)
failed = int(kv.get("failed", "-1")) if m else -1
uas_failed = int(kv.get("uas_failed", "0")) if m else 0
ok = int(kv.get("ok", "0")) if m else 0
load_rows = [r for r in rows if r[0] <= t_end]
peak = max([r[2] for r in rows] + [int(final.split(",")[1]) if final else 0])
r60 = at(60.0)[1] if load_rows and load_rows[-1][0] >= 60 else None
rend = load_rows[-1][1] if load_rows else None
after60 = max((r[1] for r in load_rows if r[0] >= 60), default=None)
growth = (after60 - r60) * 100.0 / r60 if r60 and after60 else None
print("  calls          %d of %d completed, failed %d (PBX side), %d (carrier side)" % (ok, int(rate) * int(secs), failed, uas_failed))
print("  RSS ready      %.1f MiB (inventory loaded, before any call)" % mib(int(ready.split(",")[0])))
if r60:
    print("  RSS at 60 s    %.1f MiB" % mib(r60))
if rend:
    print("  RSS at end     %.1f MiB (t = %.0f s)" % (mib(rend), load_rows[-1][0]))
if after60:
    print("  RSS max > 60 s %.1f MiB (%+.1f %% over the RSS at 60 s)" % (mib(after60), growth))
print("  peak (VmHWM)   %.1f MiB" % mib(peak))
if rows and rows[-1][0] > t_end:
    print("  RSS after tail %.1f MiB (t = %.0f s)" % (mib(rows[-1][1]), rows[-1][0]))
print("  CPU per call   %s us" % kv.get("cpu_us_per_call", "-"))
verdict = "PASS"
if failed != 0 or uas_failed != 0 or int(load_rc) != 0:
    verdict = "FAIL"
if mib(peak) > maxrss or (growth is not None and growth > maxgrowth):
    verdict = "FAIL"
print("SOAK rate=%s seconds=%s calls=%d ok=%d failed=%d uas_failed=%d rss_ready_mib=%.1f rss_60s_mib=%s "
      "rss_end_mib=%s rss_max_after_60s_mib=%s peak_mib=%.1f cpu_us_per_call=%s verdict=%s"
      % (rate, secs, int(rate) * int(secs), ok, failed, uas_failed, mib(int(ready.split(",")[0])),
         "%.1f" % mib(r60) if r60 else "-", "%.1f" % mib(rend) if rend else "-",
         "%.1f" % mib(after60) if after60 else "-", mib(peak), kv.get("cpu_us_per_call", "-"), verdict))
sys.exit(0 if verdict == "PASS" else 1)
PY
rc=$?
echo "(details: $OUT; memory samples: $OUT/rss.csv)"
exit $rc
