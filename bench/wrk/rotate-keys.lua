-- wrk script for the load harness (crates/posture/benches/load): each request
-- carries the next API key of $KEYS_FILE (one per line) as a bearer token, so
-- the load rotates over the seeded tenants; without $KEYS_FILE, no header
-- (the bare hello). done() prints one line, "RESULT {json}", that the harness
-- parses.
local keys = {}
local next_key = 0
local threads = 0

function setup(thread)
  thread:set("number", threads)
  threads = threads + 1
end

function init(args)
  local path = os.getenv("KEYS_FILE")
  if path and #path > 0 then
    for line in io.lines(path) do
      if #line > 0 then keys[#keys + 1] = "Bearer " .. line end
    end
    -- Threads start at different tenants.
    next_key = ((number or 0) * 97) % #keys
  end
end

function request()
  if #keys == 0 then
    return wrk.format(nil, nil)
  end
  next_key = next_key % #keys + 1
  return wrk.format(nil, nil, { ["Authorization"] = keys[next_key] })
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_s":%.3f,"requests_per_second":%.1f,"mean_ms":%.3f,' ..
    '"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"non_2xx":%d,' ..
    '"socket_errors":%d}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
