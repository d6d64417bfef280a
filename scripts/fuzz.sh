#!/usr/bin/env bash
# Runs every cargo-fuzz target (or the ones named) for SECONDS each, one
# after another, with the nightly toolchain. Without nightly it says so and
# exits 0: the corpus still runs on stable as `cargo test --test fuzz_corpus`.
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# cargo-fuzz is installed from crates.io into .tools/ (gitignored) when it is
# missing. New inputs go to fuzz/target/work/<target>/, not the committed
# corpus; FUZZ_MERGE=1 merges the ones that add coverage into
# fuzz/corpus/<target>/. Crashes land in fuzz/artifacts/<target>/; the script
# lists them and exits 1 if there are any. Knobs: FUZZ_SANITIZER (default
# none: pgveil's fuzzed code is safe Rust, and ASan would halve the speed),
# FUZZ_FORK (default 1: keep fuzzing after a crash, to collect them all).
# See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(frontend sql copy rules values)

usage() {
    echo "usage: $0 SECONDS [TARGET...]   (targets: ${ALL_TARGETS[*]})" >&2
    exit 2
}

[[ $# -ge 1 && $1 =~ ^[0-9]+$ ]] || usage
seconds=$1
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL_TARGETS[@]}")

if ! command -v rustup >/dev/null 2>&1 || ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz: no nightly Rust toolchain on this machine; cargo-fuzz needs one, so no target was fuzzed."
    echo "fuzz: the committed corpus still runs on stable: cargo test --test fuzz_corpus"
    exit 0
fi

export PATH="$PWD/.tools/bin:$PATH"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz into .tools/"
    cargo install cargo-fuzz --locked --root .tools
fi

sanitizer=${FUZZ_SANITIZER:-none}
fork=${FUZZ_FORK:-1}
mkdir -p fuzz/target/logs

max_len() {
    case $1 in
        rules) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

found=0
printf '%-9s %8s %12s %8s %s\n' target seconds execs crashes log >fuzz/target/logs/summary.txt
for t in "${targets[@]}"; do
    [[ -f fuzz/fuzz_targets/$t.rs ]] || { echo "fuzz: unknown target $t" >&2; usage; }
    work=fuzz/target/work/$t
    log=fuzz/target/logs/$t.log
    mkdir -p "$work" "fuzz/artifacts/$t"
    flags=(-max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -max_len="$(max_len "$t")"
        -print_final_stats=1)
    if [[ $fork == 1 ]]; then
        flags+=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    fi
    echo "fuzz: $t for ${seconds}s (sanitizer $sanitizer, log $log)"
    set +e
    cargo +nightly fuzz run --sanitizer "$sanitizer" --debug-assertions "$t" \
        "$work" "fuzz/corpus/$t" -- "${flags[@]}" >"$log" 2>&1
    rc=$?
    set -e
    # The last status line carries the exec count (plain and fork mode).
    execs=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
    crashes=$(find "fuzz/artifacts/$t" -type f | wc -l)
    printf '%-9s %8s %12s %8s %s\n' "$t" "$seconds" "${execs:-?}" "$crashes" "$log" \
        | tee -a fuzz/target/logs/summary.txt
    if [[ $crashes -gt 0 || ($rc -ne 0 && $fork != 1) ]]; then
        found=1
        find "fuzz/artifacts/$t" -type f | sed 's/^/fuzz:   finding /'
    fi
    if [[ ${FUZZ_MERGE:-0} == 1 ]]; then
        cargo +nightly fuzz run --sanitizer "$sanitizer" --debug-assertions "$t" \
            "fuzz/corpus/$t" "$work" -- -merge=1 -max_len="$(max_len "$t")" \
            -rss_limit_mb=4096 >>"$log" 2>&1 || true
    fi
done

cat fuzz/target/logs/summary.txt
if [[ $found == 1 ]]; then
    echo "fuzz: findings above; reproduce with cargo +nightly fuzz run <target> <file>, then add the file under fuzz/regressions/<target>/"
    exit 1
fi
