/**
 * The Lua scripts of instance heartbeats. Expiry times are taken from
 * Redis's clock, so instances on hosts whose clocks differ agree on who is
 * alive.
 */

/**
 * Record a heartbeat: the instance is alive until now + ttl.
 * KEYS[1] instances sorted set · ARGV[1] instance id · ARGV[2] ttl ms
 */
export const BEAT = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
-- first write: cannot grow memory (the set never has a TTL), so a full Redis does not make a live instance look dead.
redis.call('PERSIST', KEYS[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1
`

/**
 * The instances whose last heartbeat has not expired.
 * KEYS[1] instances sorted set
 */
export const ALIVE = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
`

/**
 * Instances whose last heartbeat expired, at most ARGV[1] (the oldest first).
 * KEYS[1] instances sorted set
 */
export const DEAD = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`

/**
 * Forget the named instances whose messages in flight were put back, unless one beat again meanwhile.
 * KEYS[1] instances sorted set · ARGV[1..] instance ids
 */
export const FORGET_DEAD = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for _, instance in ipairs(ARGV) do
  local until_ms = redis.call('ZSCORE', KEYS[1], instance)
  if until_ms and tonumber(until_ms) <= now then redis.call('ZREM', KEYS[1], instance) end
end
return 1
`
