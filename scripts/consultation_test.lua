-- Fixtures for consultation.lua on a fleet of servers (README, "A fleet in
-- a fixture"): run with `electric-socket test scripts/consultation_test.lua`.
local t = require("es.testing")
local es = require("es")

-- join connects user to consultation c42 on instance i of fleet f.
local function join(f, i, user, role)
  local c = f[i]:connect()
  c:send{ user = user, role = role, consultation = "c42" }
  t.eq(c:receive().type, "welcome", "welcome for " .. user)
  return c
end

t.test("the patients are told when the dietitian's server dies", function()
  local f = t.fleet{ script = "consultation.lua", instances = 3 }
  local dana = join(f, 1, "dana", "dietitian")
  local pat = join(f, 2, "pat", "patient")
  local sam = join(f, 3, "sam", "patient")
  t.eq(dana:messages(), { { type = "waiting", patient = "pat" }, { type = "waiting", patient = "sam" } })

  f:crash(1)                      -- no on_close on instance 1: instance 2 runs it, at once

  t.eq(dana:closed(), true)
  t.eq(dana:close_code(), 1006)   -- the connection dropped with no close frame
  t.eq(pat:messages(), { { type = "ended" } })
  t.eq(sam:messages(), { { type = "ended" } })
  t.eq(f:broker_data("c42"), { patients = { pat = pat.id, sam = sam.id }, questions = 0 })
  t.eq(f:side_effects(), { { event = "consultation_ended", consultation = "c42", dietitian = "dana" } })
  t.eq(f[2]:side_effects(), f:side_effects(), "run by the first survivor")
end)

t.test("a crash runs on_close once per member, and the last one out deletes the room", function()
  local f = t.fleet{ script = "consultation.lua", instances = 2 }
  local pat = join(f, 2, "pat", "patient")
  local sam = join(f, 2, "sam", "patient")
  sam:close()                     -- its on_close ran: the crash does not run it again
  t.eq(f:broker_data("c42"), { patients = { pat = pat.id }, questions = 0 })
  f:crash(2)
  t.eq(f:broker_data("c42"), nil)
  t.eq(sam:close_code(), 1000)
  t.eq(pat:close_code(), 1006)
  t.error(function() f[2]:connect() end, "instance 2 crashed")
  t.error(function() f:crash(1) end, "no instance would survive")
end)

t.test("a broker message lost for one server still reaches the others", function()
  local f = t.fleet{ script = "consultation.lua", instances = 3 }
  local dana = join(f, 1, "dana", "dietitian")
  local pat = join(f, 2, "pat", "patient")
  local sam = join(f, 3, "sam", "patient")
  dana:messages()
  f:drop_broker_messages(2)       -- the next message to a connection on instance 2 is lost
  dana:send{ advice = "more greens" }
  t.eq(pat:messages(), es.array{})
  t.eq(sam:messages(), { { type = "advice", text = "more greens" } })
  dana:send{ advice = "and water" }
  t.eq(pat:messages(), { { type = "advice", text = "and water" } })
end)

t.test("an update that loses to another server's runs again, and only the retry counts", function()
  local f = t.fleet{ script = "consultation.lua", instances = 2 }
  local dana = join(f, 1, "dana", "dietitian")
  local pat = join(f, 2, "pat", "patient")
  dana:messages()
  f:conflict_next("c42")          -- as if the other server had written first
  pat:send{ question = "coffee?" }
  t.eq(pat:messages(), { { type = "asked", number = 1 } })   -- the lost attempt sent nothing
  t.eq(dana:messages(), { { type = "question", from = "pat", text = "coffee?", number = 1 } })
  t.eq(f:broker_data("c42").questions, 1)
end)
