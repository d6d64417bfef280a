#!/usr/bin/env bash
# pgbench select-only (-S, 8 clients) against PostgreSQL directly and through pgveil,
# interleaved in the same run (direct, proxy[, pgbouncer] back to back, for each round and
# query mode) so machine noise hits every target alike. Prints TPS per run, the median per
# target, the proxy/direct ratio, and pgveil's CPU time per statement (utime+stime from
# /proc/<pid>/stat over the run, divided by the transactions; -S runs one statement each).
#
# A benchmark, not a test: it asserts nothing. It starts its own throwaway PostgreSQL (as the
# `postgres` OS user when run as root) and removes it at the end.
#
# Usage: benches/pgbench.sh [--rounds N] [--duration SECS] [--clients N] [--scale N]
#                           [--modes "prepared simple"] [--pgbouncer] [--install-pgbouncer]
#                           [--no-build] [--binary PATH]
#   --pgbouncer          also measure through pgbouncer (session pooling) if installed
#   --install-pgbouncer  apt-get install -y pgbouncer first (root only), implies --pgbouncer
#   --no-build           use the existing target/release/pgveil
#   --binary PATH        use this pgveil binary (implies --no-build)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=10
CLIENTS=8
SCALE=10
MODES="prepared simple"
BOUNCER=0
INSTALL_BOUNCER=0
BUILD=1
PGVEIL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --scale) SCALE=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --pgbouncer) BOUNCER=1; shift ;;
        --install-pgbouncer) BOUNCER=1; INSTALL_BOUNCER=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --binary) PGVEIL=$2; BUILD=0; shift 2 ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh >&2

if [ "$INSTALL_BOUNCER" = 1 ] && ! command -v pgbouncer >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "--install-pgbouncer needs root: sudo apt-get install -y pgbouncer" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y pgbouncer >&2
fi
if [ "$BOUNCER" = 1 ] && ! command -v pgbouncer >/dev/null 2>&1; then
    echo "pgbouncer not installed (use --install-pgbouncer); skipping it" >&2
    BOUNCER=0
fi

. benches/lib.sh

# --- pgveil ----------------------------------------------------------------------------
start_pgveil "$PROXY_PORT"

# --- pgbouncer (optional) --------------------------------------------------------------
if [ "$BOUNCER" = 1 ]; then
    cat >"$WORK/pgbouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
pool_mode = session
max_client_conn = 100
default_pool_size = $((CLIENTS + 2))
logfile = $WORK/pgbouncer.log
INI
    echo "\"postgres\" \"$PASSWORD\"" >"$WORK/userlist.txt"
    [ "$(id -u)" = 0 ] && chown postgres: "$WORK/pgbouncer.ini" "$WORK/userlist.txt"
    "${AS_PG[@]}" pgbouncer "$WORK/pgbouncer.ini" >/dev/null 2>&1 &
    BOUNCER_PID=$!
    wait_port "$BOUNCER_PORT"
    # As root, $! is runuser; account the CPU of pgbouncer itself.
    BOUNCER_PID=$(pgrep -n -x pgbouncer || echo "$BOUNCER_PID")
fi

# --- runs ------------------------------------------------------------------------------
TARGETS="direct pgveil"
[ "$BOUNCER" = 1 ] && TARGETS="$TARGETS pgbouncer"
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
printf '%-6s %-9s %-10s %12s %12s %12s\n' round mode target tps "cpu_us/stmt" "user_us/stmt" >&2
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        for target in $TARGETS; do
            case $target in
                direct) port=$PGPORT ;;
                pgveil) port=$PROXY_PORT ;;
                pgbouncer) port=$BOUNCER_PORT ;;
            esac
            pid=""
            [ "$target" = pgveil ] && pid=$PROXY_PID
            [ "$target" = pgbouncer ] && pid=$BOUNCER_PID
            read -r tps cpu ucpu < <(run_pgbench "$port" "$pid" -S -M "$mode" -c "$CLIENTS" -j 2 -T "$DURATION")
            printf '%-6s %-9s %-10s %12s %12s %12s\n' "$round" "$mode" "$target" "$tps" "$cpu" "$ucpu" >&2
            printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$target" "$tps" "$cpu" "$ucpu" >>"$RESULTS"
        done
    done
done

# --- summary ---------------------------------------------------------------------------
echo
echo "pgbench -S, $CLIENTS clients, $ROUNDS x ${DURATION}s per target, scale $SCALE, $(nproc) CPUs"
printf '%-9s %-10s %12s %14s %12s %13s\n' mode target tps "ratio/direct" "cpu_us/stmt" "user_us/stmt"
for mode in $MODES; do
    d=$(awk -F'\t' -v m="$mode" '$1 == m && $2 == "direct" {print $3}' "$RESULTS" | median)
    for target in $TARGETS; do
        col() { awk -F'\t' -v m="$mode" -v t="$target" -v c="$1" '$1 == m && $2 == t {print $c}' "$RESULTS" | median; }
        t=$(col 3)
        printf '%-9s %-10s %12.0f %14.3f %12s %13s\n' "$mode" "$target" "$t" \
            "$(awk -v a="$t" -v b="$d" 'BEGIN {print a / b}')" "$(col 4)" "$(col 5)"
    done
done
