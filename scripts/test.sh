#!/usr/bin/env bash
# Runs kanki's whole test suite on a fresh Debian machine: installs what the
# tests need (real peers, never mocks), checks formatting and lints, runs
# every test, and keeps the fuzz targets building.
#
#   scripts/test.sh                      everything, YARA included
#   KANKI_TEST_YARA=0 scripts/test.sh    everything but YARA (see below)
#   SKIP_FUZZ_BUILD=1 scripts/test.sh    without building the fuzz targets
#
# YARA: kanki's default feature `yara` brings yara-x, and with it wasmtime and
# cranelift. Their cold build (test build and clippy's check) costs about
# 30 min of CPU, once per cache: CI keeps its target directory under
# $HOME/.cache, so later runs pay nothing for it (docs/benchmarks.md, "YARA's
# build cost"). The crawler's rule tests and the lab's exploit kit found by
# its rule run by default; kanki without YARA is linted too (its refusal of a
# configuration naming YARA rules is tested under KANKI_TEST_YARA=0).
set -euo pipefail
cd "$(dirname "$0")/.."

# A cargo target directory outside the clone, so CI and developers keep it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Line tables are enough for a test's backtrace, and full debug info of the
# whole tree (YARA's wasmtime and cranelift included) doubles build time
# and disk.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
mkdir -p "$CARGO_TARGET_DIR"

# Debian packages the tests use, by the program each provides:
#   named-checkzone (bind9-utils), named (bind9), unbound-checkconf (unbound), gzip, zip,
#   dig (bind9-dnsutils), pdns_recursor (pdns-recursor), kresd (knot-resolver):
#   the RPZ tests run BIND, Unbound, PowerDNS Recursor and Knot Resolver;
#   chromium, chromedriver (chromium-driver) and a Japanese font
#   (fonts-ipafont-gothic): the warning page is loaded and clicked in
#   headless Chromium, and its screenshots show the Japanese text;
#   openssl: the SMTP test makes a CA and a server certificate for aiosmtpd;
#   ssh (openssh-client): the sensor test connects to its SSH port.
need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
have named-checkzone || need+=(bind9-utils)
have named || need+=(bind9)
have unbound-checkconf || need+=(unbound)
have gzip || need+=(gzip)
have zip || need+=(zip)
have dig || need+=(bind9-dnsutils)
have pdns_recursor || need+=(pdns-recursor)
have kresd || need+=(knot-resolver)
have radclient || need+=(freeradius-utils)
have sqlite3 || need+=(sqlite3)
have openssl || need+=(openssl)
have ssh || need+=(openssh-client)
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
[ -e /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || need+=(fonts-ipafont-gothic)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# PyPI packages the tests use: aiosmtpd (a real SMTP server receiving the
# removal loop's notices).
python3 -c "import aiosmtpd" 2>/dev/null || python3 -m pip install -q aiosmtpd
# and Cowrie (a real honeypot whose JSON log the removal loop ingests), in a
# virtual environment of Debian's python3 under /opt, where Cowrie can run as
# nobody (it refuses root).
cowrie_venv="${KANKI_COWRIE_VENV:-/opt/kanki/venv-cowrie}"
if [ ! -x "$cowrie_venv/bin/twistd" ] || [ ! -x "$cowrie_venv/bin/cowrie" ]; then
  have setpriv || need_cowrie_deps=1
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -m venv --help >/dev/null 2>&1 || need_cowrie_deps=1
  if [ -n "${need_cowrie_deps:-}" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv util-linux
  fi
  mkdir -p "$(dirname "$cowrie_venv")"
  /usr/bin/python3 -m venv "$cowrie_venv"
  "$cowrie_venv/bin/pip" install -q cowrie
fi

# YARA (yara-x, with wasmtime and cranelift) is built and tested by default:
# its cold build is paid once per cache (docs/benchmarks.md, "YARA's build
# cost"). KANKI_TEST_YARA=0 builds and tests without it instead.
features=()
if [ "${KANKI_TEST_YARA:-1}" = "0" ]; then
  features=(--no-default-features)
  echo "test.sh: without YARA (KANKI_TEST_YARA=0): yara-x is not built and its tests do not run"
fi

echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --quiet "${features[@]}" -- -D warnings
# The crawler without YARA (a kanki built without the feature) still
# compiles, lint-clean.
[ ${#features[@]} -gt 0 ] || cargo clippy -p kanki -p kanki-crawler --all-targets --quiet --no-default-features -- -D warnings
echo "test.sh: cargo test"
set +e
cargo test --workspace --no-fail-fast "${features[@]}" 2>&1 | tee "$CARGO_TARGET_DIR/test.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "test.sh: tests failed"
  exit "$status"
fi
if [ -z "${SKIP_FUZZ_BUILD:-}" ] && [ -x scripts/fuzz.sh ]; then
  echo "test.sh: building the fuzz targets"
  scripts/fuzz.sh
fi
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$CARGO_TARGET_DIR/test.log" | awk '{s+=$4} END {print s+0}')
echo "test.sh: all tests passed"
echo "${passed} passed, 0 failed"
