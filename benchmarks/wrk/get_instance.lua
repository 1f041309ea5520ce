-- GET /v1/instances/{id}: each line's id is an instance of the line's tenant.
function build(token, id)
   return "GET", "/v1/instances/" .. id, nil
end
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
