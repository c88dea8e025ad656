/**
 * The Lua scripts of workers and jobs: capacity and job moves are
 * compare-and-set, so two instances can never take one slot or move one job
 * twice. Every field of a worker or job hash holds the field's JSON, so a
 * script compares JSON text (`"available"`, `null`, `true`) and writes JSON back.
 *
 * Redis at its maxmemory (policy noeviction) refuses a script's first write
 * that may grow memory, and only when nothing was written before it. So a
 * script that must run even then (it frees room, or only overwrites) starts
 * with a write that cannot grow memory, and one that adds something new
 * starts with the write that adds it: such a first write is marked
 * `-- first write` below.
 */

import { FINISHED_JOB_STATES } from '../../../src/backend/workers'

/** Reads a hash as a flat field/value list, and encodes a list of ids (an empty Lua table would encode as `{}`). */
const PRELUDE = `
local function encode_ids(ids)
  if #ids == 0 then return '[]' end
  return cjson.encode(ids)
end
local function without(ids, id)
  local kept = {}
  for _, value in ipairs(ids) do
    if value ~= id then kept[#kept + 1] = value end
  end
  return kept
end
local function contains(ids, id)
  for _, value in ipairs(ids) do
    if value == id then return true end
  end
  return false
end
`

/**
 * Insert a worker, or take over its registration keeping jobs, reserved,
 * draining and its directory token (`dir`). The worker is indexed by
 * registration, and under its agent name in the same order (a dispatch reads
 * only the workers of one name). A new worker needs its order, from the
 * store's sequence (also its token): without one the script writes nothing
 * and answers nil, so that a takeover costs no write beyond its own. A new
 * worker is refused when Redis is at its maxmemory; a takeover (a worker
 * registering again under its id) only overwrites, and runs even then.
 * KEYS[1] worker hash · KEYS[2] bucket's worker index (sorted by registration)
 * ARGV[1] worker id · ARGV[2] agent-name index prefix · ARGV[3] its order if it is new, else ''
 * ARGV[4..] field, JSON value pairs of the new record
 * Returns the previous hash as a flat list (empty when new), or nil when it is new and no order came.
 */
export const UPSERT_WORKER = `
local previous = redis.call('HGETALL', KEYS[1])
local order = redis.call('ZSCORE', KEYS[2], ARGV[1])
if (#previous == 0 or not order) and ARGV[3] == '' then return false end
local name_before = redis.call('HGET', KEYS[1], 'agentName')
local kept = { jobs = true, reserved = true, draining = true }
-- first write: a takeover's cannot grow memory (a field written again below); a new worker's is its first HSET.
if #previous > 0 then
  for i = 4, #ARGV, 2 do
    if not kept[ARGV[i]] then
      redis.call('HDEL', KEYS[1], ARGV[i])
      break
    end
  end
end
for i = 4, #ARGV, 2 do
  if #previous == 0 or not kept[ARGV[i]] then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
if #previous == 0 then redis.call('HSET', KEYS[1], 'dir', ARGV[3]) end
if not order then
  order = ARGV[3]
  redis.call('ZADD', KEYS[2], order, ARGV[1])
end
local name = redis.call('HGET', KEYS[1], 'agentName')
if name_before and name_before ~= name then redis.call('ZREM', ARGV[2] .. cjson.decode(name_before), ARGV[1]) end
redis.call('ZADD', ARGV[2] .. cjson.decode(name), order, ARGV[1])
return previous
`

/**
 * Index workers stored before the agent-name indexes existed under their names, in registration order.
 * KEYS[1] worker index · ARGV[1] worker hash prefix · ARGV[2] agent-name index prefix · ARGV[3..] worker ids
 */
export const INDEX_WORKER_NAMES = `
for i = 3, #ARGV do
  local name = redis.call('HGET', ARGV[1] .. ARGV[i], 'agentName')
  local order = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if name and order then redis.call('ZADD', ARGV[2] .. cjson.decode(name), order, ARGV[i]) end
end
return 1
`

/**
 * Patch a worker only while it is held by the given connection; also when Redis is at its maxmemory.
 * KEYS[1] worker hash · ARGV[1] connection as JSON (null: only while disconnected) · ARGV[2..] field, JSON value pairs
 * Returns the new hash as a flat list, or an empty list when missing or held by another connection.
 */
export const UPDATE_WORKER = `
if redis.call('HGET', KEYS[1], 'connection') ~= ARGV[1] then return {} end
-- first write: cannot grow memory (the field is written again below), so a worker stays current in a full Redis.
if #ARGV >= 2 then redis.call('HDEL', KEYS[1], ARGV[2]) end
for i = 2, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return redis.call('HGETALL', KEYS[1])
`

/**
 * Set the drain flag of a known worker; also when Redis is at its maxmemory.
 * KEYS[1] worker hash · ARGV[1] 'true' | 'false'
 * Returns the new hash as a flat list, or an empty list when unknown.
 */
export const SET_DRAINING = `
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
-- first write: cannot grow memory (the field is written again below).
redis.call('HDEL', KEYS[1], 'draining')
redis.call('HSET', KEYS[1], 'draining', ARGV[1])
return redis.call('HGETALL', KEYS[1])
`

/**
 * Remove a worker only while it is held by the given connection (or whatever holds it, to move it to another bucket).
 * KEYS[1] worker hash · KEYS[2] worker index · ARGV[1] connection as JSON · ARGV[2] worker id · ARGV[3] agent-name index prefix
 * ARGV[4] '1': whatever connection holds it
 * Returns the removed hash as a flat list, or an empty list.
 */
export const DELETE_WORKER = `
if ARGV[4] ~= '1' and redis.call('HGET', KEYS[1], 'connection') ~= ARGV[1] then return {} end
local removed = redis.call('HGETALL', KEYS[1])
local name = redis.call('HGET', KEYS[1], 'agentName')
if name then redis.call('ZREM', ARGV[3] .. cjson.decode(name), ARGV[2]) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
return removed
`

/**
 * Forget a removed worker's directory entry, unless a registration under its id since wrote another.
 * KEYS[1] worker directory · ARGV[1] worker id · ARGV[2] the entry the removed worker had
 */
export const FORGET_WORKER = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`

/**
 * Reserve a slot for a job when the worker is connected, available, not
 * draining, does not hold the job, and has room: n = jobs + reserved,
 * n < maxProcesses and n / maxProcesses < loadThreshold.
 * KEYS[1] worker hash · ARGV[1] job id
 * Returns 1 when reserved, 0 otherwise.
 */
export const RESERVE_SLOT = `${PRELUDE}
local worker = redis.call('HMGET', KEYS[1], 'connection', 'draining', 'status', 'jobs', 'reserved', 'maxProcesses', 'loadThreshold')
if not worker[1] or worker[1] == 'null' or worker[2] == 'true' or worker[3] ~= '"available"' then return 0 end
local jobs = cjson.decode(worker[4])
local reserved = cjson.decode(worker[5])
if contains(jobs, ARGV[1]) or contains(reserved, ARGV[1]) then return 0 end
local held = #jobs + #reserved
local max = tonumber(worker[6])
if held >= max or held / max >= tonumber(worker[7]) then return 0 end
reserved[#reserved + 1] = ARGV[1]
redis.call('HSET', KEYS[1], 'reserved', encode_ids(reserved))
return 1
`

/**
 * Pick one worker of an agent name and owner that may take a job now
 * (connected, available, not draining, not holding the job, with room by
 * RESERVE_SLOT's count), leaving out the ids given, at random weighted by
 * its free slots, and reserve a slot on it for the job: a dispatch's pick
 * without reading every worker of the name into the instance.
 * KEYS[1] agent-name index · ARGV[1] worker hash prefix · ARGV[2] owner as JSON · ARGV[3] agent name as JSON
 * ARGV[4] job id · ARGV[5] the draw, in [0, 1) · ARGV[6..] worker ids left out
 * Returns { 1 when a connected worker of the name and owner was seen else 0, then the picked worker's hash as a
 * flat list after the reservation (nothing when none had room) }.
 */
export const RESERVE_ANY_SLOT = `${PRELUDE}
-- Slots a worker may hold: src/backend/workers.ts slotLimit, the same count as RESERVE_SLOT's.
local function slot_limit(max, threshold)
  local limit = math.min(max, math.ceil(threshold * max))
  while limit > 0 and (limit - 1) / max >= threshold do limit = limit - 1 end
  return limit
end
local left_out = {}
for i = 6, #ARGV do left_out[ARGV[i]] = true end
local seen = 0
local keys, reservations, weights, total = {}, {}, {}, 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[1] .. id
  local worker = redis.call('HMGET', key, 'owner', 'agentName', 'connection', 'draining', 'status', 'jobs', 'reserved', 'maxProcesses', 'loadThreshold')
  if worker[1] == ARGV[2] and worker[2] == ARGV[3] and worker[3] and worker[3] ~= 'null' then
    seen = 1
    if not left_out[id] and worker[4] ~= 'true' and worker[5] == '"available"' then
      local jobs = cjson.decode(worker[6])
      local reserved = cjson.decode(worker[7])
      local free = slot_limit(tonumber(worker[8]), tonumber(worker[9])) - #jobs - #reserved
      if free > 0 and not contains(jobs, ARGV[4]) and not contains(reserved, ARGV[4]) then
        keys[#keys + 1] = key
        reservations[#reservations + 1] = reserved
        weights[#weights + 1] = free
        total = total + free
      end
    end
  end
end
if total == 0 then return { seen } end
local point = tonumber(ARGV[5]) * total
local chosen = #keys
for i, weight in ipairs(weights) do
  point = point - weight
  if point < 0 then
    chosen = i
    break
  end
end
local reserved = reservations[chosen]
reserved[#reserved + 1] = ARGV[4]
redis.call('HSET', keys[chosen], 'reserved', encode_ids(reserved))
local result = { seen }
for _, value in ipairs(redis.call('HGETALL', keys[chosen])) do result[#result + 1] = value end
return result
`

/**
 * Turn a reservation into an assignment.
 * KEYS[1] worker hash · ARGV[1] job id
 * Returns 1 when assigned, 0 when there is no such reservation.
 */
export const ASSIGN_SLOT = `${PRELUDE}
local worker = redis.call('HMGET', KEYS[1], 'jobs', 'reserved')
if not worker[1] then return 0 end
local reserved = cjson.decode(worker[2])
if not contains(reserved, ARGV[1]) then return 0 end
local jobs = cjson.decode(worker[1])
jobs[#jobs + 1] = ARGV[1]
redis.call('HSET', KEYS[1], 'jobs', encode_ids(jobs), 'reserved', encode_ids(without(reserved, ARGV[1])))
return 1
`

/**
 * Drop a reservation and an assignment of a job; also when Redis is at its maxmemory.
 * KEYS[1] worker hash · ARGV[1] job id
 */
export const RELEASE_SLOT = `${PRELUDE}
local worker = redis.call('HMGET', KEYS[1], 'jobs', 'reserved')
if not worker[1] then return 0 end
-- first write: cannot grow memory, so a slot is freed in a full Redis.
redis.call('HDEL', KEYS[1], 'reserved')
redis.call('HSET', KEYS[1], 'jobs', encode_ids(without(cjson.decode(worker[1]), ARGV[1])), 'reserved', encode_ids(without(cjson.decode(worker[2]), ARGV[1])))
return 1
`

/** Finished jobs one script deletes at most, so that trimming a large backlog never blocks Redis for long. */
const TRIM_BATCH = 200
/** The field of the finished sizes hash that holds their sum (the others are job ids). */
const SIZES_TOTAL = '~total'

/**
 * Bookkeeping of jobs. Each job's id is in the set of its state (so a list
 * of one state reads only those jobs); each job that finishes takes the next
 * number in a sorted set and its size (the bytes of its hash's values) in
 * the finished sizes hash, beside their sum; those it pushes past either
 * bound (finished_jobs_kept, finished_jobs_max_mb) are deleted (hash and
 * index entries), oldest first, at most TRIM_BATCH at a time, so jobs still
 * running are never dropped. `keys` is { finished set, finished counter, job
 * index, creation index, finished sizes }; `prefixes` is { job hash, state
 * set }. A state comes as the hashes hold it (JSON: `"pending"`).
 */
const BOOKKEEPING = `
local FINISHED = { ${FINISHED_JOB_STATES.map((state) => `['${JSON.stringify(state)}'] = true`).join(', ')} }
local function move_state(state_prefix, id, from, to)
  if from then redis.call('SREM', state_prefix .. cjson.decode(from), id) end
  if to then redis.call('SADD', state_prefix .. cjson.decode(to), id) end
end
local function job_bytes(key)
  local bytes = 0
  for _, value in ipairs(redis.call('HVALS', key)) do bytes = bytes + #value end
  return bytes
end
local function trim(keys, bounds, prefixes)
  local kept, max_bytes = tonumber(bounds[1]), tonumber(bounds[2])
  local dropped = 0
  while dropped < ${TRIM_BATCH} do
    local count = redis.call('ZCARD', keys[1])
    if count == 0 then break end
    if count <= kept and tonumber(redis.call('HGET', keys[5], '${SIZES_TOTAL}') or '0') <= max_bytes then break end
    local old = redis.call('ZRANGE', keys[1], 0, 0)[1]
    move_state(prefixes[2], old, redis.call('HGET', prefixes[1] .. old, 'state'), nil)
    redis.call('DEL', prefixes[1] .. old)
    redis.call('SREM', keys[3], old)
    redis.call('ZREM', keys[4], old)
    redis.call('ZREM', keys[1], old)
    local size = tonumber(redis.call('HGET', keys[5], old) or '0')
    if size ~= 0 then redis.call('HINCRBY', keys[5], '${SIZES_TOTAL}', -size) end
    redis.call('HDEL', keys[5], old)
    dropped = dropped + 1
  end
  return dropped
end
local function finished(keys, id, bounds, prefixes)
  if not redis.call('ZSCORE', keys[1], id) then redis.call('ZADD', keys[1], redis.call('INCR', keys[2]), id) end
  local size = job_bytes(prefixes[1] .. id)
  local before = tonumber(redis.call('HGET', keys[5], id) or '0')
  redis.call('HSET', keys[5], id, size)
  redis.call('HINCRBY', keys[5], '${SIZES_TOTAL}', size - before)
  trim(keys, bounds, prefixes)
end
`

/**
 * Delete the finished jobs past finished_jobs_kept or finished_jobs_max_mb, oldest first, at most TRIM_BATCH.
 * KEYS[1] finished set · KEYS[2] finished counter · KEYS[3] job index · KEYS[4] creation index · KEYS[5] finished sizes
 * ARGV[1] the finished jobs' bounds, JSON [count, bytes] · ARGV[2] job hash prefix · ARGV[3] state set prefix
 * Returns how many were deleted.
 */
export const TRIM_FINISHED_JOBS = `${BOOKKEEPING}
return trim({ KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5] }, cjson.decode(ARGV[1]), { ARGV[2], ARGV[3] })
`

/**
 * Put jobs stored before the per-state sets and the creation index existed
 * into the set of the state each is in now, and into the creation index.
 * KEYS[1] creation index · ARGV[1] job hash prefix · ARGV[2] state set prefix · ARGV[3..] job ids
 */
export const INDEX_JOBS = `${BOOKKEEPING}
for i = 3, #ARGV do
  local job = redis.call('HMGET', ARGV[1] .. ARGV[i], 'state', 'createdAt')
  move_state(ARGV[2], ARGV[i], nil, job[1])
  if job[2] then redis.call('ZADD', KEYS[1], tonumber(job[2]), ARGV[i]) end
end
return 1
`

/**
 * Stores a job (CREATE_JOB's keys; the field, JSON value pairs from ARGV[from]; `sizes`, the finished sizes hash).
 */
const STORE_JOB = `
local function store_job(KEYS, ARGV, from, sizes)
  local before = redis.call('HGET', KEYS[1], 'state')
  -- Only a job stored before is cleared: a new job's first write is its own, which a full Redis refuses.
  if before then redis.call('DEL', KEYS[1]) end
  for i = from, #ARGV, 2 do
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
  redis.call('HSET', KEYS[1], 'seq', redis.call('INCR', KEYS[3]))
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[6], tonumber(redis.call('HGET', KEYS[1], 'createdAt')), ARGV[1])
  local state = redis.call('HGET', KEYS[1], 'state')
  move_state(ARGV[4], ARGV[1], before, state)
  if FINISHED[state] then
    finished({ KEYS[4], KEYS[5], KEYS[2], KEYS[6], sizes }, ARGV[1], cjson.decode(ARGV[2]), { ARGV[3], ARGV[4] })
  else
    redis.call('ZREM', KEYS[4], ARGV[1])
  end
end
`

/**
 * Store a job (replacing one with the same id) and index it by creation and
 * state; one stored finished is counted among the finished jobs (keeping its
 * place if it was already).
 * KEYS[1] job hash · KEYS[2] job index (a set of ids) · KEYS[3] sequence counter · KEYS[4] finished set · KEYS[5] finished counter
 * KEYS[6] creation index · KEYS[7] finished sizes
 * ARGV[1] job id · ARGV[2] the finished jobs' bounds, JSON [count, bytes] · ARGV[3] job hash prefix · ARGV[4] state set prefix
 * ARGV[5..] field, JSON value pairs
 */
export const CREATE_JOB = `${BOOKKEEPING}${STORE_JOB}
store_job(KEYS, ARGV, 5, KEYS[7])
return 1
`

/**
 * Store a pending job as CREATE_JOB does and put it at the tail of its queue, unless the queue holds the most it
 * may: then nothing is stored.
 * KEYS[1..6] as CREATE_JOB · KEYS[7] queue · KEYS[8] queue index · KEYS[9] the tenant's queued jobs · KEYS[10] finished sizes
 * ARGV[1..4] as CREATE_JOB · ARGV[5] most jobs the queue holds · ARGV[6] the queue's name in the index
 * ARGV[7] most jobs the tenant's queues hold together · ARGV[8..] field, JSON value pairs
 * Returns 1 when queued, 0 when the queue is full, -1 when the tenant's queues are.
 */
export const ENQUEUE_JOB = `${BOOKKEEPING}${STORE_JOB}
if redis.call('ZCARD', KEYS[7]) >= tonumber(ARGV[5]) then return 0 end
if redis.call('SCARD', KEYS[9]) >= tonumber(ARGV[7]) then return -1 end
store_job(KEYS, ARGV, 8, KEYS[10])
redis.call('ZADD', KEYS[7], redis.call('HGET', KEYS[1], 'seq'), ARGV[1])
redis.call('SADD', KEYS[8], ARGV[6])
redis.call('SADD', KEYS[9], ARGV[1])
return 1
`

/**
 * Claim the oldest job of a queue that no live claim holds; entries whose job is no longer pending are dropped.
 * KEYS[1] queue · KEYS[2] claims · KEYS[3] queue index · KEYS[4] the tenant's queued jobs
 * ARGV[1] job hash prefix · ARGV[2] claimant · ARGV[3] claim's end (epoch ms) · ARGV[4] now (epoch ms) · ARGV[5] the queue's name in the index
 * Returns the claimed job's hash as a flat list, or an empty list.
 */
export const CLAIM_QUEUED_JOB = `
local after = '-inf'
while true do
  local entries = redis.call('ZRANGEBYSCORE', KEYS[1], after, '+inf', 'WITHSCORES', 'LIMIT', 0, 64)
  if #entries == 0 then break end
  for i = 1, #entries, 2 do
    local id = entries[i]
    after = '(' .. entries[i + 1]
    if redis.call('HGET', ARGV[1] .. id, 'state') ~= '"pending"' then
      -- first write: cannot grow memory, so the backlog still moves in a full Redis.
      redis.call('ZREM', KEYS[1], id)
      redis.call('HDEL', KEYS[2], id)
      redis.call('SREM', KEYS[4], id)
    else
      local claim = redis.call('HGET', KEYS[2], id)
      if not claim or tonumber(string.match(claim, ' (%d+)$')) <= tonumber(ARGV[4]) then
        redis.call('HSET', KEYS[2], id, ARGV[2] .. ' ' .. ARGV[3])
        return redis.call('HGETALL', ARGV[1] .. id)
      end
    end
  end
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[5]) end
return {}
`

/**
 * Give back a claim the claimant holds. KEYS[1] claims · ARGV[1] job id · ARGV[2] claimant
 */
export const RELEASE_QUEUED_JOB = `
local claim = redis.call('HGET', KEYS[1], ARGV[1])
if claim and string.sub(claim, 1, #ARGV[2] + 1) == ARGV[2] .. ' ' then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 1
`

/**
 * Take a job out of its queue. KEYS[1] queue · KEYS[2] claims · KEYS[3] queue index · KEYS[4] the tenant's queued jobs
 * ARGV[1] job id · ARGV[2] the queue's name in the index
 */
export const DEQUEUE_JOB = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[4], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
`

/**
 * Remember a dispatch under an idempotency key unless a live one is there; expired entries leave the index, and
 * past the bound the ones expiring first are forgotten.
 * KEYS[1] the key's string · KEYS[2] index of live keys · ARGV[1] { jobId, fingerprint } JSON · ARGV[2] expiry (epoch ms)
 * ARGV[3] now (epoch ms) · ARGV[4] most keys kept
 * Returns the live entry's JSON, or false once stored.
 */
export const REMEMBER_DISPATCH = `
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, 100)) do
  redis.call('DEL', old)
  redis.call('ZREM', KEYS[2], old)
end
local live = redis.call('GET', KEYS[1])
if live then return live end
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4]) + 1
if over > 0 then
  for _, old in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do redis.call('DEL', old) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', math.max(1, tonumber(ARGV[2]) - tonumber(ARGV[3])))
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[1])
return false
`

/**
 * Forget an idempotency key if it still names the job. KEYS[1] the key's string · KEYS[2] index of live keys · ARGV[1] job id
 */
export const FORGET_DISPATCH = `
local live = redis.call('GET', KEYS[1])
if live and cjson.decode(live).jobId == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], KEYS[1])
end
return 1
`

/**
 * Move a job if it is in one of the expected states (and held by the expected
 * worker), appending the event to its history; a job that finishes is counted
 * among the finished jobs. Also when Redis is at its maxmemory.
 * KEYS[1] job hash · KEYS[2] finished set · KEYS[3] finished counter · KEYS[4] job index · KEYS[5] creation index
 * KEYS[6] finished sizes
 * ARGV[1] JSON array of the states it may be in · ARGV[2] new state · ARGV[3] '1' to check the holder · ARGV[4] expected holder as JSON
 * ARGV[5] '1' to set the holder · ARGV[6] new holder as JSON · ARGV[7] now (ms) · ARGV[8] reason, or '' for none
 * ARGV[9] job id · ARGV[10] the finished jobs' bounds, JSON [count, bytes] · ARGV[11] job hash prefix · ARGV[12] state set prefix
 * ARGV[13] participant identity, or '' to keep the job's
 * Returns the new hash as a flat list, or an empty list when unknown or not matching.
 */
export const TRANSITION_JOB = `${BOOKKEEPING}
local job = redis.call('HMGET', KEYS[1], 'state', 'workerId', 'history')
if not job[1] then return {} end
local allowed = false
for _, state in ipairs(cjson.decode(ARGV[1])) do
  if cjson.encode(state) == job[1] then allowed = true end
end
if not allowed then return {} end
if ARGV[3] == '1' and job[2] ~= ARGV[4] then return {} end
local holder = job[2]
if ARGV[5] == '1' then holder = ARGV[6] end
local event = '{"state":' .. cjson.encode(ARGV[2]) .. ',"at":' .. ARGV[7]
if holder ~= 'null' then event = event .. ',"workerId":' .. holder end
if ARGV[8] ~= '' then event = event .. ',"reason":' .. cjson.encode(ARGV[8]) end
event = event .. '}'
local history = job[3]
if history == '[]' then history = '[' .. event .. ']' else history = string.sub(history, 1, -2) .. ',' .. event .. ']' end
-- first write: leaving the old state's set cannot grow memory, so a job still moves (and a finished one is
-- trimmed in time) in a full Redis.
move_state(ARGV[12], ARGV[9], job[1], cjson.encode(ARGV[2]))
redis.call('HSET', KEYS[1], 'state', cjson.encode(ARGV[2]), 'workerId', holder, 'updatedAt', ARGV[7], 'history', history)
if ARGV[13] ~= '' then redis.call('HSET', KEYS[1], 'participantIdentity', cjson.encode(ARGV[13])) end
local hash = redis.call('HGETALL', KEYS[1])
-- A finished job is never moved again (its state is final): only a job that has just finished joins the finished set.
if FINISHED[cjson.encode(ARGV[2])] then finished({ KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6] }, ARGV[9], cjson.decode(ARGV[10]), { ARGV[11], ARGV[12] }) end
return hash
`
