-- wrk script for bench/load.sh: every request is a different decision, so the decision
-- cache (almost) never hits: principal u-N for a random N < WRK_USERS, readProject on
-- a random project p-W-P (W < WRK_WORKSPACES, P < 5). Prints the RESULT line of
-- post.lua (without the answer check).
--
-- Environment: WRK_USERS (default 100000), WRK_WORKSPACES (default 200).

local users = tonumber(os.getenv("WRK_USERS") or "") or 100000
local workspaces = tonumber(os.getenv("WRK_WORKSPACES") or "") or 200
wrk.method = "POST"
wrk.path = "/v1/is_authorized"
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local body = string.format(
    '{"principal":"User::\\"u-%d\\"","action":"Action::\\"readProject\\"",' ..
    '"resource":"Project::\\"p-%d-%d\\"","context":{"mfa":true}}',
    math.random(0, users - 1), math.random(0, workspaces - 1), math.random(0, 4))
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d wrong=0\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
