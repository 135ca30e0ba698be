-- redis_cas.lua: the compare-and-set of one entity (Redis.Update), with the
-- exactly-once record of the update and the line in which instances take
-- turns on a contended entity.
--
-- KEYS[1]  the entity's key, <prefix><namespace>.<key>
-- KEYS[2]  the operation record: {<KEYS[1]>}:op:<instance> for a group
--          commit (one per entity and instance), {<KEYS[1]>}:op:<id> for an
--          operation of its own (the braces put every key of this script in
--          the entity's Cluster slot)
-- KEYS[3]  the line of instances waiting for their turn, {<KEYS[1]>}:turns
-- KEYS[4]  when the turn of the line's first instance ends, {<KEYS[1]>}:turn
-- ARGV[1]  "1" when the caller read the entity, "0" when it read none
-- ARGV[2]  the JSON the caller read ("" when ARGV[1] is "0")
-- ARGV[3]  "set", "del" or "leave" (write nothing; leave the line)
-- ARGV[4]  the new JSON for "set" ("" otherwise)
-- ARGV[5]  how long the operation record is kept, in milliseconds
-- ARGV[6]  the operation id (the record's value)
-- ARGV[7]  the calling instance's id
-- ARGV[8]  how long an instance's turn lasts, in milliseconds
--
-- Returns {2} when the record holds this operation: it was applied already
-- (by an earlier send of this very request whose reply was lost); only the
-- record's expiry is renewed.
-- Returns {1} when the change was made: the entity still held what the
-- caller read; the record is written with it, atomically.
-- Returns {0, current} (or {0} when the entity does not exist) when it
-- changed in between: nothing is written, and the caller retries with
-- current without reading again. When no instance had the turn, the caller
-- now has it: the next writes of other instances are refused until it has
-- written (or its turn ran out), so an instance that lost is never starved.
-- Returns {3, current} (or {3}) when another instance has the turn: nothing
-- is written, the caller joins the line (once) and asks again later.
-- "leave" returns {1}: the caller is no longer in the line.
if redis.call("GET", KEYS[2]) == ARGV[6] then
  -- A write, so that a WAIT after this reply covers the one that applied
  -- it (WAIT waits for the connection's last write).
  redis.call("PEXPIRE", KEYS[2], ARGV[5])
  return { 2 }
end
local me = ARGV[7]
local turn = tonumber(ARGV[8])
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lineTTL = 60000 -- a line nobody asks about any more goes away

-- The first in line loses its turn when it ran out unused (it died, or is
-- slow): the next one's turn starts now.
local head = redis.call("LINDEX", KEYS[3], 0)
while head and head ~= me and (tonumber(redis.call("GET", KEYS[4])) or 0) <= now do
  redis.call("LPOP", KEYS[3])
  head = redis.call("LINDEX", KEYS[3], 0)
  if head then
    redis.call("SET", KEYS[4], now + turn, "PX", lineTTL)
  end
end

if ARGV[3] == "leave" then
  if head == me then
    redis.call("LPOP", KEYS[3])
    if redis.call("LLEN", KEYS[3]) > 0 then
      redis.call("SET", KEYS[4], now + turn, "PX", lineTTL)
    else
      redis.call("DEL", KEYS[4])
    end
  else
    redis.call("LREM", KEYS[3], 0, me)
  end
  return { 1 }
end

local current = redis.call("GET", KEYS[1])
if head and head ~= me then
  if not redis.call("LPOS", KEYS[3], me) then
    redis.call("RPUSH", KEYS[3], me)
  end
  redis.call("PEXPIRE", KEYS[3], lineTTL)
  if current then
    return { 3, current }
  end
  return { 3 }
end

local same
if ARGV[1] == "1" then
  same = current == ARGV[2]
else
  same = not current
end
if not same then
  if not head then
    redis.call("RPUSH", KEYS[3], me)
    redis.call("PEXPIRE", KEYS[3], lineTTL)
  end
  redis.call("SET", KEYS[4], now + turn, "PX", lineTTL)
  if current then
    return { 0, current }
  end
  return { 0 }
end

if ARGV[3] == "set" then
  redis.call("SET", KEYS[1], ARGV[4])
else
  redis.call("DEL", KEYS[1])
end
redis.call("SET", KEYS[2], ARGV[6], "PX", ARGV[5])
if head == me then
  redis.call("LPOP", KEYS[3])
  if redis.call("LLEN", KEYS[3]) > 0 then
    redis.call("SET", KEYS[4], now + turn, "PX", lineTTL)
  else
    redis.call("DEL", KEYS[4])
  end
end
return { 1 }
