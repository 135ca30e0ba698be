package testkit

// EchoScript is the echo integration the tests share: the initial message
// is answered {"ok":true}, every later message is echoed as it came. An
// initial message with "key" puts the connection on that broker key (each
// message then runs inside a broker update); a message with "side" also
// returns the side effect {"boom": side}.
const EchoScript = `
local M = {}
function M.initial_authorisation(ch, m) return { key = m.key } end
function M.broker_key(ch, cd) return cd.key end
function M.broker_authorisation(ch, cd, bd) return { websocket_response = { ok = true } } end
function M.process_websocket_message(ch, m, cd, bd)
  if m.side then return { websocket_response = m, side_effects = { { boom = m.side } } } end
  return { websocket_response = m }
end
return M
`
