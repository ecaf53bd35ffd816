# Shared by bench/load.sh and bench/transports.sh (sourced, not run): checks, the temp
# dir and its cleanup, the release build, the request bodies, and the /proc helpers.
#
# The caller sets REPO, BENCH (the temp dir's name) and the `set -euo pipefail` mode.

GRANTS=100000
TARGET_GRANT=g-target-finops
ROLE_BODY='{"principal":"User::\"u-7\"","action":"Action::\"readProject\"","resource":"Project::\"p-3-1\"","context":{"mfa":true}}'
GRANT_BODY='{"principal":"User::\"u-7\"","action":"Action::\"createPaymentMethod\"","resource":"PaymentMethod::\"pm-42-0\"","context":{"mfa":true}}'

CLK_TCK=$(getconf CLK_TCK)
BIN=$REPO/target/release/elevate
FLOOR=$REPO/target/release/examples/hyper_floor
GEN=$REPO/target/release/examples/gen_fixtures

die() {
    echo "error: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null 2>&1 || die "\`$1\` is not installed; $2"
}

log() { printf '==> %s\n' "$*" >&2; }

# need_two_cpus: the server runs on CPU 0, the load generator on CPU 1.
need_two_cpus() {
    need taskset "it is in util-linux: apt-get install -y util-linux"
    taskset -c 0 true 2>/dev/null && taskset -c 1 true 2>/dev/null ||
        die "CPUs 0 and 1 must both be usable (server on 0, load on 1); this machine has $(nproc)"
}

TMP=$(mktemp -d -t "elevate-$BENCH.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n ${KEEP:-} ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# build_release BINARY...: `cargo build --release --bin elevate --examples` unless
# SKIP_BUILD is set; then every BINARY must exist.
build_release() {
    local b
    if [[ -z ${SKIP_BUILD:-} ]]; then
        log "cargo build --release --bin elevate --examples"
        cargo build --release --bin elevate --examples
    fi
    for b in "$@"; do
        [[ -x $b ]] || die "release binaries missing ($b); run without SKIP_BUILD"
    done
}

now_s() { date +%s.%N; }

# utime + stime of a process (all its threads), in clock ticks.
cpu_ticks() {
    local rest
    rest=$(sed 's/^.*) //' "/proc/$1/stat")
    awk '{ print $12 + $13 }' <<<"$rest"
}

# Busy clock ticks of the whole machine (all CPUs): everything but idle and iowait.
machine_busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

# Percent of the machine (100 = one CPU) busy over SECONDS, for the idle check.
machine_busy_pct() {
    local a b
    a=$(machine_busy_ticks)
    sleep "$1"
    b=$(machine_busy_ticks)
    awk -v a="$a" -v b="$b" -v s="$1" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", (b - a) / hz / s * 100 }'
}

rss_mb() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }

# Cumulative user+sys seconds of this shell's reaped children, into $TMP/run/times.s
# (bash `times` must run in this shell, not in a command substitution's subshell).
children_cpu_s() {
    times >"$TMP/run/times"
    awk 'NR == 2 {
        n = split($0, f, " "); s = 0
        for (i = 1; i <= n; i++) { split(f[i], a, "m"); sub("s", "", a[2]); s += a[1] * 60 + a[2] }
        printf "%.3f", s }' "$TMP/run/times" >"$TMP/run/times.s"
}

fmt_us() { awk -v u="$1" 'BEGIN { if (u < 1000) printf "%dµs", u; else printf "%.2fms", u / 1000 }'; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

SERVER_PID=
stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}
