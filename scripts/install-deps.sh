#!/usr/bin/env bash
# Makes sure the PostgreSQL tools pgveil's tests and demo need are present:
# the server binaries (initdb, pg_ctl, postgres), psql and pgbench.
#
# Idempotent: does nothing when they are already there. Installs with apt-get when it can
# (as root, or via passwordless sudo); otherwise prints the exact command and fails.
# PGVEIL_PG_BIN may name the directory holding initdb (same lookup as src/pgtemp.rs).
set -euo pipefail

PKGS="postgresql postgresql-client"

find_bindir() {
    if [ -n "${PGVEIL_PG_BIN:-}" ]; then
        [ -x "$PGVEIL_PG_BIN/initdb" ] && echo "$PGVEIL_PG_BIN"
        return 0
    fi
    local best="" best_ver=-1 d v
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] || continue
        v=$(basename "$(dirname "$d")")
        v=${v%%.*}
        case "$v" in '' | *[!0-9]*) continue ;; esac
        if [ "$v" -gt "$best_ver" ]; then best="$d"; best_ver="$v"; fi
    done
    if [ -n "$best" ]; then echo "$best"; return 0; fi
    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null || true)
        if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; return 0; fi
    fi
    if command -v initdb >/dev/null 2>&1; then
        d=$(dirname "$(readlink -f "$(command -v initdb)")")
        [ -x "$d/pg_ctl" ] && echo "$d"
    fi
    return 0
}

missing() {
    local bindir tool
    bindir=$(find_bindir)
    if [ -z "$bindir" ]; then echo "server binaries (initdb, pg_ctl, postgres)"; return; fi
    for tool in psql pgbench; do
        [ -x "$bindir/$tool" ] || command -v "$tool" >/dev/null 2>&1 || echo "$tool"
    done
}

need=$(missing)
if [ -z "$need" ]; then
    echo "install-deps: PostgreSQL tools found in $(find_bindir)"
    exit 0
fi
echo "install-deps: missing: $(echo "$need" | tr '\n' ' ')" >&2

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get here; install the PostgreSQL server, psql and pgbench" \
        "with your package manager, or set PGVEIL_PG_BIN to the directory holding initdb." >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "install-deps: run this as root, then retry:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKGS" >&2
    exit 1
fi
echo "install-deps: apt-get install -y $PKGS" >&2
$SUDO apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y $PKGS
need=$(missing)
if [ -n "$need" ]; then
    echo "install-deps: still missing after install: $need" >&2
    exit 1
fi
echo "install-deps: PostgreSQL tools installed in $(find_bindir)"
