-- chat.lua: a chat with rooms, served at /chat by config.toml.
--
-- Protocol (every frame is a JSON object):
--   first frame   {"user":"alice","room":"lobby"}            log in to a room
--                 -> {"type":"welcome","user":..,"room":..,"members":[..]}
--                 -> {"id":"auth","success":false,"error":..} and close, when refused
--   {"type":"say","text":"hi"}              to everyone in the room
--   {"type":"whisper","to":"bob","text":".."} to one member of the room
--   {"type":"members"}                       the member list
--   {"type":"leave"}                         log out (close 1000)
-- Others in the room receive {"type":"joined"|"left"|"message"|"whisper", ...}.
--
-- One entity per room (broker key = the room) holds its members:
--   { members = { alice = "<channel id>", ... } }
-- A second login of the same user in the same room replaces the first: the
-- older connection is told {"type":"replaced"} and closed.

local es = require("es")
local M = {}

local MAX_TEXT = 2000

local function valid_name(s)
  return type(s) == "string" and #s >= 1 and #s <= 32 and s:match("^[%w_%-]+$") ~= nil
end

local function sorted_members(members)
  local list = {}
  for user in pairs(members or {}) do
    list[#list + 1] = user
  end
  table.sort(list)
  return es.array(list)
end

-- messages to every member of the room but `except`
local function to_room(members, except, message)
  local out = {}
  for user in pairs(members or {}) do
    if user ~= except then
      out[#out + 1] = { target = user, message = message }
    end
  end
  return out
end

local function fail(error, message)
  return es.fail({ success = false, error = error, message = message })
end

function M.initial_authorisation(channel, message)
  -- With [integration.auth] the host has verified a signed token: the user
  -- is its subject, whatever the message says. Without it, the message's.
  local user = message.user
  if channel.claims ~= nil then
    user = channel.claims.sub
  end
  if not valid_name(user) then
    return fail("invalid_user", "user must be 1 to 32 letters, digits, _ or -")
  end
  local room = message.room or channel.query.room or "lobby"
  if not valid_name(room) then
    return fail("invalid_room", "room must be 1 to 32 letters, digits, _ or -")
  end
  return { user = user, room = room }
end

function M.channel_identifier(channel, channel_data)
  return channel_data.user
end

function M.broker_key(channel, channel_data)
  return channel_data.room
end

function M.broker_authorisation(channel, channel_data, broker_data)
  local user, room = channel_data.user, channel_data.room
  local members = broker_data.members or {}
  local previous = members[user]
  local messages = to_room(members, user, { type = "joined", user = user, room = room })
  if previous ~= nil then
    -- the user is here already: the older connection is replaced
    messages = { { target = user, message = { type = "replaced", user = user } } }
  end
  members[user] = channel.id
  return {
    broker_data = { members = members },
    websocket_response = { type = "welcome", user = user, room = room, members = sorted_members(members) },
    broker_messages = messages,
    side_effects = { { event = "join", user = user, room = room } },
  }
end

local handlers = {}

function handlers.say(channel, message, data, members)
  if type(message.text) ~= "string" or #message.text == 0 or #message.text > MAX_TEXT then
    return { websocket_response = fail("invalid_text", "text must be 1 to " .. MAX_TEXT .. " bytes") }
  end
  local out = { type = "message", from = data.user, room = data.room, text = message.text }
  return {
    websocket_response = { type = "sent", text = message.text },
    broker_messages = to_room(members, data.user, out),
  }
end

function handlers.whisper(channel, message, data, members)
  if type(message.text) ~= "string" or #message.text == 0 or #message.text > MAX_TEXT then
    return { websocket_response = fail("invalid_text", "text must be 1 to " .. MAX_TEXT .. " bytes") }
  end
  if not valid_name(message.to) or members[message.to] == nil then
    return { websocket_response = fail("no_such_user", "nobody called " .. tostring(message.to) .. " is in " .. data.room) }
  end
  return {
    websocket_response = { type = "sent", to = message.to, text = message.text },
    broker_messages = { { target = message.to, message = { type = "whisper", from = data.user, text = message.text } } },
  }
end

function handlers.members(channel, message, data, members)
  return { websocket_response = { type = "members", room = data.room, members = sorted_members(members) } }
end

function handlers.leave(channel, message, data, members)
  return { websocket_response = { type = "bye" }, should_close = true }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  local handler = handlers[message.type]
  if handler == nil then
    return { websocket_response = fail("unknown_type", "type must be say, whisper, members or leave") }
  end
  return handler(channel, message, channel_data, broker_data.members or {})
end

function M.process_broker_message(channel, envelope, channel_data, broker_data)
  local message = envelope.message
  if message.type == "replaced" then
    return {
      websocket_response = { type = "replaced", message = "you logged in somewhere else" },
      should_close = true,
    }
  end
  return { websocket_response = message }
end

function M.on_close(channel, channel_data, broker_data)
  local user, room = channel_data.user, channel_data.room
  local members = broker_data.members or {}
  if members[user] ~= channel.id then
    return {} -- replaced by a newer login: that one is the member now
  end
  members[user] = nil
  local messages = to_room(members, user, { type = "left", user = user, room = room })
  local data = { members = members }
  if next(members) == nil then
    data = es.DELETE -- the room is empty: nothing is left behind
  end
  return {
    broker_data = data,
    broker_messages = messages,
    side_effects = { { event = "leave", user = user, room = room } },
  }
end

return M
