-- Run with `electric-socket test`.
local t = require("es.testing")

local function join(h, name)
  local c = h:connect()
  c:send{ name = name }
  return c, c:receive()
end

t.test("a nameless client is refused", function()
  local h = t.host{ script = "counter.lua", name = "counter" }
  local c = h:connect()
  c:send{}
  t.eq(c:receive().error, "name_required")
  t.truthy(c:closed())
end)

t.test("increments are shared with the room", function()
  local h = t.host{ script = "counter.lua", name = "counter" }
  local a, hello = join(h, "ada")
  t.eq(hello, { type = "hello", count = 0, members = 1 })
  local b = join(h, "bob")
  a:send{ op = "inc", by = 2 }
  t.eq(a:receive(), { type = "count", count = 2, by = "ada" })
  t.eq(b:receive(), { type = "count", count = 2, by = "ada" })
  t.eq(h:broker_data("main"), { count = 2, members = 2 })
  t.eq(h:side_effects(), { { counted = 2, room = "main" } })
end)

t.test("the counter is removed when the room empties", function()
  local h = t.host{ script = "counter.lua", name = "counter" }
  local a = join(h, "ada")
  a:close()
  t.eq(h:broker_data("main"), nil)
end)
