-- echo_key.lua: scenario (b) of tests/bench/run.sh. The echo of echo.lua
-- inside a broker update: each connection has its own key (from its auth
-- message), and every message commits that entity (a counter), so each
-- message costs one broker update that writes: on Redis, a read and a
-- compare-and-set. One key per connection: no conflicts, no shared lock.
--
--   first frame  {"user":"u1","key":"k1"}    -> {"type":"welcome"}
--   every frame  {"seq":N,"text":"..."}      -> the same object
local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user, key = message.key }
end

function M.broker_key(channel, channel_data)
  return channel_data.key
end

function M.broker_authorisation(channel, channel_data, broker_data)
  return { websocket_response = { type = "welcome" } }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  return { broker_data = { n = (broker_data.n or 0) + 1 }, websocket_response = message }
end

function M.on_close(channel, channel_data, broker_data)
  return { broker_data = "swap/delete" }
end

return M
