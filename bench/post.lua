-- wrk script for bench/load.sh: POSTs one JSON decision request and prints a
-- machine-readable RESULT line when done.
--
-- Environment:
--   WRK_BODY      the request body (required)
--   WRK_PATH      request path (default /v1/is_authorized)
--   WRK_DELAY_MS  mean think time per connection, in ms: each connection waits a
--                 uniformly random 0..2*mean ms before each request (an open-ish,
--                 desynchronised load at a chosen rate); unset or 0: closed loop
--   WRK_EXPECT    every response body must contain this string; the count of
--                 those that don't is reported as wrong=N (unset: not checked)

local body = os.getenv("WRK_BODY")
if not body or body == "" then
  error("WRK_BODY is not set")
end
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/v1/is_authorized"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

local mean_delay = tonumber(os.getenv("WRK_DELAY_MS") or "") or 0
if mean_delay > 0 then
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  function delay()
    return math.random(0, 2 * mean_delay)
  end
end

local expect = os.getenv("WRK_EXPECT")
if expect and expect ~= "" then
  wrong = 0
  function response(status, headers, resp_body)
    if not resp_body or not string.find(resp_body, expect, 1, true) then
      wrong = wrong + 1
    end
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + (tonumber(t:get("wrong")) or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d wrong=%d\n",
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout, bad))
end
