-- wrk script of benchmarks/event_log.sh: POST /assets, each request a new asset (the command
-- API gives the id), a valid body of the default settings' Asset type.
local n = 0
request = function()
  n = n + 1
  local body = '{"title":"asset ' .. n .. '","src":"https://example.com/' .. n .. '.png","width":' .. n .. '}'
  return wrk.format("POST", "/assets", {["Content-Type"] = "application/json"}, body)
end
