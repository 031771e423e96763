#!/usr/bin/env bash
# Runs every test of cidgate on a fresh Debian machine: installs what the tests
# need when it is missing, checks that the repository stands alone, format,
# lints and rust-version, then runs every test binary (unit, integration,
# RFC 4475, STIR, SIPp) even after a failure, and closes with the totals over all.
set -euo pipefail
cd "$(dirname "$0")/.."

# What the tests run, one "command debian-package" pair a line. Add a line for
# a new tool; it is installed only when its command is missing.
needs=(
  "sipp sip-tester"
  "python3 python3"
  # tests/wire.rs sends SIGTERM with /bin/kill, absent from minimal Debian images.
  "kill procps"
  # STIR tests: keys made with openssl, signatures checked by secsipidx.
  "openssl openssl"
  "secsipidx secsipidx"
  # Shared-inventory tests: each starts a redis-server of its own on a free
  # loopback port (never the system service).
  "redis-server redis-server"
)
missing=()
for need in "${needs[@]}"; do
  read -r cmd pkg <<<"$need"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  echo "installing: ${missing[*]}"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The repository stands alone: no path out of it, no contract kept elsewhere
# (cite docs/behaviour.md). The pattern is split so this line does not match.
outside='\.\./shar''ed\|\<SP''EC\>'
if grep -rnI --exclude-dir=target --exclude-dir=.git "$outside" .; then
  echo "test.sh: the lines above point outside the repository" >&2
  exit 1
fi

scripts/check_msrv.sh
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Every test target; benches are compiled by clippy above but not run here
# (their test mode loads a million-number inventory in a debug build).
cargo test --no-fail-fast 2>&1 | tee "$log" || status=$?
# The suites that run the gateway over sockets once more with two proxy
# cores: behaviour must not depend on the number of workers.
CIDGATE_TEST_WORKERS=2 cargo test --no-fail-fast --test wire --test sipp 2>&1 | tee -a "$log" || status=$?
# One closing line over every test binary (cargo prints one summary each).
awk -v status="$status" '
  /^test result:/ {
    binaries++
    for (i = 1; i < NF; i++) {
      if ($(i+1) ~ /^passed/) p += $i
      if ($(i+1) ~ /^failed/) f += $i
      if ($(i+1) ~ /^ignored/) ig += $i
    }
  }
  END {
    printf "tests: %d passed, %d failed, %d ignored (%d test binaries)\n", p, f, ig, binaries
    if (status != 0 && f == 0) print "tests: cargo failed without a failing test (build error or a crashed binary): see above"
  }' "$log"
exit "$status"
