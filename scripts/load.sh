#!/usr/bin/env bash
# One bounded SIPp load run through a gateway that is already running
# (cidgate or the Kamailio reference): starts the carrier UAS in the
# background, runs the PBX UAC in the foreground, prints the result.
#
# usage: scripts/load.sh --rate R --calls N [options]
#   --transport udp|tcp     (udp)
#   --target HOST:PORT      gateway address the PBX sends to (127.0.0.1:5060)
#   --pid PID               gateway pid: CPU time of PID and all its descendants
#                           (utime+stime from /proc) before/after -> us per call
#   --calls-file FILE       SIPp injection file (sipp-scenarios/data/calls.csv)
#   --domain D              gateway domain expected in From/PAI/Warning (gw.example.net)
#   --uas-port P            carrier UAS port on 127.0.0.1 (5080)
#   --uac-port P            PBX UAC port on 127.0.0.1 (5070)
#   --pause-ms MS           talk time between ACK and BYE (100)
#   --bye-display check|ignore   also check the display name in the BYE's From (check)
#   --max-failed N          exit 1 when failed calls (PBX or carrier side) > N (0)
#   --max-failed-pct P      ... or > P percent of the calls (overrides --max-failed)
#   --timeout S             hard limit of the run in seconds (calls/rate + 30)
#   --outdir DIR            where SIPp logs and stats go (/tmp/cidgate-lab/load-<time>)
#   --no-uas                don't start a UAS (one is already listening)
#   --no-verify             UAS computes its checks but fails nothing (no-proxy baseline:
#                           --target 127.0.0.1:<uas-port> with accept-only calls)
#   --trace-msg             SIPp -trace_msg on both sides (every message to a file; slow)
# Prints a human summary and one machine line starting with "RESULT".
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
SCEN="$HERE/sipp-scenarios"

RATE=""; CALLS=""; TRANSPORT=udp; TARGET=127.0.0.1:5060; GWPID=""; CALLSFILE="$SCEN/data/calls.csv"
DOMAIN=gw.example.net; UASPORT=5080; UACPORT=5070; PAUSE=100; BYEDISP=check; MAXFAIL=0; MAXPCT=""
TIMEOUT=""; OUTDIR=""; START_UAS=1; TRACE=(); VERIFY=on
die() { echo "load.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2;;
    --calls) CALLS=$2; shift 2;;
    --transport) TRANSPORT=$2; shift 2;;
    --target) TARGET=$2; shift 2;;
    --pid) GWPID=$2; shift 2;;
    --calls-file) CALLSFILE=$2; shift 2;;
    --domain) DOMAIN=$2; shift 2;;
    --uas-port) UASPORT=$2; shift 2;;
    --uac-port) UACPORT=$2; shift 2;;
    --pause-ms) PAUSE=$2; shift 2;;
    --bye-display) BYEDISP=$2; shift 2;;
    --max-failed) MAXFAIL=$2; shift 2;;
    --max-failed-pct) MAXPCT=$2; shift 2;;
    --timeout) TIMEOUT=$2; shift 2;;
    --outdir) OUTDIR=$2; shift 2;;
    --no-uas) START_UAS=0; shift;;
    --no-verify) VERIFY=off; shift;;
    --trace-msg) TRACE=(-trace_msg); shift;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -n "$RATE" ] && [ -n "$CALLS" ] || die "--rate and --calls are required"
[[ "$RATE" =~ ^[0-9]+$ && "$CALLS" =~ ^[0-9]+$ && "$RATE" -gt 0 && "$CALLS" -gt 0 ]] || die "--rate/--calls must be positive integers"
case "$TRANSPORT" in udp) T=u1;; tcp) T=t1;; *) die "--transport udp|tcp";; esac
case "${TARGET%%:*}" in 127.*) ;; *) die "loopback targets only (127.0.0.0/8)";; esac
[ -f "$CALLSFILE" ] || die "no calls file $CALLSFILE"
[ -z "$GWPID" ] || [ -d "/proc/$GWPID" ] || die "no process $GWPID"
[ -n "$TIMEOUT" ] || TIMEOUT=$(( CALLS / RATE + 30 ))
[ -n "$OUTDIR" ] || OUTDIR=/tmp/cidgate-lab/load-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$OUTDIR"
command -v sipp >/dev/null || die "sipp not installed (apt-get install sip-tester)"

UAS_PID=""; UAC_PID=""
cleanup() {
  # only the SIPp processes this script started, by pid
  [ -n "$UAC_PID" ] && kill "$UAC_PID" 2>/dev/null
  [ -n "$UAS_PID" ] && kill "$UAS_PID" 2>/dev/null
  [ -n "$UAS_PID" ] && wait "$UAS_PID" 2>/dev/null
  UAS_PID=""; UAC_PID=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

# CPU ticks of a pid and all its descendants (Kamailio forks workers; cidgate is one process)
tree_ticks() {
  python3 - "$1" <<'PY'
import os, sys
root = int(sys.argv[1]); kids = {}; ticks = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    try:
        s = open("/proc/%s/stat" % p).read()
    except OSError:
        continue
    f = s[s.rindex(")") + 2:].split()
    kids.setdefault(int(f[1]), []).append(int(p))
    ticks[int(p)] = int(f[11]) + int(f[12])
todo, total, n = [root], 0, 0
while todo:
    p = todo.pop(); total += ticks.get(p, 0); n += 1; todo += kids.get(p, [])
print(total, n)
PY
}
proc_ticks() { [ -r "/proc/$1/stat" ] && awk '{sub(/.*\) /,""); print $12+$13}' "/proc/$1/stat" 2>/dev/null; }

COMMON=(-i 127.0.0.1 -t "$T" -key domain "$DOMAIN" -nostdin -trace_stat -fd 1 -trace_logs -trace_err ${TRACE[@]+"${TRACE[@]}"})
if [ "$START_UAS" = 1 ]; then
  sipp -sf "$SCEN/uas.xml" -p "$UASPORT" "${COMMON[@]}" -key bye_display "$BYEDISP" -key verify "$VERIFY" \
       -stf "$OUTDIR/uas_stat.csv" -message_file "$OUTDIR/uas_msg.log" -log_file "$OUTDIR/uas.log" -error_file "$OUTDIR/uas_err.log" \
       -timeout "$((TIMEOUT + 15))s" -buff_size 4194304 >"$OUTDIR/uas.out" 2>&1 &
  UAS_PID=$!
  sleep 0.5
  kill -0 "$UAS_PID" 2>/dev/null || { cat "$OUTDIR/uas.out" >&2; UAS_PID=""; die "UAS did not start (port $UASPORT busy?)"; }
fi

CPU0=""; [ -n "$GWPID" ] && read -r CPU0 NPROC < <(tree_ticks "$GWPID")
T0=$(date +%s.%N)
sipp -sf "$SCEN/uac.xml" -inf "$CALLSFILE" -p "$UACPORT" "${COMMON[@]}" "$TARGET" \
     -r "$RATE" -m "$CALLS" -l $(( RATE * 40 + 100 )) -d "$PAUSE" -recv_timeout 20000 \
     -timeout "${TIMEOUT}s" -timeout_error -buff_size 4194304 \
     -stf "$OUTDIR/uac_stat.csv" -message_file "$OUTDIR/uac_msg.log" -log_file "$OUTDIR/uac.log" -error_file "$OUTDIR/uac_err.log" \
     >"$OUTDIR/uac.out" 2>&1 &
UAC_PID=$!
UAC_TICKS=0; UAS_TICKS=0
while kill -0 "$UAC_PID" 2>/dev/null; do
  t=$(proc_ticks "$UAC_PID"); [ -n "$t" ] && UAC_TICKS=$t
  [ -n "$UAS_PID" ] && { t=$(proc_ticks "$UAS_PID"); [ -n "$t" ] && UAS_TICKS=$t; }
  sleep 0.2
done
wait "$UAC_PID"; UAC_RC=$?; UAC_PID=""
T1=$(date +%s.%N)
sleep 0.5   # let the last BYE/200 and retransmission timers settle on the gateway
CPU1=""; [ -n "$GWPID" ] && read -r CPU1 NPROC < <(tree_ticks "$GWPID")
[ -n "$UAS_PID" ] && { t=$(proc_ticks "$UAS_PID"); [ -n "$t" ] && UAS_TICKS=$t; }
cleanup

python3 - "$OUTDIR" "$TRANSPORT" "$TARGET" "$RATE" "$CALLS" "$T0" "$T1" "${CPU0:-}" "${CPU1:-}" \
          "${NPROC:-0}" "$UAC_TICKS" "$UAS_TICKS" "$UAC_RC" "$MAXFAIL" "${MAXPCT:-}" "${GWPID:-}" <<'PY'
import csv, os, sys
(outdir, transport, target, rate, calls, t0, t1, cpu0, cpu1, nproc, uact, uast, rc,
 maxfail, maxpct, gwpid) = sys.argv[1:]
hz = os.sysconf("SC_CLK_TCK")

def last(path):
    try:
        rows = list(csv.reader(open(path), delimiter=";"))
    except OSError:
        return {}
    return dict(zip(rows[0], rows[-1])) if len(rows) > 1 else {}

def num(d, k):
    try:
        return int(float(d.get(k, "0") or 0))
    except ValueError:
        return 0

uac, uas = last(os.path.join(outdir, "uac_stat.csv")), last(os.path.join(outdir, "uas_stat.csv"))
ok, failed = num(uac, "SuccessfulCall(C)"), num(uac, "FailedCall(C)")
created = num(uac, "OutgoingCall(C)")
retr = num(uac, "Retransmissions(C)")
uas_ok, uas_failed, uas_retr = num(uas, "SuccessfulCall(C)"), num(uas, "FailedCall(C)"), num(uas, "Retransmissions(C)")
# the UAS counts a "call" failed when the UAC's TCP connection closes as the UAC
# exits (no-proxy TCP baseline); that is not a failed call
uas_failed -= num(uas, "FailedTcpClosed(C)")

def reasons(d):
    return ", ".join("%s %s" % (k[6:-3], v) for k, v in d.items()
                     if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v not in ("", "0"))
elapsed = float(t1) - float(t0)
rtd = next((v for k, v in uac.items() if k.startswith("ResponseTimesetup") and k.endswith("(C)")), "")
done = ok + failed
print("load: %s -> %s  rate %s cps  calls %s  (stats and logs in %s)" % (transport, target, rate, calls, outdir))
print("  PBX/UAC      successful %d  failed %d  not finished %d  retransmissions %d  elapsed %.1f s  (%.0f calls/s)"
      % (ok, failed, int(calls) - done, retr, elapsed, done / elapsed if elapsed else 0))
if rtd:
    try:
        h, m, sec, us = (int(x) for x in rtd.split(":"))
        rtd = "%.2f ms" % ((h * 3600 + m * 60 + sec) * 1e3 + us / 1e3)
    except ValueError:
        pass
    print("  setup time   INVITE -> final response, average %s" % rtd)
if failed:
    print("  PBX/UAC failure reasons: %s" % reasons(uac))
if uas:
    print("  carrier/UAS  successful %d  failed %d  retransmissions %d" % (uas_ok, uas_failed, uas_retr))
    if reasons(uas):
        print("  carrier/UAS failure reasons: %s" % reasons(uas))
print("  SIPp CPU     UAC %.2f s, UAS %.2f s (%.0f%% / %.0f%% of one core)"
      % (int(uact) / hz, int(uast) / hz, 100 * int(uact) / hz / elapsed, 100 * int(uast) / hz / elapsed))
cpu_us = ""
if cpu0 and cpu1:
    secs = (int(cpu1) - int(cpu0)) / hz
    cpu_us = "%.0f" % (secs * 1e6 / done) if done else "nan"
    print("  gateway      pid %s (%s processes): CPU %.2f s = %s us per completed call, %.0f%% of one core"
          % (gwpid, nproc, secs, cpu_us, 100 * secs / elapsed))
bad = max(failed + (int(calls) - done if int(rc) != 0 else 0), uas_failed)
limit = float(maxpct) * int(calls) / 100 if maxpct else int(maxfail)
verdict = "PASS" if bad <= limit else "FAIL"
print("RESULT transport=%s rate=%s calls=%s ok=%d failed=%d uas_failed=%d retrans=%d uas_retrans=%d "
      "elapsed=%.2f cpu_us_per_call=%s verdict=%s"
      % (transport, rate, calls, ok, failed, uas_failed, retr, uas_retr, elapsed, cpu_us or "-", verdict))
if verdict == "FAIL":
    for f in ("uac.log", "uas.log"):
        p = os.path.join(outdir, f)
        if os.path.exists(p):
            lines = [l for l in open(p, errors="replace") if "FAIL" in l or "MISMATCH" in l][:5]
            for l in lines:
                print("  %s: %s" % (f, l.rstrip()[:300]))
sys.exit(0 if verdict == "PASS" else 1)
PY
