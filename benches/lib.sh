# Shared by the pgbench harnesses in benches/: binaries, ports, a throwaway
# PostgreSQL (as the `postgres` OS user when run as root), CPU accounting.
# Source it after setting BUILD (1 = cargo build --release) and PGVEIL (binary
# path or empty); it sets PGBIN, PGBENCH, PGVEIL, WORK, PGPORT, PASSWORD and
# exports PG* so plain `$PGBENCH -p PORT` reaches the server as postgres.

# --- binaries --------------------------------------------------------------------------
if [ -n "${PGVEIL_PG_BIN:-}" ]; then
    PGBIN=$PGVEIL_PG_BIN
else
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -x "$PGBIN/initdb" ] || PGBIN=$(pg_config --bindir)
fi
PGBENCH="$PGBIN/pgbench"
[ -x "$PGBENCH" ] || PGBENCH=$(command -v pgbench)
PSQL="$PGBIN/psql"
[ -x "$PSQL" ] || PSQL=$(command -v psql)

TARGET_DIR=${CARGO_TARGET_DIR:-target}
if [ "$BUILD" = 1 ]; then
    echo "building pgveil (release)..." >&2
    cargo build --release --bin pgveil >&2
fi
[ -n "$PGVEIL" ] || PGVEIL="$TARGET_DIR/release/pgveil"
[ -x "$PGVEIL" ] || { echo "no $PGVEIL; drop --no-build" >&2; exit 1; }

# --- helpers ---------------------------------------------------------------------------
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 40000))
        if ! (: </dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "$p"; return; fi
    done
}
wait_port() {
    local i
    for i in $(seq 1 200); do
        (: </dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "port $1 never opened" >&2
    return 1
}
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || { echo "no postgres OS user; apt-get install postgresql" >&2; exit 1; }
    AS_PG=(runuser -u postgres --)
else
    AS_PG=()
fi
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
user_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12}'; }
HZ=$(getconf CLK_TCK)

WORK=$(mktemp -d /tmp/pgveil-bench.XXXXXX)
chmod 755 "$WORK"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
PGDATA="$WORK/data"
PGPORT=$(free_port)
PROXY_PORT=$(free_port)
BOUNCER_PORT=$(free_port)
PASSWORD="bench-$RANDOM$RANDOM"
PROXY_PID=""
BOUNCER_PID=""
EXTRA_PIDS=()

cleanup() {
    local p
    for p in "${EXTRA_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -n "$PROXY_PID" ] && kill "$PROXY_PID" 2>/dev/null || true
    [ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null || true
    "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" stop -m fast -w >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# --- PostgreSQL ------------------------------------------------------------------------
echo "$PASSWORD" >"$WORK/pw"
[ "$(id -u)" = 0 ] && chown postgres: "$WORK/pw"
(cd "$WORK" && "${AS_PG[@]}" "$PGBIN/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C -N \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$WORK/pw" >/dev/null)
cat >>"$PGDATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_connections = 100
CONF
(cd "$WORK" && "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$WORK/pg.log" -w start >/dev/null)
export PGPASSWORD="$PASSWORD" PGUSER=postgres PGDATABASE=postgres PGHOST=127.0.0.1
unset PGSSLMODE PGSERVICE PGOPTIONS PGAPPNAME
echo "initializing pgbench scale $SCALE..." >&2
"$PGBENCH" -i -q -s "$SCALE" -p "$PGPORT" >/dev/null 2>&1

start_pgveil() { # start_pgveil PORT [extra serve flags...]; sets PROXY_PID
    local port=$1
    shift
    PGVEIL_LOG=warn "$PGVEIL" serve --listen "127.0.0.1:$port" \
        --upstream "postgres://127.0.0.1:$PGPORT?sslmode=disable" \
        --metrics-listen "127.0.0.1:$(free_port)" "$@" >>"$WORK/pgveil.log" 2>&1 &
    PROXY_PID=$!
    wait_port "$port"
}

stop_pgveil() {
    [ -n "${PROXY_PID:-}" ] && kill "$PROXY_PID" 2>/dev/null && wait "$PROXY_PID" 2>/dev/null || true
    PROXY_PID=""
}

median() { sort -g | awk '{a[NR] = $1} END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# run_pgbench PORT PID-or-empty ARGS... -> prints "tps cpu_us_per_txn user_us_per_txn": the
# CPU of PID (user+system, which includes the kernel's loopback TCP work charged to the
# sender; and user space alone), "-" without a PID.
run_pgbench() {
    local port=$1 pid=$2 before after ubefore uafter out tps txns cpu="-" ucpu="-"
    shift 2
    [ -n "$pid" ] && before=$(cpu_ticks "$pid") && ubefore=$(user_ticks "$pid")
    out=$("$PGBENCH" -n -p "$port" "$@" 2>&1) || { echo "$out" >&2; return 1; }
    tps=$(echo "$out" | awk '/^tps = / {print $3; exit}')
    txns=$(echo "$out" | awk -F': *' '/actually processed/ {split($2, a, "/"); print a[1]; exit}')
    if [ -n "$pid" ]; then
        after=$(cpu_ticks "$pid")
        uafter=$(user_ticks "$pid")
        per() { awk -v d="$1" -v hz="$HZ" -v n="$txns" 'BEGIN { if (n > 0) printf "%.1f", d / hz / n * 1e6; else print "-" }'; }
        cpu=$(per $((after - before)))
        ucpu=$(per $((uafter - ubefore)))
    fi
    echo "$tps $cpu $ucpu"
}
