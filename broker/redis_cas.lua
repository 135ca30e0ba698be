-- redis_cas.lua: the compare-and-set of one entity (Redis.Update).
--
-- KEYS[1]  the entity's key, <prefix><namespace>.<key>
-- KEYS[2]  the update's operation record, {<KEYS[1]>}:op:<operation id>
--          (the braces put it in the entity's Cluster slot)
-- ARGV[1]  "1" when the caller read the entity, "0" when it read none
-- ARGV[2]  the JSON the caller read ("" when ARGV[1] is "0")
-- ARGV[3]  "set" or "del"
-- ARGV[4]  the new JSON for "set" ("" for "del")
-- ARGV[5]  how long the operation record is kept, in milliseconds
--
-- Returns {2} when the operation record exists: this operation was applied
-- already (by an earlier send of this very request whose reply was lost, or
-- by another instance running the same operation); nothing is written.
-- Returns {1} when the change was made: the entity still held what the
-- caller read; the operation record is written with it, atomically.
-- Returns {0, current} (or {0} when the entity does not exist) when it
-- changed in between: nothing is written, and the caller retries with
-- current without reading again.
if redis.call("EXISTS", KEYS[2]) == 1 then
  return { 2 }
end
local current = redis.call("GET", KEYS[1])
if ARGV[1] == "1" then
  if current ~= ARGV[2] then
    if current then
      return { 0, current }
    end
    return { 0 }
  end
elseif current then
  return { 0, current }
end
if ARGV[3] == "set" then
  redis.call("SET", KEYS[1], ARGV[4])
else
  redis.call("DEL", KEYS[1])
end
redis.call("SET", KEYS[2], "1", "PX", ARGV[5])
return { 1 }
