-- fleet_room.lua: rooms for tests/fleet_test.go, whose on_close is NOT
-- idempotent on purpose: every run counts in the entity and tells the room,
-- so an on_close that ran twice for one connection shows (chat.lua's would
-- find the member gone the second time and do nothing).
--
--   first frame  {"user":"u1","room":"r1"}     -> {"type":"welcome","user":..,"room":..,"members":n}
--   {"type":"nick","nick":"Ann"}               -> {"type":"nicked"} (changes the channel data)
--   {"type":"ping"}                            -> {"type":"pong"}
-- The others in the room receive {"type":"joined","user":..} and
-- {"type":"left","user":..,"nick":..}.
--
-- The entity of a room: { members = { user = channel id }, closes = { user = runs of on_close } }.
-- It is never deleted, so that the test can read the counts.

local es = require("es")
local M = {}

function M.initial_authorisation(channel, message)
  if type(message.user) ~= "string" or type(message.room) ~= "string" then
    return es.fail({ error = "user and room please" })
  end
  return { user = message.user, room = message.room }
end

function M.channel_identifier(channel, channel_data)
  return channel_data.user
end

function M.broker_key(channel, channel_data)
  return channel_data.room
end

local function count(t)
  local n = 0
  for _ in pairs(t) do
    n = n + 1
  end
  return n
end

local function others(members, except, message)
  local out = {}
  for user in pairs(members) do
    if user ~= except then
      out[#out + 1] = { target = user, message = message }
    end
  end
  return out
end

function M.broker_authorisation(channel, channel_data, broker_data)
  local members = broker_data.members or {}
  local messages = others(members, channel_data.user, { type = "joined", user = channel_data.user })
  members[channel_data.user] = channel.id
  return {
    broker_data = { members = members, closes = broker_data.closes or {} },
    websocket_response = { type = "welcome", user = channel_data.user, room = channel_data.room, members = count(members) },
    broker_messages = messages,
  }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  if message.type == "nick" then
    local data = { user = channel_data.user, room = channel_data.room, nick = message.nick }
    return { channel_data = data, websocket_response = { type = "nicked", nick = message.nick } }
  end
  return { websocket_response = { type = "pong" } }
end

function M.process_broker_message(channel, envelope, channel_data, broker_data)
  return { websocket_response = envelope.message }
end

function M.on_close(channel, channel_data, broker_data)
  local user = channel_data.user
  local members = broker_data.members or {}
  local closes = broker_data.closes or {}
  closes[user] = (closes[user] or 0) + 1
  members[user] = nil
  return {
    broker_data = { members = members, closes = closes },
    broker_messages = others(members, user, { type = "left", user = user, nick = channel_data.nick or es.null }),
    side_effects = { { event = "left", user = user, channel = channel.id } },
  }
end

return M
