-- wrk script: GET a random item of the bench's 10,000, and print a JSON summary at the end.
math.randomseed(os.time())

request = function()
  return wrk.format("GET", "/api/v1/items/" .. math.random(1, 10000))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50": %d, "p99": %d, "max": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
