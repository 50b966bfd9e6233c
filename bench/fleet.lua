-- wrk script for bench/fleet.sh. MODE=poll: GET the instance's desired state with a
-- matching If-None-Match (what a fleet of idle nodes does); MODE=report: POST a report.
-- Instances come from FLEET_TOKENS, taken round-robin from a random start, one line each:
-- "id token [state_id body_line]". The state id an instance holds and the line of
-- FLEET_BODIES (0-based) that is its report come from bench/fleet_seed.py; without them,
-- STATE_ID and an empty report (bench/soak.sh).
local ids, tokens, states, bodies = {}, {}, {}, {}
local n, i = 0, 0
local mode = nil

function init(args)
  mode = os.getenv("MODE")
  local state = os.getenv("STATE_ID")
  local empty = nil
  if state then
    empty = '{"desired_state_id":"' .. state .. '","running_module_digests":{},"composefs_digest":"' .. state .. '","status":"applied","message":"bench"}'
  end
  local lines = {}
  if os.getenv("FLEET_BODIES") then
    for line in io.lines(os.getenv("FLEET_BODIES")) do
      lines[#lines + 1] = line
    end
  end
  for line in io.lines(os.getenv("FLEET_TOKENS")) do
    local f = {}
    for w in line:gmatch("%S+") do
      f[#f + 1] = w
    end
    n = n + 1
    ids[n] = f[1]
    tokens[n] = f[2]
    states[n] = f[3] or state
    bodies[n] = f[4] and lines[tonumber(f[4]) + 1] or empty
  end
  i = math.random(1, n)
end

function request()
  i = i % n + 1
  local h = { ["Authorization"] = "Bearer " .. tokens[i] }
  if mode == "poll" then
    h["If-None-Match"] = '"' .. states[i] .. '"'
    return wrk.format("GET", "/api/v1/instances/" .. ids[i] .. "/desired-state", h)
  end
  h["Content-Type"] = "application/json"
  return wrk.format("POST", "/api/v1/instances/" .. ids[i] .. "/report", h, bodies[i])
end

-- bench/soak.sh: a steady rate (ms between requests per connection), only when asked.
if os.getenv("FLEET_DELAY_MS") then
  local pause = tonumber(os.getenv("FLEET_DELAY_MS"))
  function delay()
    return pause
  end
end
