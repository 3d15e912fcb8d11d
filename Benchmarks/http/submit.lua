-- wrk script of `durable-bench --workloads http` (see Docs/benchmarks.md, "HTTP API").
--
--   wrk -t2 -c16 -d10s --latency --timeout 15s -s submit.lua http://127.0.0.1:PORT -- PATH TOKEN EXPECTED
--
-- Each request POSTs {"input": N} to PATH with "Authorization: Bearer TOKEN", N unique across the
-- threads of one wrk run (thread number * 10^9 + the thread's count), so that every request is a
-- distinct run. Every response whose status is not EXPECTED (202 for an async submit, 200 for a
-- ?wait= submit that saw its run end) is counted, whatever wrk itself counts (it counts only
-- statuses above 399). At the end one line is printed:
--
--   wrk-result {"requests": …, "duration_us": …, "unexpected_status": …, "p50_us": …, …}

local threads = {}

function setup(thread)
   thread:set("thread_number", #threads)
   table.insert(threads, thread)
end

function init(args)
   path = args[1]
   expected = tonumber(args[3])
   headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2]}
   base = thread_number * 1000000000
   sent = 0
   unexpected = 0
   last_unexpected = 0
end

function request()
   sent = sent + 1
   return wrk.format("POST", path, headers, '{"input":' .. (base + sent) .. '}')
end

function response(status, headers, body)
   if status ~= expected then
      unexpected = unexpected + 1
      last_unexpected = status
   end
end

function done(summary, latency, requests)
   local unexpected_total, last = 0, 0
   for _, thread in ipairs(threads) do
      unexpected_total = unexpected_total + thread:get("unexpected")
      if thread:get("last_unexpected") ~= 0 then last = thread:get("last_unexpected") end
   end
   local e = summary.errors
   io.write(string.format(
      'wrk-result {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, "read_errors": %d, '
         .. '"write_errors": %d, "timeouts": %d, "status_errors": %d, "unexpected_status": %d, '
         .. '"last_unexpected_status": %d, "p50_us": %d, "p75_us": %d, "p90_us": %d, "p99_us": %d, '
         .. '"max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.timeout, e.status,
      unexpected_total, last, latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency.max, latency.mean))
end
