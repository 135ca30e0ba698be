-- echo.lua: scenario (a) of tests/bench/run.sh. No broker key: every
-- message is answered with itself, so the figures are the host's own cost
-- (transport, queueing, JSON <-> Lua, one Lua call) per message.
--
--   first frame  {"user":"u1"}               -> {"type":"welcome"}
--   every frame  {"seq":N,"text":"..."}      -> the same object
local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user }
end

function M.broker_authorisation(channel, channel_data, broker_data)
  return { websocket_response = { type = "welcome" } }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  return { websocket_response = message }
end

return M
