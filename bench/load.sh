#!/usr/bin/env bash
# HTTP load benchmark of `elevate serve` (issue 4), side by side with the hyper floor,
# in one run:
#
#   * hyper floor: examples/hyper_floor.rs, a fixed JSON decision, no decision made;
#   * elevate with 0 grants and with 100,000 grants (seeded fixtures from
#     benches/support: 2,000 users, 200 workspaces, grants over 50,000 principals);
#   * two requests by u-7: the role request (readProject on p-3-1, Allow from
#     `workspace-member-read`) and the grant request (createPaymentMethod on pm-42-0,
#     Allow from its grant `g-target-finops`; a Deny with 0 grants);
#   * for each: max throughput (-c64), low load (-c1) and about half of the max
#     throughput (random think time per connection, see bench/post.lua);
#   * the same two requests with the decision cache off (--decision-cache-bytes 0):
#     wrk repeats one body, so with the cache on (the default) every answer after the
#     first is a hit; these rows are the cost of deciding every request;
#   * elevate with 100,000 grants and 100,000 users (101,836 entities; the same seed,
#     so u-7 and its grant are the same): throughput and resident memory; and a churn
#     run where every request is a random user on a random project (bench/churn.lua),
#     so the cache almost never hits (its hit rate is printed);
#   * reload under load: the 100k feed replaced every 100 ms (atomic rename, two
#     alternating pre-generated feeds) while wrk runs the grant request at -c64; and the
#     cost of one reload, measured unloaded.
#
# Every server runs pinned to CPU 0 (`taskset -c 0`), wrk pinned to CPU 1, one at a
# time, on 127.0.0.1. Installs nothing; needs wrk (`apt-get install -y wrk`), taskset
# (util-linux), curl, perl, and 2 CPUs.
#
# Usage: bench/load.sh                 (from anywhere; DURATION=10 by default)
# Environment:
#   DURATION=10            seconds per wrk run
#   CONNECTIONS=64         connections of the max-throughput runs
#   PORT_BASE=18380        ports PORT_BASE .. PORT_BASE+4
#   HALF_DELAY_MS=2        mean think time of the half-load runs (ms; fewer timers in wrk)
#   RELOAD_DEBOUNCE_MS=20  elevate's --debounce-ms (its bounded debounce waits at most
#                          4x this, so with 20 a replacement every 100 ms is picked up)
#   SKIP_BUILD=1           use the existing release build
#   WAIT_IDLE=1            after the build, wait (at most 30 min) until the machine is
#                          idle: at most WAIT_IDLE_MAX_BUSY=10 (% of one CPU) over 5 s
#   KEEP=1                 keep the temp dir (fixtures, logs, wrk outputs)
#   ONLY=reload            only the steady grant row, reload under load and the cost
#                          of one reload (about a minute; for work on the reloader)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
PORT_BASE=${PORT_BASE:-18380}
HALF_DELAY_MS=${HALF_DELAY_MS:-2}
RELOAD_DEBOUNCE_MS=${RELOAD_DEBOUNCE_MS:-20}
BENCH=load
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

need wrk "install it with: apt-get install -y wrk"
need curl "install it with: apt-get install -y curl"
need perl "it is in perl-base: apt-get install -y perl-base"
need_two_cpus
[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION > 0)) || die "DURATION must be a positive integer"

# ------------------------------------------------------------------ build + fixtures

build_release "$BIN" "$FLOOR" "$GEN"

log "fixtures (seeded) into $TMP/fixtures"
"$GEN" "$TMP/fixtures" 0 "$GRANTS" >&2
FIX=$TMP/fixtures
if [[ ${ONLY:-} != reload ]]; then
    log "fixtures with 100,000 users into $TMP/fixtures-big (entities only)"
    BENCH_USERS=100000 "$GEN" "$TMP/fixtures-big" 0 >&2
fi
BIG_ENTITIES=$TMP/fixtures-big/entities.json
mkdir -p "$TMP/e0" "$TMP/e100k" "$TMP/ebig" "$TMP/enc" "$TMP/run"
ln "$FIX/grants-0.json" "$TMP/e0/grants.json"
ln "$FIX/grants-$GRANTS.json" "$TMP/e100k/grants.json"
ln "$FIX/grants-$GRANTS.json" "$TMP/ebig/grants.json"

# ------------------------------------------------------------------ helpers

# start_server NAME PORT READY_PATH CMD... : CMD pinned to CPU 0, waits until READY_PATH answers 200.
start_server() {
    local name=$1 port=$2 ready=$3 i code
    shift 3
    port_free "$port" || die "port $port is in use (set PORT_BASE)"
    taskset -c 0 "$@" >>"$TMP/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            cat "$TMP/$name.log" >&2
            die "$name exited during startup"
        }
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$ready" || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || die "$name not ready on port $port after 60 s"
    log "$name ready on 127.0.0.1:$port (pid $SERVER_PID, RSS $(rss_mb "$SERVER_PID") MB)"
}

# check_answer PORT BODY DECISION [GRANT]: the answer must have DECISION (and name GRANT).
check_answer() {
    local port=$1 body=$2 decision=$3 grant=${4:-} resp
    resp=$(curl -sS --max-time 5 -H 'content-type: application/json' -d "$body" \
        "http://127.0.0.1:$port/v1/is_authorized") || die "no answer from port $port"
    grep -q "\"decision\":\"$decision\"" <<<"$resp" || die "expected $decision, got: $resp"
    if [[ -n $grant ]]; then
        grep -q "\"grants\":\[\"$grant\"\]" <<<"$resp" || die "expected grant $grant, got: $resp"
    fi
    log "checked: $resp"
}

generation() {
    curl -sS --max-time 5 "http://127.0.0.1:$1/v1/status" | grep -o '"generation":[0-9]*' | head -1 | cut -d: -f2
}

ROWS=$TMP/rows.tsv
: >"$ROWS"
declare -A RPS P50 P99 ERRS
# The last run's values.
R_RPS= R_P50= R_P99= R_ERR= R_WRONG=

# run_wrk LABEL PORT BODY CONNS [DELAY_MS] [EXPECT] [DURATION]: one wrk run against the
# server in SERVER_PID; appends a table row unless LABEL is empty (calibration).
run_wrk() {
    local label=$1 port=$2 body=$3 conns=$4 delay=${5:-0} expect=${6:-} dur=${7:-$DURATION}
    local out=$TMP/run/wrk-${label:-calibration}-$conns.txt
    local t0 t1 c0 c1 w0 w1 m0 m1 result cpu wcpu other rss
    t0=$(now_s)
    m0=$(machine_busy_ticks)
    c0=$(cpu_ticks "$SERVER_PID")
    children_cpu_s
    w0=$(<"$TMP/run/times.s")
    WRK_BODY=$body WRK_DELAY_MS=$delay WRK_EXPECT=$expect \
        taskset -c 1 wrk -t1 -c"$conns" -d"${dur}s" --latency -s "${WRK_SCRIPT:-$REPO/bench/post.lua}" \
        "http://127.0.0.1:$port/v1/is_authorized" >"$out" 2>&1 || {
        cat "$out" >&2
        die "wrk failed"
    }
    children_cpu_s
    w1=$(<"$TMP/run/times.s")
    c1=$(cpu_ticks "$SERVER_PID")
    m1=$(machine_busy_ticks)
    t1=$(now_s)
    rss=$(rss_mb "$SERVER_PID")
    result=$(grep '^RESULT ' "$out") || {
        cat "$out" >&2
        die "no RESULT line from wrk"
    }
    kv() { grep -o " $1=[0-9.]*" <<<"$result" | cut -d= -f2; }
    R_RPS=$(kv rps)
    R_P50=$(kv p50_us)
    R_P99=$(kv p99_us)
    R_ERR=$(($(kv non2xx) + $(kv connect) + $(kv read) + $(kv write) + $(kv timeout)))
    R_WRONG=$(kv wrong)
    cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')
    wcpu=$(awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.0f", (b - a) / (t1 - t0) * 100 }')
    # Everything else the machine did meanwhile (other processes, this script): a
    # measurement with much of it is disturbed.
    other=$(awk -v m0="$m0" -v m1="$m1" -v c0="$c0" -v c1="$c1" -v w="$wcpu" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN { o = (m1 - m0 - (c1 - c0)) / hz / (t1 - t0) * 100 - w; printf "%.0f", (o < 0 ? 0 : o) }')
    if [[ -n $label ]]; then
        RPS[$label]=$R_RPS
        P50[$label]=$R_P50
        P99[$label]=$R_P99
        ERRS[$label]=$R_ERR
        printf '%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$conns" "$R_RPS" \
            "$(fmt_us "$R_P50")" "$(fmt_us "$R_P99")" "$cpu" "$rss" "$wcpu" "$other" \
            "$R_ERR${expect:+ (wrong $R_WRONG)}" >>"$ROWS"
        log "$(printf '%-28s c=%-4s %8.0f req/s  p50 %s  p99 %s  server CPU %s%%  RSS %s MB  wrk CPU %s%%  other CPU %s%%  errors %s' \
            "$label" "$conns" "$R_RPS" "$(fmt_us "$R_P50")" "$(fmt_us "$R_P99")" "$cpu" "$rss" "$wcpu" "$other" "$R_ERR")"
    fi
}

# half_load LABEL PORT BODY MAX_RPS: about MAX_RPS/2, with random think time per
# connection (wrk has no fixed-rate mode and wrk2 is not in Debian). The connection
# count is set from the think time, then corrected once by a 3 s calibration run.
half_load() {
    local label=$1 port=$2 body=$3 max=$4 target conns achieved
    target=$(awk -v m="$max" 'BEGIN { printf "%.0f", m / 2 }')
    conns=$(awk -v t="$target" -v d="$HALF_DELAY_MS" 'BEGIN { c = int(t * (d + 0.5) / 1000 + 0.5); print (c < 1 ? 1 : c) }')
    run_wrk "" "$port" "$body" "$conns" "$HALF_DELAY_MS" "" 3
    achieved=$R_RPS
    conns=$(awk -v c="$conns" -v t="$target" -v a="$achieved" \
        'BEGIN { n = int(c * t / (a > 0 ? a : 1) + 0.5); if (n < 1) n = 1; if (n > 4000) n = 4000; print n }')
    run_wrk "$label" "$port" "$body" "$conns" "$HALF_DELAY_MS"
    log "$label: $(awk -v a="$R_RPS" -v m="$max" 'BEGIN { printf "%.0f%%", a / m * 100 }') of the max throughput"
}

# scenarios NAME PORT BODY: max throughput, low load, half load.
scenarios() {
    local name=$1 port=$2 body=$3
    run_wrk "$name" "$port" "$body" "$CONNECTIONS"
    run_wrk "$name low load" "$port" "$body" 1
    half_load "$name ~50% load" "$port" "$body" "${RPS[$name]}"
}

# ------------------------------------------------------------------ the run

# Optionally wait (bounded) until the machine is quiet: the build above and other
# work on a shared machine disturb the measurement.
if [[ -n ${WAIT_IDLE:-} ]]; then
    for ((i = 0; i < 360; i++)); do
        busy=$(machine_busy_pct 5)
        ((busy <= ${WAIT_IDLE_MAX_BUSY:-10})) && break
        log "machine busy ${busy}% of a CPU over 5 s; waiting for <= ${WAIT_IDLE_MAX_BUSY:-10}%"
    done
fi
BUSY_START=$(machine_busy_pct 3)
UPTIME_START=$(uptime)
log "load at start: $UPTIME_START"

P_FLOOR=$PORT_BASE
P_E0=$((PORT_BASE + 1))
P_E100K=$((PORT_BASE + 2))
P_EBIG=$((PORT_BASE + 3))
P_ENC=$((PORT_BASE + 4))

# start_elevate NAME PORT DIR [ENTITIES [FLAG...]]: elevate serve on PORT with
# DIR/grants.json.
start_elevate() {
    local name=$1 port=$2 dir=$3 entities=${4:-$FIX/entities.json}
    shift $(($# < 4 ? $# : 4))
    start_server "$name" "$port" /readyz "$BIN" serve --listen "127.0.0.1:$port" \
        --policies "$REPO/policies" --schema "$REPO/schema/elevate.cedarschema" \
        --entities "$entities" --grants "$dir/grants.json" \
        --debounce-ms "$RELOAD_DEBOUNCE_MS" "$@"
}

# cache_counts PORT: "HITS MISSES" of the decision cache so far.
cache_counts() {
    local text
    text=$(curl -sS --max-time 5 "http://127.0.0.1:$1/metrics")
    printf '%s %s\n' \
        "$(awk '$1 == "elevate_decision_cache_total{result=\"hit\"}" { print $2 }' <<<"$text")" \
        "$(awk '$1 == "elevate_decision_cache_total{result=\"miss\"}" { print $2 }' <<<"$text")"
}

# The fixture feed that is not the live one now (by inode: the live file is a link).
other_feed() {
    local a=$FIX/grants-$GRANTS.json b=$FIX/grants-$GRANTS-alt.json
    if [[ $(stat -c %i "$TMP/e100k/grants.json") == $(stat -c %i "$a") ]]; then echo "$b"; else echo "$a"; fi
}

# Servers: NAME PORT; scenarios: SERVER|LABEL|BODY-VARIABLE.
SCENARIOS=(
    "floor|hyper floor|ROLE_BODY"
    "e0|elevate 0 role|ROLE_BODY"
    "e0|elevate 0 grant(Deny)|GRANT_BODY"
    "e100k|elevate 100k role|ROLE_BODY"
    "e100k|elevate 100k grant|GRANT_BODY"
    "ebig|elevate 100k+100k ent. role|ROLE_BODY"
    "ebig|elevate 100k+100k ent. grant|GRANT_BODY"
    "ebig|elevate 100k+100k churn role|CHURN"
    "enc|elevate 100k role, no cache|ROLE_BODY"
    "enc|elevate 100k grant, no cache|GRANT_BODY"
)

server_port() {
    case $1 in
    floor) echo "$P_FLOOR" ;;
    e0) echo "$P_E0" ;;
    e100k) echo "$P_E100K" ;;
    ebig) echo "$P_EBIG" ;;
    enc) echo "$P_ENC" ;;
    esac
}

# start_named SERVER: a fresh server (its answers checked before any measurement).
start_named() {
    case $1 in
    floor)
        start_server floor "$P_FLOOR" / "$FLOOR" "127.0.0.1:$P_FLOOR"
        ;;
    e0)
        start_elevate elevate-0 "$P_E0" "$TMP/e0"
        check_answer "$P_E0" "$ROLE_BODY" Allow
        check_answer "$P_E0" "$GRANT_BODY" Deny
        ;;
    e100k)
        ln -f "$FIX/grants-$GRANTS.json" "$TMP/e100k/grants.json"
        start_elevate elevate-100k "$P_E100K" "$TMP/e100k"
        check_answer "$P_E100K" "$ROLE_BODY" Allow
        check_answer "$P_E100K" "$GRANT_BODY" Allow "$TARGET_GRANT"
        ;;
    ebig)
        start_elevate elevate-100k-100k "$P_EBIG" "$TMP/ebig" "$BIG_ENTITIES"
        # At rest: loaded, nothing decided yet (the first start only).
        BIG_RSS_REST=${BIG_RSS_REST:-$(rss_mb "$SERVER_PID")}
        check_answer "$P_EBIG" "$ROLE_BODY" Allow
        check_answer "$P_EBIG" "$GRANT_BODY" Allow "$TARGET_GRANT"
        BIG_ENTITY_COUNT=$(curl -sS --max-time 5 "http://127.0.0.1:$P_EBIG/v1/status" | grep -o '"entities":[0-9][0-9]*' | head -1 | cut -d: -f2)
        ;;
    enc)
        ln -f "$FIX/grants-$GRANTS.json" "$TMP/enc/grants.json"
        start_elevate elevate-100k-nocache "$P_ENC" "$TMP/enc" "$FIX/entities.json" --decision-cache-bytes 0
        check_answer "$P_ENC" "$ROLE_BODY" Allow
        check_answer "$P_ENC" "$GRANT_BODY" Allow "$TARGET_GRANT"
        ;;
    esac
}

# Table columns: server CPU% is the server process (100 = its one core), wrk CPU% the
# load generator, other CPU% everything else on the machine during that run.
#
# Phases: every scenario at max throughput first (the ratios come from runs close in
# time), then low load, then half load. Each server is started fresh for each phase,
# one at a time, so no idle server shares CPU 0 with the measured one.
PHASES=(max low half)
SERVERS=(floor e0 e100k ebig enc)
if [[ ${ONLY:-} == reload ]]; then
    # The steady row the reload's p99 is compared with, and nothing else.
    PHASES=(max)
    SERVERS=(e100k)
    SCENARIOS=("e100k|elevate 100k grant|GRANT_BODY")
fi
for phase in "${PHASES[@]}"; do
    for server in "${SERVERS[@]}"; do
        start_named "$server"
        port=$(server_port "$server")
        for entry in "${SCENARIOS[@]}"; do
            IFS='|' read -r s label bodyvar <<<"$entry"
            [[ $s == "$server" ]] || continue
            if [[ $bodyvar == CHURN ]]; then
                # Random requests: at max throughput only, with the cache's hit rate.
                [[ $phase == max ]] || continue
                read -r h0 m0 < <(cache_counts "$port")
                WRK_SCRIPT=$REPO/bench/churn.lua run_wrk "$label" "$port" "" "$CONNECTIONS"
                read -r h1 m1 < <(cache_counts "$port")
                CHURN_HITS=$(awk -v h0="$h0" -v h1="$h1" -v m0="$m0" -v m1="$m1" \
                    'BEGIN { h = h1 - h0; m = m1 - m0; printf "%d hits, %d misses (%.1f%% hits)", h, m, (h + m > 0 ? h / (h + m) * 100 : 0) }')
                continue
            fi
            body=${!bodyvar}
            case $phase in
            max) run_wrk "$label" "$port" "$body" "$CONNECTIONS" ;;
            low) run_wrk "$label low load" "$port" "$body" 1 ;;
            half) half_load "$label ~50% load" "$port" "$body" "${RPS[$label]}" ;;
            esac
        done
        stop_server
    done
done

# Reload under load: replace the feed every 100 ms while wrk runs the grant request;
# every answer must still be the grant's Allow.
start_named e100k
log "reload under load: replacing $TMP/e100k/grants.json every 100 ms"
GEN0=$(generation "$P_E100K")
SWAPS=$TMP/run/swaps
echo 0 >"$SWAPS"
# One perl process making the replacements with system calls only: a shell loop that
# runs `ln`, `mv` and `sleep` forks three processes every 100 ms on wrk's core, and that
# alone (with no reload at all) raised wrk's p99 from 1.1 to 3.6 ms.
taskset -c 1 perl -e '
    my ($a, $b, $live, $n, $count) = @ARGV;
    for (my $i = 1; $i <= $n; $i++) {
        my $src = $i % 2 ? $b : $a;
        unlink "$live.next";
        link($src, "$live.next") or die "link: $!";
        rename("$live.next", $live) or die "rename: $!";
        open(my $f, ">", $count) or die "$count: $!";
        print $f "$i\n";
        close($f);
        select(undef, undef, undef, 0.1);
    }' "$FIX/grants-$GRANTS.json" "$FIX/grants-$GRANTS-alt.json" \
    "$TMP/e100k/grants.json" $((DURATION * 10 + 50)) "$SWAPS" &
SWAPPER=$!
PIDS+=("$SWAPPER")
run_wrk "elevate 100k grant+reload" "$P_E100K" "$GRANT_BODY" "$CONNECTIONS" 0 "\"grants\":[\"$TARGET_GRANT\"]"
kill "$SWAPPER" 2>/dev/null || true
wait "$SWAPPER" 2>/dev/null || true
RELOAD_WRONG=$R_WRONG
GEN1=$(generation "$P_E100K")
# Let the reloader finish what the last replacements started: wait (bounded) until the
# server is idle for a second.
for ((i = 0; i < 120; i++)); do
    a=$(cpu_ticks "$SERVER_PID")
    sleep 1
    b=$(cpu_ticks "$SERVER_PID")
    ((b - a <= CLK_TCK / 20)) && break
done
GEN2=$(generation "$P_E100K")
STATUS_GRANTS=$(curl -sS --max-time 5 "http://127.0.0.1:$P_E100K/v1/status" | grep -o '"grants":{"path"[^}]*}' || true)
check_answer "$P_E100K" "$GRANT_BODY" Allow "$TARGET_GRANT"

# The cost of one reload, unloaded: swap once, wait for the new generation, and
# count the server's CPU time over that window.
RELOAD_COSTS=()
for _ in 1 2 3; do
    g0=$(generation "$P_E100K")
    c0=$(cpu_ticks "$SERVER_PID")
    t0=$(now_s)
    src=$(other_feed)
    ln -f "$src" "$TMP/e100k/grants.json.next" && mv -f "$TMP/e100k/grants.json.next" "$TMP/e100k/grants.json"
    for ((i = 0; i < 600; i++)); do
        [[ $(generation "$P_E100K") -gt $g0 ]] && break
        sleep 0.02
    done
    t1=$(now_s)
    c1=$(cpu_ticks "$SERVER_PID")
    RELOAD_COSTS+=("$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" -v n="$GRANTS" \
        'BEGIN { cpu = (b - a) / hz; printf "wall %.2f s (incl. %d ms debounce), server CPU %.2f s, %.0f grants/s", t1 - t0, '"$RELOAD_DEBOUNCE_MS"', cpu, (cpu > 0 ? n / cpu : 0) }')")
done
RSS_END=$(rss_mb "$SERVER_PID")
stop_server
UPTIME_END=$(uptime)

# ------------------------------------------------------------------ report

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "elevate load benchmark: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src Cargo.toml || echo '+dirty'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "server pinned to CPU 0, wrk -t1 pinned to CPU 1, ${DURATION}s per run, 127.0.0.1, HTTP/1.1 keep-alive"
echo "load at start:${UPTIME_START#*load} (machine busy ${BUSY_START}% of one CPU over 3 s before the first run)"
echo "load at end:  ${UPTIME_END#*load}"
echo
{
    printf 'scenario\tconns\treq/s\tp50\tp99\tserver CPU%%\tRSS MB\twrk CPU%%\tother CPU%%\terrors\n'
    cat "$ROWS"
} | column -t -s $'\t'
awk -F '\t' -v max="${DISTURBED_PCT:-15}" '$9 + 0 > max { d = d "\n  " $1 " (other CPU " $9 "%)" }
    END { if (d != "") print "\nWARNING: other work on the machine during these runs; their figures are disturbed:" d }' "$ROWS"
echo
if [[ ${ONLY:-} != reload ]]; then
    echo "ratios (max throughput, -c$CONNECTIONS):"
    for req in role grant; do
        e100=${RPS["elevate 100k $req"]}
        floor=${RPS["hyper floor"]}
        if [[ $req == grant ]]; then e0=${RPS["elevate 0 grant(Deny)"]}; else e0=${RPS["elevate 0 role"]}; fi
        echo "  $req request:  elevate(100k)/floor = $(ratio "$e100" "$floor")  (target >= 0.60)   elevate(100k)/elevate(0) = $(ratio "$e100" "$e0")  (target >= 0.90)"
    done
    echo "  (with 0 grants the grant request is a Deny: elevate(0) grant is not the same answer)"
    for req in role grant; do
        nc=${RPS["elevate 100k $req, no cache"]}
        echo "  $req request, decision cache off (every request decided): elevate(100k)/floor = $(ratio "$nc" "${RPS["hyper floor"]}"), cache on/off = $(ratio "${RPS["elevate 100k $req"]}" "$nc")"
    done
    echo "  churn (random user and project per request, 100k users, cache on): $(printf '%.0f' "${RPS["elevate 100k+100k churn role"]}") req/s = $(ratio "${RPS["elevate 100k+100k churn role"]}" "${RPS["hyper floor"]}") of the floor; cache ${CHURN_HITS:-?}"
    echo
    echo "latency targets (elevate 100k): p50 at low load <= 100µs, p99 at ~50% load <= 1ms"
    for req in role grant; do
        echo "  $req: p50 low load $(fmt_us "${P50["elevate 100k $req low load"]}"), p99 ~50% load $(fmt_us "${P99["elevate 100k $req ~50% load"]}")"
    done
    echo
fi
echo "reload under load (grant request, -c$CONNECTIONS, feed of $GRANTS replaced every 100 ms by rename):"
echo "  feed replacements: $(cat "$SWAPS"), reloads during the run (generation $GEN0 -> $GEN1): $((GEN1 - GEN0)), finished after it: $((GEN2 - GEN1))"
echo "  non-2xx + socket errors: ${ERRS["elevate 100k grant+reload"]}, answers not naming $TARGET_GRANT: $RELOAD_WRONG (both must be 0)"
echo "  req/s $(printf '%.0f' "${RPS["elevate 100k grant+reload"]}") vs steady $(printf '%.0f' "${RPS["elevate 100k grant"]}");" \
    "p99 $(fmt_us "${P99["elevate 100k grant+reload"]}") vs steady $(fmt_us "${P99["elevate 100k grant"]}")" \
    "= $(ratio "${P99["elevate 100k grant+reload"]}" "${P99["elevate 100k grant"]}")x (target <= 2x)"
echo "  grants input status: ${STATUS_GRANTS:-?}"
echo "one reload of $GRANTS grants, unloaded:"
for c in "${RELOAD_COSTS[@]}"; do echo "  $c"; done
echo "elevate 100k RSS at the end: $RSS_END MB"
[[ ${ONLY:-} == reload ]] && exit 0
echo "memory with 100,000 grants and ${BIG_ENTITY_COUNT:-?} entities (target <= 150 MB): RSS at rest $BIG_RSS_REST MB;" \
    "after the max-throughput runs $(awk -F '\t' '$1 == "elevate 100k+100k ent. grant" && $2 == "'"$CONNECTIONS"'" { print $7 }' "$ROWS") MB"
echo "  100k+100k entities grant/100k grant: $(ratio "${RPS["elevate 100k+100k ent. grant"]}" "${RPS["elevate 100k grant"]}") (the cost of 50x the entities)"
