-- wrk script: POST /input with the data set's predictions in turn (one JSON object per line in
-- the file named by $PREDICTIONS_DATA, from examples/predictions/dataset.py --lines). Used by
-- tests/e2e/predictions.sh (the chaos run's load) and benchmarks/predictions.sh until loadgen.
local bodies = {}
local path = os.getenv("PREDICTIONS_DATA")
for line in io.lines(path) do
  if #line > 0 then bodies[#bodies + 1] = line end
end
assert(#bodies > 0, "no predictions in " .. tostring(path))
local next_body = 0
local headers = {["Content-Type"] = "application/json"}

request = function()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/input", headers, bodies[next_body])
end

-- One line the caller can parse (the client's view only: the accepted count is the topic's).
done = function(summary)
  io.write(string.format("wrk: requests %d, errors connect %d read %d write %d timeout %d, non-2xx %d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, summary.errors.status))
end
