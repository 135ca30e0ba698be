-- flood.lua: broker messages to one connection, to test slow clients and
-- the message rate. Every connection is on the entity "f"; its identifier
-- is its user name.
--
-- first frame {"user":x}  -> {"type":"welcome","user":x}
-- later frames {"n":N}    -> {"type":"echo","n":N}
-- a broker message        -> its message, sent to the client
-- on close: the entity counts it ({closed = N, last = x}) and the user
-- "watch" is told {"type":"left","user":x}.

local M = {}

function M.initial_authorisation(channel, message)
  return { user = message.user }
end

function M.channel_identifier(channel, data)
  return data.user
end

function M.broker_key(channel, data)
  return "f"
end

function M.broker_authorisation(channel, data, broker_data)
  return { websocket_response = { type = "welcome", user = data.user } }
end

function M.process_websocket_message(channel, message, data, broker_data)
  return { websocket_response = { type = "echo", n = message.n } }
end

function M.process_broker_message(channel, envelope, data, broker_data)
  return { websocket_response = envelope.message }
end

function M.on_close(channel, data, broker_data)
  return {
    broker_data = { closed = (broker_data.closed or 0) + 1, last = data.user },
    broker_messages = { { target = "watch", message = { type = "left", user = data.user } } },
  }
end

return M
