#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60) with nightly, one after
# another (or JOBS at a time), and prints executions, exec/s, corpus size and
# findings per target. New inputs go to fuzz/work/<target>/ (not in git); the seeds
# in fuzz/corpus/<target>/ are read, never written. Crashes land in
# fuzz/artifacts/<target>/; replay one with `cargo +nightly fuzz run TARGET FILE`.
#
#   tools/fuzz.sh [SECONDS]          all targets
#   TARGETS="feed uid" tools/fuzz.sh 600
#   JOBS=2 tools/fuzz.sh 600         two targets at a time
set -euo pipefail

seconds=${1:-60}
jobs=${JOBS:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"

if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
    echo "error: cargo-fuzz for nightly is missing: run \`cargo install cargo-fuzz --locked\` (and \`rustup toolchain install nightly\`)" >&2
    exit 1
fi

targets=${TARGETS:-$(cd fuzz_targets && ls *.rs | sed 's/\.rs$//')}
# Debug assertions on: the targets' invariants include debug_asserts in the crate.
cargo +nightly fuzz build -a >&2
mkdir -p logs

run_one() {
    local target=$1
    mkdir -p "work/$target" "artifacts/$target"
    # -timeout: an input that takes 10 s is a finding. policy_test builds a whole
    # snapshot per grant set of a file, which takes seconds under the sanitizer on a
    # busy machine even for the unmutated seeds. -max_len fits the largest seed.
    local timeout=10
    [ "$target" = policy_test ] && timeout=60
    cargo +nightly fuzz run -a "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout="$timeout" -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="artifacts/$target/" >"logs/$target.log" 2>&1
    echo "$?" >"logs/$target.rc"
}

running=0
for target in $targets; do
    run_one "$target" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
done
wait || true

status=0
printf '%-14s %12s %9s %7s %s\n' target executions exec/s corpus findings
for target in $targets; do
    log="logs/$target.log"
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(find "work/$target" -type f | wc -l)
    findings=$(find "artifacts/$target" -type f | wc -l)
    rc=$(cat "logs/$target.rc")
    [ "$rc" = 0 ] || status=1
    printf '%-14s %12s %9s %7s %s\n' "$target" "${runs:-?}" "${rate:-?}" "$corpus" "$findings (rc $rc, log fuzz/$log)"
done
exit "$status"
