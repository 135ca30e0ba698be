-- Fixtures for room.lua: run with `electric-socket test docs/patterns` (go test ./... runs them).
local t = require("es.testing")
local es = require("es")

t.test("one broker message reaches everyone else in the room", function()
  local h = t.host{ script = "room.lua", name = "room" }
  local ann, bob, cy = h:connect(), h:connect(), h:connect()
  ann:send{ user = "ann" }
  t.eq(ann:receive(), { type = "welcome", room = "lobby" })
  bob:send{ user = "bob" }
  bob:receive()
  t.eq(ann:messages(), { { type = "joined", user = "bob" } })
  cy:send{ user = "cy", room = "other" }
  cy:receive()
  ann:send{ text = "hi" }
  t.eq(ann:receive(), { type = "said", from = "ann", text = "hi" })   -- the sender's copy
  t.eq(bob:messages(), { { type = "said", from = "ann", text = "hi" } })
  t.eq(cy:messages(), es.array{})                                        -- another room
end)

t.test("the members are kept, and the last one out deletes the room", function()
  local h = t.host{ script = "room.lua", name = "room" }
  local ann, bob = h:connect(), h:connect()
  ann:send{ user = "ann" }
  bob:send{ user = "bob" }
  t.eq(h:broker_data("lobby"), { members = { ann = ann.id, bob = bob.id } })
  ann:close()
  t.eq(bob:messages(), { { type = "welcome", room = "lobby" }, { type = "left", user = "ann" } })
  t.eq(h:broker_data("lobby"), { members = { bob = bob.id } })
  bob:close()
  t.eq(h:broker_data("lobby"), nil)
end)

t.test("a client that does not say who it is is refused", function()
  local h = t.host{ script = "room.lua", name = "room" }
  local c = h:connect()
  c:send{}
  t.eq(c:receive(), { id = "auth", error = "who are you?" })
  t.eq(c:close_code(), 1008)
end)
