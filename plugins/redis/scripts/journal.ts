/** The Lua scripts of the event log and of webhook deliveries. */

/**
 * Append an event, drop the oldest past either bound, and publish it with its id (in the same step, so every
 * instance hears events in id order).
 * KEYS[1] log stream · KEYS[2] log state hash · KEYS[3] pub/sub channel
 * ARGV[1] event JSON · ARGV[2] most events kept · ARGV[3] most bytes kept
 */
export const APPEND_EVENT = `
local id = redis.call('XADD', KEYS[1], '*', 'b', ARGV[1])
local total = redis.call('HINCRBY', KEYS[2], 'bytes', string.len(ARGV[1]))
local count = redis.call('XLEN', KEYS[1])
while count > tonumber(ARGV[2]) or total > tonumber(ARGV[3]) do
  local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
  redis.call('XDEL', KEYS[1], oldest[1])
  total = redis.call('HINCRBY', KEYS[2], 'bytes', -string.len(oldest[2][2]))
  redis.call('HSET', KEYS[2], 'dropped', oldest[1])
  count = count - 1
end
redis.call('PUBLISH', KEYS[3], id .. ' ' .. ARGV[1])
return id
`

/**
 * Store a subscription unless its tenant holds the most it may; its place in the tenant's list is its creation order.
 * KEYS[1] subscriptions hash · KEYS[2] the tenant's sorted set · KEYS[3] creation counter
 * ARGV[1] id · ARGV[2] JSON · ARGV[3] most per tenant
 */
export const CREATE_SUBSCRIPTION = `
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return 1
`

/**
 * Remove a subscription with its deliveries.
 * KEYS[1] subscriptions hash · KEYS[2] deliveries hash · KEYS[3] due sorted set
 * ARGV[1] id · ARGV[2] tenant prefix · ARGV[3] held prefix · ARGV[4] dead prefix
 */
export const DELETE_SUBSCRIPTION = `
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local subscription = cjson.decode(record)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', ARGV[2] .. subscription.tenant, ARGV[1])
local held = ARGV[3] .. ARGV[1]
for _, delivery in ipairs(redis.call('SMEMBERS', held)) do
  redis.call('HDEL', KEYS[2], delivery)
  redis.call('ZREM', KEYS[3], delivery)
end
redis.call('DEL', held, ARGV[4] .. ARGV[1])
return 1
`

/**
 * Queue a delivery unless its subscription is gone or holds the most it may.
 * KEYS[1] subscriptions hash · KEYS[2] the subscription's held set · KEYS[3] deliveries hash · KEYS[4] due sorted set
 * ARGV[1] subscription id · ARGV[2] delivery id · ARGV[3] JSON · ARGV[4] due at · ARGV[5] most per subscription
 */
export const ADD_DELIVERY = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[5]) then return 0 end
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
return 1
`

/**
 * Take the pending deliveries due by now, each leased (due again) until the lease ends.
 * KEYS[1] due sorted set · KEYS[2] deliveries hash
 * ARGV[1] now · ARGV[2] lease end · ARGV[3] most taken
 */
export const CLAIM_DELIVERIES = `
local taken = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local delivery = cjson.decode(redis.call('HGET', KEYS[2], id))
  delivery.dueAt = tonumber(ARGV[2])
  local record = cjson.encode(delivery)
  redis.call('HSET', KEYS[2], id, record)
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  taken[#taken + 1] = record
end
return taken
`

/**
 * Forget a delivery that was made.
 * KEYS[1] deliveries hash · KEYS[2] due sorted set
 * ARGV[1] id · ARGV[2] held prefix
 */
export const COMPLETE_DELIVERY = `
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SREM', ARGV[2] .. cjson.decode(record).subscriptionId, ARGV[1])
return 1
`

/**
 * Record a failed attempt: due again, or (no due time) dead-lettered.
 * KEYS[1] deliveries hash · KEYS[2] due sorted set
 * ARGV[1] id · ARGV[2] attempts · ARGV[3] last error · ARGV[4] due at ('' to dead-letter) · ARGV[5] now · ARGV[6] dead prefix
 */
export const FAIL_DELIVERY = `
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local delivery = cjson.decode(record)
delivery.attempts = tonumber(ARGV[2])
delivery.lastError = ARGV[3]
if ARGV[4] == '' then
  delivery.dueAt = tonumber(ARGV[5])
  delivery.deadAt = tonumber(ARGV[5])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', ARGV[6] .. delivery.subscriptionId, ARGV[5], ARGV[1])
else
  delivery.dueAt = tonumber(ARGV[4])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(delivery))
return 1
`

/**
 * Queue a dead letter again, due now with its attempts reset.
 * KEYS[1] deliveries hash · KEYS[2] due sorted set · KEYS[3] the subscription's dead letters
 * ARGV[1] id · ARGV[2] now
 */
export const REDELIVER = `
if redis.call('ZREM', KEYS[3], ARGV[1]) == 0 then return 0 end
local delivery = cjson.decode(redis.call('HGET', KEYS[1], ARGV[1]))
delivery.attempts = 0
delivery.dueAt = tonumber(ARGV[2])
delivery.deadAt = cjson.null
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(delivery))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`

/**
 * Forget a dead letter.
 * KEYS[1] deliveries hash · KEYS[2] the subscription's dead letters · KEYS[3] the subscription's held set
 * ARGV[1] id
 */
export const DROP_DEAD_LETTER = `
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`
