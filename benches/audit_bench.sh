#!/usr/bin/env bash
# pgbench through pgveil with the audit stream off, `buffered` and `strict`, on a workload
# that touches tagged columns: a point lookup by the deterministic-encrypted `email` of
# public.customers (rules/), reading email and ssn decrypted (role admin). Every
# transaction is one audited statement on a tagged table, so in strict mode each waits for
# its record's fsync (group commit across clients).
#
# The three proxies run side by side on the same PostgreSQL; runs are interleaved
# (off, buffered, strict, for each round) so machine noise hits every mode alike. Prints
# TPS per run, the median per mode, the ratio to `off`, and checks afterwards that the
# audit directories verify and hold one record per transaction.
#
# A benchmark, not a test: it asserts nothing about speed. It starts its own throwaway
# PostgreSQL (as the `postgres` OS user when run as root) and removes everything at the end.
# The audit directories live under $AUDIT_BASE (default: a temp dir under /tmp), so the
# fsync cost is that of the filesystem there.
#
# Usage: benches/audit_bench.sh [--rounds N] [--duration SECS] [--clients N[,N...]] [--rows N]
#                               [--no-build] [--binary PATH]
# --clients takes a comma-separated list (default 8,32); every round runs each client count
# in each mode, interleaved, and the summary prints one table per client count.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=10
CLIENTS=8,32
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
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

scripts/install-deps.sh >&2

SCALE=1
. benches/lib.sh
AUDIT_BASE=${AUDIT_BASE:-$WORK/audit}
mkdir -p "$AUDIT_BASE"

"$PSQL" -X -q -p "$PGPORT" -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE ROLE admin LOGIN PASSWORD '$PASSWORD';
CREATE TABLE public.customers (id bigserial PRIMARY KEY, full_name text NOT NULL,
    email bytea, ssn bytea, phone bytea, birth_date bytea, card_number bytea);
CREATE INDEX ON public.customers (email);
GRANT ALL ON public.customers, public.customers_id_seq TO admin;
SQL

# --- pgveil: off, buffered, strict -------------------------------------------------------
"$PGVEIL" keygen --out "$WORK/keyring.toml" >/dev/null
declare -A PORT
for mode in off buffered strict; do
    PORT[$mode]=$(free_port)
    args=(serve --listen "127.0.0.1:${PORT[$mode]}"
        --upstream "postgres://127.0.0.1:$PGPORT?sslmode=disable"
        --metrics-listen "127.0.0.1:$(free_port)"
        --rules rules --keyring "$WORK/keyring.toml")
    if [ "$mode" != off ]; then
        args+=(--audit-dir "$AUDIT_BASE/$mode" --audit-durability "$mode")
    fi
    PGVEIL_LOG=warn "$PGVEIL" "${args[@]}" >"$WORK/pgveil-$mode.log" 2>&1 &
    EXTRA_PIDS+=($!)
    wait_port "${PORT[$mode]}"
done

# --- data, written through pgveil (so it is encrypted) -----------------------------------
echo "loading $ROWS customers through pgveil (COPY, encrypted in flight)..." >&2
awk -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++)
    printf "Customer %d,%d,%03d-%02d-%04d\n", i, i, i % 1000, i % 100, i % 10000 }' >"$WORK/rows.csv"
PGUSER=admin "$PSQL" -X -q -p "${PORT[off]}" -v ON_ERROR_STOP=1 \
    -c "\\copy customers (full_name, email, ssn) FROM '$WORK/rows.csv' WITH (FORMAT csv)"
"$PSQL" -X -q -p "$PGPORT" -c "ANALYZE customers" >/dev/null
# The email of customer N is the text "N": pgbench's \set only makes numbers, and a
# parameter carries it as text, which pgveil encrypts for the equality lookup.
cat >"$WORK/lookup.sql" <<SQL
\set n random(1, $ROWS)
SELECT id, full_name, email, ssn FROM customers WHERE email = :n;
SQL
check=$(PGUSER=admin "$PGBENCH" -n -M prepared -t 1 -c 1 -p "${PORT[off]}" -f "$WORK/lookup.sql" 2>&1) || {
    echo "$check" >&2; exit 1
}

# --- runs ------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
IFS=, read -r -a CLIENT_LIST <<<"$CLIENTS"
printf '%-6s %-8s %-9s %12s %12s\n' round clients audit tps "lat_ms" >&2
for round in $(seq 1 "$ROUNDS"); do
    for clients in "${CLIENT_LIST[@]}"; do
        for mode in off buffered strict; do
            out=$(PGUSER=admin "$PGBENCH" -n -M prepared -c "$clients" -j 2 -T "$DURATION" \
                -p "${PORT[$mode]}" -f "$WORK/lookup.sql" 2>&1) || { echo "$out" >&2; exit 1; }
            failed=$(echo "$out" | awk -F': *' '/number of failed transactions/ {split($2, a, " "); print a[1]; exit}')
            [ "${failed:-0}" = 0 ] || { echo "$mode: $failed failed transactions" >&2; echo "$out" >&2; exit 1; }
            tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
            lat=$(echo "$out" | awk '/^latency average = / {print $4; exit}')
            txns=$(echo "$out" | awk -F': *' '/actually processed/ {split($2, a, "/"); print a[1]; exit}')
            printf '%-6s %-8s %-9s %12s %12s\n' "$round" "$clients" "$mode" "$tps" "$lat" >&2
            printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$tps" "$lat" "$txns" "$clients" >>"$RESULTS"
        done
    done
done

# --- the audit holds what was run --------------------------------------------------------
for mode in buffered strict; do
    v=$("$PGVEIL" audit verify "$AUDIT_BASE/$mode") || { echo "$mode: $v" >&2; exit 1; }
    # One record per Execute: every transaction pgbench counted, each with the row it found.
    txns=$(awk -F'\t' -v m="$mode" '$1 == m {s += $4} END {print s + 0}' "$RESULTS")
    found=$("$PGVEIL" audit search "$AUDIT_BASE/$mode" --table customers --outcome ok |
        grep -c '"rows":1,' || true)
    echo "$mode audit: $v" >&2
    echo "$mode audit: $found lookups on record with 1 row, pgbench counted $txns transactions" >&2
done

# --- summary ---------------------------------------------------------------------------
fs=$(df -T "$AUDIT_BASE" | awk 'NR == 2 {print $2}')
echo
echo "point lookup by encrypted email (admin, decrypts email+ssn), pgbench -M prepared,"
echo "$ROUNDS x ${DURATION}s per mode and client count, $ROWS rows, $(nproc) CPUs, audit dir on $fs"
printf '%-8s %-9s %12s %10s %12s\n' clients audit tps vs_off "lat_ms"
for clients in "${CLIENT_LIST[@]}"; do
    sel() { awk -F'\t' -v m="$1" -v c="$clients" -v f="$2" '$1 == m && $5 == c {print $f}' "$RESULTS"; }
    off=$(sel off 2 | median)
    for mode in off buffered strict; do
        t=$(sel "$mode" 2 | median)
        l=$(sel "$mode" 3 | median)
        printf '%-8s %-9s %12.0f %10.3f %12s\n' "$clients" "$mode" "$t" \
            "$(awk -v a="$t" -v b="$off" 'BEGIN {print a / b}')" "$l"
    done
done
