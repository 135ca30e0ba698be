-- fanout.lua: scenario (c) of tests/bench/run.sh. Every connection joins
-- the room of its auth message under the one identifier "all", so a single
-- broker message with target "all" reaches every other connection of the
-- room; process_broker_message is the default (it sends the envelope's
-- message to the client).
--
--   first frame  {"user":"u1","room":"fan"}  -> {"type":"welcome"}
--   a frame      {"seq":N,"text":"..."}      -> nothing to the sender;
--                                              the same object to everyone else
local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user, room = message.room }
end

function M.channel_identifier(channel, channel_data)
  return "all"
end

function M.broker_key(channel, channel_data)
  return channel_data.room
end

function M.broker_authorisation(channel, channel_data, broker_data)
  return { websocket_response = { type = "welcome" } }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  return { broker_messages = { { target = "all", message = message } } }
end

return M
