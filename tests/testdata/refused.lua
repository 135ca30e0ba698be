-- refused.lua: a broker_authorisation that returns every field of the
-- action, and refuses the login (es.fail) when the first frame says
-- {"user":x,"refuse":true}. SPEC 5.2 and 5.7: a refused login commits
-- nothing and hands on no side effect and no broker message.
--
-- Every connection is on the entity "r" and answers to "all"; the entity
-- counts the logins committed ({logins = N, last = user}).
local es = require("es")
local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user, refuse = message.refuse == true }
end

function M.channel_identifier(channel, data)
  return "all"
end

function M.broker_key(channel, data)
  return "r"
end

function M.broker_authorisation(channel, data, broker_data)
  local logins = (broker_data.logins or 0) + 1
  local action = {
    broker_data = { logins = logins, last = data.user },
    broker_messages = { { target = "all", message = { type = "joined", user = data.user } } },
    side_effects = { { event = "join", user = data.user } },
    websocket_response = { type = "welcome", user = data.user, logins = logins },
  }
  if data.refuse then
    action.websocket_response = es.fail({ success = false, error = "refused" })
  end
  return action
end

function M.process_websocket_message(channel, message, data, broker_data)
  return { websocket_response = broker_data }
end

function M.process_broker_message(channel, envelope, data, broker_data)
  return { websocket_response = envelope.message }
end

return M
