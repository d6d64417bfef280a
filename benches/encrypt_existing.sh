#!/usr/bin/env bash
# Issue 14 benchmark: `pgveil encrypt` on a table of plaintext rows (default 1M) with 3
# tagged columns (email, ssn text; born date), online (shadow columns, then swap), while an
# application reads random rows through pgveil at a fixed rate. Prints per round: rows/s of
# the walk and of the whole run (walk, catch-up and swap), the tool's resident memory (first and
# peak sample: flat means bounded batches), and the p50/p99 latency of the application's
# reads before (baseline) and during the conversion; then medians over the rounds.
#
# A benchmark, not a test: it asserts nothing. Throwaway PostgreSQL, removed at the end.
#
# Usage: benches/encrypt_existing.sh [--rounds N] [--rows N] [--batch-size N]
#                                    [--read-rate TPS] [--duration SECS] [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
ROWS=1000000
BATCH=5000
READ_RATE=200   # application reads/s through pgveil (fixed, so latency is not queueing)
DURATION=15     # seconds of reads for the baseline and during each conversion
BUILD=1
PGVEIL=""
SCALE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --batch-size) BATCH=$2; shift 2 ;;
        --read-rate) READ_RATE=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        -h | --help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/install-deps.sh >&2
. benches/lib.sh

psql_pg() { "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -p "$PGPORT" "$@"; }

rule() { # rule NAME TYPE [MODE]: plaintext access for postgres; no MODE = plaintext at rest
    printf '[[column]]\ntable = "public.people"\nname = "%s"\ntype = "%s"\n' "$1" "$2"
    [ -n "${3:-}" ] && printf 'encrypt = "%s"\n' "$3"
    printf 'class = "pii"\n[column.access]\npostgres = "plaintext"\n\n'
}
mkdir -p "$WORK/target"
# The final rules, deployed from the start: pgveil serves each column as what it is at that
# moment (snapshot::overlay: plaintext at rest with the shadow denied while it is on the
# shadow path, ciphertext after the swap).
{ rule email text deterministic; rule ssn text deterministic; rule born date randomized; } \
    >"$WORK/target/people.toml"

"$PGVEIL" keygen --out "$WORK/keyring.toml" >/dev/null
start_pgveil "$PROXY_PORT" --rules "$WORK/target" --keyring "$WORK/keyring.toml"

cat >"$WORK/read.sql" <<SQL
\\set i random(1, $ROWS)
SELECT email, ssn, born FROM people WHERE id = :i;
SQL

load_table() {
    psql_pg -c "DROP TABLE IF EXISTS people; DROP SCHEMA IF EXISTS pgveil CASCADE;
      CREATE TABLE people (id bigint PRIMARY KEY, email text, ssn text, born date, note text);
      INSERT INTO people SELECT i, 'user' || i || '@example.com',
        lpad((i % 1000)::text, 3, '0') || '-' || lpad((i % 100)::text, 2, '0') || '-' || lpad((i % 10000)::text, 4, '0'),
        DATE '1950-01-01' + (i % 20000)::int, 'note ' || i FROM generate_series(1, $ROWS) i;" >/dev/null
    # Its own command: psql -c runs a multi-statement string as one transaction.
    psql_pg -c "VACUUM ANALYZE people" >/dev/null
}

# reads TAG: $DURATION s of reads through pgveil; prints "p50_ms p99_ms" from the per-transaction log.
reads() {
    local dir="$WORK/log-$1"
    rm -rf "$dir" && mkdir -p "$dir"
    "$PGBENCH" -n -p "$PROXY_PORT" -M prepared -c 2 -j 1 -R "$READ_RATE" -T "$DURATION" \
        -f "$WORK/read.sql" -l --log-prefix="$dir/tx" >"$dir/out" 2>&1 || { cat "$dir/out" >&2; return 1; }
    cat "$dir"/tx* | awk '{print $3 / 1000}' | sort -g | awk '{a[NR] = $1}
        END { printf "%.2f %.2f\n", a[int(NR * 0.5) + 1], a[int(NR * 0.99) + 1] }'
}

# rss PID: resident KiB of the pgveil process PID runs (PID is the subshell of the `encrypt`
# function, so its pgveil child is what is sampled), every 0.2 s until it exits; prints
# "first peak".
rss() {
    local pid=$1 first="" peak=0 v child="" i
    for _ in $(seq 1 50); do
        child=$(pgrep -P "$pid" -x pgveil | head -n1 || true)
        [ -n "$child" ] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    pid=${child:-$pid}
    while v=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$v" ]; do
        [ -z "$first" ] && first=$v
        [ "$v" -gt "$peak" ] && peak=$v
        sleep 0.2
    done
    echo "${first:-0} $peak"
}

RESULTS="$WORK/results.tsv"
: >"$RESULTS"
printf '%-6s %12s %12s %10s %10s %9s %9s %9s %9s\n' round walk_rows/s total_rows/s rss0_MiB \
    peak_MiB base_p50 base_p99 conv_p50 conv_p99 >&2
encrypt() { # encrypt ROUND FLAGS...: the tool on people, output in $WORK/encrypt$ROUND.*
    local r=$1
    shift
    PGVEIL_LOG=warn "$PGVEIL" encrypt --upstream "postgres://127.0.0.1:$PGPORT" \
        --rules "$WORK/target" --keyring "$WORK/keyring.toml" --table public.people \
        --batch-size "$BATCH" "$@" >>"$WORK/encrypt$r.out" 2>>"$WORK/encrypt$r.err"
}
for round in $(seq 1 "$ROUNDS"); do
    load_table
    : >"$WORK/encrypt$round.out"
    : >"$WORK/encrypt$round.err"
    # The empty shadows first: the baseline reads are served exactly as during the walk.
    encrypt "$round" --install-only || { cat "$WORK/encrypt$round.err" >&2; exit 1; }
    read -r bp50 bp99 < <(reads "base$round")
    start=$(date +%s.%N)
    reads "conv$round" >"$WORK/conv$round.lat" &
    READER=$!
    EXTRA_PIDS+=("$READER")
    # The walk under the readers; the swap after them (pgbench -M prepared ends a client on
    # the refusals of the swap window, see docs/operations.md step 8).
    encrypt "$round" --no-swap &
    TOOL=$!
    read -r rss0 peak < <(rss "$TOOL")
    wait "$TOOL" || { cat "$WORK/encrypt$round.err" >&2; exit 1; }
    wait "$READER"
    encrypt "$round" || { cat "$WORK/encrypt$round.err" >&2; exit 1; }
    end=$(date +%s.%N)
    read -r cp50 cp99 <"$WORK/conv$round.lat"
    walk=$(grep 'kept in sync' "$WORK/encrypt$round.out" | sed -n 's/.*(\([0-9]*\) rows\/s).*/\1/p')
    total=$(awk -v n="$ROWS" -v a="$start" -v b="$end" 'BEGIN {printf "%.0f", n / (b - a)}')
    rss0=$(awk -v k="$rss0" 'BEGIN {printf "%.1f", k / 1024}')
    peak=$(awk -v k="$peak" 'BEGIN {printf "%.1f", k / 1024}')
    printf '%-6s %12s %12s %10s %10s %9s %9s %9s %9s\n' "$round" "$walk" "$total" "$rss0" "$peak" \
        "$bp50" "$bp99" "$cp50" "$cp99" >&2
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$walk" "$total" "$rss0" "$peak" "$bp50" "$bp99" \
        "$cp50" "$cp99" >>"$RESULTS"
    grep -q 'swapped in' "$WORK/encrypt$round.out" || { echo "round $round did not swap" >&2; exit 1; }
done

col() { awk -F'\t' -v c="$1" '{print $c}' "$RESULTS" | median; }
echo
echo "pgveil encrypt, $ROWS rows, 3 tagged columns (2 deterministic text, 1 randomized date)," \
    "batch $BATCH; reads through pgveil at $READ_RATE/s (2 clients, ${DURATION}s);" \
    "medians of $ROUNDS rounds; $(nproc) CPUs"
printf '| %-34s | %12s |\n' metric median
printf '|%s|%s|\n' "------------------------------------" "--------------"
printf '| %-34s | %12s |\n' "walk rows/s (target >= 20000)" "$(col 1)"
printf '| %-34s | %12s |\n' "whole run rows/s (walk..swap)" "$(col 2)"
printf '| %-34s | %12s |\n' "tool RSS first sample, MiB" "$(col 3)"
printf '| %-34s | %12s |\n' "tool RSS peak, MiB" "$(col 4)"
printf '| %-34s | %12s |\n' "read p50 baseline, ms" "$(col 5)"
printf '| %-34s | %12s |\n' "read p99 baseline, ms" "$(col 6)"
printf '| %-34s | %12s |\n' "read p50 during conversion, ms" "$(col 7)"
printf '| %-34s | %12s |\n' "read p99 during conversion, ms" "$(col 8)"
printf '| %-34s | %12s |\n' "p99 ratio (target <= 2)" \
    "$(awk -v a="$(col 8)" -v b="$(col 6)" 'BEGIN {printf "%.2f", a / b}')"
