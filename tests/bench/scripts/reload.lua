-- reload.lua: scenario (e) of tests/bench/run.sh. The load generator
-- rewrites the VERSION line and times until a message is answered by the
-- new version.
--
--   first frame  {"user":"u1"}               -> {"type":"welcome","version":V}
--   every frame  {"seq":N}                   -> {"seq":N,"version":V}
local VERSION = 1
local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user }
end

function M.broker_authorisation(channel, channel_data, broker_data)
  return { websocket_response = { type = "welcome", version = VERSION } }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  return { websocket_response = { seq = message.seq, version = VERSION } }
end

return M
