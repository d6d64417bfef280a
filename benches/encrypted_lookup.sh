#!/usr/bin/env bash
# Issue 3 benchmark: a point lookup by encrypted email that decrypts 3 encrypted
# columns (email, ssn, phone), against the same query shape on a plaintext twin table,
# both through pgveil, interleaved in the same run. Prints TPS per run, medians and the
# encrypted/plaintext ratio. Also runs the plaintext query directly against PostgreSQL.
#
# A benchmark, not a test: it asserts nothing. Throwaway PostgreSQL, removed at the end.
#
# Usage: benches/encrypted_lookup.sh [--rounds N] [--duration SECS] [--clients N]
#                                    [--rows N] [--mode prepared|simple] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=10
CLIENTS=8
ROWS=10000
MODE=prepared  # the lookup passes :i as a parameter; -M simple would compare text to an integer
BUILD=1
PGVEIL=""
SCALE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/install-deps.sh >&2
. benches/lib.sh

psql_pg() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" "$@"; }
psql_pg -c "CREATE ROLE admin LOGIN PASSWORD '$PASSWORD';
  CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text NOT NULL, email bytea, ssn bytea,
      phone bytea, birth_date bytea, card_number bytea);
  CREATE TABLE customers_plain (id bigserial PRIMARY KEY, full_name text NOT NULL, email text, ssn text,
      phone text, birth_date date, card_number text);
  CREATE INDEX ON customers (email); CREATE INDEX ON customers_plain (email);
  GRANT ALL ON ALL TABLES IN SCHEMA public TO admin; GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO admin;"

"$PGVEIL" keygen --out "$WORK/keyring.toml" >/dev/null
PROXY_PORT=$(free_port)
start_pgveil "$PROXY_PORT" --rules rules --keyring "$WORK/keyring.toml"

# Load the same rows into both tables through pgveil (so `customers` holds ciphertext).
# The "email" is the row number as text, so pgbench (which has no string functions) can
# look a row up with a plain parameter: `WHERE email = :i` in -M prepared.
DATA="$WORK/rows.csv"
awk -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++)
    printf "Customer %d,%d,%03d-%02d-%04d,+1-202-555-%04d,1980-01-%02d,4111 1111 1111 %04d\n",
        i, i, i % 1000, i % 100, i % 10000, i % 10000, i % 28 + 1, i % 10000 }' >"$DATA"
COLS="full_name, email, ssn, phone, birth_date, card_number"
PGUSER=admin "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$PROXY_PORT" \
    -c "\\copy customers ($COLS) FROM '$DATA' WITH (FORMAT csv)" \
    -c "\\copy customers_plain ($COLS) FROM '$DATA' WITH (FORMAT csv)"
psql_pg -c "ANALYZE"

for t in customers customers_plain; do
    cat >"$WORK/$t.sql" <<SQL
\\set i random(1, $ROWS)
SELECT email, ssn, phone FROM $t WHERE email = :i;
SQL
done

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
printf '%-6s %-22s %12s %14s\n' round target tps "cpu_us/txn" >&2
for round in $(seq 1 "$ROUNDS"); do
    for target in encrypted-via-pgveil plaintext-via-pgveil plaintext-direct; do
        case $target in
            encrypted-via-pgveil) port=$PROXY_PORT; pid=$PROXY_PID; file=customers ;;
            plaintext-via-pgveil) port=$PROXY_PORT; pid=$PROXY_PID; file=customers_plain ;;
            plaintext-direct) port=$PGPORT; pid=""; file=customers_plain ;;
        esac
        read -r tps cpu _ < <(PGUSER=admin run_pgbench "$port" "$pid" -M "$MODE" -c "$CLIENTS" -j 2 \
            -T "$DURATION" -f "$WORK/$file.sql")
        printf '%-6s %-22s %12s %14s\n' "$round" "$target" "$tps" "$cpu" >&2
        printf '%s\t%s\t%s\n' "$target" "$tps" "$cpu" >>"$RESULTS"
    done
done

echo
echo "point lookup by email returning email, ssn, phone; $ROWS rows; -M $MODE; $CLIENTS clients;" \
    "$ROUNDS x ${DURATION}s per target; $(nproc) CPUs"
get() { awk -F'\t' -v t="$1" -v c="$2" '$1 == t {print $c}' "$RESULTS" | median; }
enc=$(get encrypted-via-pgveil 2)
plain=$(get plaintext-via-pgveil 2)
direct=$(get plaintext-direct 2)
printf '%-22s %12.0f  cpu_us/txn %s\n' encrypted-via-pgveil "$enc" "$(get encrypted-via-pgveil 3)"
printf '%-22s %12.0f  cpu_us/txn %s\n' plaintext-via-pgveil "$plain" "$(get plaintext-via-pgveil 3)"
printf '%-22s %12.0f\n' plaintext-direct "$direct"
printf 'ratio encrypted/plaintext through pgveil: %.3f\n' "$(awk -v a="$enc" -v b="$plain" 'BEGIN {print a / b}')"
