-- Shared by the gateway benchmark's wrk scripts (benchmarks/gateway.py runs them).
-- A scenario script sets `build(token, id)` -> method, path, body and then loads this file.
-- Arguments after `--`: the data file, one "token<TAB>id" line per target; each thread walks
-- the lines from its own offset, so connections spread over tenants and resources.
-- At the end one line "WRK_JSON {...}" carries the figures, with the answers counted by status.

local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("thread_number", counter)
   table.insert(threads, thread)
end

local requests = {}
local next_request = 1
statuses = {}

local function json_string(value)
   return '"' .. tostring(value):gsub('[%c"\\]', "") .. '"'
end

function init(args)
   local file = assert(io.open(args[1], "r"))
   for line in file:lines() do
      local token, id = line:match("^([^\t]+)\t?(.*)$")
      if token then
         local method, path, body = build(token, id)
         local headers = { ["Authorization"] = "Bearer " .. token }
         if body then headers["Content-Type"] = "application/json" end
         table.insert(requests, wrk.format(method, path, headers, body))
      end
   end
   file:close()
   assert(#requests > 0, "no request lines in " .. args[1])
   next_request = ((thread_number or 1) * 7919) % #requests + 1
end

function request()
   local r = requests[next_request]
   next_request = next_request % #requests + 1
   return r
end

function response(status, headers, body)
   statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests_stats)
   local counts = {}
   for _, thread in ipairs(threads) do
      for status, n in pairs(thread:get("statuses") or {}) do
         counts[status] = (counts[status] or 0) + n
      end
   end
   local parts = {}
   for status, n in pairs(counts) do
      table.insert(parts, json_string(status) .. ":" .. n)
   end
   local e = summary.errors
   local out = {
      '"duration_us":' .. summary.duration,
      '"requests":' .. summary.requests,
      '"bytes":' .. summary.bytes,
      '"errors":{"connect":' .. e.connect .. ',"read":' .. e.read .. ',"write":' .. e.write
         .. ',"status":' .. e.status .. ',"timeout":' .. e.timeout .. '}',
      '"statuses":{' .. table.concat(parts, ",") .. '}',
      '"latency_us":{"mean":' .. latency.mean .. ',"max":' .. latency.max
         .. ',"p50":' .. latency:percentile(50) .. ',"p90":' .. latency:percentile(90)
         .. ',"p99":' .. latency:percentile(99) .. ',"p999":' .. latency:percentile(99.9) .. '}',
   }
   io.write("WRK_JSON {" .. table.concat(out, ",") .. "}\n")
end
