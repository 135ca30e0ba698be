-- Fixtures for mixed.lua.
local t = require("es.testing")
local es = require("es")

t.test("a broadcast reaches everyone, a direct message only its target", function()
  local h = t.host{ script = "mixed.lua", name = "mixed" }
  local ann, bob, cy = h:connect(), h:connect(), h:connect()
  ann:send{ user = "ann" }; bob:send{ user = "bob" }; cy:send{ user = "cy" }
  ann:send{ to = "bob", text = "psst" }
  t.eq(bob:messages(), { { from = "ann", to = "bob", text = "psst" } })
  t.eq(cy:messages(), es.array{})
  ann:send{ text = "hi all" }
  t.eq(bob:messages(), { { from = "ann", text = "hi all" } })
  t.eq(cy:messages(), { { from = "ann", text = "hi all" } })
  t.eq(ann:messages(), es.array{})                               -- never its own
end)
