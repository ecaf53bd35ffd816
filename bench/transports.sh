#!/usr/bin/env bash
# Transports benchmark of `elevate serve` (issue 4): the same decision requests over
# HTTP/1.1 on TCP and on a Unix socket, HTTP/2 (prior knowledge) and pipelined
# HTTP/1.1, driven by examples/loadgen (wrk speaks neither HTTP/2 nor Unix sockets),
# next to the hyper floor (examples/hyper_floor.rs) on the same transports.
#
#   * elevate with 100,000 grants (the seeded fixtures of bench/load.sh), once on
#     127.0.0.1 and once on `--listen unix:PATH`; the hyper floor likewise;
#   * the role request (Allow from `workspace-member-read`) and the grant request
#     (Allow from grant `g-target-finops`) of load.sh, every answer checked;
#   * per server: HTTP/1.1 keep-alive at -c$CONNECTIONS, HTTP/2 on $H2_CONNS
#     connections x $H2_STREAMS streams, HTTP/1.1 pipelined $PIPE_DEPTH deep on
#     $PIPE_CONNS connections; and on TCP one wrk -c$CONNECTIONS run, so loadgen's
#     HTTP/1.1 figure can be set against wrk's.
#
# Every server runs pinned to CPU 0 (`taskset -c 0`), the load generator pinned to
# CPU 1, one server at a time. Installs nothing; needs wrk (`apt-get install -y wrk`),
# taskset (util-linux), curl, and 2 CPUs.
#
# Usage: bench/transports.sh           (from anywhere)
# Environment:
#   DURATION=10        measured seconds per run (loadgen adds WARMUP before it)
#   WARMUP=1           loadgen's unmeasured warm-up, seconds
#   CONNECTIONS=64     HTTP/1.1 connections (loadgen and wrk)
#   H2_CONNS=4 H2_STREAMS=16     HTTP/2 connections and streams on each
#   PIPE_CONNS=8 PIPE_DEPTH=8    pipelined connections and requests per batch
#   PORT_BASE=18480    TCP ports PORT_BASE (floor) and PORT_BASE+1 (elevate)
#   SKIP_BUILD=1       use the existing release build
#   KEEP=1             keep the temp dir (fixtures, logs, outputs)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-64}
H2_CONNS=${H2_CONNS:-4}
H2_STREAMS=${H2_STREAMS:-16}
PIPE_CONNS=${PIPE_CONNS:-8}
PIPE_DEPTH=${PIPE_DEPTH:-8}
PORT_BASE=${PORT_BASE:-18480}
BENCH=transports
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
LOADGEN=$REPO/target/release/examples/loadgen

need wrk "install it with: apt-get install -y wrk"
need curl "install it with: apt-get install -y curl"
need_two_cpus
for var in DURATION CONNECTIONS H2_CONNS H2_STREAMS PIPE_CONNS PIPE_DEPTH; do
    [[ ${!var} =~ ^[0-9]+$ ]] && ((${!var} > 0)) || die "$var must be a positive integer, not \`${!var}\`"
done
[[ $WARMUP =~ ^[0-9]+$ ]] || die "WARMUP must be a whole number of seconds, not \`$WARMUP\`"

# ------------------------------------------------------------------ build + fixtures

build_release "$BIN" "$FLOOR" "$GEN" "$LOADGEN"

# The same fixtures as bench/load.sh (seeded: 2,000 users, 200 workspaces, grants
# over 50,000 principals).
log "fixtures (seeded) into $TMP/fixtures"
"$GEN" "$TMP/fixtures" 0 "$GRANTS" >&2
FIX=$TMP/fixtures
mkdir -p "$TMP/e100k" "$TMP/run"
ln "$FIX/grants-$GRANTS.json" "$TMP/e100k/grants.json"

ROLE_EXPECT='"decision":"Allow"'
GRANT_EXPECT="\"grants\":[\"$TARGET_GRANT\"]"

# ------------------------------------------------------------------ helpers

# curl_to ENDPOINT ARGS...: curl against "tcp:PORT" or "unix:PATH" (the URL's host
# part is then ignored).
curl_to() {
    local endpoint=$1 path=$2
    shift 2
    case $endpoint in
    tcp:*) curl -sS --max-time 5 "$@" "http://127.0.0.1:${endpoint#tcp:}$path" ;;
    unix:*) curl -sS --max-time 5 --unix-socket "${endpoint#unix:}" "$@" "http://localhost$path" ;;
    esac
}

# loadgen's target flags for an endpoint.
target_flags() {
    case $1 in
    tcp:*) echo "--tcp 127.0.0.1:${1#tcp:}" ;;
    unix:*) echo "--unix ${1#unix:}" ;;
    esac
}

# start_server NAME ENDPOINT READY_PATH CMD...: CMD pinned to CPU 0; waits until
# READY_PATH answers 200 on ENDPOINT.
start_server() {
    local name=$1 endpoint=$2 ready=$3 i code=
    shift 3
    case $endpoint in
    tcp:*) port_free "${endpoint#tcp:}" || die "port ${endpoint#tcp:} is in use (set PORT_BASE)" ;;
    esac
    taskset -c 0 "$@" >>"$TMP/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for ((i = 0; i < 600; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || {
            cat "$TMP/$name.log" >&2
            die "$name exited during startup"
        }
        code=$(curl_to "$endpoint" "$ready" -o /dev/null -w '%{http_code}' 2>/dev/null || true)
        [[ $code == 200 ]] && break
        sleep 0.1
    done
    [[ $code == 200 ]] || die "$name not ready on $endpoint after 60 s"
    log "$name ready on $endpoint (pid $SERVER_PID)"
}

# check_answer ENDPOINT BODY EXPECT: one answer, before any measurement, must contain EXPECT.
check_answer() {
    local resp
    resp=$(curl_to "$1" /v1/is_authorized -H 'content-type: application/json' -d "$2") ||
        die "no answer on $1"
    grep -qF "$3" <<<"$resp" || die "expected $3 on $1, got: $resp"
    log "checked on $1: $resp"
}

ROWS=$TMP/rows.tsv
: >"$ROWS"
declare -A RPS
# measure KEY LABEL TOOL CMD...: runs CMD (a load generator, pinned to CPU 1) against the
# server in SERVER_PID, reads its RESULT line and appends a row; RPS[KEY] = req/s.
measure() {
    local key=$1 label=$2 tool=$3
    shift 3
    local out=$TMP/run/$(tr -c 'a-zA-Z0-9' _ <<<"$key").txt
    local t0 t1 c0 c1 w0 w1 m0 m1 result cpu gcpu other rps p50 p99 errs wrong
    t0=$(now_s)
    m0=$(machine_busy_ticks)
    c0=$(cpu_ticks "$SERVER_PID")
    children_cpu_s
    w0=$(<"$TMP/run/times.s")
    taskset -c 1 "$@" >"$out" 2>&1 || {
        cat "$out" >&2
        die "$tool failed for $label"
    }
    children_cpu_s
    w1=$(<"$TMP/run/times.s")
    c1=$(cpu_ticks "$SERVER_PID")
    m1=$(machine_busy_ticks)
    t1=$(now_s)
    result=$(grep '^RESULT ' "$out") || {
        cat "$out" >&2
        die "no RESULT line from $tool"
    }
    kv() { grep -o " $1=[0-9.]*" <<<"$result" | cut -d= -f2; }
    rps=$(kv rps)
    p50=$(kv p50_us)
    p99=$(kv p99_us)
    if [[ $tool == wrk ]]; then
        errs=$(($(kv non2xx) + $(kv connect) + $(kv read) + $(kv write) + $(kv timeout)))
    else
        errs=$(($(kv non2xx) + $(kv errors)))
    fi
    wrong=$(kv wrong)
    # CPU over the whole run (loadgen's warm-up included, for the server too).
    cpu=$(awk -v a="$c0" -v b="$c1" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN { printf "%.0f", (b - a) / hz / (t1 - t0) * 100 }')
    gcpu=$(awk -v a="$w0" -v b="$w1" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.0f", (b - a) / (t1 - t0) * 100 }')
    other=$(awk -v m0="$m0" -v m1="$m1" -v c0="$c0" -v c1="$c1" -v g="$gcpu" -v t0="$t0" -v t1="$t1" -v hz="$CLK_TCK" \
        'BEGIN { o = (m1 - m0 - (c1 - c0)) / hz / (t1 - t0) * 100 - g; printf "%.0f", (o < 0 ? 0 : o) }')
    RPS[$key]=$rps
    printf '%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$tool" "$rps" "$(fmt_us "$p50")" "$(fmt_us "$p99")" \
        "$cpu" "$gcpu" "$other" "$errs (wrong $wrong)" >>"$ROWS"
    log "$(printf '%-44s %-7s %8.0f req/s  p50 %s  p99 %s  server CPU %s%%  client CPU %s%%  other CPU %s%%  errors %s wrong %s' \
        "$label" "$tool" "$rps" "$(fmt_us "$p50")" "$(fmt_us "$p99")" "$cpu" "$gcpu" "$other" "$errs" "$wrong")"
}

# loadgen_rows SERVER ENDPOINT REQ BODY EXPECT: the three loadgen modes on ENDPOINT.
loadgen_rows() {
    local server=$1 endpoint=$2 req=$3 body=$4 expect=$5 transport
    transport=${endpoint%%:*}
    # shellcheck disable=SC2046 # target_flags is two words on purpose
    local common=("$LOADGEN" $(target_flags "$endpoint") --duration "$DURATION" --warmup "$WARMUP"
        --body "$body" --expect "$expect")
    measure "$server|$req|$transport|h1" "$server $req, $transport HTTP/1.1 c$CONNECTIONS" loadgen \
        "${common[@]}" --conns "$CONNECTIONS"
    measure "$server|$req|$transport|h2" "$server $req, $transport HTTP/2 ${H2_CONNS}x$H2_STREAMS" loadgen \
        "${common[@]}" --h2 --conns "$H2_CONNS" --streams "$H2_STREAMS"
    measure "$server|$req|$transport|pipe" "$server $req, $transport pipelined ${PIPE_CONNS}x$PIPE_DEPTH" loadgen \
        "${common[@]}" --conns "$PIPE_CONNS" --pipeline "$PIPE_DEPTH"
}

# wrk_row SERVER PORT REQ BODY EXPECT: wrk -c$CONNECTIONS over TCP, as bench/load.sh runs it.
wrk_row() {
    local server=$1 port=$2 req=$3 body=$4 expect=$5
    measure "$server|$req|tcp|wrk" "$server $req, tcp HTTP/1.1 c$CONNECTIONS" wrk \
        env WRK_BODY="$body" WRK_EXPECT="$expect" \
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$REPO/bench/post.lua" \
        "http://127.0.0.1:$port/v1/is_authorized"
}

start_elevate() {
    local name=$1 endpoint=$2 listen
    case $endpoint in
    tcp:*) listen=127.0.0.1:${endpoint#tcp:} ;;
    unix:*) listen=$endpoint ;;
    esac
    start_server "$name" "$endpoint" /readyz "$BIN" serve --listen "$listen" \
        --policies "$REPO/policies" --schema "$REPO/schema/elevate.cedarschema" \
        --entities "$FIX/entities.json" --grants "$TMP/e100k/grants.json"
}

# ------------------------------------------------------------------ the run

UPTIME_START=$(uptime)
P_FLOOR=$PORT_BASE
P_ELEVATE=$((PORT_BASE + 1))
FLOOR_SOCK=$TMP/floor.sock
ELEVATE_SOCK=$TMP/elevate.sock

# The floor answers a fixed Allow to anything, so only the role request means anything there.
for endpoint in "tcp:$P_FLOOR" "unix:$FLOOR_SOCK"; do
    case $endpoint in
    tcp:*) start_server floor-tcp "$endpoint" / "$FLOOR" "127.0.0.1:$P_FLOOR" ;;
    unix:*) start_server floor-unix "$endpoint" / "$FLOOR" "$endpoint" ;;
    esac
    check_answer "$endpoint" "$ROLE_BODY" "$ROLE_EXPECT"
    [[ $endpoint == tcp:* ]] && wrk_row floor "$P_FLOOR" role "$ROLE_BODY" "$ROLE_EXPECT"
    loadgen_rows floor "$endpoint" role "$ROLE_BODY" "$ROLE_EXPECT"
    stop_server
done

for endpoint in "tcp:$P_ELEVATE" "unix:$ELEVATE_SOCK"; do
    start_elevate "elevate-${endpoint%%:*}" "$endpoint"
    check_answer "$endpoint" "$ROLE_BODY" "$ROLE_EXPECT"
    check_answer "$endpoint" "$GRANT_BODY" "$GRANT_EXPECT"
    for req in role grant; do
        if [[ $req == role ]]; then body=$ROLE_BODY expect=$ROLE_EXPECT; else body=$GRANT_BODY expect=$GRANT_EXPECT; fi
        [[ $endpoint == tcp:* ]] && wrk_row elevate "$P_ELEVATE" "$req" "$body" "$expect"
        loadgen_rows elevate "$endpoint" "$req" "$body" "$expect"
    done
    stop_server
done
UPTIME_END=$(uptime)

# ------------------------------------------------------------------ report

ratio() { awk -v a="${1:-0}" -v b="${2:-0}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }

echo
echo "elevate transports benchmark: $(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src examples Cargo.toml || echo '+dirty'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)"
echo "server pinned to CPU 0, load generator (loadgen, 1 thread; wrk -t1) pinned to CPU 1, ${DURATION}s measured per run (loadgen: after ${WARMUP}s warm-up), $GRANTS grants"
echo "load at start:${UPTIME_START#*load}"
echo "load at end:  ${UPTIME_END#*load}"
echo
{
    printf 'scenario\ttool\treq/s\tp50\tp99\tserver CPU%%\tclient CPU%%\tother CPU%%\terrors\n'
    cat "$ROWS"
} | column -t -s $'\t'
awk -F '\t' -v max="${DISTURBED_PCT:-15}" '$8 + 0 > max { d = d "\n  " $1 " " $2 " (other CPU " $8 "%)" }
    END { if (d != "") print "\nWARNING: other work on the machine during these runs; their figures are disturbed:" d }' "$ROWS"
echo
echo "ratios (req/s):"
for server in floor elevate; do
    for req in role grant; do
        [[ -n ${RPS["$server|$req|tcp|h1"]:-} ]] || continue
        k="$server|$req"
        echo "  $server $req: unix/tcp HTTP/1.1 = $(ratio "${RPS["$k|unix|h1"]}" "${RPS["$k|tcp|h1"]}")," \
            "h2/h1 tcp = $(ratio "${RPS["$k|tcp|h2"]}" "${RPS["$k|tcp|h1"]}") (unix $(ratio "${RPS["$k|unix|h2"]}" "${RPS["$k|unix|h1"]}"))," \
            "pipelined/h1 tcp = $(ratio "${RPS["$k|tcp|pipe"]}" "${RPS["$k|tcp|h1"]}") (unix $(ratio "${RPS["$k|unix|pipe"]}" "${RPS["$k|unix|h1"]}"))," \
            "loadgen/wrk tcp HTTP/1.1 = $(ratio "${RPS["$k|tcp|h1"]}" "${RPS["$k|tcp|wrk"]}")"
    done
done
for req in role grant; do
    line="  elevate/floor, $req request:"
    for mode in "tcp|wrk" "tcp|h1" "unix|h1" "tcp|h2" "unix|h2" "tcp|pipe" "unix|pipe"; do
        line+=" ${mode/|/ } $(ratio "${RPS["elevate|$req|$mode"]}" "${RPS["floor|role|$mode"]}")"
    done
    echo "$line"
done
echo "  (the floor answers a fixed Allow without deciding; its role row is the reference for both requests)"
