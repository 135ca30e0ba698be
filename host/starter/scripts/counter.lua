-- counter.lua: a shared counter per room.
--   first frame  {"name":"ada","room":"main"}      -> {"type":"hello","count":N,"members":M}
--   {"op":"inc"} or {"op":"inc","by":5}            -> everyone in the room gets {"type":"count","count":N,"by":"ada"}
--   {"op":"get"}                                   -> {"type":"count","count":N}
--
-- It broadcasts to a room the cheapest way (README, "Patterns"): the room is
-- the broker key, every connection in it answers to the same identifier,
-- "everyone", so one broker message reaches all the others, on every
-- instance. The sender gets its own copy as its websocket_response.
local es = require("es")
local M = {}

function M.initial_authorisation(channel, message)
  if type(message.name) ~= "string" or #message.name == 0 or #message.name > 32 then
    return es.fail({ error = "name_required", message = "send {\"name\": \"...\"} first" })
  end
  return { name = message.name, room = message.room or "main" }
end

function M.channel_identifier(channel, data) return "everyone" end -- the same for every connection in the room
function M.broker_key(channel, data) return data.room end              -- the room: its counter is the shared entity

function M.broker_authorisation(channel, data, counter)
  local members = (counter.members or 0) + 1
  return {
    broker_data = { count = counter.count or 0, members = members },
    websocket_response = { type = "hello", count = counter.count or 0, members = members },
  }
end

function M.process_websocket_message(channel, message, data, counter)
  local count = counter.count or 0
  if message.op == "get" then
    return { websocket_response = { type = "count", count = count } }
  elseif message.op == "inc" then
    local by = message.by or 1
    if type(by) ~= "number" or by % 1 ~= 0 then
      return { websocket_response = es.fail({ error = "bad_increment" }) }
    end
    local update = { type = "count", count = count + by, by = data.name }
    return {
      broker_data = { count = count + by, members = counter.members },
      websocket_response = update,
      broker_messages = { { target = "everyone", message = update } }, -- one message for the whole room
      side_effects = { { counted = count + by, room = data.room } },
    }
  end
  return { websocket_response = es.fail({ error = "unknown_op" }) }
end

function M.on_close(channel, data, counter)
  local members = (counter.members or 1) - 1
  if members <= 0 then
    return { broker_data = es.DELETE }
  end
  return { broker_data = { count = counter.count, members = members } }
end

return M
