-- wrk script of benchmarks/cms_get_vs_nginx.sh: POST /api/channel-metadata/{code}, the codes
-- AA..ZZ except GB in turn (GB keeps the document the GET runs read), each a valid document.
local codes = {}
for a = string.byte("A"), string.byte("Z") do
  for b = string.byte("A"), string.byte("Z") do
    local code = string.char(a, b)
    if code ~= "GB" then codes[#codes + 1] = code end
  end
end
local next_code = 0

request = function()
  next_code = next_code % #codes + 1
  local code = codes[next_code]
  local body = '{"countryCode":"' .. code .. '","product":"exampleProduct","metadata":['
    .. '{"name":"Channel ' .. next_code .. '","language":"English","type":"News"},'
    .. '{"name":"Channel Two","language":"English","type":"Entertainment"}]}'
  local headers = {["Content-Type"] = "application/json"}
  for name, value in pairs(wrk.headers) do headers[name] = value end -- -H (Authorization), Host
  return wrk.format("POST", "/api/channel-metadata/" .. code, headers, body)
end
