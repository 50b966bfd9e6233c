-- wrk script: POST the Gitea package fixture with its valid HMAC and a unique
-- X-Gitea-Delivery per request (the signature covers the body, not that header).
local body = nil
local counter = 0
prefix = "t"

-- HOOK_PREFIX tells apart wrk processes started at once (bench/hooks.sh runs one per
-- replica); math.random is not seeded differently between processes.
function setup(thread)
  thread:set("prefix", (os.getenv("HOOK_PREFIX") or "") .. "t" .. tostring(math.random(1, 1e9)) .. "-" .. tostring(os.time()))
end

function init(args)
  local f = assert(io.open(os.getenv("HOOK_BODY"), "rb"))
  body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Gitea-Event"] = "package"
  wrk.headers["X-Gitea-Event-Type"] = "package"
  wrk.headers["X-Gitea-Signature"] = os.getenv("HOOK_SIGNATURE")
end

function request()
  counter = counter + 1
  wrk.headers["X-Gitea-Delivery"] = prefix .. "-" .. counter
  return wrk.format(nil, "/hooks/gitea")
end

-- bench/soak.sh: a steady rate instead of as fast as possible (ms between requests per
-- connection). Defined only when asked, so bench/hooks.sh measures without wrk's timer.
if os.getenv("HOOK_DELAY_MS") then
  local pause = tonumber(os.getenv("HOOK_DELAY_MS"))
  function delay()
    return pause
  end
end
