-- Fixtures for direct.lua.
local t = require("es.testing")
local es = require("es")

local function login(h, user)
  local c = h:connect()
  c:send{ user = user }
  return c, c:receive()
end

t.test("a direct message reaches every connection of its target, and nobody else", function()
  local h = t.host{ script = "direct.lua", name = "direct" }
  local ann = login(h, "ann")
  local bob1 = login(h, "bob")
  local bob2, welcome = login(h, "bob")                       -- a second tab
  local cy = login(h, "cy")
  t.eq(welcome, { type = "welcome", members = { "ann", "bob" } })
  ann:send{ to = "bob", text = "psst" }
  t.eq(ann:receive(), { type = "sent", to = "bob" })
  t.eq(bob1:messages(), { { type = "dm", from = "ann", text = "psst" } })
  t.eq(bob2:messages(), { { type = "dm", from = "ann", text = "psst" } })
  t.eq(cy:messages(), es.array{})
end)

t.test("presence counts each user's connections", function()
  local h = t.host{ script = "direct.lua", name = "direct" }
  local ann = login(h, "ann")
  local bob1 = login(h, "bob")
  local bob2 = login(h, "bob")
  t.eq(h:broker_data("lobby"), { members = { ann = 1, bob = 2 } })
  bob1:close()
  t.eq(h:broker_data("lobby"), { members = { ann = 1, bob = 1 } })   -- bob is still here
  bob2:close()
  ann:close()
  t.eq(h:broker_data("lobby"), nil)                                -- the last one out
end)
