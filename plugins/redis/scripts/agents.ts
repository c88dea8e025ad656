/**
 * The Lua scripts of workspaces, tokens and activity. Every field of a
 * workspace hash holds the field's JSON.
 *
 * Redis at its maxmemory (policy noeviction) refuses a script's first write
 * that may grow memory, and only when nothing was written before it. A new
 * workspace or activity entry is refused then. A token rotation revokes the
 * old tokens first, which frees room, and so runs; a patch of a workspace
 * (heartbeats, a new URL or card) only overwrites, and starts with a write
 * that cannot grow memory, marked `-- first write` below, so agents stay
 * online in a full Redis.
 */

/** Revokes every token of a workspace. Expects the token key prefix of the workspace's bucket in `token_prefix`. */
const REVOKE = `
local function revoke(tokens_key, token_prefix)
  for _, hash in ipairs(redis.call('SMEMBERS', tokens_key)) do
    redis.call('DEL', token_prefix .. hash)
  end
  redis.call('DEL', tokens_key)
end
`

/**
 * Create a workspace with its first token, unless the id is taken. The token's digest falls in the workspace's
 * bucket (RedisKeys.tokenFits); the caller took the creation sequence number and wrote the entry in the parent's
 * children index before (that index may be in another slot).
 * KEYS[1] workspace hash · KEYS[2] its bucket's workspace index · KEYS[3] token key · KEYS[4] token set of the workspace
 * ARGV[1] workspace id · ARGV[2] token digest · ARGV[3] creation sequence number · ARGV[4..] field, JSON value pairs
 * Returns 1 when created, 0 when the id was taken.
 */
export const CREATE_WORKSPACE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[2])
return 1
`

/**
 * Patch a workspace that exists and is not removed; also when Redis is at its maxmemory.
 * KEYS[1] workspace hash · ARGV[1..] field, JSON value pairs
 * Returns the new hash as a flat list, or an empty list.
 */
export const UPDATE_WORKSPACE = `
local removed = redis.call('HGET', KEYS[1], 'removedAt')
if not removed or removed ~= 'null' then return {} end
-- first write: cannot grow memory (the field is written again below).
if #ARGV >= 2 then redis.call('HDEL', KEYS[1], ARGV[1]) end
for i = 1, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HGETALL', KEYS[1])
`

/**
 * Mark a workspace removed (keeping the first removal time) and revoke its tokens.
 * KEYS[1] workspace hash · KEYS[2] token set of the workspace
 * ARGV[1] removal time (ms) · ARGV[2] the token key prefix of the workspace's bucket
 * Returns the hash as a flat list, or an empty list when missing.
 */
export const REMOVE_WORKSPACE = `${REVOKE}
local removed = redis.call('HGET', KEYS[1], 'removedAt')
if not removed then return {} end
revoke(KEYS[2], ARGV[2])
if removed == 'null' then redis.call('HSET', KEYS[1], 'removedAt', ARGV[1]) end
return redis.call('HGETALL', KEYS[1])
`

/**
 * Replace a live workspace's tokens with one new token.
 * KEYS[1] workspace hash · KEYS[2] token set of the workspace · KEYS[3] new token key (in the workspace's bucket)
 * ARGV[1] workspace id · ARGV[2] new token digest · ARGV[3] the token key prefix of the workspace's bucket
 * Returns 1 when rotated, 0 when missing or removed.
 */
export const ROTATE_TOKEN = `${REVOKE}
if redis.call('HGET', KEYS[1], 'removedAt') ~= 'null' then return 0 end
revoke(KEYS[2], ARGV[3])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
`

/**
 * Append one call to the activity of its target and (when different, and in the same bucket) its source, keeping
 * the newest `limit`; a source in another bucket gets its own call.
 * KEYS[1] target activity list · KEYS[2] target counter · KEYS[3] source activity list · KEYS[4] source counter
 * ARGV[1] activity JSON · ARGV[2] '1' when the source has its own log · ARGV[3] entries kept
 */
export const RECORD_ACTIVITY = `
local function append(list, counter)
  redis.call('RPUSH', list, ARGV[1])
  redis.call('LTRIM', list, -tonumber(ARGV[3]), -1)
  redis.call('INCR', counter)
end
append(KEYS[1], KEYS[2])
if ARGV[2] == '1' then append(KEYS[3], KEYS[4]) end
return 1
`

/**
 * One page of a workspace's activity, newest last. A cursor is the sequence
 * number just past the next entry to return.
 * KEYS[1] activity list · KEYS[2] counter · ARGV[1] limit · ARGV[2] cursor, or '' for the newest
 * Returns { 1 when older entries are kept else 0, sequence number of the oldest entry returned (the next cursor), entries... }.
 */
export const LIST_ACTIVITY = `
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = last - redis.call('LLEN', KEYS[1])
local stop = last
local cursor = tonumber(ARGV[2])
if cursor and cursor < last then stop = cursor end
stop = stop - first
local start = math.max(0, stop - tonumber(ARGV[1]))
local older = 0
if start > 0 then older = 1 end
local page = { older, start + first }
if stop > start then
  for _, entry in ipairs(redis.call('LRANGE', KEYS[1], start, stop - 1)) do page[#page + 1] = entry end
end
return page
`
