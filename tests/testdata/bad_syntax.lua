-- bad_syntax.lua: does not compile; check and serve must name the line.
local M = {}

function M.initial_authorisation(channel, message)
  local user = = message.user -- MARK:syntax
  return { user = user }
end

function M.process_websocket_message(channel, message, channel_data, broker_data)
  return nil
end

return M
