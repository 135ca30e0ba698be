---@meta
-- LuaLS annotations for require("es.testing"), the fixture module (see ../es.lua).

---@class es.testing.Client
---@field id string
local Client = {}
---@param message table|string A table is sent as JSON, a string as it is.
function Client:send(message) end
---@return table message The next unread message; fails the test if none.
function Client:receive() end
---@return table[] messages Every unread message.
function Client:messages() end
---@return boolean
function Client:closed() end
---@return integer|nil
function Client:close_code() end
function Client:close() end

---@class es.testing.Host
local Host = {}
---@param opts? {query?: table<string,string>, id?: string, path?: string, remote_addr?: string}
---@return es.testing.Client
function Host:connect(opts) end
---@param key string
---@return table|nil
function Host:broker_data(key) end
---@param key string
---@param data table|nil
function Host:set_broker_data(key, data) end
---@return table[]
function Host:side_effects() end
---@param key string
---@param n? integer
function Host:conflict_next(key, n) end

---A fleet of instances sharing one in-memory broker: f[i] is instance i
---(a host), #f how many there are.
---@class es.testing.Fleet
---@field [integer] es.testing.Host
local Fleet = {}
---Instance i dies without running on_close; the first instance alive runs it
---for each connection i had authorised, once each.
---@param i integer
function Fleet:crash(i) end
---The next n (1) broker messages that would reach a connection of instance i
---are lost for that instance.
---@param i integer
---@param n? integer
function Fleet:drop_broker_messages(i, n) end
---The next n (1) updates of key, on any instance, lose their compare-and-set.
---@param key string
---@param n? integer
function Fleet:conflict_next(key, n) end
---@param key string
---@return table|nil
function Fleet:broker_data(key) end
---@param key string
---@param data table|nil
function Fleet:set_broker_data(key, data) end
---@return table[] effects Every instance's side effects, in delivery order.
function Fleet:side_effects() end

---@class es.testing
local testing = {}
---@param name string
---@param fn fun()
function testing.test(name, fn) end
---@param opts {script: string, name?: string}
---@return es.testing.Host
function testing.host(opts) end
---@param opts {script: string, name?: string, instances?: integer}
---@return es.testing.Fleet
function testing.fleet(opts) end
---@param got any
---@param want any
---@param message? string
function testing.eq(got, want, message) end
---@param v any
---@param message? string
function testing.truthy(v, message) end
---@param v any
---@param message? string
function testing.falsy(v, message) end
---@param fn fun()
---@param pattern? string
---@return string
function testing.error(fn, pattern) end
---@param name string
---@return any
function testing.fixture(name) end

return testing
