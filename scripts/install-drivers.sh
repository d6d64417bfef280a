#!/usr/bin/env bash
# Installs the client drivers the driver-matrix test (tests/drivers.rs) runs against pgveil:
#   Python (repo-local venv target/drivers/venv): psycopg[binary] 3, psycopg2-binary, asyncpg,
#     SQLAlchemy 2, from PyPI;
#   Node (repo-local target/drivers/node/node_modules): pg, pg-copy-streams, postgres
#     (postgres.js), from npm;
#   Java: pgjdbc from Debian's libpostgresql-jdbc-java (apt-get), plus java/javac.
#
# Idempotent: each part is skipped when already present (a stamp file records the pinned
# versions). Everything lives under target/drivers/, so a clean clone installs afresh and
# nothing is cached outside the repo. A driver whose toolchain is absent (no python3, node
# or java) is reported clearly and skipped; tests/drivers.rs then records it as absent.
# PGVEIL_DRIVERS=0 skips the whole script.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

if [ "${PGVEIL_DRIVERS:-1}" = 0 ]; then
    echo "install-drivers: PGVEIL_DRIVERS=0, skipping driver installs"
    exit 0
fi

ROOT=target/drivers
mkdir -p "$ROOT"
status=0

PY_PKGS="psycopg[binary]==3.2.10 psycopg2-binary==2.9.10 asyncpg==0.30.0 SQLAlchemy==2.0.43"
NODE_PKGS="pg@8.16.3 pg-copy-streams@7.0.0 postgres@3.4.7"

install_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        echo "install-drivers: python3 is absent; Python drivers will be reported as absent"
        return 0
    fi
    local venv="$ROOT/venv" stamp="$ROOT/venv/.pgveil-stamp"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PY_PKGS" ]; then
        echo "install-drivers: Python drivers already installed in $venv"
        return 0
    fi
    python3 -m venv "$venv" || { echo "install-drivers: python3 -m venv failed"; return 1; }
    # shellcheck disable=SC2086
    "$venv/bin/pip" install --quiet --disable-pip-version-check $PY_PKGS \
        || { echo "install-drivers: pip install failed"; return 1; }
    echo "$PY_PKGS" >"$stamp"
    echo "install-drivers: Python drivers installed in $venv"
}

install_node() {
    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
        echo "install-drivers: node/npm is absent; Node drivers will be reported as absent"
        return 0
    fi
    local dir="$ROOT/node" stamp="$ROOT/node/.pgveil-stamp"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$NODE_PKGS" ]; then
        echo "install-drivers: Node drivers already installed in $dir"
        return 0
    fi
    mkdir -p "$dir"
    [ -f "$dir/package.json" ] || echo '{"name":"pgveil-driver-tests","private":true}' >"$dir/package.json"
    # shellcheck disable=SC2086
    (cd "$dir" && npm install --silent --no-audit --no-fund --cache "$PWD/.npm-cache" $NODE_PKGS) \
        || { echo "install-drivers: npm install failed"; return 1; }
    echo "$NODE_PKGS" >"$stamp"
    echo "install-drivers: Node drivers installed in $dir"
}

PGJDBC_JAR=/usr/share/java/postgresql.jar

install_java() {
    if [ -f "$PGJDBC_JAR" ] && command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
        echo "install-drivers: pgjdbc found at $PGJDBC_JAR"
        return 0
    fi
    local pkgs="libpostgresql-jdbc-java"
    command -v javac >/dev/null 2>&1 || pkgs="$pkgs default-jdk-headless"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "install-drivers: pgjdbc is absent; install it with: sudo apt-get install -y $pkgs"
            return 0
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-drivers: apt-get is absent; pgjdbc ($pkgs) not installed; Java is reported as absent"
        return 0
    fi
    # shellcheck disable=SC2086
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null \
        || { $sudo apt-get update -q >/dev/null && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >/dev/null; } \
        || { echo "install-drivers: apt-get install $pkgs failed"; return 1; }
    echo "install-drivers: pgjdbc installed at $PGJDBC_JAR"
}

install_python || status=1
install_node || status=1
install_java || status=1
exit $status
