#!/usr/bin/env bash
# Issue 12 benchmark: the same read statements as admin (plaintext on every tagged column),
# support (masks) and analyst (null / hash on a deny-free subset of the columns), through
# pgveil, -M simple and -M prepared, interleaved round by round so machine noise hits every
# target alike. Prints TPS per run, the median per target, the support/admin and
# analyst/admin ratios, pgveil's CPU per transaction, and the size of the SQL pgveil forwards
# for each shape and role (from `pgveil explain` against the live schema).
#
# Shapes (table `customers`: email and ssn encrypted, full_name / phone / birth_date /
# card_number plaintext at rest and masked; `customers_plain` is an untagged twin):
#   a  point read by id of every tagged column the role may read
#   b  20-row range read by id
#   c  lookup by deterministic encrypted email, returning email, ssn, phone (analyst: no ssn);
#      admin also runs it on the plaintext twin (`twin`)
#   d  a masked column in a predicate: 20-row range AND card_number LIKE '%1111'
#   e  an untagged table (pgbench_accounts) in the same sessions
#
# A benchmark, not a test: it asserts nothing. Throwaway PostgreSQL, removed at the end.
#
# Usage: benches/restricted_read.sh [--rounds N] [--duration SECS] [--clients N] [--rows N]
#                                   [--modes "simple prepared"] [--shapes "a b c d e"]
#                                   [--no-build] [--binary PATH] [--instructions N]
#   --no-build        use the existing target/release/pgveil
#   --binary PATH     use this pgveil binary (implies --no-build)
#   --instructions N  instead of timed runs, count pgveil's instructions per transaction under
#                     valgrind's callgrind (one client, N transactions per target after a
#                     warm-up): repeatable whatever else the machine is doing, so before/after
#                     comparisons of pgveil's own cost need no quiet machine
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=3
DURATION=5
CLIENTS=8
ROWS=10000
MODES="simple prepared"
SHAPES="a b c d e"
BUILD=1
PGVEIL=""
SCALE=1
INSTRUCTIONS=0
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --clients) CLIENTS=$2; shift 2 ;;
        --rows) ROWS=$2; shift 2 ;;
        --modes) MODES=$2; shift 2 ;;
        --shapes) SHAPES=$2; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --binary) PGVEIL=$2; BUILD=0; shift 2 ;;
        --instructions) INSTRUCTIONS=$2; shift 2 ;;
        -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
scripts/install-deps.sh >&2
# shellcheck source=benches/lib.sh
. benches/lib.sh

ROLES="admin support analyst"
psql_pg() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -p "$PGPORT" "$@"; }
psql_pg -c "CREATE ROLE admin LOGIN PASSWORD '$PASSWORD';
  CREATE ROLE support LOGIN PASSWORD '$PASSWORD';
  CREATE ROLE analyst LOGIN PASSWORD '$PASSWORD';
  CREATE TABLE customers (id bigserial PRIMARY KEY, full_name text NOT NULL, email bytea,
      ssn bytea, phone text, birth_date date, card_number text);
  CREATE TABLE customers_plain (id bigserial PRIMARY KEY, full_name text NOT NULL, email text,
      ssn text, phone text, birth_date date, card_number text);
  CREATE INDEX ON customers (email); CREATE INDEX ON customers_plain (email);
  GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO admin, support, analyst;
  GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO admin;"

# The rules: the example rules' masks, with phone, birth_date and card_number stored in
# plaintext (masked in SQL or in the proxy), as in the issue's measurements.
mkdir -p "$WORK/rules"
rule() { # rule NAME TYPE ENCRYPT(or -) CLASS SUPPORT ANALYST
    printf '[[column]]\ntable = "public.customers"\nname = "%s"\ntype = "%s"\n' "$1" "$2"
    [ "$3" != - ] && printf 'encrypt = "%s"\n' "$3"
    printf 'class = "%s"\n[column.access]\nadmin = "plaintext"\nsupport = "%s"\nanalyst = "%s"\ndefault = "deny"\n\n' \
        "$4" "$5" "$6"
}
{
    rule full_name text - name "partial(1,0)" null
    rule email text deterministic contact email hash
    rule ssn text randomized national_id "partial(0,4)" deny
    rule phone text - contact "partial(1,4)" null
    rule birth_date date - dob year null
    rule card_number text - payment_card "partial(0,4)" hash
} >"$WORK/rules/bench.toml"
"$PGVEIL" keygen --out "$WORK/keyring.toml" >/dev/null
start_pgveil "$PROXY_PORT" --rules "$WORK/rules" --keyring "$WORK/keyring.toml"

# The "email" is the row number as text, so pgbench (which has no string functions) can look
# a row up by it: `WHERE email = :i` in -M prepared, `WHERE email = ':i'` in -M simple.
DATA="$WORK/rows.csv"
awk -v n="$ROWS" 'BEGIN { for (i = 1; i <= n; i++)
    printf "Customer %d,%d,%03d-%02d-%04d,+1-202-555-%04d,1980-01-%02d,4111 1111 1111 %04d\n",
        i, i, i % 1000, i % 100, i % 10000, i % 10000, i % 28 + 1, (i % 2 ? 1111 : i % 10000) }' >"$DATA"
COLS="full_name, email, ssn, phone, birth_date, card_number"
PGUSER="admin" "$PSQL" -X -q -v ON_ERROR_STOP=1 -p "$PROXY_PORT" \
    -c "\\copy customers ($COLS) FROM '$DATA' WITH (FORMAT csv)" \
    -c "\\copy customers_plain ($COLS) FROM '$DATA' WITH (FORMAT csv)"
psql_pg -c "ANALYZE"

# --- statements ------------------------------------------------------------------------
cols_of() { # every tagged column the role may read, and id
    if [ "$1" = analyst ]; then echo "id, full_name, email, phone, birth_date, card_number"
    else echo "id, full_name, email, ssn, phone, birth_date, card_number"; fi
}
lookup_cols() { if [ "$1" = analyst ]; then echo "email, phone"; else echo "email, ssn, phone"; fi; }
statement() { # statement SHAPE ROLE MODE -> one SQL line (pgbench variables :i, :j)
    local q=":i"
    [ "$3" = simple ] && q="':i'"
    case $1 in
        a) echo "SELECT $(cols_of "$2") FROM customers WHERE id = :i" ;;
        b) echo "SELECT $(cols_of "$2") FROM customers WHERE id BETWEEN :i AND :j" ;;
        c) echo "SELECT $(lookup_cols "$2") FROM customers WHERE email = $q" ;;
        twin) echo "SELECT $(lookup_cols admin) FROM customers_plain WHERE email = $q" ;;
        d) echo "SELECT id, card_number FROM customers WHERE id BETWEEN :i AND :j AND card_number LIKE '%1111'" ;;
        e) echo "SELECT aid, bid, abalance FROM pgbench_accounts WHERE aid = :i" ;;
    esac
}
targets_of() { # the role/table targets of a shape
    if [ "$1" = c ]; then echo "admin support analyst twin"; else echo "$ROLES"; fi
}
for mode in $MODES; do
    for shape in $SHAPES; do
        for t in $(targets_of "$shape"); do
            role=$t
            [ "$t" = twin ] && role="admin"
            sh=$shape
            [ "$t" = twin ] && sh=twin
            printf '\\set i random(1, %d)\n\\set j :i + 19\n%s;\n' "$((ROWS - 19))" \
                "$(statement "$sh" "$role" "$mode")" >"$WORK/$mode-$shape-$t.sql"
        done
    done
done

# --- forwarded SQL sizes ---------------------------------------------------------------
# `pgveil explain` runs the proxy's own analysis and prints the size of the text it forwards.
forwarded_size() { # forwarded_size ROLE SQL -> bytes forwarded, "refused" or "-"
    local out
    out=$("$PGVEIL" explain --rules "$WORK/rules" --role "$1" --keyring "$WORK/keyring.toml" \
        --upstream "postgres://127.0.0.1:$PGPORT/postgres?sslmode=disable" "$2" 2>/dev/null) || { echo "-"; return; }
    case $out in
        *"decision: forwarded unchanged"*) printf '%s' "$2" | wc -c ;;
        *"decision: REFUSED"*) echo refused ;;
        *"forwarded SQL bytes: "*) echo "$out" | awk '/^forwarded SQL bytes: / {print $4; exit}' ;;
        # Older binaries: measure the printed text (pseudonym-key blocks print shorter).
        *) echo "$out" | awk '/^forwarded SQL:/ {on = 1; next} on && /^  / {n += length($0) - 2 + 1} END {print n - 1}' ;;
    esac
}
SIZES="$WORK/sizes.tsv"
: >"$SIZES"
for shape in $SHAPES; do
    for t in $(targets_of "$shape"); do
        role=$t
        [ "$t" = twin ] && role="admin"
        sh=$shape
        [ "$t" = twin ] && sh=twin
        sql=$(statement "$sh" "$role" simple | sed "s/:i/1/g; s/:j/20/g")
        printf '%s\t%s\t%s\t%s\n' "$shape" "$t" "$(printf '%s' "$sql" | wc -c)" \
            "$(PGUSER=postgres forwarded_size "$role" "$sql")" >>"$SIZES"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "-"; else printf "%.3f\n", a / b }'; }

# --- instruction counts (--instructions) ------------------------------------------------
if [ "$INSTRUCTIONS" -gt 0 ]; then
    stop_pgveil
    CG="$WORK/callgrind.out"
    PGVEIL_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$CG" "$PGVEIL" serve \
        --listen "127.0.0.1:$PROXY_PORT" --upstream "postgres://127.0.0.1:$PGPORT?sslmode=disable" \
        --metrics-listen "127.0.0.1:$(free_port)" --rules "$WORK/rules" \
        --keyring "$WORK/keyring.toml" >>"$WORK/pgveil.log" 2>&1 &
    PROXY_PID=$!
    wait_port "$PROXY_PORT"
    echo "pgveil instructions per transaction (callgrind, 1 client, $INSTRUCTIONS transactions per target)"
    printf '%-9s %-5s %12s %12s %12s %12s %8s %8s %8s\n' mode shape admin support analyst twin \
        adm/sup adm/ana twin/adm
    for mode in $MODES; do
        for shape in $SHAPES; do
            declare -A ir=()
            for t in $(targets_of "$shape"); do
                role=$t
                [ "$t" = twin ] && role="admin"
                f="$WORK/$mode-$shape-$t.sql"
                PGUSER=$role "$PGBENCH" -n -p "$PROXY_PORT" -M "$mode" -c 1 -t 50 -f "$f" >/dev/null 2>&1
                callgrind_control -z "$PROXY_PID" >/dev/null
                PGUSER=$role "$PGBENCH" -n -p "$PROXY_PORT" -M "$mode" -c 1 -t "$INSTRUCTIONS" -f "$f" \
                    >/dev/null 2>&1 || { ir[$t]=error; continue; }
                callgrind_control -d "$PROXY_PID" >/dev/null
                # shellcheck disable=SC2012  # callgrind's own numbered dump names
                dump=$(ls -t "$CG".* | head -n1)
                ir[$t]=$(awk -v n="$INSTRUCTIONS" '/^(summary|totals):/ {printf "%.0f", $2 / n; exit}' "$dump")
            done
            printf '%-9s %-5s %12s %12s %12s %12s %8s %8s %8s\n' "$mode" "$shape" "${ir[admin]}" \
                "${ir[support]}" "${ir[analyst]}" "${ir[twin]:--}" "$(ratio "${ir[admin]}" "${ir[support]}")" \
                "$(ratio "${ir[admin]}" "${ir[analyst]}")" \
                "$(if [ "$shape" = c ]; then ratio "${ir[twin]}" "${ir[admin]}"; else echo -; fi)"
            unset ir
        done
    done
    stop_pgveil
    exit 0
fi

# --- runs ------------------------------------------------------------------------------
RESULTS="$WORK/results.tsv"
: >"$RESULTS"
printf '%-6s %-9s %-6s %-8s %10s %12s\n' round mode shape target tps "cpu_us/txn" >&2
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        for shape in $SHAPES; do
            for t in $(targets_of "$shape"); do
                role=$t
                [ "$t" = twin ] && role="admin"
                read -r tps cpu _ < <(PGUSER=$role run_pgbench "$PROXY_PORT" "$PROXY_PID" -M "$mode" \
                    -c "$CLIENTS" -j 2 -T "$DURATION" -f "$WORK/$mode-$shape-$t.sql") || tps=error
                printf '%-6s %-9s %-6s %-8s %10s %12s\n' "$round" "$mode" "$shape" "$t" "$tps" "$cpu" >&2
                [ "$tps" = error ] && continue
                printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$shape" "$t" "$tps" "$cpu" >>"$RESULTS"
            done
        done
    done
done

# --- summary ---------------------------------------------------------------------------
get() { # get MODE SHAPE TARGET COLUMN -> median
    awk -F'\t' -v m="$1" -v s="$2" -v t="$3" -v c="$4" '$1 == m && $2 == s && $3 == t {print $c}' \
        "$RESULTS" | median
}
spread() { # spread MODE SHAPE TARGET -> (max-min)/median of the TPS, in percent
    awk -F'\t' -v m="$1" -v s="$2" -v t="$3" '$1 == m && $2 == s && $3 == t {print $4}' "$RESULTS" |
        sort -g | awk '{a[NR] = $1} END { if (NR < 2) { print "-"; exit }
            med = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
            printf "%.0f%%\n", (a[NR] - a[1]) / med * 100 }'
}
echo
echo "restricted reads through pgveil: $ROWS rows, $CLIENTS clients, $ROUNDS x ${DURATION}s per target," \
    "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-9s %-5s %9s %9s %9s %9s %8s %8s %8s  %s\n' mode shape admin support analyst twin \
    sup/adm ana/adm adm/twin "cpu_us/txn adm/sup/ana; spread adm/sup/ana"
for mode in $MODES; do
    for shape in $SHAPES; do
        a=$(get "$mode" "$shape" admin 4)
        s=$(get "$mode" "$shape" support 4)
        n=$(get "$mode" "$shape" analyst 4)
        w="-"
        [ "$shape" = c ] && w=$(get "$mode" c twin 4)
        printf '%-9s %-5s %9.0f %9.0f %9.0f %9s %8s %8s %8s  %s/%s/%s; %s/%s/%s\n' "$mode" "$shape" \
            "${a:-0}" "${s:-0}" "${n:-0}" "${w%.*}" "$(ratio "$s" "$a")" "$(ratio "$n" "$a")" \
            "$(if [ "$shape" = c ]; then ratio "$a" "$w"; else echo -; fi)" \
            "$(get "$mode" "$shape" admin 5)" "$(get "$mode" "$shape" support 5)" \
            "$(get "$mode" "$shape" analyst 5)" "$(spread "$mode" "$shape" admin)" \
            "$(spread "$mode" "$shape" support)" "$(spread "$mode" "$shape" analyst)"
    done
done
echo
echo "forwarded SQL bytes per statement (original -> forwarded):"
printf '%-5s %-8s %9s %10s\n' shape target original forwarded
sort -k1,1 -s "$SIZES" | while IFS=$'\t' read -r shape t orig fwd; do
    printf '%-5s %-8s %9s %10s\n' "$shape" "$t" "$orig" "$fwd"
done
