-- wrk script for bench/fleet.sh. MODE=poll: GET the instance's desired state with a
-- matching If-None-Match (what a fleet of idle nodes does); MODE=report: POST a report.
-- Instances and tokens come from FLEET_TOKENS ("id token" per line), taken round-robin.
local ids, tokens = {}, {}
local n, i = 0, 0
local mode, state = nil, nil
local body = nil

function init(args)
  for line in io.lines(os.getenv("FLEET_TOKENS")) do
    local id, token = line:match("^(%S+) (%S+)$")
    n = n + 1
    ids[n] = id
    tokens[n] = token
  end
  mode = os.getenv("MODE")
  state = os.getenv("STATE_ID")
  body = '{"desired_state_id":"' .. state .. '","running_module_digests":{},"composefs_digest":"' .. state .. '","status":"applied","message":"bench"}'
  i = math.random(1, n)
end

function request()
  i = i % n + 1
  local h = { ["Authorization"] = "Bearer " .. tokens[i] }
  if mode == "poll" then
    h["If-None-Match"] = '"' .. state .. '"'
    return wrk.format("GET", "/api/v1/instances/" .. ids[i] .. "/desired-state", h)
  end
  h["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/v1/instances/" .. ids[i] .. "/report", h, body)
end

-- bench/soak.sh: a steady rate (ms between requests per connection), only when asked.
if os.getenv("FLEET_DELAY_MS") then
  local pause = tonumber(os.getenv("FLEET_DELAY_MS"))
  function delay()
    return pause
  end
end
