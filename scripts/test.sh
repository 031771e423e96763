#!/usr/bin/env bash
# Runs every test of cidgate on a fresh Debian machine: installs what the tests
# need when it is missing (SIPp from the sip-tester package, secsipidx and
# openssl for the STIR tests), checks format and
# lints, then runs the unit, integration, RFC 4475 and SIPp suites.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# STIR tests: keys made with openssl, signatures checked by secsipidx.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v secsipidx >/dev/null 2>&1 || missing+=(secsipidx)
if [ ${#missing[@]} -gt 0 ]; then
  as_root=""
  [ "$(id -u)" = 0 ] || as_root=sudo
  echo "installing: ${missing[*]}"
  $as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --all-targets 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one summary per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
