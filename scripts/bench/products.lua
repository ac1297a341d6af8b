-- wrk script: GET /v1/products/{id} over the ids in PRODUCTS_FILE (one per
-- line), each request a random one. With CLIENTS=N, each request names one
-- of N client addresses in X-Forwarded-For (for an API that trusts the
-- proxy on loopback): N clients of the rate limit instead of one.
function init(args)
  ids = {}
  for line in io.lines(os.getenv("PRODUCTS_FILE")) do
    table.insert(ids, line)
  end
  clients = tonumber(os.getenv("CLIENTS") or "0")
  math.randomseed(os.time())
end

function request()
  local headers = {}
  if clients > 0 then
    local c = math.random(0, clients - 1)
    headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(c / 65536) % 256, math.floor(c / 256) % 256, c % 256)
  end
  return wrk.format("GET", "/v1/products/" .. ids[math.random(1, #ids)], headers)
end
