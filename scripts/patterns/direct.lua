-- direct.lua: direct messages (one identifier per user) and presence (the
-- members, with each user's connection count, in the room's entity).
-- README, "Patterns"; direct_test.lua shows what it does.
--   first frame {"user":"ann","room":"r"} -> {"type":"welcome","members":[...]}
--   {"to":"bob","text":"psst"}           -> {"type":"sent","to":"bob"}; bob gets {"type":"dm","from":"ann","text":"psst"}
local es = require("es")
local M = {}

local function names(members)
  local list = {}
  for user in pairs(members) do list[#list + 1] = user end
  table.sort(list)
  return es.array(list)
end

function M.initial_authorisation(channel, message)
  if type(message.user) ~= "string" then return es.fail({ error = "who are you?" }) end
  return { user = message.user, room = message.room or "lobby" }
end

function M.channel_identifier(channel, data) return data.user end  -- each user answers to its name
function M.broker_key(channel, data) return data.room end

function M.broker_authorisation(channel, data, room)
  local members = room.members or {}
  members[data.user] = (members[data.user] or 0) + 1               -- this user's connections
  return {
    broker_data = { members = members },
    websocket_response = { type = "welcome", members = names(members) },
  }
end

function M.process_websocket_message(channel, message, data, room)
  return {
    websocket_response = { type = "sent", to = message.to },
    broker_messages = { { target = message.to, message = { type = "dm", from = data.user, text = message.text } } },
  }
end

function M.on_close(channel, data, room)
  local members = room.members or {}
  local n = (members[data.user] or 1) - 1
  members[data.user] = n > 0 and n or nil
  if next(members) == nil then return { broker_data = es.DELETE } end  -- the last one out
  return { broker_data = { members = members } }
end

return M
