#!/usr/bin/env bash
# Runs kanki's whole test suite on a fresh Debian machine: installs what the
# tests need (real peers, never mocks), checks formatting and lints, runs
# every test, and keeps the fuzz targets building.
#
#   scripts/test.sh                      everything, YARA included
#   KANKI_TEST_YARA=0 scripts/test.sh    everything but YARA (see below)
#
# Clippy lints while the tests build: clippy-driver is cargo's workspace
# wrapper (what `cargo clippy` itself sets), so the workspace crates are
# compiled once, linted and built, and the dependencies once, built only.
# A separate `cargo clippy` pass would check every dependency a second time
# (about 8 min of CPU with YARA). The result is the same lints, `-D warnings`.
# The fuzz targets (fuzz/, a workspace member) are built and linted the same
# way, without sanitizers; scripts/fuzz.sh builds them instrumented and runs
# them.
#
# YARA: kanki's default feature `yara` brings yara-x, and with it wasmtime and
# cranelift, the largest part of a cold build (built unoptimized in test
# builds, see Cargo.toml; docs/benchmarks.md, "YARA's build cost"). The
# crawler's rule tests and the lab's exploit kit found by its rule run by
# default; kanki without YARA (and its refusal of a configuration naming
# YARA rules) is built and tested under KANKI_TEST_YARA=0.
set -euo pipefail
cd "$(dirname "$0")/.."

# A cargo target directory outside the clone, so CI and developers keep it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kanki/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Line tables are enough for a test's backtrace, and full debug info of the
# whole tree (YARA's wasmtime and cranelift included) doubles build time
# and disk.
export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
# A test run compiles each workspace crate once: incremental state would only
# take disk (gigabytes) and time.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
mkdir -p "$CARGO_TARGET_DIR"

# Each step says how long it took, so a slow CI run shows where.
step_name=""
step_start=$SECONDS
step() {
  if [ -n "$step_name" ]; then
    echo "test.sh: ${step_name}: $((SECONDS - step_start)) s (total $((SECONDS / 60)) min $((SECONDS % 60)) s)"
  fi
  step_name="$1"
  step_start=$SECONDS
  [ -z "$1" ] || echo "test.sh: $1"
}
step "installing what the tests need"

# Debian packages the tests use, by the program each provides:
#   named-checkzone (bind9-utils), named (bind9), unbound-checkconf (unbound), gzip, zip,
#   dig (bind9-dnsutils), pdns_recursor (pdns-recursor), kresd (knot-resolver):
#   the RPZ tests run BIND, Unbound, PowerDNS Recursor and Knot Resolver;
#   chromium, chromedriver (chromium-driver) and a Japanese font
#   (fonts-ipafont-gothic): the warning page is loaded and clicked in
#   headless Chromium, and its screenshots show the Japanese text;
#   openssl: the SMTP test makes a CA and a server certificate for aiosmtpd;
#   ssh (openssh-client): the sensor test connects to its SSH port;
#   slapd, slapadd (slapd) and ldap-utils: operators sign in against a real
#   OpenLDAP directory the operators test starts on loopback ports;
#   firefox-esr: the console is also walked through in headless Firefox,
#   driven by geckodriver (built from crates.io below; Debian has none).
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
have slapd || need+=(slapd)
have ldapsearch || need+=(ldap-utils)
have chromium || need+=(chromium)
have chromedriver || need+=(chromium-driver)
have firefox-esr || need+=(firefox-esr)
[ -e /usr/share/fonts/opentype/ipafont-gothic/ipag.ttf ] || need+=(fonts-ipafont-gothic)
if [ ${#need[@]} -gt 0 ]; then
  echo "test.sh: installing ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

# geckodriver, Mozilla's WebDriver server for Firefox, from crates.io at a
# fixed version, built once into the cache and found on PATH by the tests.
gecko_root="${KANKI_GECKODRIVER_ROOT:-$HOME/.cache/kanki/geckodriver}"
gecko_version=0.37.1
if ! "$gecko_root/bin/geckodriver" --version 2>/dev/null | grep -q "geckodriver $gecko_version"; then
  echo "test.sh: building geckodriver $gecko_version"
  CARGO_TARGET_DIR="$HOME/.cache/kanki/geckodriver-build" \
    cargo install --quiet --locked geckodriver --version "$gecko_version" --root "$gecko_root"
fi
export PATH="$gecko_root/bin:$PATH"

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

step "cargo fmt --check"
cargo fmt --all -- --check

# clippy-driver as the workspace wrapper, -D warnings (see the top).
export RUSTC_WORKSPACE_WRAPPER="${RUSTC_WORKSPACE_WRAPPER:-$(rustc --print sysroot)/bin/clippy-driver}"
export CLIPPY_ARGS="${CLIPPY_ARGS:--D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__}"
step "building every target, linted by clippy"
cargo test --workspace --all-targets --no-run --quiet "${features[@]}" --features kanki-fuzz/fuzz-targets
# The binary alone, as the README's `cargo run --release -- serve` builds it:
# without the test-only features that dev-dependencies switch on, so that a
# feature only the tests enable cannot hide a broken build of `kanki`.
step "building the kanki binary alone"
cargo build -p kanki --bin kanki --quiet "${features[@]}"
step "cargo test"
set +e
cargo test --workspace --no-fail-fast "${features[@]}" 2>&1 | tee "$CARGO_TARGET_DIR/test.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  step ""
  echo "test.sh: tests failed"
  exit "$status"
fi
step ""
passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$CARGO_TARGET_DIR/test.log" | awk '{s+=$4} END {print s+0}')
echo "test.sh: all tests passed in $((SECONDS / 60)) min $((SECONDS % 60)) s"
echo "${passed} passed, 0 failed"
