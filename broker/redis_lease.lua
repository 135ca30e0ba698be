-- redis_lease.lua: the leases of the instances sharing one Redis
-- (redis_lease.go, the Fleet capability). Every key has the hash tag
-- {<prefix>fleet}, so all of them are in one Cluster slot. Times are
-- milliseconds of Redis's own clock (TIME), never an instance's.
--
-- KEYS[1]  {<prefix>fleet}:leases      sorted set: instance id -> when its
--                                      lease (or the claim on it) expires
-- KEYS[2]  {<prefix>fleet}:claims      hash: instance id -> the instance that
--                                      claimed it (set once claimed, for good)
-- KEYS[3]  {<prefix>fleet}:conns:<id>  hash of the connections recorded under
--                                      instance ARGV[2] (leave, finish)
-- KEYS[4]  {<prefix>fleet}:gone:<id>   tombstone of instance ARGV[2], set
--                                      when a claim on it finished (renew)
-- ARGV[1]  the command: join, renew, leave, claim, renew_claim or finish
-- ARGV[2]  the instance: the caller's own id (join, renew, leave, claim) or
--          the claimed one (renew_claim, finish)
-- ARGV[3]  milliseconds: the lease or claim's time to live (join, renew,
--          claim, renew_claim) or the delay before a retry (finish)
-- ARGV[4]  the claimer (renew_claim, finish)
-- ARGV[5]  milliseconds the tombstone is kept (finish)
--
-- Replies:
--   join         1
--   renew        1 renewed, 2 created again (Redis had lost it), -1 lost
--                (claimed by another instance)
--   leave        1 removed, 2 expired now (records are left), -1 lost
--   claim        the id of the instance claimed, or false when none expired
--   renew_claim  1, or 0 when another instance took the claim over
--   finish       1 done (lease removed), 2 records are left (retry later),
--                0 when another instance took the claim over
if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: TIME before writes needs it
end
local function now()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local cmd, id, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])

if cmd == "join" then
  redis.call("ZADD", KEYS[1], now() + ms, id)
  return 1
elseif cmd == "renew" then
  if redis.call("HEXISTS", KEYS[2], id) == 1 or redis.call("EXISTS", KEYS[4]) == 1 then
    return -1
  end
  local had = redis.call("ZSCORE", KEYS[1], id)
  redis.call("ZADD", KEYS[1], now() + ms, id)
  if had then
    return 1
  end
  return 2
elseif cmd == "leave" then
  if redis.call("HEXISTS", KEYS[2], id) == 1 then
    return -1
  end
  if redis.call("HLEN", KEYS[3]) > 0 then
    redis.call("ZADD", KEYS[1], 0, id)
    return 2
  end
  redis.call("ZREM", KEYS[1], id)
  return 1
elseif cmd == "claim" then
  local t = now()
  local expired = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", t, "LIMIT", 0, 16)
  for _, dead in ipairs(expired) do
    if dead ~= id then
      redis.call("HSET", KEYS[2], dead, id)
      redis.call("ZADD", KEYS[1], t + ms, dead)
      return dead
    end
  end
  return false
elseif cmd == "renew_claim" then
  if redis.call("HGET", KEYS[2], id) ~= ARGV[4] then
    return 0
  end
  redis.call("ZADD", KEYS[1], now() + ms, id)
  return 1
elseif cmd == "finish" then
  if redis.call("HGET", KEYS[2], id) ~= ARGV[4] then
    return 0
  end
  if redis.call("HLEN", KEYS[3]) > 0 then
    redis.call("ZADD", KEYS[1], now() + ms, id)
    return 2
  end
  redis.call("ZREM", KEYS[1], id)
  redis.call("HDEL", KEYS[2], id)
  redis.call("SET", KEYS[4], ARGV[4], "PX", ARGV[5])
  return 1
end
return redis.error_reply("redis_lease.lua: unknown command " .. tostring(cmd))
