-- wrk script for the gateway comparison (bench/compare.py).
-- POST /v1/chat/completions with an OpenAI chat body; every request's prompt
-- is different (a per-thread counter), so a response cache in front of the
-- upstream always misses and still does its lookup and store.
-- Environment: BENCH_STREAM=1 streams (stream_options.include_usage);
-- BENCH_KEY is the bearer token; BENCH_HEADERS adds "Name: value" pairs
-- separated by "|" (Portkey's routing headers).
-- done() prints one line "WRKJSON {...}" that compare.py parses.

local stream = os.getenv("BENCH_STREAM") == "1"
local key = os.getenv("BENCH_KEY") or "sk-bench-caller"
local extra = os.getenv("BENCH_HEADERS") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
for pair in string.gmatch(extra, "[^|]+") do
  local name, value = string.match(pair, "^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local tail = stream and ',"stream":true,"stream_options":{"include_usage":true}}' or "}"
local head = '{"model":"bench-model","max_tokens":64,"messages":[{"role":"user","content":"Explain swarm intelligence in one line. #'

local threads = {}
local counter = 0
local prefix = ""

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = tostring(thread_id or 0) .. "-" .. tostring(os.time()) .. "-"
end

function request()
  counter = counter + 1
  return wrk.format(nil, nil, nil, head .. prefix .. counter .. '"}]' .. tail)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"errors_connect":%d,"errors_read":%d,' ..
    '"errors_write":%d,"errors_status":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
