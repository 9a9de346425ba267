#!/usr/bin/env bash
# The one command that runs every test of mqttd, on a fresh Debian machine
# or a developer's: `tests/run-all.sh [extra cargo test arguments]`.
#
# 1. Installs the Debian packages the tests need when they are missing:
#    mosquitto-clients (mosquitto_pub/_sub), procps (kill), python3 with venv,
#    nats-server (the cluster tests), and the mosquitto broker (the remote of the bridge tests, and the broker
#    under test when MQTTD_TEST_BROKER=mosquitto).
# 2. Creates target/test-venv with the Python packages of
#    tests/interop/requirements.txt (paho-mqtt 2.x), again whenever that
#    file changes, and exports MQTTD_TEST_PYTHON for the tests.
# 3. Installs Debian's chromium (and node/npm) and, in target/node, the npm packages
#    playwright-core and mqtt (MQTT.js) for the browser tests (tests/browser.rs); never a
#    browser download: Playwright drives /usr/lib/chromium/chromium. The prefix is shared by
#    every browser test: installing is idempotent (skipped when the packages are there).
# 4. Runs `cargo clippy --all-targets` when clippy is installed: Cargo.toml's [lints] deny
#    unwrap/expect/unchecked indexing outside tests.
# 5. Runs `cargo test --all-targets --no-fail-fast` (every test binary runs
#    even after a failure); its exit status is this script's.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

say() { printf '==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    else
        sudo "$@"
    fi
}

# --- 1. Debian packages ------------------------------------------------------
missing=()
type -P mosquitto_pub >/dev/null && type -P mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
type -P kill >/dev/null || missing+=(procps)
type -P stdbuf >/dev/null || missing+=(coreutils)
if ! type -P python3 >/dev/null; then
    missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing+=(python3-venv)
fi
[ -x /usr/lib/chromium/chromium ] || missing+=(chromium)
type -P node >/dev/null || missing+=(nodejs)
type -P npm >/dev/null || missing+=(npm)
# The mosquitto broker: the remote of the bridge tests (tests/bridge_*.rs), and the broker
# under test when MQTTD_TEST_BROKER=mosquitto.
if [ -z "${MQTTD_TEST_MOSQUITTO:-}" ] && ! type -P mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    missing+=(mosquitto)
fi
# nats-server (with JetStream): the NATS the cluster tests (tests/cluster_*.rs) start.
type -P nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
else
    say "Debian packages present (mosquitto-clients, procps, python3 venv, chromium, node, nats-server)"
fi

# --- 2. Python venv for the paho-mqtt interop scripts -------------------------
VENV="$ROOT/target/test-venv"
REQUIREMENTS="$ROOT/tests/interop/requirements.txt"
STAMP="$VENV/.requirements.sha256"
wanted=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$wanted" ]; then
    say "creating the Python test venv in target/test-venv from tests/interop/requirements.txt"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
    printf '%s\n' "$wanted" >"$STAMP"
else
    say "Python test venv up to date (target/test-venv)"
fi
export MQTTD_TEST_PYTHON="$VENV/bin/python"
say "paho-mqtt $("$MQTTD_TEST_PYTHON" -c 'import paho.mqtt; print(paho.mqtt.__version__)') via MQTTD_TEST_PYTHON=$MQTTD_TEST_PYTHON"

# --- 3. npm packages for the browser tests -------------------------------------
NODE_PREFIX="$ROOT/target/node"
if [ ! -f "$NODE_PREFIX/node_modules/playwright-core/package.json" ] \
    || [ ! -f "$NODE_PREFIX/node_modules/mqtt/dist/mqtt.min.js" ]; then
    say "installing npm playwright-core@1 and mqtt@5 into target/node"
    # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing anyway; belt and braces.
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$NODE_PREFIX" --no-audit --no-fund \
        --loglevel=error playwright-core@1 mqtt@5
else
    say "npm packages present (target/node: playwright-core, mqtt)"
fi
export MQTTD_TEST_NODE_MODULES="$NODE_PREFIX/node_modules"

# --- 4. Lints --------------------------------------------------------------------
# Cargo.toml's [lints] deny unwrap/expect/unchecked indexing outside tests: input must never
# panic the broker. Only denials fail here (clippy's other warnings do not).
if cargo clippy --version >/dev/null 2>&1; then
    say "running: cargo clippy --all-targets (the [lints] denials of Cargo.toml)"
    cargo clippy --all-targets --quiet
else
    say "cargo clippy is not installed: skipping the lint check (rustup component add clippy)"
fi

# --- 5. The tests ---------------------------------------------------------------
say "broker under test: ${MQTTD_TEST_BROKER:-mqttd}"
say "running: cargo test --all-targets --no-fail-fast $*"
exec cargo test --all-targets --no-fail-fast "$@"
