-- effects.lua: side effects on request, to test the side-effect sinks.
-- Every connection shares the entity "fx" (its broker key).
--
-- first frame {"user":"x"}: side effect {event="join", user=x}
-- later frames:
--   {"type":"fx","n":N}         commits broker_data {n=N}, answers {type="ok",n=N},
--                               side effect {n=N, user=x}
--   {"type":"malformed","n":N}  returns the side effect {n=N} with an unknown
--                               field: malformed_action, nothing committed
--   {"type":"error","n":N}      raises an error: nothing committed
-- on close: side effect {event="leave", user=x}

local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user }
end

function M.broker_key(channel, data)
  return "fx"
end

function M.broker_authorisation(channel, data, broker_data)
  return {
    websocket_response = { type = "welcome", user = data.user },
    side_effects = { { event = "join", user = data.user } },
  }
end

function M.process_websocket_message(channel, message, data, broker_data)
  if message.type == "fx" then
    return {
      broker_data = { n = message.n },
      websocket_response = { type = "ok", n = message.n },
      side_effects = { { n = message.n, user = data.user } },
    }
  elseif message.type == "malformed" then
    return { side_effects = { { n = message.n, user = data.user } }, bogus_field = true }
  end
  error("refusing " .. tostring(message.type))
end

function M.on_close(channel, data, broker_data)
  return { side_effects = { { event = "leave", user = data.user } } }
end

return M
