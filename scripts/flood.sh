#!/usr/bin/env bash
# Flood figure: trusted calls through cidgate while one untrusted loopback
# address floods it.
#
#  1. scripts/gen_lab.py makes the lab data; cidgate runs with the generated
#     configuration (the [limits] defaults: no [limits] section) on
#     127.0.0.1:5060, admin on 127.0.0.1:<--admin-port>.
#  2. examples/flood.rs (built with cargo build --release --example flood)
#     floods from --from (127.0.0.9: neither the PBX nor a carrier) for
#     --seconds + 4 s: new INVITEs, OPTIONS, REGISTER, MESSAGE, CANCEL, forged
#     in-dialog BYEs, forged responses with a gateway-like Via, truncated
#     requests, garbage; as fast as one socket sends unless --flood-rate.
#     With --public-port P the gateway gets a second UDP listener,
#     127.0.0.1:P, after the first (the one the PBX and the carriers use, as
#     README.md describes), and the flood goes to it instead of to 5060.
#  3. two seconds into the flood, scripts/load.sh places trusted calls from
#     the PBX (SIPp, 127.0.0.1) at --rate for --seconds, bounded.
#  4. a summary: flood messages/s reached, trusted calls failed, what the
#     gateway's drop counters (/metrics) and the kernel's UDP receive errors
#     (/proc/net/snmp) moved by, gateway CPU, and the kernel's drops per
#     socket (/proc/net/udp, sampled every second): the gateway's on 5060
#     and the public port, SIPp's PBX (5070) and carrier (5080).
# Everything runs on loopback; every process started here is killed by pid.
#
# usage: scripts/flood.sh --cidgate target/release/cidgate [options]
#   --flood PATH         flood binary          (target/release/examples/flood)
#   --rate R             trusted calls per second                  (200)
#   --seconds S          trusted load length                        (30)
#   --flood-rate N       flood messages per second; 0 = unpaced     (0)
#   --from ADDR          flood source address                       (127.0.0.9)
#   --public-port P      a second UDP listener on 127.0.0.1:P takes the flood (none)
#   --udp-receive-buffer B  [limits] udp_receive_buffer for the gateway (its default)
#   --one-socket         [limits] udp_trusted_socket = false: each listener one socket
#   --queues Q --numbers N --calls C   lab size                    (2000 20000 20000)
#   --admin-port P       cidgate's admin port on 127.0.0.1          (8080)
#   --out DIR            everything goes here      (/tmp/cidgate-lab/flood-<time>)
# Prints a human summary and one machine line starting with "FLOODRESULT".
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
CIDGATE=""; FLOOD=""; RATE=200; SECS=30; FRATE=0; FROM=127.0.0.9; QUEUES=2000; NUMBERS=20000; CALLS=20000
ADMIN=8080; OUT=""; PUBLIC=""; RCVBUF=""; ONE=""
die() { echo "flood.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cidgate) CIDGATE=$2; shift 2;;
    --flood) FLOOD=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    --flood-rate) FRATE=$2; shift 2;;
    --from) FROM=$2; shift 2;;
    --public-port) PUBLIC=$2; shift 2;;
    --udp-receive-buffer) RCVBUF=$2; shift 2;;
    --one-socket) ONE=1; shift;;
    --queues) QUEUES=$2; shift 2;;
    --numbers) NUMBERS=$2; shift 2;;
    --calls) CALLS=$2; shift 2;;
    --admin-port) ADMIN=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -x "$CIDGATE" ] || die "--cidgate PATH (executable) is required"
[ -n "$FLOOD" ] || FLOOD="$HERE/target/release/examples/flood"
[ -x "$FLOOD" ] || die "no flood binary $FLOOD (cargo build --release --example flood)"
[[ "$RATE" =~ ^[0-9]+$ && "$RATE" -gt 0 ]] || die "--rate must be a positive integer"
[[ "$SECS" =~ ^[0-9]+$ && "$SECS" -gt 0 && "$SECS" -le 300 ]] || die "--seconds must be 1..300"
[ -z "$PUBLIC" ] || [[ "$PUBLIC" =~ ^[0-9]+$ && "$PUBLIC" -gt 0 && "$PUBLIC" -lt 65536 && "$PUBLIC" != 5060 ]] \
  || die "--public-port must be a port other than 5060"
case "$FROM" in 127.*) [ "$FROM" != 127.0.0.1 ] || die "--from must not be the PBX address";; *) die "loopback only";; esac
command -v sipp >/dev/null || die "sipp not installed (apt-get install sip-tester)"
[ -n "$OUT" ] || OUT=/tmp/cidgate-lab/flood-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)

GW_PID=""; FLOOD_PID=""; LOAD_PID=""; SAMPLER_PID=""
cleanup() {
  [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  [ -n "$FLOOD_PID" ] && kill "$FLOOD_PID" 2>/dev/null && wait "$FLOOD_PID" 2>/dev/null
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
  fi
  LOAD_PID=""; FLOOD_PID=""; GW_PID=""; SAMPLER_PID=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

port_busy() { [ -n "$(ss -Hln "( sport = :$1 )" 2>/dev/null)" ]; }
for p in 5060 5070 5080 "$ADMIN" $PUBLIC; do port_busy "$p" && die "port $p already in use on this machine"; done

echo "== lab data"
python3 "$HERE/scripts/gen_lab.py" --queues "$QUEUES" --numbers "$NUMBERS" --calls "$CALLS" --out "$OUT/lab" || exit 1
CFG="$OUT/lab/cidgate.toml"
sed -i "s/^admin  = .*/admin  = \"127.0.0.1:$ADMIN\"/" "$CFG"
grep -q '^\[limits\]' "$CFG" && die "the generated configuration sets [limits]; this figure is for the defaults"
if [ -n "$RCVBUF$ONE" ]; then
  printf '\n[limits]\n' >> "$CFG"
  [ -z "$RCVBUF" ] || printf 'udp_receive_buffer = %s\n' "$RCVBUF" >> "$CFG"
  [ -z "$ONE" ] || printf 'udp_trusted_socket = false\n' >> "$CFG"
fi
TARGET=127.0.0.1:5060
if [ -n "$PUBLIC" ]; then
  sed -i "s|^listen = \[\(.*\)\]|listen = [\1, \"udp://127.0.0.1:$PUBLIC\"]|" "$CFG"
  grep -q "udp://127.0.0.1:$PUBLIC" "$CFG" || die "could not add the public listener to $CFG"
  TARGET=127.0.0.1:$PUBLIC
fi
grep '^listen' "$CFG"

echo "== cidgate ($CIDGATE)"
"$CIDGATE" run --config "$CFG" >"$OUT/cidgate.log" 2>&1 &
GW_PID=$!
for _ in $(seq 600); do
  kill -0 "$GW_PID" 2>/dev/null || { tail -5 "$OUT/cidgate.log" >&2; GW_PID=""; die "cidgate exited"; }
  port_busy 5060 && port_busy "$ADMIN" && break
  sleep 0.1
done
port_busy 5060 || die "cidgate did not open port 5060 in 60 s"
sleep 1
grep "UDP receive buffer" "$OUT/cidgate.log"

metrics() { curl -s --max-time 5 "http://127.0.0.1:$ADMIN/metrics"; }
udp_errors() { awk '/^Udp:/{n++; if (n==2) print "InErrors=" $4, "RcvbufErrors=" $6}' /proc/net/snmp; }
metrics > "$OUT/metrics-before.txt"
udp_errors > "$OUT/udp-before.txt"
# Every UDP socket's drop counter, once a second: SIPp's sockets are gone by
# the end, so the summary keeps the highest value seen for each socket.
( while :; do cat /proc/net/udp; sleep 1; done ) > "$OUT/udp-sockets.txt" 2>/dev/null &
SAMPLER_PID=$!

echo "== flood from $FROM to $TARGET for $((SECS + 4)) s (rate ${FRATE:-0}, 0 = unpaced); trusted calls to 127.0.0.1:5060 at $RATE cps for $SECS s"
"$FLOOD" --target "$TARGET" --from "$FROM" --seconds $((SECS + 4)) --rate "$FRATE" > "$OUT/flood.txt" 2>&1 &
FLOOD_PID=$!
sleep 2
"$HERE/scripts/load.sh" --rate "$RATE" --calls $((RATE * SECS)) --target 127.0.0.1:5060 --pid "$GW_PID" \
  --calls-file "$OUT/lab/calls.csv" --max-failed 0 --outdir "$OUT/load" > "$OUT/load.txt" 2>&1 &
LOAD_PID=$!; wait "$LOAD_PID"; LOAD_RC=$?; LOAD_PID=""
wait "$FLOOD_PID"; FLOOD_PID=""
sleep 1
metrics > "$OUT/metrics-after.txt"
udp_errors > "$OUT/udp-after.txt"
cat /proc/net/udp >> "$OUT/udp-sockets.txt"
kill -0 "$GW_PID" 2>/dev/null || echo "  cidgate is no longer running!"
cleanup

cat "$OUT/load.txt" "$OUT/flood.txt"
echo "== summary"
python3 - "$OUT" "$LOAD_RC" "$TARGET" <<'PY'
import re, sys
out, load_rc, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def socket_drops(path, ports):
    """Kernel drops per socket (inode) on the local ports of interest: the
    highest count seen for each."""
    best = {}
    for line in open(path, errors="replace"):
        f = line.split()
        if len(f) < 13 or ":" not in f[1] or f[0] == "sl":
            continue
        port = int(f[1].split(":")[1], 16)
        if port in ports:
            key = (port, f[9])
            best[key] = max(best.get(key, 0), int(f[-1]))
    return best
def gateway_sockets(path):
    """inode -> whose datagrams the gateway says that socket takes."""
    roles = {}
    for line in open(path, errors="replace"):
        m = re.search(r'UDP receive buffer .*sources=("[^"]*"|\S+).*socket=socket:\[(\d+)\]', line)
        if m:
            roles[m.group(2)] = m.group(1).strip('"')
    return roles
def kv(line):
    return dict(x.split("=", 1) for x in line.split()[1:] if "=" in x)
def first(path, prefix):
    for line in open(path, errors="replace"):
        if line.startswith(prefix):
            return kv(line)
    return {}
def counters(path):
    got = {}
    for line in open(path, errors="replace"):
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        try:
            got[name] = float(value)
        except ValueError:
            pass
    return got
load, flood = first(out + "/load.txt", "RESULT"), first(out + "/flood.txt", "FLOOD")
before, after = counters(out + "/metrics-before.txt"), counters(out + "/metrics-after.txt")
moved = {k: after[k] - before.get(k, 0.0) for k in after
         if re.search(r"dropped|refused|shed|reject", k) and after[k] - before.get(k, 0.0)}
udp = lambda p: {k: int(v) for k, v in (x.split("=") for x in open(p).read().split())}
ub, ua = udp(out + "/udp-before.txt"), udp(out + "/udp-after.txt")
print("  flood          %s messages in %s s = %s messages/s from %s to %s, %s answers (%s 4xx), %s send errors"
      % (flood.get("sent"), flood.get("seconds"), flood.get("rate"), flood.get("from"), target,
         flood.get("answers"), flood.get("answers_4xx"), flood.get("send_errors")))
print("  trusted calls  %s ok, %s failed (PBX side), %s failed (carrier side), %s retransmissions"
      % (load.get("ok"), load.get("failed"), load.get("uas_failed"), load.get("retrans")))
for line in open(out + "/load.txt", errors="replace"):
    if line.strip().startswith("gateway"):
        print("  gateway CPU    " + line.split("):", 1)[-1].strip() + " (flood included)")
for k in sorted(moved):
    print("  counter        %s +%.0f" % (k, moved[k]))
print("  kernel UDP     InErrors +%d, RcvbufErrors +%d (whole machine)"
      % (ua["InErrors"] - ub["InErrors"], ua["RcvbufErrors"] - ub["RcvbufErrors"]))
flood_port = int(target.rsplit(":", 1)[1])
names = {5060: "gateway 5060", flood_port: "gateway %d (flooded)" % flood_port,
         5070: "SIPp PBX 5070", 5080: "SIPp carrier 5080"}
if flood_port == 5060:
    names[5060] = "gateway 5060 (flooded)"
per_socket = socket_drops(out + "/udp-sockets.txt", set(names))
roles = gateway_sockets(out + "/cidgate.log")
label = lambda p, ino: names[p] + (" [%s]" % roles[ino] if ino in roles else "")
drops = {label(p, ino): v for (p, ino), v in sorted(per_socket.items())}
print("  socket drops   " + ", ".join("%s: %d" % kv for kv in drops.items()))
failed = int(load.get("failed", -1)) if load else -1
uas_failed = int(load.get("uas_failed", 0)) if load else 0
dropped = sum(v for k, v in moved.items() if "dropped" in k)
print("FLOODRESULT target=%s flood_rate=%s flood_sent=%s trusted_ok=%s trusted_failed=%d uas_failed=%d dropped=%.0f "
      "kernel_rcvbuf_errors=%d socket_drops=%s cpu_us_per_call=%s verdict=%s"
      % (target, flood.get("rate"), flood.get("sent"), load.get("ok"), failed, uas_failed, dropped,
         ua["RcvbufErrors"] - ub["RcvbufErrors"],
         ",".join("%s:%d" % (k.replace(" ", "_"), v) for k, v in drops.items()),
         load.get("cpu_us_per_call"),
         "PASS" if failed == 0 and uas_failed == 0 and load_rc == 0 else "FAIL"))
sys.exit(0 if failed == 0 and uas_failed == 0 and load_rc == 0 else 1)
PY
rc=$?
echo "(details: $OUT)"
exit $rc
