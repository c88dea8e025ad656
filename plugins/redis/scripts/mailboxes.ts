/**
 * The Lua scripts of the mailboxes. Each one makes a multi-key mailbox
 * operation atomic: Redis runs a script start to finish with nothing in
 * between. They are plain string constants so that they travel inside the
 * compiled binary; each is sent once and then called by its SHA.
 *
 * A script refuses with an error reply `SWITCHBOARD:<CODE>` (FORBIDDEN,
 * UNKNOWN, TERMINATED); src/errors.ts classes are chosen from the code.
 * "client" and "groups" are the caller's id and its groups as a JSON array.
 *
 * The counts behind the mailbox and queued-message gauges are kept by the
 * scripts that change them (COUNTING below), never by walking the keyspace.
 *
 * Redis at its maxmemory (policy noeviction) refuses a script's first write
 * that may grow memory, and only when nothing was written before it. So a
 * script that must run even then (it frees room, or only overwrites) starts
 * with a write that cannot grow memory, and one that adds something new
 * starts with the write that adds it: such a first write is marked
 * `-- first write` below.
 */

/** Academy's access rule (no owner, the owner, or a member of a shared group) and error helpers. */
const PRELUDE = `
local function refuse(code)
  return redis.error_reply('SWITCHBOARD:' .. code)
end
local function can_access(owner, shares_json, client, groups_json)
  if not owner or owner == client then return true end
  if not shares_json then return false end
  local shares = cjson.decode(shares_json)
  for _, group in ipairs(cjson.decode(groups_json)) do
    for _, shared in ipairs(shares) do
      if group == shared then return true end
    end
  end
  return false
end
`

/**
 * Bookkeeping of the counts (active mailboxes, messages queued in them). The
 * counts' keys come as a table { active index, queued-by hash, queued total }:
 * the index holds each active mailbox's key scored by the time its hash
 * expires, the hash its queue length as last seen, the total their sum. A
 * mailbox that expires while idle leaves no trace a script could see, so its
 * index entry is settled when its time is due (`sweep`): by every scrape
 * and, a few at a time, by every create, which keeps the index bounded even
 * with nobody scraping. Mailboxes written by a Switchboard without counts join
 * them at their next put, take, restore or send.
 */
const COUNTING = `
local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function track(counts, key, deadline, length)
  redis.call('ZADD', counts[1], deadline, key)
  local before = tonumber(redis.call('HGET', counts[2], key) or '0')
  if length == before then return end
  if length == 0 then
    redis.call('HDEL', counts[2], key)
  else
    redis.call('HSET', counts[2], key, length)
  end
  redis.call('INCRBY', counts[3], length - before)
end
local function untrack(counts, key)
  redis.call('ZREM', counts[1], key)
  local before = tonumber(redis.call('HGET', counts[2], key) or '0')
  if before == 0 then return end
  redis.call('HDEL', counts[2], key)
  redis.call('DECRBY', counts[3], before)
end
local function sweep(counts, mailbox_prefix, now, idle, limit)
  local due = redis.call('ZRANGEBYSCORE', counts[1], '-inf', now, 'LIMIT', 0, limit)
  for _, key in ipairs(due) do
    local box = mailbox_prefix .. key
    if redis.call('HGET', box, 'state') == 'ACTIVE' then
      local ttl = redis.call('PTTL', box)
      if ttl < 0 then ttl = idle end
      redis.call('ZADD', counts[1], now + ttl, key)
    else
      untrack(counts, key)
    end
  end
  return #due
end
`

/** Index entries a create settles on its way, at most. */
const SWEEP_ON_CREATE = 20

/**
 * Create a mailbox if absent; the creator owns it. An existing mailbox (even
 * a gravestone) is left as it is, after an access check.
 * KEYS[1] mailbox hash · KEYS[2] sequence counter · KEYS[3..5] counts (active index, queued-by hash, queued total)
 * ARGV[1] client · ARGV[2] groups · ARGV[3] MRO as a JSON array, or '' (users, agents without one)
 * ARGV[4] idle expiry ms · ARGV[5] discover index prefix · ARGV[6] uid · ARGV[7] mailbox key · ARGV[8] mailbox hash prefix
 * Returns 1 when created, 0 when it existed.
 */
export const CREATE_MAILBOX = `${PRELUDE}${COUNTING}
local existing = redis.call('HMGET', KEYS[1], 'owner', 'shares')
if existing[1] then
  if not can_access(existing[1], existing[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
  return 0
end
local counts = { KEYS[3], KEYS[4], KEYS[5] }
local now = now_ms()
-- first write: the mailbox's own, so that a full Redis refuses the create (the sweep, which can only shrink, comes last).
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'state', 'ACTIVE', 'seq', seq)
if ARGV[3] ~= '' then
  local mro = cjson.decode(ARGV[3])
  redis.call('HSET', KEYS[1], 'mro', ARGV[3], 'class', mro[1])
  for _, class in ipairs(mro) do
    redis.call('ZADD', ARGV[5] .. class, seq, ARGV[6])
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
track(counts, ARGV[7], now + tonumber(ARGV[4]), 0)
sweep(counts, ARGV[8], now, tonumber(ARGV[4]), ${SWEEP_ON_CREATE})
return 1
`

/**
 * The state of a mailbox as the caller may see it.
 * KEYS[1] mailbox hash · ARGV[1] client · ARGV[2] groups
 * Returns ACTIVE, TERMINATED or MISSING.
 */
export const MAILBOX_STATUS = `${PRELUDE}
local box = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'state')
if not box[1] then return 'MISSING' end
if not can_access(box[1], box[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
return box[3]
`

/**
 * Turn a mailbox into a gravestone: drop its queue and pending requests,
 * remove it from discovery, and tell every instance to fail its waiters.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3] pending hash · KEYS[4..6] counts
 * ARGV[1] client · ARGV[2] gravestone expiry ms · ARGV[3] discover index prefix · ARGV[4] uid
 * ARGV[5] terminated channel · ARGV[6] mailbox key (the channel payload)
 * Returns the PendingRequest JSON of every request still pending (empty when missing or already terminated).
 */
export const TERMINATE_MAILBOX = `${PRELUDE}${COUNTING}
local box = redis.call('HMGET', KEYS[1], 'owner', 'state', 'mro')
if not box[1] then return {} end
if box[1] ~= ARGV[1] then return refuse('FORBIDDEN') end
if box[2] == 'TERMINATED' then return {} end
local pending = redis.call('HVALS', KEYS[3])
redis.call('DEL', KEYS[2], KEYS[3])
if box[3] then
  for _, class in ipairs(cjson.decode(box[3])) do
    redis.call('ZREM', ARGV[3] .. class, ARGV[4])
  end
end
redis.call('HSET', KEYS[1], 'state', 'TERMINATED')
redis.call('HDEL', KEYS[1], 'mro', 'class')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
untrack({ KEYS[4], KEYS[5], KEYS[6] }, ARGV[6])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return pending
`

/**
 * Append a message to its destination's queue, track request/response pairs,
 * record a client's send as activity of an active source mailbox (its queue
 * and pending requests kept as long as it), and wake one waiter on any instance.
 * KEYS[1] destination hash · KEYS[2] destination queue · KEYS[3] destination pending hash
 * KEYS[4] source hash · KEYS[5] source pending hash · KEYS[6] source outgoing counter · KEYS[7..9] counts
 * KEYS[10] source queue
 * ARGV[1] '1' when a client calls ('' for Switchboard itself) · ARGV[2] client · ARGV[3] groups
 * ARGV[4] kind (request | response) · ARGV[5] tag · ARGV[6] PendingRequest JSON · ARGV[7] message text
 * ARGV[8] idle expiry ms · ARGV[9] wake channel · ARGV[10] destination mailbox key (the channel payload)
 * ARGV[11] now (ms) · ARGV[12] source mailbox key
 */
export const PUT_MESSAGE = `${PRELUDE}${COUNTING}
local dest = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'state')
if ARGV[1] == '1' then
  if dest[1] and not can_access(dest[1], dest[2], ARGV[2], ARGV[3]) then return refuse('FORBIDDEN') end
  local source_owner = redis.call('HGET', KEYS[4], 'owner')
  if source_owner and source_owner ~= ARGV[2] then return refuse('FORBIDDEN') end
end
if not dest[1] then return refuse('UNKNOWN') end
if dest[3] == 'TERMINATED' then return refuse('TERMINATED') end
if ARGV[4] == 'request' then
  redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
  redis.call('INCR', KEYS[6])
  redis.call('PEXPIRE', KEYS[6], ARGV[8])
elseif redis.call('HDEL', KEYS[5], ARGV[5]) == 1 then
  redis.call('HINCRBY', KEYS[4], 'completed', 1)
end
local length = redis.call('RPUSH', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
local deadline = now_ms() + tonumber(ARGV[8])
track({ KEYS[7], KEYS[8], KEYS[9] }, ARGV[10], deadline, length)
if ARGV[1] == '1' and redis.call('HGET', KEYS[4], 'state') == 'ACTIVE' then
  redis.call('HSET', KEYS[4], 'active', ARGV[11])
  redis.call('PEXPIRE', KEYS[4], ARGV[8])
  redis.call('PEXPIRE', KEYS[10], ARGV[8])
  redis.call('PEXPIRE', KEYS[5], ARGV[8])
  track({ KEYS[7], KEYS[8], KEYS[9] }, ARGV[12], deadline, redis.call('LLEN', KEYS[10]))
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
`

/**
 * Pop the next message, or nothing; also when Redis is at its maxmemory.
 * Idempotent per take id: ioredis re-sends a command whose reply was lost
 * with a dropped connection, and the re-sent call must return the message
 * the first one popped instead of popping (and losing) another.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3] pending hash · KEYS[4] taken (per take id) · KEYS[5..7] counts
 * ARGV[1] client · ARGV[2] groups · ARGV[3] now (ms) · ARGV[4] idle expiry ms · ARGV[5] taken expiry ms · ARGV[6] mailbox key
 * Returns { message text, messages left in the queue } (-1 left when not known: a re-sent take), or nil when the queue is empty.
 */
export const TAKE_MESSAGE = `${PRELUDE}${COUNTING}
local already = redis.call('GET', KEYS[4])
if already then return { already, -1 } end
local box = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'state')
if box[1] and not can_access(box[1], box[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
if not box[1] then return refuse('UNKNOWN') end
if box[3] == 'TERMINATED' then return refuse('TERMINATED') end
-- first write: cannot grow memory, so a take still drains a full Redis.
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('HSET', KEYS[1], 'active', ARGV[3])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
local message = redis.call('LPOP', KEYS[2])
local left = message and redis.call('LLEN', KEYS[2]) or 0
track({ KEYS[5], KEYS[6], KEYS[7] }, ARGV[6], now_ms() + tonumber(ARGV[4]), left)
if not message then return nil end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[4], message, 'PX', ARGV[5])
return { message, left }
`

/**
 * Put a message back at the head of an active mailbox's queue and wake one
 * waiter; also when Redis is at its maxmemory.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3..5] counts
 * ARGV[1] message text · ARGV[2] idle expiry ms · ARGV[3] wake channel · ARGV[4] mailbox key
 * Returns 1 when restored, 0 when the mailbox is missing or terminated.
 */
export const RESTORE_MESSAGE = `${COUNTING}
if redis.call('HGET', KEYS[1], 'state') ~= 'ACTIVE' then return 0 end
-- first write: cannot grow memory, so a message given back is not lost to a full Redis.
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local length = redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
track({ KEYS[3], KEYS[4], KEYS[5] }, ARGV[4], now_ms() + tonumber(ARGV[2]), length)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`

/**
 * Uids of the active agents in one class index that the caller may access.
 * Index entries whose mailbox expired while idle are removed on the way.
 * The mailbox hashes are reached by name (ARGV[5] .. uid), so this script
 * needs a single Redis, not a cluster.
 * KEYS[1] discover index of the class
 * ARGV[1] client · ARGV[2] groups · ARGV[3] '1' to match only the first MRO class · ARGV[4] class · ARGV[5] agent mailbox prefix
 * Returns uids in creation order.
 */
export const DISCOVER_AGENTS = `${PRELUDE}
local found = {}
for _, uid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local box = redis.call('HMGET', ARGV[5] .. uid, 'owner', 'shares', 'state', 'class')
  if not box[1] or box[3] ~= 'ACTIVE' then
    redis.call('ZREM', KEYS[1], uid)
  elseif (ARGV[3] ~= '1' or box[4] == ARGV[4]) and can_access(box[1], box[2], ARGV[1], ARGV[2]) then
    found[#found + 1] = uid
  end
end
return found
`

/**
 * Last activity of a mailbox.
 * KEYS[1] mailbox hash · ARGV[1] client · ARGV[2] groups
 * Returns the epoch ms of the last activity, or nil if none yet.
 */
export const MAILBOX_HEARTBEAT = `${PRELUDE}
local box = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'active')
if not box[1] then return refuse('UNKNOWN') end
if not can_access(box[1], box[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
return box[3]
`

/**
 * Active mailboxes and the messages queued in them, across the store. Settles
 * up to ARGV[3] index entries that have come due first; the caller calls again
 * while the third value says more may be due.
 * KEYS[1..3] counts (active index, queued-by hash, queued total)
 * ARGV[1] mailbox hash prefix · ARGV[2] idle expiry ms · ARGV[3] most entries to settle
 * Returns { active mailboxes, queued messages, 1 when more entries may be due else 0 }.
 */
export const COUNT_MAILBOXES = `${COUNTING}
local limit = tonumber(ARGV[3])
local settled = sweep({ KEYS[1], KEYS[2], KEYS[3] }, ARGV[1], now_ms(), tonumber(ARGV[2]), limit)
local more = 0
if settled == limit then more = 1 end
return { redis.call('ZCARD', KEYS[1]), tonumber(redis.call('GET', KEYS[3]) or '0'), more }
`

/**
 * The raw counters behind Academy's stats.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3] pending hash · KEYS[4] outgoing counter
 * ARGV[1] client · ARGV[2] groups
 * Returns { pending, queued, completed, outgoing }.
 */
export const MAILBOX_STATS = `${PRELUDE}
local box = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'completed')
if box[1] and not can_access(box[1], box[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
local outgoing = tonumber(redis.call('GET', KEYS[4]) or '0')
if not box[1] then return { 0, 0, 0, outgoing } end
return { redis.call('HLEN', KEYS[3]), redis.call('LLEN', KEYS[2]), tonumber(box[3] or '0'), outgoing }
`

/**
 * Share, unshare or list the groups of an active mailbox; owner only, and
 * only into a group the owner is in. Shares are a JSON array in the hash,
 * in the order they were added. A withdrawn share publishes a wake-up, so
 * that no instance keeps the mailbox marked empty for a caller who may no
 * longer take from it (its next take is refused at once).
 * KEYS[1] mailbox hash
 * ARGV[1] client · ARGV[2] groups · ARGV[3] share | unshare | list · ARGV[4] group ('' to list)
 * ARGV[5] wake channel · ARGV[6] mailbox key (the channel payload)
 * Returns the groups after the change.
 */
export const SHARE_MAILBOX = `${PRELUDE}
local box = redis.call('HMGET', KEYS[1], 'owner', 'state', 'shares')
if not box[1] then return refuse('UNKNOWN') end
if box[2] == 'TERMINATED' then return refuse('TERMINATED') end
if box[1] ~= ARGV[1] then return refuse('FORBIDDEN') end
local shares = {}
if box[3] then shares = cjson.decode(box[3]) end
if ARGV[3] == 'list' then return shares end
local position = nil
for index, shared in ipairs(shares) do
  if shared == ARGV[4] then position = index end
end
if ARGV[3] == 'share' then
  local member = false
  for _, group in ipairs(cjson.decode(ARGV[2])) do
    if group == ARGV[4] then member = true end
  end
  if not member then return refuse('FORBIDDEN') end
  if not position then shares[#shares + 1] = ARGV[4] end
elseif position then
  table.remove(shares, position)
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
if #shares == 0 then
  redis.call('HDEL', KEYS[1], 'shares')
else
  redis.call('HSET', KEYS[1], 'shares', cjson.encode(shares))
end
return shares
`
