-- POST /v1/networks: every request creates a network (no two share a stream).
function build(token, id)
   return "POST", "/v1/networks", '{"name":"bench","cidr":"10.20.0.0/16"}'
end
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
