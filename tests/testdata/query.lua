-- query.lua: answers with the channel's query parameters
-- (tests/query_test.go); {"write":true} tries to change one.
local M = {}

function M.initial_authorisation(channel, message)
  return {}
end

function M.process_websocket_message(channel, message)
  if message.write then
    channel.query.room = "elsewhere"
  end
  return { websocket_response = { query = channel.query, all = channel.query_all } }
end

return M
