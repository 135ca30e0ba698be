-- reload_v.lua: the version a message is answered by, with a per-connection
-- count kept in channel data and a shared count in broker data, so that a
-- reload can be shown to keep both. Tests rewrite VERSION.
local es = require("es")
local VERSION = 1
local M = {}
function M.initial_authorisation(channel, message)
  return { count = 0 }
end
function M.broker_key(channel, data) return "shared" end
function M.broker_authorisation(channel, data, shared)
  return { websocket_response = { type = "ready", version = VERSION } }
end
function M.process_websocket_message(channel, message, data, shared)
  local count = data.count + 1
  local total = (shared.total or 0) + 1
  return {
    channel_data = { count = count },
    broker_data = { total = total },
    websocket_response = { version = VERSION, seq = message.seq, count = count },
  }
end
function M.on_close(channel, data, shared)
  return {}
end
return M
