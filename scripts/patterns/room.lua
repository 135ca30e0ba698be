-- room.lua: the README's example integration, a chat with rooms. It
-- broadcasts with one shared identifier and keeps the room's members in its
-- entity (README, "Writing an integration" and "Patterns"); room_test.lua
-- shows what it does.
local es = require("es")
local M = {}

-- The first message a client sends. Return the connection's channel data,
-- or es.fail(body) to refuse it (body is sent, then close 1008).
function M.initial_authorisation(channel, message)
  if type(message.user) ~= "string" then return es.fail({ error = "who are you?" }) end
  return { user = message.user, room = message.room or "lobby" }
end

-- Who this connection is, as a target of broker messages (a string, or nil
-- for none). Every connection in a room answers to "everyone", so one
-- broker message reaches the whole room (see "Patterns").
function M.channel_identifier(channel, channel_data) return "everyone" end

-- Which shared entity it belongs to (a string, or nil for none): its room.
function M.broker_key(channel, channel_data) return channel_data.room end

-- Once after authorisation, inside the update of the entity.
function M.broker_authorisation(channel, channel_data, broker_data)
  local members = broker_data.members or {}
  members[channel_data.user] = channel.id
  return {
    broker_data = { members = members },
    websocket_response = { type = "welcome", room = channel_data.room },
    broker_messages = { { target = "everyone", message = { type = "joined", user = channel_data.user } } },
  }
end

-- Every later message, inside the update of the entity.
function M.process_websocket_message(channel, message, channel_data, broker_data)
  local said = { type = "said", from = channel_data.user, text = message.text }
  return {
    websocket_response = said,                                      -- the sender's copy
    broker_messages = { { target = "everyone", message = said } },  -- everyone else in the room
  }
end

-- A broker message addressed to this connection's identifier.
function M.process_broker_message(channel, envelope, channel_data, broker_data)
  return { websocket_response = envelope.message }
end

-- The connection closed, for any reason.
function M.on_close(channel, channel_data, broker_data)
  local members = broker_data.members or {}
  members[channel_data.user] = nil
  if next(members) == nil then return { broker_data = es.DELETE } end  -- the last one out
  return {
    broker_data = { members = members },
    broker_messages = { { target = "everyone", message = { type = "left", user = channel_data.user } } },
  }
end

return M
