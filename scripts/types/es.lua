---@meta
-- LuaLS (lua-language-server) annotations for electric-socket integrations:
-- completion and type checks for the `es` module, the channel view, the
-- action table and the `es.testing` fixture module. Point your editor at
-- this folder (scripts/.luarc.json does it for this repository); it is
-- never loaded by the server.

---@class es.Channel Read-only view of the connection; writing to it is an error.
---@field id string Unique across all instances and restarts.
---@field integration string The integration's name.
---@field path string The URL path the client opened.
---@field remote_addr string The client's address, host:port.
---@field query table<string, string> The URL's query parameters (a fresh copy on each access).

---@class es.Fail A failure value made by es.fail(body).

---@alias es.BrokerData table|"swap/abort"|"swap/delete"

---@class es.BrokerMessage
---@field target string The identifier (channel_identifier) of the connections to reach, on the same broker key.
---@field message table Sent as JSON.

---@class es.Action What an integration function returns; every field is optional.
---@field channel_data? table Replaces the connection's channel data.
---@field broker_data? es.BrokerData A table replaces the entity; es.ABORT leaves it (the default); es.DELETE removes it.
---@field websocket_response? table|es.Fail Sent to this client as JSON.
---@field broker_messages? es.BrokerMessage[] Delivered to every matching connection except this one.
---@field should_close? boolean Close this connection (1000) after the response.
---@field side_effects? table[] Handed to the side-effect sink after commit.
---@field error_namespace? string The id of a failure body (default "auth" while authorising, else "comm").

---@class es.CloseAction
---@field broker_data? es.BrokerData
---@field broker_messages? es.BrokerMessage[]
---@field side_effects? table[]

---@class es.Envelope A broker message as process_broker_message receives it.
---@field target string
---@field message table
---@field broker_key string
---@field source string The channel id of the sender.

---@class es.Integration The table a script returns.
---@field initial_authorisation fun(channel: es.Channel, message: table): table|es.Fail
---@field channel_identifier? fun(channel: es.Channel, channel_data: table): string|nil
---@field broker_key? fun(channel: es.Channel, channel_data: table): string|nil
---@field broker_authorisation? fun(channel: es.Channel, channel_data: table, broker_data: table): es.Action|nil
---@field process_websocket_message fun(channel: es.Channel, message: table, channel_data: table, broker_data: table): es.Action|nil
---@field process_broker_message? fun(channel: es.Channel, envelope: es.Envelope, channel_data: table, broker_data: table): es.Action|nil
---@field on_close? fun(channel: es.Channel, channel_data: table, broker_data: table): es.CloseAction|nil

---@class es
---@field ABORT "swap/abort" broker_data: leave the entity as it is.
---@field DELETE "swap/delete" broker_data: remove the entity.
---@field null userdata The JSON null.
local es = {}

---A failure: body is sent with its `id` set to the error namespace.
---@param body? table
---@return es.Fail
function es.fail(body) end

---Marks t (or a new table) to encode as a JSON array, even when empty.
---@generic T: table
---@param t? T
---@return T
function es.array(t) end

---@param t any
---@return boolean
function es.is_array(t) end

---The same conversion the host uses.
---@param v any
---@return string
function es.json_encode(v) end

---@param s string
---@return any
function es.json_decode(s) end

return es
