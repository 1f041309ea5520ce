-- GET /v1/instances?limit=50: the first page of the line's tenant's instances.
function build(token, id)
   return "GET", "/v1/instances?limit=50", nil
end
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
