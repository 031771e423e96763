#!/usr/bin/env bash
# cidgate vs Kamailio over TLS: gateway CPU per call, same SIPp load, same lab
# data, same TLS peers. SIPp in Debian has no TLS, so the TLS legs end at
# Kamailio "edges" (kamailio/kamailio-tls-edge.cfg: a record-routing stateful
# proxy with the tls module, no caller-ID work) shared by both gateways:
#
#  legs=carrier  (the carrier leg over TLS, the PBX leg over UDP)
#    SIPp UAC --UDP--> gateway --TLS--> carrier edge --UDP--> SIPp UAS
#  legs=both     (both gateway legs over TLS)
#    SIPp UAC --UDP--> PBX edge --TLS--> gateway --TLS--> carrier edge --UDP--> SIPp UAS
#
#  gateways:  cidgate   "<cidgate> run" on udp/tcp 127.0.0.1:5060, tls :5061
#                       (lab config + [tls] cert/key/ca, verify_carrier = true,
#                       carrier sip:127.0.0.1:5065;transport=tls, admin off)
#             kamailio  kamailio/kamailio-tls.cfg (kamailio.cfg + tls module)
#                       on udp/tcp 127.0.0.1:5062, tls :5063, same carrier
#  carrier edge: tls+udp 127.0.0.1:5065 -> SIPp UAS 127.0.0.1:5080 (UDP)
#  PBX edge:     udp+tls 127.0.0.1:5067 -> the gateway's TLS port (one per run)
#  SIPp UAC 127.0.0.1:5070, UAS 127.0.0.1:5080 (scripts/load.sh; the UAS
#  checks every rewritten INVITE and BYE as in scripts/compare.sh).
#
# Both gateways do the same job: caller-ID decision and rewrite, record-route,
# TLS 1.2+ to the carrier with its chain verified against the test CA, no
# client certificate asked of the PBX side. A throw-away CA and certificates
# (ECDSA P-256) are made with openssl in the out directory at every run.
# Only the gateway's CPU is measured: utime+stime of its process tree from
# /proc before/after a fixed-rate run (scripts/load.sh --pid), divided by the
# completed calls. Each repetition runs every target once per legs setting,
# alternating which gateway goes first; the summary gives each run, the
# medians and the cidgate/Kamailio ratio of the medians. Every run is bounded
# in calls and time; every process started here is killed by pid on exit.
#
# usage: scripts/compare_tls.sh [--cidgate target/release/cidgate] [options]
#   --cidgate PATH       cidgate binary; without it only Kamailio runs
#   --rate R             calls per second                            (500)
#   --run-calls N        calls per run                               (10000)
#   --reps N             repetitions                                 (3)
#   --legs "carrier both"  which topologies                          (carrier both)
#   --targets "kamailio cidgate"                                     (both, when --cidgate)
#   --workers N          [server] workers for cidgate                (1)
#   --perf               after the measured runs, one more cidgate run per
#                        legs setting under "perf record -g" (not counted):
#                        $OUT/perf-<legs>.data and perf-<legs>.txt (report)
#   --queues Q --numbers N --calls C --seed S   lab size           (2000 20000 20000 1)
#   --kamailio-shm MB    Kamailio gateway shared memory               (1024)
#   --out DIR            everything goes here    (/tmp/cidgate-lab/compare-tls-<time>)
# Needs sipp, kamailio with kamailio-tls-modules, kamailio-extra-modules,
# kamailio-utils-modules, kamailio-phonenum-modules, openssl, python3; perf
# (linux-perf) for --perf. Installs nothing.
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
CIDGATE=""; RATE=500; RUNCALLS=10000; REPS=3; LEGS="carrier both"; TARGETS=""; WORKERS=1; PERF=0
QUEUES=2000; NUMBERS=20000; CALLS=20000; SEED=1; KSHM=1024; OUT=""
die() { echo "compare_tls.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cidgate) CIDGATE=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --run-calls) RUNCALLS=$2; shift 2;;
    --reps) REPS=$2; shift 2;;
    --legs) LEGS=$2; shift 2;;
    --targets) TARGETS=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --perf) PERF=1; shift;;
    --queues) QUEUES=$2; shift 2;;
    --numbers) NUMBERS=$2; shift 2;;
    --calls) CALLS=$2; shift 2;;
    --seed) SEED=$2; shift 2;;
    --kamailio-shm) KSHM=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -n "$TARGETS" ] || { TARGETS=kamailio; [ -n "$CIDGATE" ] && TARGETS="kamailio cidgate"; }
case " $TARGETS " in *" cidgate "*) [ -x "$CIDGATE" ] || die "--cidgate PATH (executable) needed for target cidgate";; esac
for l in $LEGS; do case "$l" in carrier|both) ;; *) die "--legs: carrier and/or both";; esac; done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "--reps: a positive integer"
command -v sipp >/dev/null && command -v kamailio >/dev/null && command -v openssl >/dev/null \
  || die "needs sipp, kamailio and openssl"
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so ] || die "needs kamailio-tls-modules"
[ "$PERF" = 0 ] || command -v perf >/dev/null || die "--perf needs perf (linux-perf)"
[ -n "$OUT" ] || OUT=/tmp/cidgate-lab/compare-tls-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT/runs"; OUT=$(cd "$OUT" && pwd)

GW_PID=""; EDGE_PID=""; PBXEDGE_PID=""; LOAD_PID=""; PERF_PID=""
stop_pid() {   # stop_pid PID: TERM, up to 5 s, then KILL; only a pid started here
  [ -n "$1" ] || return 0
  kill "$1" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null
  wait "$1" 2>/dev/null
  return 0
}
cleanup() {
  [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
  [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
  stop_pid "$GW_PID"; stop_pid "$PBXEDGE_PID"; stop_pid "$EDGE_PID"
  LOAD_PID=""; PERF_PID=""; GW_PID=""; PBXEDGE_PID=""; EDGE_PID=""
}
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

port_busy() { [ -n "$(ss -Hln "( sport = :$1 )" 2>/dev/null)" ]; }
tcp_listening() { [ -n "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }
for p in 5060 5061 5062 5063 5065 5067 5070 5080; do port_busy $p && die "port $p already in use on this machine"; done

echo "== lab data and certificates ($OUT)"
python3 "$HERE/scripts/gen_lab.py" --seed "$SEED" --queues "$QUEUES" --numbers "$NUMBERS" --calls "$CALLS" \
  --out "$OUT/lab" --carrier "sip:127.0.0.1:5065;transport=tls" || exit 1
python3 "$HERE/scripts/kamailio_inventory.py" "$OUT/lab/queues.csv" "$OUT/lab/numbers.csv" "$OUT/kamailio-db" || exit 1

# A throw-away CA and two leaves: the gateways' (gw.example.net, 127.0.0.1)
# and the edges' (carrier.example.net, 127.0.0.1). Never kept: $OUT is scratch.
PKI="$OUT/pki"; mkdir -p "$PKI"
make_pki() {
  local sslq=(-nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
  openssl req -x509 "${sslq[@]}" -keyout "$PKI/ca.key" -out "$PKI/ca.pem" -days 2 \
    -subj "/CN=cidgate compare_tls throw-away CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign || return 1
  local who dns
  for who in gateway edge; do
    dns=gw.example.net; [ "$who" = edge ] && dns=carrier.example.net
    openssl req "${sslq[@]}" -keyout "$PKI/$who.key" -out "$PKI/$who.csr" -subj "/CN=$dns" || return 1
    printf 'subjectAltName=DNS:%s,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n' \
      "$dns" > "$PKI/$who.ext"
    openssl x509 -req -in "$PKI/$who.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca.key" -CAcreateserial -days 2 \
      -extfile "$PKI/$who.ext" -out "$PKI/$who.pem" || return 1
  done
}
make_pki >"$OUT/pki.log" 2>&1 || { cat "$OUT/pki.log" >&2; die "openssl could not make the test certificates"; }
# tls module profiles: servers ask no client certificate; clients verify the peer's chain.
kam_tls_cfg() {   # kam_tls_cfg WHO FILE
  cat >"$2" <<EOF
[server:default]
method = TLSv1.2+
verify_client = off
certificate = $PKI/$1.pem
private_key = $PKI/$1.key
ca_list = $PKI/ca.pem

[client:default]
method = TLSv1.2+
verify_certificate = yes
certificate = $PKI/$1.pem
private_key = $PKI/$1.key
ca_list = $PKI/ca.pem
EOF
}
kam_tls_cfg gateway "$PKI/gateway-tls.cfg"
kam_tls_cfg edge "$PKI/edge-tls.cfg"
# cidgate: the lab config with a TLS listener, the TLS carrier, [tls], no admin port.
sed -e 's|^listen = .*|listen = ["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060", "tls://127.0.0.1:5061"]|' \
    -e 's|^admin  *= .*|admin  = ""|' -e "s/^\[server\]\$/[server]\nworkers = $WORKERS/" \
    "$OUT/lab/cidgate.toml" > "$OUT/lab/cidgate-tls.toml"
printf '\n[tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\nverify_carrier = true\n' \
  "$PKI/gateway.pem" "$PKI/gateway.key" "$PKI/ca.pem" >> "$OUT/lab/cidgate-tls.toml"

# wait_up NAME PID UDPPORT TLSPORT: until both are open (30 s: cidgate compiles its plans first)
wait_up() {
  for _ in $(seq 300); do
    kill -0 "$2" 2>/dev/null || { echo "compare_tls.sh: $1 exited:" >&2; tail -5 "$OUT/$1.log" >&2; return 1; }
    port_busy "$3" && tcp_listening "$4" && { sleep 0.5; return 0; }
    sleep 0.1
  done
  echo "compare_tls.sh: $1 did not open ports $3/$4" >&2; return 1
}
# start_edge NAME PORT NEXT_HOP -> pid in $STARTED
start_edge() {
  kamailio -f "$HERE/kamailio/kamailio-tls-edge.cfg" -DD -E -m 256 -M 16 \
    -A "EDGE_PORT=$2" -A "NEXT_HOP=\"$3\"" -A "TLS_CFG=\"$PKI/edge-tls.cfg\"" \
    -A "CTL_SOCK=\"unix:$OUT/$1-ctl\"" >"$OUT/$1.log" 2>&1 &
  STARTED=$!
  wait_up "$1" "$STARTED" "$2" "$2" || { stop_pid "$STARTED"; STARTED=""; return 1; }
}
# start_gw TARGET NAME -> GW_PID, GW_UDP, GW_TLS
start_gw() {
  case "$1" in
    kamailio)
      GW_UDP=5062; GW_TLS=5063
      kamailio -f "$HERE/kamailio/kamailio-tls.cfg" -DD -E -m "$KSHM" -M 32 \
        -A "DBURL=\"text://$OUT/kamailio-db\"" -A "CTL_SOCK=\"unix:$OUT/kamailio-ctl\"" \
        -A "CARRIER=\"sip:127.0.0.1:5065;transport=tls\"" -A "TLS_CFG=\"$PKI/gateway-tls.cfg\"" \
        >"$OUT/$2.log" 2>&1 &
      GW_PID=$!;;
    cidgate)
      GW_UDP=5060; GW_TLS=5061
      "$CIDGATE" run --config "$OUT/lab/cidgate-tls.toml" >"$OUT/$2.log" 2>&1 &
      GW_PID=$!;;
  esac
  wait_up "$2" "$GW_PID" "$GW_UDP" "$GW_TLS" || { stop_pid "$GW_PID"; GW_PID=""; return 1; }
}

echo "== carrier edge (kamailio tls) on 127.0.0.1:5065"
start_edge carrier-edge 5065 "sip:127.0.0.1:5080" || die "the carrier edge did not start"
EDGE_PID=$STARTED

# tls_summary FILE: "TLSv1.3/TLS_AES_256_GCM_SHA384" for each distinct session kind in a tls.list reply
tls_summary() {
  local s; s=$(sed -n 's/^[[:space:]]*cipher:[[:space:]]*\([^[:space:]]*\)[[:space:]]*\(TLSv[0-9.]*\).*/\2\/\1/p' "$1" 2>/dev/null | sort -u | paste -sd+)
  echo "${s:-none}"
}
# one_run TARGET LEGS NAME [perf]: gateway (+ PBX edge) up, one load.sh run, all down
one_run() {
  local target=$1 legs=$2 name=$3 perf=${4:-}
  start_gw "$target" "$name" || { echo "$name RESULT verdict=ERROR (gateway did not start)" >> "$OUT/results"; return 1; }
  local to="127.0.0.1:$GW_UDP"
  if [ "$legs" = both ]; then
    start_edge "pbx-edge-$name" 5067 "sip:127.0.0.1:$GW_TLS;transport=tls" \
      || { stop_pid "$GW_PID"; GW_PID=""; echo "$name RESULT verdict=ERROR (PBX edge)" >> "$OUT/results"; return 1; }
    PBXEDGE_PID=$STARTED; to=127.0.0.1:5067
  fi
  local extra=(); [ "$target" = kamailio ] && extra=(--bye-display ignore)
  if [ -n "$perf" ]; then
    perf record -g -o "$OUT/perf-$legs.data" -p "$GW_PID" >"$OUT/perf-$legs.log" 2>&1 &
    PERF_PID=$!
  fi
  local load; load=$(cut -d' ' -f1-3 /proc/loadavg)
  "$HERE/scripts/load.sh" --rate "$RATE" --calls "$RUNCALLS" --transport udp --target "$to" --pid "$GW_PID" \
    --calls-file "$OUT/lab/calls.csv" --max-failed-pct 0.1 ${extra[@]+"${extra[@]}"} --outdir "$OUT/runs/$name" \
    >"$OUT/runs-$name.txt" 2>&1 &
  LOAD_PID=$!; wait "$LOAD_PID"; LOAD_PID=""
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null; wait "$PERF_PID" 2>/dev/null; PERF_PID=""; fi
  # the TLS sessions the edges hold (version, cipher), while the gateway is up
  kamcmd -s "unix:$OUT/carrier-edge-ctl" tls.list >"$OUT/tls-list-$name.txt" 2>&1
  [ -n "$PBXEDGE_PID" ] && kamcmd -s "unix:$OUT/pbx-edge-$name-ctl" tls.list >"$OUT/tls-list-pbx-$name.txt" 2>&1
  stop_pid "$PBXEDGE_PID"; PBXEDGE_PID=""
  stop_pid "$GW_PID"; GW_PID=""
  local line; line=$(grep '^RESULT' "$OUT/runs-$name.txt")
  [ -n "$line" ] || line="RESULT verdict=ERROR (see $OUT/runs-$name.txt)"
  local tls tlspbx=""
  tls=$(tls_summary "$OUT/tls-list-$name.txt")
  [ "$legs" = both ] && tlspbx=" tls_pbx=$(tls_summary "$OUT/tls-list-pbx-$name.txt")"
  # SIPp 3.6.1 aborts the UAC on a 200 retransmitted after the call moved on (an ACK
  # later than 500 ms: the machine stalled); such a run is failed and not counted
  local abort=""; grep -q 'Assertion' "$OUT/runs/$name/uac.out" 2>/dev/null && abort=" sipp_abort=1"
  [ -n "$perf" ] || echo "$name $line load=${load// /,} tls_carrier=$tls$tlspbx$abort" >> "$OUT/results"
  printf '  %-28s %s  (load %s)\n' "$name" "${line#RESULT }" "$load"
  grep -E 'gateway ' "$OUT/runs-$name.txt" | sed 's/^ */      /'
}

# perf_buckets DATA: the profile's samples summed by kind of work
perf_buckets() {
  perf report -i "$1" --no-children --sort dso,symbol -g none --stdio --percent-limit 0 \
    -F overhead,dso,symbol --field-separator $'\t' 2>/dev/null | python3 -c '
import re, sys
b = {}
for line in sys.stdin:
    parts = line.rstrip("\n").split("\t")
    if line.startswith("#") or len(parts) < 3:
        continue
    pct, dso, sym = float(parts[0].strip().rstrip("%")), parts[1].strip(), re.sub(r"^\[[.k]\]\s*", "", parts[2].strip())
    if "kernel" in dso:
        k = "kernel: network stack (UDP, TCP, softirq)" if re.search(r"udp|tcp|skb|sock|ip_|net_|napi|softirq|__dev|loopback", sym) \
            else "kernel: scheduling, epoll, syscalls, page faults"
    elif re.search(r"ring_core|^ring::|rustls", sym): k = "TLS records and crypto (rustls, ring)"
    elif re.search(r"^_?mi_|mimalloc", sym): k = "allocator (mimalloc)"
    elif dso.startswith("libc"): k = "libc (memcpy, syscall stubs)"
    elif "cidgate::sip::" in sym: k = "cidgate: SIP parse and scan"
    elif re.search(r"cidgate::(proxy|callerid)", sym): k = "cidgate: proxy core and caller-ID policy"
    elif re.search(r"^tokio::|^mio::", sym): k = "tokio runtime"
    else: k = "the rest of cidgate (futures, hashing, fmt/logging, timers, memchr)" if "cidgate" in dso else "other: " + dso
    b[k] = b.get(k, 0) + pct
for k, v in sorted(b.items(), key=lambda kv: -kv[1]):
    if v >= 0.5:
        print("    %5.1f%%  %s" % (v, k))
'
}

: > "$OUT/results"
uptime | sed 's/^/== start: /'
for rep in $(seq "$REPS"); do
  order=$TARGETS
  [ $(( rep % 2 )) = 0 ] && order=$(echo "$TARGETS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for legs in $LEGS; do
    for target in $order; do
      echo "== rep $rep: $target, TLS legs: $legs"
      one_run "$target" "$legs" "$target-$legs-$rep"
    done
  done
done
if [ "$PERF" = 1 ] && [ -n "$CIDGATE" ]; then
  for legs in $LEGS; do
    echo "== perf: cidgate, TLS legs: $legs (not counted)"
    one_run cidgate "$legs" "perf-cidgate-$legs" perf
    perf report -i "$OUT/perf-$legs.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null \
      | grep -v '^#' | grep -v '^$' | head -60 > "$OUT/perf-$legs.txt"
    echo "  where cidgate's CPU goes (perf samples, legs=$legs; top symbols in $OUT/perf-$legs.txt):"
    perf_buckets "$OUT/perf-$legs.data" | tee -a "$OUT/perf-$legs.txt"
  done
fi
uptime | sed 's/^/== end: /'

echo "== summary: gateway CPU us per completed call at $RATE cps (process tree utime+stime), $RUNCALLS calls per run"
python3 - "$OUT/results" "$LEGS" "$TARGETS" <<'PY'
import statistics, sys
path, legs, targets = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()
runs = {}
for line in open(path):
    name, rest = line.split(" ", 1)
    kv = dict(x.split("=", 1) for x in rest.split() if "=" in x)
    target, leg, rep = name.rsplit("-", 2)
    runs.setdefault((leg, target), []).append((int(rep), kv))
for leg in legs:
    med = {}
    for t in targets:
        rs = sorted(runs.get((leg, t), []), key=lambda r: r[0])
        cpus = [float(kv["cpu_us_per_call"]) for _, kv in rs
                if kv.get("verdict") == "PASS" and kv.get("cpu_us_per_call", "-") not in ("-", "nan")]
        each = ", ".join("%s%s" % (kv.get("cpu_us_per_call", "-"), "" if kv.get("verdict") == "PASS" else " (%s%s)"
                                   % (kv.get("verdict"), ": SIPp abort" if kv.get("sipp_abort") else ""))
                         for _, kv in rs)
        tls = sorted({"carrier leg " + kv.get("tls_carrier", "?") + ("; PBX leg " + kv["tls_pbx"] if "tls_pbx" in kv else "")
                      for _, kv in rs})
        if cpus:
            med[t] = statistics.median(cpus)
        print("  %-7s %-9s runs: %-28s median %s us   (%s)"
              % (leg, t, each, "%.0f" % med[t] if t in med else "-", ", ".join(tls)))
    if "cidgate" in med and "kamailio" in med:
        print("  %-7s cidgate / kamailio = %.2f (goal <= 0.50)" % (leg, med["cidgate"] / med["kamailio"]))
PY
echo "(details: $OUT)"
