-- redis_counter.lua: one shared counter per broker key, for the no-lost-update
-- test of tests/redis_test.go.
--
--   first frame  {"counter":"c1"}  -> {"type":"ready","n":<current>}
--   every frame  {}                 -> {"n":<the value this increment committed>}
--
-- The entity is {"n": <count>}. Each message increments it inside the broker
-- update, so with a broker that loses no update the values answered to all
-- connections together are 1, 2, ..., N, each exactly once.

local M = {}

function M.initial_authorisation(channel, message)
  return { counter = message.counter or "c1" }
end

function M.channel_identifier(channel, channel_data)
  return nil
end

function M.broker_key(channel, channel_data)
  return channel_data.counter
end

function M.broker_authorisation(channel, channel_data, broker_data)
  return { websocket_response = { type = "ready", n = broker_data.n or 0 } }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  local n = (broker_data.n or 0) + 1
  return { broker_data = { n = n }, websocket_response = { n = n } }
end

function M.process_broker_message(channel, message, channel_data, broker_data)
  return {}
end

function M.on_close(channel, channel_data, broker_data)
  return {}
end

return M
