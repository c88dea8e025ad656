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
 * KEYS[1] mailbox hash · KEYS[2..4] counts of its bucket (active index, queued-by hash, queued total)
 * ARGV[1] client · ARGV[2] groups · ARGV[3] MRO as a JSON array, or '' (users, agents without one)
 * ARGV[4] idle expiry ms · ARGV[5] the bucket's discover index prefix · ARGV[6] uid · ARGV[7] mailbox key
 * ARGV[8] the bucket's mailbox hash prefix · ARGV[9] creation sequence number (from the store's counter, which
 * is in another slot in a Cluster: discover orders the buckets' agents by it)
 * Returns 1 when created, 0 when it existed.
 */
export const CREATE_MAILBOX = `${PRELUDE}${COUNTING}
local existing = redis.call('HMGET', KEYS[1], 'owner', 'shares')
if existing[1] then
  if not can_access(existing[1], existing[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
  return 0
end
local counts = { KEYS[2], KEYS[3], KEYS[4] }
local now = now_ms()
local seq = ARGV[9]
-- first write: the mailbox's own, so that a full Redis refuses the create (the sweep, which can only shrink, comes last).
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
 * A put, in halves that share one layout of arguments, so that a put within one mailbox bucket (one script,
 * PUT_MESSAGE) and one between two buckets (different slots in a Cluster: PUT_INTO in the destination's, then
 * PUT_FROM in the source's) run the same checks and keep the same books.
 * Idempotent per put id: ioredis re-sends a command whose reply was lost with a dropped connection, and a
 * re-sent put whose first attempt landed returns without queueing the message again.
 * ARGV[1] '1' when a client calls ('' for Switchboard itself) · ARGV[2] client · ARGV[3] groups
 * ARGV[4] kind (request | response) · ARGV[5] tag · ARGV[6] PendingRequest JSON without its closing brace (the
 * destination's half adds srcOwner, the source's owner or null) · ARGV[7] message text · ARGV[8] idle expiry ms
 * ARGV[9] wake channel · ARGV[10] destination mailbox key (the channel payload)
 * ARGV[11] the source's owner as JSON, null for none (PUT_INTO only: the others read it atomically)
 * ARGV[12] '1' when the destination must be owned by ARGV[13] (Switchboard's answers on terminate) · ARGV[13] that owner
 * ARGV[14] put id · ARGV[15] ms a put id is remembered · ARGV[16] now (ms) · ARGV[17] source mailbox key
 */
const PUT_HALVES = `
local function seen(puts)
  local until_ms = redis.call('ZSCORE', puts, ARGV[14])
  return until_ms and tonumber(until_ms) > now_ms()
end
local function remember(puts, now)
  redis.call('ZREMRANGEBYSCORE', puts, '-inf', now)
  redis.call('ZADD', puts, now + tonumber(ARGV[15]), ARGV[14])
  redis.call('PEXPIRE', puts, ARGV[15])
end
-- The destination's half: the checks, then the message queued, the request pending, the put id remembered and one
-- waiter woken on any instance. d: { hash, queue, pending, counts, puts }. Returns a refusal, 1 for a put id
-- already applied, or nil once done.
local function put_into(d, source_owner)
  -- a read, so that a full Redis still refuses the first write below.
  if seen(d.puts) then return 1 end
  local dest = redis.call('HMGET', d.hash, 'owner', 'shares', 'state')
  if ARGV[1] == '1' then
    if dest[1] and not can_access(dest[1], dest[2], ARGV[2], ARGV[3]) then return refuse('FORBIDDEN') end
    if source_owner and source_owner ~= ARGV[2] then return refuse('FORBIDDEN') end
  end
  if not dest[1] then return refuse('UNKNOWN') end
  if dest[3] == 'TERMINATED' then return refuse('TERMINATED') end
  if ARGV[12] == '1' and dest[1] ~= ARGV[13] then return refuse('UNKNOWN') end
  if ARGV[4] == 'request' then
    local owner = 'null'
    if source_owner then owner = cjson.encode(source_owner) end
    redis.call('HSET', d.pending, ARGV[5], ARGV[6] .. ',"srcOwner":' .. owner .. '}')
    redis.call('PEXPIRE', d.pending, ARGV[8])
  end
  local length = redis.call('RPUSH', d.queue, ARGV[7])
  redis.call('PEXPIRE', d.queue, ARGV[8])
  redis.call('PEXPIRE', d.hash, ARGV[8])
  local now = now_ms()
  track(d.counts, ARGV[10], now + tonumber(ARGV[8]), length)
  remember(d.puts, now)
  redis.call('PUBLISH', ARGV[9], ARGV[10])
  return nil
end
-- The source's half: the request counted as outgoing, or the answered request no longer pending; a client's send
-- kept as activity of its active source mailbox (its queue and pending requests kept as long as it).
-- s: { hash, pending, outgoing, queue, counts }.
local function put_from(s)
  if ARGV[4] == 'request' then
    redis.call('INCR', s.outgoing)
    redis.call('PEXPIRE', s.outgoing, ARGV[8])
  elseif redis.call('HDEL', s.pending, ARGV[5]) == 1 then
    redis.call('HINCRBY', s.hash, 'completed', 1)
  end
  if ARGV[1] == '1' and redis.call('HGET', s.hash, 'state') == 'ACTIVE' then
    redis.call('HSET', s.hash, 'active', ARGV[16])
    redis.call('PEXPIRE', s.hash, ARGV[8])
    redis.call('PEXPIRE', s.queue, ARGV[8])
    redis.call('PEXPIRE', s.pending, ARGV[8])
    track(s.counts, ARGV[17], now_ms() + tonumber(ARGV[8]), redis.call('LLEN', s.queue))
  end
end
`

/**
 * A put within one mailbox bucket: both halves, atomically.
 * KEYS[1] destination hash · KEYS[2] destination queue · KEYS[3] destination pending hash · KEYS[4..6] the bucket's
 * counts · KEYS[7] destination's recent put ids · KEYS[8] source hash · KEYS[9] source pending hash
 * KEYS[10] source outgoing counter · KEYS[11] source queue · ARGV: see PUT_HALVES.
 */
export const PUT_MESSAGE = `${PRELUDE}${COUNTING}${PUT_HALVES}
local counts = { KEYS[4], KEYS[5], KEYS[6] }
local stop = put_into({ hash = KEYS[1], queue = KEYS[2], pending = KEYS[3], counts = counts, puts = KEYS[7] }, redis.call('HGET', KEYS[8], 'owner'))
if stop then return stop end
put_from({ hash = KEYS[8], pending = KEYS[9], outgoing = KEYS[10], queue = KEYS[11], counts = counts })
return 1
`

/**
 * The destination's half of a put between two mailbox buckets. The caller read the source's owner first (it never
 * changes once set), and runs PUT_FROM in the source's bucket once this succeeded.
 * KEYS[1] destination hash · KEYS[2] destination queue · KEYS[3] destination pending hash · KEYS[4..6] the
 * destination bucket's counts · KEYS[7] destination's recent put ids · ARGV: see PUT_HALVES.
 */
export const PUT_INTO = `${PRELUDE}${COUNTING}${PUT_HALVES}
local source_owner = false
if ARGV[11] ~= 'null' then source_owner = cjson.decode(ARGV[11]) end
return put_into({ hash = KEYS[1], queue = KEYS[2], pending = KEYS[3], counts = { KEYS[4], KEYS[5], KEYS[6] }, puts = KEYS[7] }, source_owner) or 1
`

/**
 * The source's half of a put between two mailbox buckets, after PUT_INTO; idempotent per put id (remembered among
 * the source's put ids). A failure between the halves leaves the source's books behind, never the message.
 * KEYS[1] source hash · KEYS[2] source pending hash · KEYS[3] source outgoing counter · KEYS[4] source queue
 * KEYS[5..7] the source bucket's counts · KEYS[8] source's recent put ids · ARGV: see PUT_HALVES.
 */
export const PUT_FROM = `${PRELUDE}${COUNTING}${PUT_HALVES}
if seen(KEYS[8]) then return 1 end
put_from({ hash = KEYS[1], pending = KEYS[2], outgoing = KEYS[3], queue = KEYS[4], counts = { KEYS[5], KEYS[6], KEYS[7] } })
remember(KEYS[8], now_ms())
return 1
`

/**
 * A message in flight as its instance's in-flight hash holds it: the length
 * of its mailbox key, ':', the key, then the message text (a mailbox key may
 * hold any character, so it is measured rather than delimited).
 */
const INFLIGHT = `
local function inflight(key, message)
  return #key .. ':' .. key .. message
end
local function from_inflight(value)
  local colon = string.find(value, ':', 1, true)
  local length = tonumber(string.sub(value, 1, colon - 1))
  return string.sub(value, colon + 1, colon + length), string.sub(value, colon + length + 1)
end
`

/**
 * Pop the next message, or nothing; also when Redis is at its maxmemory.
 * The message stays in the instance's in-flight hash under the take's number
 * until the instance settles it (once the answer carrying it is long out), so
 * that if the instance dies first the survivors put it back (RECOVER_INFLIGHT).
 * Idempotent per take number: ioredis re-sends a command whose reply was lost
 * with a dropped connection, and the re-sent call must return the message
 * the first one popped instead of popping (and losing) another; a take given
 * back (GIVE_BACK_MESSAGE) before it ran finds a void mark and pops nothing.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3] pending hash · KEYS[4] the instance's in-flight hash · KEYS[5..7] counts
 * ARGV[1] client · ARGV[2] groups · ARGV[3] now (ms) · ARGV[4] idle expiry ms · ARGV[5] take number · ARGV[6] mailbox key
 * Returns { message text, messages left in the queue } (-1 left when not known: a re-sent take), or nil when the queue is empty.
 */
export const TAKE_MESSAGE = `${PRELUDE}${COUNTING}${INFLIGHT}
local already = redis.call('HGET', KEYS[4], ARGV[5])
-- Given back before it ran (its caller got an error; ioredis sent it late, after a failover): it pops nothing.
if already == '' then return nil end
if already then
  local _, message = from_inflight(already)
  return { message, -1 }
end
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
redis.call('HSET', KEYS[4], ARGV[5], inflight(ARGV[6], message))
return { message, left }
`

/**
 * Put back what dead instances had in flight in one mailbox bucket: for each
 * instance named (its last heartbeat expired), every message of its in-flight
 * hash of the bucket goes back to the head of its mailbox (if still active),
 * in the order the instance took them, and one waiter is woken per message;
 * then the hash goes. The hash goes in the same script, so a message is put
 * back once however many survivors run it at the same time. The bucket's
 * mailboxes, queues and in-flight hashes are reached by name (prefix .. key):
 * all in the bucket's slot.
 * KEYS[1..3] the bucket's counts
 * ARGV[1] the bucket's in-flight hash prefix · ARGV[2] mailbox hash prefix · ARGV[3] queue prefix · ARGV[4] idle expiry ms
 * ARGV[5] wake channel · ARGV[6..] the dead instances
 * Returns the number of messages put back.
 */
export const RECOVER_INFLIGHT = `${COUNTING}${INFLIGHT}
local now = now_ms()
local counts = { KEYS[1], KEYS[2], KEYS[3] }
local restored = 0
for i = 6, #ARGV do
  local hash = ARGV[1] .. ARGV[i]
  local flat = redis.call('HGETALL', hash)
  local taken = {}
  for i = 1, #flat, 2 do
    -- A void mark (a take given back) holds no message.
    if flat[i + 1] ~= '' then taken[#taken + 1] = { tonumber(flat[i]), flat[i + 1] } end
  end
  -- Newest first, each to the head: the first taken ends up first.
  table.sort(taken, function(a, b) return a[1] > b[1] end)
  -- first write: shrinks memory, so the messages go back even in a full Redis.
  redis.call('DEL', hash)
  for _, entry in ipairs(taken) do
    local key, message = from_inflight(entry[2])
    if redis.call('HGET', ARGV[2] .. key, 'state') == 'ACTIVE' then
      local queue = ARGV[3] .. key
      local length = redis.call('LPUSH', queue, message)
      redis.call('PEXPIRE', queue, ARGV[4])
      redis.call('PEXPIRE', ARGV[2] .. key, ARGV[4])
      track(counts, key, now + tonumber(ARGV[4]), length)
      redis.call('PUBLISH', ARGV[5], key)
      restored = restored + 1
    end
  end
end
return restored
`

/**
 * Put back at the head of its mailbox the message one take of this instance
 * holds in flight, if that take ran: a take whose receiver got an error
 * instead (its reply lost with the connection, or not acknowledged by the
 * replicas). Also when Redis is at its maxmemory. Either way the take is left
 * a void mark (an empty value), so that it pops nothing if it runs later.
 * KEYS[1] the instance's in-flight hash · KEYS[2] mailbox hash · KEYS[3] queue · KEYS[4..6] counts
 * ARGV[1] take number · ARGV[2] idle expiry ms · ARGV[3] wake channel
 * Returns 1 when a message went back, 0 when the take had not run or its mailbox is gone.
 */
export const GIVE_BACK_MESSAGE = `${COUNTING}${INFLIGHT}
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if entry == '' then return 0 end
-- first write: not one that can grow memory, and once a script wrote Redis lets it finish, so the message goes back
-- even in a full Redis.
redis.call('HDEL', KEYS[1], ARGV[1])
-- The take is void from now on: if ioredis sends it only now (a command whose caller got a timeout can still be
-- sent, from its retry queue, after a failover), it pops nothing. The instance removes the mark later.
redis.call('HSET', KEYS[1], ARGV[1], '')
if not entry then return 0 end
if redis.call('HGET', KEYS[2], 'state') ~= 'ACTIVE' then return 0 end
local key, message = from_inflight(entry)
local length = redis.call('LPUSH', KEYS[3], message)
redis.call('PEXPIRE', KEYS[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
track({ KEYS[4], KEYS[5], KEYS[6] }, key, now_ms() + tonumber(ARGV[2]), length)
redis.call('PUBLISH', ARGV[3], key)
return 1
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
 * Uids of the active agents in one bucket's class index that the caller may
 * access. Index entries whose mailbox expired while idle are removed on the
 * way. The mailbox hashes are reached by name (ARGV[5] .. uid), in the
 * bucket's slot.
 * KEYS[1] the bucket's discover index of the class
 * ARGV[1] client · ARGV[2] groups · ARGV[3] '1' to match only the first MRO class · ARGV[4] class · ARGV[5] the bucket's agent mailbox prefix
 * Returns uid, creation sequence, uid, … in creation order.
 */
export const DISCOVER_AGENTS = `${PRELUDE}
local found = {}
local entries = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #entries, 2 do
  local uid = entries[i]
  local box = redis.call('HMGET', ARGV[5] .. uid, 'owner', 'shares', 'state', 'class')
  if not box[1] or box[3] ~= 'ACTIVE' then
    redis.call('ZREM', KEYS[1], uid)
  elseif (ARGV[3] ~= '1' or box[4] == ARGV[4]) and can_access(box[1], box[2], ARGV[1], ARGV[2]) then
    found[#found + 1] = uid
    found[#found + 1] = entries[i + 1]
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
 * Active mailboxes and the messages queued in them, in one bucket. Settles
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
 * The raw counters behind Academy's stats. The outgoing count read is the
 * owner's, or for a key with no mailbox the caller's own: its counter is
 * reached by name (see outgoingKey), in the mailbox's bucket.
 * KEYS[1] mailbox hash · KEYS[2] queue · KEYS[3] pending hash
 * ARGV[1] client · ARGV[2] groups · ARGV[3] outgoing counters' prefix · ARGV[4] mailbox key
 * Returns { pending, queued, completed, outgoing }.
 */
export const MAILBOX_STATS = `${PRELUDE}
local box = redis.call('HMGET', KEYS[1], 'owner', 'shares', 'completed')
if box[1] and not can_access(box[1], box[2], ARGV[1], ARGV[2]) then return refuse('FORBIDDEN') end
local counter = box[1] or ARGV[1]
local outgoing = tonumber(redis.call('GET', ARGV[3] .. #counter .. ':' .. counter .. ':' .. ARGV[4]) or '0')
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
