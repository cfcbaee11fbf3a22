-- wrk script of benchmarks/checkout_throughput.sh: POST /orders/checkout/{n}, every request a
-- distinct order id (thread i of T sends i, i + T, i + 2T, ...: never an order twice), counting
-- the answers by kind. Arguments (after --): threads, orders, first (the first order id, 0 by
-- default: a measured run after a warm-up starts past the warm-up's orders).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  thread_count = tonumber(args[1])
  orders = tonumber(args[2])
  first = tonumber(args[3] or "0")
  sent = 0
  ok = 0       -- 200: the order went from unpaid to paid
  refused = 0  -- 4xx (out of stock or credit: cannot happen with the benchmark's amounts)
  other = 0    -- anything else (5xx): an error
end

function request()
  local n = first + sent * thread_count + id
  sent = sent + 1
  if n >= orders then
    n = orders + n -- past the batch: answered 400, counted as refused (the run was too long)
  end
  return wrk.format("POST", "/orders/checkout/" .. n)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status >= 400 and status < 500 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_refused, total_other, sent_max = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    local last = t:get("first") + (t:get("sent") - 1) * #threads + t:get("id") + 1
    if last > sent_max then sent_max = last end
    total_ok = total_ok + t:get("ok")
    total_refused = total_refused + t:get("refused")
    total_other = total_other + t:get("other")
  end
  local seconds = summary.duration / 1e6
  io.write(string.format("orders_sent: %d\n", sent_max))
  io.write(string.format("checkouts_ok: %d\n", total_ok))
  io.write(string.format("checkouts_refused: %d\n", total_refused))
  io.write(string.format("checkouts_other: %d\n", total_other))
  io.write(string.format("socket_errors: %d\n", summary.errors.connect + summary.errors.read +
                         summary.errors.write + summary.errors.timeout))
  io.write(string.format("seconds: %.2f\n", seconds))
  io.write(string.format("checkouts_per_s: %.0f\n", total_ok / seconds))
  io.write(string.format("p50_ms: %.2f\n", latency:percentile(50) / 1000))
  io.write(string.format("p99_ms: %.2f\n", latency:percentile(99) / 1000))
end
