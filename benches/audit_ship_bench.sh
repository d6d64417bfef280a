#!/usr/bin/env bash
# What shipping the audit to NATS JetStream costs the statement path, and how fast it
# catches up. pgbench point lookups on a tagged table (as in benches/audit_bench.sh, strict
# audit) through three proxies side by side:
#   strict       audit, no shipping
#   ship         audit shipped to a live nats-server -js
#   ship_down    audit shipped to a nats-server that is stopped (the shipper retries)
# Runs are interleaved per round so machine noise hits every mode alike. Afterwards the
# stopped server is started again and the time for the backlog to drain is measured from
# the proxies' metrics; both streams are verified with `pgveil audit verify --nats`.
#
# A benchmark, not a test: it asserts nothing about speed. Needs nats-server
# (scripts/install-nats.sh) and the PostgreSQL tools.
#
# Usage: benches/audit_ship_bench.sh [--rounds N] [--duration SECS] [--clients N] [--rows N]
#                                    [--no-build] [--binary PATH]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=10
CLIENTS=8
ROWS=10000
BUILD=1
PGVEIL=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --binary) PGVEIL=$2; BUILD=0; shift 2 ;;
        -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh >&2
scripts/install-nats.sh >&2
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)

SCALE=1
. benches/lib.sh

"$PSQL" -X -q -p "$PGPORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE ROLE admin LOGIN PASSWORD '$PASSWORD';
CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL,
    email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea);
CREATE INDEX ON public.customers (email);
GRANT ALL ON public.customers, public.customers_id_seq TO admin;
SQL

# --- two nats servers: one stays up, one is stopped during the runs ----------------------
declare -A NPORT NPID
start_nats() { # start_nats NAME
    [ -n "${NPORT[$1]:-}" ] || NPORT[$1]=$(free_port)
    "$NATS" -js -a 127.0.0.1 -p "${NPORT[$1]}" -sd "$WORK/nats-$1" -l "$WORK/nats-$1.log" &
    NPID[$1]=$!
    EXTRA_PIDS+=("${NPID[$1]}")
    wait_port "${NPORT[$1]}"
}
start_nats up
start_nats down

# --- pgveil: strict, ship, ship_down ------------------------------------------------------
"$PGVEIL" keygen --out "$WORK/keyring.toml" >/dev/null
declare -A PORT MPORT
MODES="strict ship ship_down"
for mode in $MODES; do
    PORT[$mode]=$(free_port)
    MPORT[$mode]=$(free_port)
    args=(serve --listen "127.0.0.1:${PORT[$mode]}"
        --upstream "postgres://127.0.0.1:$PGPORT?sslmode=disable"
        --metrics-listen "127.0.0.1:${MPORT[$mode]}"
        --rules rules --keyring "$WORK/keyring.toml"
        --audit-dir "$WORK/audit-$mode" --audit-durability strict --audit-instance "$mode")
    case $mode in
        ship) args+=(--audit-ship "nats://127.0.0.1:${NPORT[up]}") ;;
        ship_down) args+=(--audit-ship "nats://127.0.0.1:${NPORT[down]}") ;;
    esac
    PGVEIL_LOG=warn "$PGVEIL" "${args[@]}" >"$WORK/pgveil-$mode.log" 2>&1 &
    EXTRA_PIDS+=($!)
    wait_port "${PORT[$mode]}"
done
metric() { # metric MODE NAME
    { exec 3<>/dev/tcp/127.0.0.1/"${MPORT[$1]}" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3; } |
        awk -v n="$2" '$1 == n {print $2; exit}'
}

echo "loading $ROWS customers through pgveil..." >&2
awk -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++)
    printf "Customer %d,%d,%03d-%02d-%04d\n", i, i, i % 1000, i % 100, i % 10000 }' >"$WORK/rows.csv"
PGUSER=admin "$PSQL" -X -q -p "${PORT[strict]}" -v ON_ERROR_STOP=1 \
    -c "\\copy customers (full_name, email, ssn) FROM '$WORK/rows.csv' WITH (FORMAT csv)"
"$PSQL" -X -q -p "$PGPORT" -c "ANALYZE customers" >/dev/null
cat >"$WORK/lookup.sql" <<SQL
\set n random(1, $ROWS)
SELECT id, full_name, email, ssn FROM customers WHERE email = :n;
SQL
sleep 1
kill "${NPID[down]}" && wait "${NPID[down]}" 2>/dev/null || true

# --- runs ------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
printf '%-6s %-10s %12s %12s\n' round mode tps lat_ms >&2
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        out=$(PGUSER=admin "$PGBENCH" -n -M prepared -c "$CLIENTS" -j 2 -T "$DURATION" \
            -p "${PORT[$mode]}" -f "$WORK/lookup.sql" 2>&1) || { echo "$out" >&2; exit 1; }
        tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
        lat=$(echo "$out" | awk '/^latency average = / {print $4; exit}')
        printf '%-6s %-10s %12s %12s\n' "$round" "$mode" "$tps" "$lat" >&2
        printf '%s\t%s\t%s\n' "$mode" "$tps" "$lat" >>"$RESULTS"
    done
done

# --- catch-up after the outage ---------------------------------------------------------
backlog=$(metric ship_down pgveil_audit_ship_lag_records)
start=$(date +%s.%N)
start_nats down
while [ "$(metric ship_down pgveil_audit_ship_lag_records)" != 0 ]; do sleep 0.1; done
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
for mode in ship ship_down; do
    while [ "$(metric "$mode" pgveil_audit_ship_lag_records)" != 0 ]; do sleep 0.1; done
    url="nats://127.0.0.1:${NPORT[up]}"
    [ "$mode" = ship_down ] && url="nats://127.0.0.1:${NPORT[down]}"
    echo "$mode: $("$PGVEIL" audit verify --nats "$url" --stream PGVEIL_AUDIT)" >&2
    echo "$mode: local $("$PGVEIL" audit verify "$WORK/audit-$mode")" >&2
done

# --- summary ---------------------------------------------------------------------------
echo
echo "strict audit, point lookup by encrypted email, pgbench -M prepared, $CLIENTS clients,"
echo "$ROUNDS x ${DURATION}s per mode, $(nproc) CPUs"
printf '%-10s %12s %10s %12s\n' mode tps vs_strict lat_ms
base=$(awk -F'\t' '$1 == "strict" {print $2}' "$RESULTS" | median)
for mode in $MODES; do
    t=$(awk -F'\t' -v m="$mode" '$1 == m {print $2}' "$RESULTS" | median)
    l=$(awk -F'\t' -v m="$mode" '$1 == m {print $3}' "$RESULTS" | median)
    printf '%-10s %12.0f %10.3f %12s\n' "$mode" "$t" "$(awk -v a="$t" -v b="$base" 'BEGIN {print a / b}')" "$l"
done
echo "backlog after the outage: $backlog records, shipped in ${took}s after nats-server restarted" \
    "($(awk -v n="$backlog" -v s="$took" 'BEGIN { if (s > 0) printf "%.0f", n / s }') records/s, including reconnect)"
