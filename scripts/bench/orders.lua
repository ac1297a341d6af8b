-- wrk script: POST /v1/orders with 1-3 random products, a fresh
-- Idempotency-Key per request. Reads TOKEN and PRODUCTS (comma-separated
-- ids) from the environment, and DELAY_MS, a pause after each answer
-- before a connection's next request (none when unset).
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("TOKEN")
  products = {}
  for id in string.gmatch(os.getenv("PRODUCTS"), "[^,]+") do
    table.insert(products, id)
  end
  math.randomseed(os.time() * 1000 + tid)
  prefix = os.time() .. "-" .. tid .. "-"
  counter = 0
end

function request()
  counter = counter + 1
  local n = math.random(1, 3)
  local first = math.random(1, #products - n)
  local items = {}
  for i = 0, n - 1 do
    items[#items + 1] = string.format('{"product_id":"%s","quantity":%d}', products[first + i], math.random(1, 5))
  end
  local body = '{"items":[' .. table.concat(items, ",") .. ']}'
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = prefix .. counter,
  }
  return wrk.format("POST", "/v1/orders", headers, body)
end

local pause = tonumber(os.getenv("DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end
