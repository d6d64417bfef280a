#!/usr/bin/env bash
# Makes sure `nats-server` (with JetStream) is present for the audit shipping tests
# (tests/audit_ship.rs start their own on a free loopback port with `-js`).
#
# Idempotent: does nothing when nats-server is already on PATH (or PGVEIL_NATS_SERVER names
# it). Installs Debian's `nats-server` package with apt-get when it can (as root or via
# passwordless sudo); otherwise says so plainly and exits 1, so the test suite does not
# silently skip the shipping tests.
set -euo pipefail

PKG="nats-server"

found() {
    if [ -n "${PGVEIL_NATS_SERVER:-}" ]; then
        [ -x "$PGVEIL_NATS_SERVER" ] && echo "$PGVEIL_NATS_SERVER"
        return 0
    fi
    command -v nats-server 2>/dev/null || true
}

bin=$(found)
if [ -n "$bin" ]; then
    echo "install-nats: nats-server found at $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
    exit 0
fi
echo "install-nats: nats-server is missing (needed by the audit shipping tests)" >&2

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-nats: no apt-get here; install nats-server (2.9 or later, JetStream) with your" \
        "package manager, or set PGVEIL_NATS_SERVER to its path." >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
else
    echo "install-nats: run this as root, then retry:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKG" >&2
    exit 1
fi
echo "install-nats: apt-get install -y $PKG" >&2
if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PKG"; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y "$PKG"
fi
bin=$(found)
if [ -z "$bin" ]; then
    echo "install-nats: nats-server still missing after installing $PKG" >&2
    exit 1
fi
echo "install-nats: nats-server installed at $bin"
