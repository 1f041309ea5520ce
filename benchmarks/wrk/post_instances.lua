-- POST /v1/instances: each line's id is a subnet of the line's tenant; requests rotate over
-- them, so concurrent launches rarely race on one subnet stream.
function build(token, id)
   return "POST", "/v1/instances",
      '{"name":"bench","subnet_id":"' .. id .. '","size":"small"}'
end
dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "common.lua")
