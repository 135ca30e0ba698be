-- mixed.lua: broadcasts and direct messages in one room, with one shared
-- identifier: a direct message goes to everyone with a "to" field, and
-- each receiver drops what is not for it (README, "Patterns").
--   {"text":"hi"}             -> everyone else gets {"from":"ann","text":"hi"}
--   {"to":"bob","text":"psst"} -> only bob gets {"from":"ann","to":"bob","text":"psst"}
local M = {}

function M.initial_authorisation(channel, message) return { user = message.user, room = message.room or "lobby" } end
function M.channel_identifier(channel, data) return "everyone" end
function M.broker_key(channel, data) return data.room end

function M.process_websocket_message(channel, message, data, room)
  local m = { from = data.user, to = message.to, text = message.text }
  return { broker_messages = { { target = "everyone", message = m } } }
end

function M.process_broker_message(channel, envelope, data, room)
  local m = envelope.message
  if m.to ~= nil and m.to ~= data.user then return nil end  -- a direct message for someone else
  return { websocket_response = m }
end

return M
