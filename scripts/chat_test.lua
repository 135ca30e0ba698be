-- Fixtures for chat.lua: run with `electric-socket test` (or `go test ./...`).
local t = require("es.testing")
local es = require("es")

local function login(h, user, room)
  local c = h:connect()
  c:send{ user = user, room = room or "lobby" }
  local welcome = c:receive()
  t.eq(welcome.type, "welcome", "welcome for " .. user)
  return c, welcome
end

t.test("an invalid user name is refused and closed", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local c = h:connect()
  c:send{ user = "no spaces allowed", room = "lobby" }
  t.eq(c:receive(), { id = "auth", success = false, error = "invalid_user",
                      message = "user must be 1 to 32 letters, digits, _ or -" })
  t.truthy(c:closed())
  t.eq(c:close_code(), 1008)
  t.eq(h:broker_data("lobby"), nil)
  t.eq(h:side_effects(), es.array{})
end)

t.test("an invalid room is refused", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local c = h:connect()
  c:send{ user = "alice", room = "../etc" }
  t.eq(c:receive().error, "invalid_room")
  t.eq(c:close_code(), 1008)
end)

t.test("the room comes from the query when the message has none", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local c = h:connect{ query = { room = "garden" } }
  c:send{ user = "alice" }
  t.eq(c:receive().room, "garden")
  t.eq(h:broker_data("garden"), { members = { alice = c.id } })
end)

t.test("logging in joins the room and tells the others", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a, welcome = login(h, "alice")
  t.eq(welcome, { type = "welcome", user = "alice", room = "lobby", members = { "alice" } })
  local b, welcome_b = login(h, "bob")
  t.eq(welcome_b.members, { "alice", "bob" })
  t.eq(a:messages(), { { type = "joined", user = "bob", room = "lobby" } })
  t.eq(h:broker_data("lobby"), { members = { alice = a.id, bob = b.id } })
  t.eq(h:side_effects(), { { event = "join", user = "alice", room = "lobby" },
                           { event = "join", user = "bob", room = "lobby" } })
end)

t.test("say reaches everyone else in the room, not other rooms", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  local b = login(h, "bob")
  local c = login(h, "carol", "elsewhere")
  a:messages()
  b:send{ type = "say", text = "hello" }
  t.eq(b:receive(), { type = "sent", text = "hello" })
  t.eq(a:messages(), { { type = "message", from = "bob", room = "lobby", text = "hello" } })
  t.eq(c:messages(), es.array{})
end)

t.test("say checks the text", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  a:send{ type = "say", text = "" }
  local reply = a:receive()
  t.eq(reply.id, "comm")
  t.eq(reply.error, "invalid_text")
  t.falsy(a:closed(), "a failure response does not close")
  a:send{ type = "say", text = string.rep("x", 2001) }
  t.eq(a:receive().error, "invalid_text")
end)

t.test("a whisper reaches only its target", function()
  local h = t.host{ script = "chat.lua", name = "chat" }  -- relative to this file
  local a = login(h, "alice")
  local b = login(h, "bob")
  local c = login(h, "carol")
  a:messages(); b:messages()                             -- drop the joins
  a:send{ type = "whisper", to = "bob", text = "psst" }
  t.eq(a:receive(), { type = "sent", to = "bob", text = "psst" })
  t.eq(b:messages(), { { type = "whisper", from = "alice", text = "psst" } })
  t.eq(c:messages(), es.array{})
end)

t.test("a whisper to someone absent fails and keeps the connection", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  a:send{ type = "whisper", to = "nobody", text = "hi" }
  t.eq(a:receive(), { id = "comm", success = false, error = "no_such_user",
                      message = "nobody called nobody is in lobby" })
  t.falsy(a:closed())
end)

t.test("members lists the room", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  login(h, "bob")
  a:messages()
  a:send{ type = "members" }
  t.eq(a:receive(), { type = "members", room = "lobby", members = { "alice", "bob" } })
end)

t.test("an unknown type is answered with a failure", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  a:send{ type = "dance" }
  t.eq(a:receive().error, "unknown_type")
  t.falsy(a:closed())
end)

t.test("leave says bye, closes 1000 and tells the others", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  local b = login(h, "bob")
  a:messages()
  b:send{ type = "leave" }
  t.eq(b:receive(), { type = "bye" })
  t.eq(b:close_code(), 1000)
  t.eq(a:messages(), { { type = "left", user = "bob", room = "lobby" } })
  t.eq(h:broker_data("lobby"), { members = { alice = a.id } })
end)

t.test("a disconnect runs on_close: leave notice and side effect", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  local b = login(h, "bob")
  a:messages()
  b:close()
  t.eq(a:messages(), { { type = "left", user = "bob", room = "lobby" } })
  local effects = h:side_effects()
  t.eq(effects[#effects], { event = "leave", user = "bob", room = "lobby" })
end)

t.test("the room's entity is deleted when the last member leaves", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  local b = login(h, "bob")
  a:close()
  t.truthy(h:broker_data("lobby"))
  b:close()
  t.eq(h:broker_data("lobby"), nil)
end)

t.test("a second login replaces the first without a leave notice", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local old = login(h, "alice")
  local bob = login(h, "bob")
  old:messages()
  local new = login(h, "alice")
  t.eq(old:messages(), { { type = "replaced", message = "you logged in somewhere else" } })
  t.eq(old:close_code(), 1000)
  t.eq(bob:messages(), es.array{}, "bob hears neither a join nor a leave")
  t.eq(h:broker_data("lobby"), { members = { alice = new.id, bob = bob.id } })
  new:send{ type = "say", text = "still here" }
  t.eq(bob:receive().text, "still here")
end)

t.test("a join retried after a conflict is acted on once", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  h:conflict_next("lobby")
  login(h, "bob")
  t.eq(a:messages(), { { type = "joined", user = "bob", room = "lobby" } })
  local joins = 0
  for _, e in ipairs(h:side_effects()) do
    if e.event == "join" and e.user == "bob" then joins = joins + 1 end
  end
  t.eq(joins, 1)
end)

t.test("bad input: not JSON closes 1007", function()
  local h = t.host{ script = "chat.lua", name = "chat" }
  local a = login(h, "alice")
  a:send("this is not json")
  t.eq(a:receive().error, "invalid_json")
  t.eq(a:close_code(), 1007)
end)

-- With a token ([integration.auth]): the user is the token's subject.
t.test("with a token the user is the token's subject, not the message's", function()
  local h = t.host{ script = "chat.lua", name = "chat", auth = { audience = "chat" } }
  local c = h:connect{ token = t.token{ sub = "alice", aud = "chat" } }
  c:send{ user = "mallory", room = "lobby" }
  local welcome = c:receive()
  t.eq(welcome.type, "welcome")
  t.eq(welcome.user, "alice")
end)

t.test("an expired or foreign token never reaches the script", function()
  local h = t.host{ script = "chat.lua", name = "chat", auth = { audience = "chat" } }
  for _, tok in ipairs{ t.token{ sub = "alice", aud = "chat", exp = -60 },
                        t.token{ sub = "alice", aud = "billing" },
                        t.token{ sub = "alice", aud = "chat", secret = "someone-else-s-secret-of-32-bytes!!" } } do
    local c = h:connect{ token = tok }
    t.eq(c:receive().error, "unauthenticated")
    t.eq(c:close_code(), 401)
  end
  local none = h:connect()
  t.eq(none:receive().error, "unauthenticated")
  t.eq(h:broker_data("lobby"), nil)
end)
