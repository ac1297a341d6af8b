-- wrk script: GET /v1/products/{id} over the ids in PRODUCTS_FILE (one per
-- line), each request a random one.
function init(args)
  ids = {}
  for line in io.lines(os.getenv("PRODUCTS_FILE")) do
    table.insert(ids, line)
  end
  math.randomseed(os.time())
end

function request()
  return wrk.format("GET", "/v1/products/" .. ids[math.random(1, #ids)])
end
