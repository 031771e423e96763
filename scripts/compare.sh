#!/usr/bin/env bash
# cidgate vs Kamailio vs no proxy, same SIPp load, same lab data.
#
#  1. scripts/gen_lab.py makes the lab data (default here is smaller than the
#     generator's own: 2 000 queues, 20 000 claimed numbers, 20 000 calls);
#     scripts/kamailio_inventory.py converts it for Kamailio.
#  2. per transport (udp, then tcp) and per target:
#       baseline  UAC straight to the UAS (accept calls only, UAS checks off):
#                 what SIPp itself manages on this machine
#       kamailio  kamailio/kamailio.cfg on 127.0.0.1:5062
#       floor     examples/floor_relay.rs on 127.0.0.1:5064 (UDP only): forwards
#                 the same datagrams between UAC and UAS and nothing else, the
#                 lower bound of CPU per call for any proxy on this machine
#       cidgate   "<cidgate> run --config <generated toml>" on 127.0.0.1:5060
#       kamailio-stir, cidgate-stir (with --stir): the same two, each also
#                 signing every forwarded INVITE (STIR/SHAKEN, ES256 key made
#                 here with openssl): kamailio/kamailio-stir.cfg with the
#                 secsipid module, cidgate with a [stir] section
#     a fixed-rate run (--rate, --run-calls) reporting gateway CPU us per call,
#     then a ramp (--ramp rates, each --ramp-seconds long) up to the highest
#     rate with < 0.1 % failed calls.
#  3. a summary: CPU us per call per gateway and the cidgate/Kamailio ratio,
#     highest clean rate per target.
# Every SIPp run is bounded by call count and time (scripts/load.sh); every
# process started here is killed by pid on exit.
#
# usage: scripts/compare.sh [--cidgate target/release/cidgate] [options]
#   --cidgate PATH       cidgate binary; without it only baseline and Kamailio run
#   --floor PATH         floor relay binary (default target/release/examples/floor_relay
#                        when it exists; cargo build --release --example floor_relay)
#   --workers N          [server] workers for cidgate (1)
#   --rate R             fixed-rate run, calls per second          (1000)
#   --run-calls N        calls in the fixed-rate run                (10000)
#   --ramp "R1 R2 ..."   ramp rates                                 ("250 500 1000 1500 2000 3000 4000")
#   --ramp-seconds S     length of each ramp step                   (5)
#   --no-ramp            fixed-rate runs only
#   --rounds N           fixed-rate runs N times, the targets taking turns in
#                        every round (1); the summary gives each round's ratios
#                        and their median. The host's speed drifts between runs
#                        by more than the gateways differ by, so ratios are
#                        taken within a round and the median quoted; ramps
#                        run in the first round only
#   --transports "udp tcp"                                          (udp tcp)
#   --targets "baseline kamailio floor cidgate"                     (all available)
#   --stir               add the signing targets kamailio-stir and cidgate-stir
#   --queues Q --numbers N --calls C --seed S   lab size           (2000 20000 20000 1)
#   --mode strict|normalize                                         (strict)
#   --kamailio-shm MB    Kamailio shared memory (1024; tm keeps every finished
#                        transaction 5 s: about 150 MB at 1000 cps, 256 MB runs out near 2000)
#   --out DIR            everything goes here        (/tmp/cidgate-lab/compare-<time>)
set -u
HERE=$(cd "$(dirname "$0")/.." && pwd)
CIDGATE=""; FLOOR=""; WORKERS=1; RATE=1000; RUNCALLS=10000; ROUNDS=1; RAMP="250 500 1000 1500 2000 3000 4000"; RAMPSEC=5; DORAMP=1
KSHM=1024; TRANSPORTS="udp tcp"; TARGETS=""; STIR=0; QUEUES=2000; NUMBERS=20000; CALLS=20000; SEED=1; MODE=strict; OUT=""
die() { echo "compare.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --cidgate) CIDGATE=$2; shift 2;;
    --floor) FLOOR=$2; shift 2;;
    --workers) WORKERS=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    --run-calls) RUNCALLS=$2; shift 2;;
    --ramp) RAMP=$2; shift 2;;
    --ramp-seconds) RAMPSEC=$2; shift 2;;
    --no-ramp) DORAMP=0; shift;;
    --rounds) ROUNDS=$2; shift 2;;
    --transports) TRANSPORTS=$2; shift 2;;
    --targets) TARGETS=$2; shift 2;;
    --stir) STIR=1; shift;;
    --queues) QUEUES=$2; shift 2;;
    --numbers) NUMBERS=$2; shift 2;;
    --calls) CALLS=$2; shift 2;;
    --seed) SEED=$2; shift 2;;
    --mode) MODE=$2; shift 2;;
    --kamailio-shm) KSHM=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed 's/^# \{0,1\}//;$d'; exit 0;;
    *) die "unknown option $1";;
  esac
done
[ -n "$OUT" ] || OUT=/tmp/cidgate-lab/compare-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
[ -n "$FLOOR" ] || { [ -x "$HERE/target/release/examples/floor_relay" ] && FLOOR="$HERE/target/release/examples/floor_relay"; }
if [ -z "$TARGETS" ]; then
  TARGETS="baseline kamailio"; [ -n "$FLOOR" ] && TARGETS="$TARGETS floor"
  [ -n "$CIDGATE" ] && TARGETS="$TARGETS cidgate"
  if [ "$STIR" = 1 ]; then
    TARGETS="$TARGETS kamailio-stir"; [ -n "$CIDGATE" ] && TARGETS="$TARGETS cidgate-stir"
  fi
fi
case "$ROUNDS" in ''|*[!0-9]*|0) die "--rounds N, N at least 1";; esac
case " $TARGETS " in *" floor "*) [ -x "$FLOOR" ] || die "--floor PATH (executable) needed for target floor";; esac
case " $TARGETS " in *" cidgate"*) [ -x "$CIDGATE" ] || die "--cidgate PATH (executable) needed for target cidgate";; esac
case "$MODE" in strict) CALLSFILE=calls.csv; KDEF=();; normalize) CALLSFILE=calls-normalize.csv; KDEF=(-A NORMALIZE);;
  *) die "--mode strict|normalize";; esac
command -v sipp >/dev/null && command -v kamailio >/dev/null || die "needs sipp and kamailio"
# Kamailio modules the configurations load, from Debian, when missing.
KMOD=/usr/lib/x86_64-linux-gnu/kamailio/modules
kpkgs=()
[ -e "$KMOD/phonenum.so" ] || kpkgs+=(kamailio-phonenum-modules)
case " $TARGETS " in *" kamailio-stir "*) [ -e "$KMOD/secsipid.so" ] || kpkgs+=(kamailio-secsipid-modules);; esac
if [ ${#kpkgs[@]} -gt 0 ]; then
  as_root=""; [ "$(id -u)" = 0 ] || as_root=sudo
  echo "installing: ${kpkgs[*]}"
  $as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${kpkgs[@]}" >/dev/null \
    || die "could not install ${kpkgs[*]}"
fi

GW_PID=""; LOAD_PID=""
stop_gw() {
  if [ -n "$GW_PID" ]; then
    kill "$GW_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$GW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
    GW_PID=""
  fi
}
cleanup() { [ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null; LOAD_PID=""; stop_gw; }
trap 'cleanup; exit 130' INT TERM
trap cleanup EXIT

port_busy() { [ -n "$(ss -Hln "( sport = :$1 )" 2>/dev/null)" ]; }
for p in 5060 5062 5064 5070 5080; do port_busy $p && die "port $p already in use on this machine"; done

echo "== lab data"
python3 "$HERE/scripts/gen_lab.py" --seed "$SEED" --queues "$QUEUES" --numbers "$NUMBERS" --calls "$CALLS" --out "$OUT/lab" || exit 1
python3 "$HERE/scripts/kamailio_inventory.py" "$OUT/lab/queues.csv" "$OUT/lab/numbers.csv" "$OUT/kamailio-db" || exit 1
sed -i "s/^\[server\]\$/[server]\nworkers = $WORKERS/" "$OUT/lab/cidgate.toml" "$OUT/lab/cidgate-normalize.toml"
sed 's/transport=udp/transport=tcp/' "$OUT/lab/cidgate.toml" > "$OUT/lab/cidgate-tcp.toml"
sed 's/transport=udp/transport=tcp/' "$OUT/lab/cidgate-normalize.toml" > "$OUT/lab/cidgate-normalize-tcp.toml"
{ echo SEQUENTIAL; grep ';accept;' "$OUT/lab/$CALLSFILE"; } > "$OUT/lab/calls-accept-only.csv"
# Signing: one P-256 key for both signing gateways (never kept: $OUT is scratch).
STIR_KEY="$OUT/stir-key.pem"; STIR_X5U="https://certs.example.net/cidgate.pem"
case " $TARGETS " in *"-stir "*)
  openssl ecparam -name prime256v1 -genkey -noout -out "$STIR_KEY" || die "openssl could not make the signing key"
  for t in cidgate cidgate-tcp cidgate-normalize cidgate-normalize-tcp; do
    { cat "$OUT/lab/$t.toml"; printf '\n[stir]\nkey = "%s"\nx5u = "%s"\nattest = "A"\nrcd = true\n' "$STIR_KEY" "$STIR_X5U"; } \
      > "$OUT/lab/$t-stir.toml"
  done;;
esac

# start_gw TARGET TRANSPORT -> sets GW_PID, GW_ADDR, EXTRA (load.sh options)
start_gw() {
  local target=$1 tr=$2
  EXTRA=()
  case "$target" in
    baseline)
      GW_ADDR=127.0.0.1:5080; EXTRA=(--no-verify --calls-file "$OUT/lab/calls-accept-only.csv"); return 0;;
    floor)
      [ "$tr" = udp ] || { echo "  the floor relay is UDP only" >&2; return 1; }
      GW_ADDR=127.0.0.1:5064; EXTRA=(--no-verify --calls-file "$OUT/lab/calls-accept-only.csv")
      "$FLOOR" 127.0.0.1:5064 127.0.0.1:5080 >"$OUT/floor-$tr.log" 2>&1 &
      GW_PID=$!;;
    kamailio|kamailio-stir)
      GW_ADDR=127.0.0.1:5062; EXTRA=(--bye-display ignore --calls-file "$OUT/lab/$CALLSFILE")
      local kcfg="$HERE/kamailio/kamailio.cfg" kstir=()
      [ "$target" = kamailio-stir ] && kcfg="$HERE/kamailio/kamailio-stir.cfg" \
        && kstir=(-A "STIR_KEY=\"$STIR_KEY\"" -A "STIR_X5U=\"$STIR_X5U\"")
      kamailio -f "$kcfg" ${kstir[@]+"${kstir[@]}"} -DD -E -m "$KSHM" -M 32 \
        -A "DBURL=\"text://$OUT/kamailio-db\"" -A "CTL_SOCK=\"unix:$OUT/kamailio-ctl\"" \
        -A "CARRIER=\"sip:127.0.0.1:5080;transport=$tr\"" ${KDEF[@]+"${KDEF[@]}"} \
        >"$OUT/$target-$tr.log" 2>&1 &
      GW_PID=$!;;
    cidgate|cidgate-stir)
      GW_ADDR=127.0.0.1:5060; EXTRA=(--calls-file "$OUT/lab/$CALLSFILE")
      local cfg="$OUT/lab/cidgate.toml"
      [ "$MODE" = normalize ] && cfg="$OUT/lab/cidgate-normalize.toml"
      [ "$tr" = tcp ] && cfg="${cfg%.toml}-tcp.toml"
      [ "$target" = cidgate-stir ] && cfg="${cfg%.toml}-stir.toml"
      "$CIDGATE" run --config "$cfg" >"$OUT/$target-$tr.log" 2>&1 &
      GW_PID=$!;;
  esac
  local port=${GW_ADDR##*:}
  for _ in $(seq 300); do   # up to 30 s: cidgate compiles every numbering plan before it binds
    kill -0 "$GW_PID" 2>/dev/null || { tail -5 "$OUT/$target-$tr.log" >&2; GW_PID=""; return 1; }
    port_busy "$port" && { sleep 0.5; return 0; }
    sleep 0.1
  done
  echo "compare.sh: $target did not open port $port" >&2; stop_gw; return 1
}

# run_load NAME load.sh-args... ; prints the RESULT line, keeps it in $OUT/results
run_load() {
  local name=$1; shift
  "$HERE/scripts/load.sh" "$@" --outdir "$OUT/runs/$name" >"$OUT/runs-$name.txt" 2>&1 &
  LOAD_PID=$!; wait "$LOAD_PID"; local rc=$?; LOAD_PID=""
  local line; line=$(grep '^RESULT' "$OUT/runs-$name.txt")
  [ -n "$line" ] || line="RESULT verdict=ERROR (see $OUT/runs-$name.txt)"
  echo "$name $line" >> "$OUT/results"
  printf '  %-26s %s\n' "$name" "${line#RESULT }"
  grep -E 'SIPp CPU|gateway ' "$OUT/runs-$name.txt" | sed 's/^ */      /'
  return $rc
}

: > "$OUT/results"
for tr in $TRANSPORTS; do
 for round in $(seq "$ROUNDS"); do
  sfx=""; [ "$ROUNDS" -gt 1 ] && sfx="-r$round"
  for target in $TARGETS; do
    echo "== $target over $tr${sfx:+ (round $round of $ROUNDS)}"
    start_gw "$target" "$tr" || { echo "  $target could not start, skipped"; continue; }
    PIDOPT=(); [ -n "$GW_PID" ] && PIDOPT=(--pid "$GW_PID")
    run_load "$target-$tr-fixed-$RATE$sfx" --rate "$RATE" --calls "$RUNCALLS" --transport "$tr" \
      --target "$GW_ADDR" "${PIDOPT[@]}" "${EXTRA[@]}" --max-failed-pct 0.1
    if [ "$DORAMP" = 1 ] && [ "$round" = 1 ]; then
      for r in $RAMP; do
        run_load "$target-$tr-ramp-$r" --rate "$r" --calls $(( r * RAMPSEC )) --transport "$tr" \
          --target "$GW_ADDR" "${PIDOPT[@]}" "${EXTRA[@]}" --max-failed-pct 0.1 || break
        # a step that took much longer than planned did not reach its rate
        el=$(grep -o 'elapsed=[0-9.]*' "$OUT/runs-$target-$tr-ramp-$r.txt" | cut -d= -f2)
        if python3 -c "import sys; sys.exit(0 if float('$el') > $RAMPSEC * 1.15 + 0.5 else 1)"; then
          echo "  rate $r not reached (${el} s for a ${RAMPSEC} s step): ramp stops"
          sed -i "s/^\($target-$tr-ramp-$r .*\)verdict=PASS/\1verdict=SLOW/" "$OUT/results"
          break
        fi
      done
    fi
    stop_gw
  done
 done
done

echo "== summary (CPU = gateway process tree, utime+stime; clean = < 0.1 % failed calls and rate reached)"
python3 - "$OUT/results" "$RATE" "$TRANSPORTS" "$TARGETS" "$ROUNDS" <<'PY'
import statistics, sys
path, rate, transports, targets = sys.argv[1], sys.argv[2], sys.argv[3].split(), sys.argv[4].split()
rounds = int(sys.argv[5])
res = {}
for line in open(path):
    name, rest = line.split(" ", 1)
    kv = dict(x.split("=", 1) for x in rest.split()[1:] if "=" in x)
    res[name] = kv
for tr in transports:
    cpu = {}
    for t in targets:
        r = res.get("%s-%s-fixed-%s%s" % (t, tr, rate, "-r1" if rounds > 1 else ""), {})
        cpu[t] = r.get("cpu_us_per_call", "-")
        ramp = [(int(k.rsplit("-", 1)[1]), v) for k, v in res.items() if k.startswith("%s-%s-ramp-" % (t, tr))]
        best = max([r_ for r_, v in ramp if v.get("verdict") == "PASS"], default=None)
        top = max([r_ for r_, v in ramp], default=None)
        print("  %-4s %-13s fixed %s cps: %s ok / %s failed, %s us CPU per call;  highest clean ramp rate: %s%s"
              % (tr, t, rate, r.get("ok", "-"), r.get("failed", "-"), cpu[t],
                 "%s cps" % best if best else "none",
                 " (ramp stopped at %s)" % top if top and top != best else (" (top of ramp)" if best else "")))
    for a, b in (("cidgate", "kamailio"), ("cidgate", "floor"), ("cidgate-stir", "kamailio-stir")):
        if rounds > 1:
            break  # the per-round ratios below instead
        try:
            print("  %-4s %s / %s CPU per call = %.2f" % (tr, a, b, float(cpu.get(a, "-")) / float(cpu.get(b, "-"))))
        except (ValueError, ZeroDivisionError):
            pass
    if rounds > 1:
        # Per round, then the median: each ratio compares runs minutes apart
        # at most, never runs from different periods of the host.
        def per_round(t):
            out = []
            for k in range(1, rounds + 1):
                try:
                    out.append(float(res["%s-%s-fixed-%s-r%d" % (t, tr, rate, k)]["cpu_us_per_call"]))
                except (KeyError, ValueError):
                    out.append(None)
            return out
        cpus = {t: per_round(t) for t in targets}
        for t in targets:
            got = [c for c in cpus[t] if c is not None]
            if got:
                print("  %-4s %-13s %d rounds: median %.0f us CPU per call (%.0f-%.0f)"
                      % (tr, t, len(got), statistics.median(got), min(got), max(got)))
        for a, b in (("cidgate", "kamailio"), ("cidgate", "floor"), ("cidgate-stir", "kamailio-stir")):
            pairs = [x / y for x, y in zip(cpus.get(a, []), cpus.get(b, [])) if x and y]
            if pairs:
                print("  %-4s %s / %s per round: %s; median %.3f"
                      % (tr, a, b, " ".join("%.3f" % r for r in pairs), statistics.median(pairs)))
    for signed, plain in (("cidgate-stir", "cidgate"), ("kamailio-stir", "kamailio")):
        try:
            print("  %-4s signing adds %.0f us CPU per call to %s" % (tr, float(cpu.get(signed, "-")) - float(cpu.get(plain, "-")), plain))
        except ValueError:
            pass
PY
echo "(details: $OUT)"
