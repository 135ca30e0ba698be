-- bad.lua: a small room script whose functions fail on request, to test
-- how the host answers script errors, timeouts and malformed actions.
-- The tests find lines by the MARK comments: keep them unique.
--
-- first frame {"user":"x"}: joins the single room "room".
--   user "auth_error"     initial_authorisation raises an error
--   user "auth_loop"      initial_authorisation never returns
--   user "auth_malformed" broker_authorisation returns an unknown field
-- later frames {"type":...}:
--   "echo"      answers {"type":"echo","text":..}
--   "error"     raises an error
--   "loop"      never returns
--   "malformed" returns an unknown field (and a broker_data that must not be committed)
--   "poison"    returns a broker_data that cannot be encoded (a function)

local es = require("es")
local M = {}

local function others(members, except, message)
  local out = {}
  for user in pairs(members) do
    if user ~= except then
      out[#out + 1] = { target = user, message = message }
    end
  end
  return out
end

function M.initial_authorisation(channel, message)
  if message.user == "auth_error" then
    error("refusing to authorise") -- MARK:auth_error
  end
  if message.user == "auth_loop" then
    while true do end
  end
  if type(message.user) ~= "string" then
    return es.fail({ error = "no_user" })
  end
  return { user = message.user }
end

function M.channel_identifier(channel, data)
  return data.user
end

function M.broker_key(channel, data)
  return "room"
end

function M.broker_authorisation(channel, data, broker_data) -- MARK:broker_authorisation
  local members = broker_data.members or {}
  members[data.user] = channel.id
  if data.user == "auth_malformed" then
    return { broker_data = { members = members }, websocket_respons = { type = "welcome" } } -- MARK:auth_malformed
  end
  return {
    broker_data = { members = members },
    websocket_response = { type = "welcome", user = data.user },
    broker_messages = others(members, data.user, { type = "joined", user = data.user }),
  }
end

function M.process_websocket_message(channel, message, data, broker_data) -- MARK:process_websocket_message
  local t = message.type
  if t == "echo" then
    return { websocket_response = { type = "echo", text = message.text } }
  elseif t == "error" then
    error("kaboom") -- MARK:runtime_error
  elseif t == "loop" then
    while true do end
  elseif t == "malformed" then
    local members = broker_data.members or {}
    members.intruder = "x"
    return { broker_data = { members = members }, websocket_response = { type = "echo" }, bogus_field = 1 } -- MARK:malformed
  elseif t == "poison" then
    return { broker_data = { members = broker_data.members, f = function() end } }
  end
  return { websocket_response = es.fail({ error = "unknown_type" }) }
end

function M.process_broker_message(channel, envelope, data, broker_data)
  return { websocket_response = envelope.message }
end

function M.on_close(channel, data, broker_data)
  local members = broker_data.members or {}
  if members[data.user] ~= channel.id then
    return {}
  end
  members[data.user] = nil
  local result = es.DELETE
  if next(members) ~= nil then
    result = { members = members }
  end
  return {
    broker_data = result,
    broker_messages = others(members, data.user, { type = "left", user = data.user }),
    side_effects = { { event = "leave", user = data.user } },
  }
end

return M
