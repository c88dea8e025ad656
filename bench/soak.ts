/**
 * Soak: churns mailboxes, listeners, workers and A2A proxy calls against one
 * Switchboard process for SOAK_SECONDS (default 30), at SOAK_RATE rounds a
 * second (default 100; 0 runs them back to back), after a warm-up of
 * SOAK_WARMUP_SECONDS (default 10) at the same pace, while the attacks of
 * bench/attacks.ts (SOAK_ATTACKS=0 leaves them out) run beside the churn,
 * each lane a round at most every SOAK_ATTACK_PERIOD_S (default 5). The
 * fixed pace makes runs on fast and slow machines comparable: what a process
 * keeps in its steady state depends on the rate (records kept for a time, the
 * garbage between two collections). Resident memory is sampled every quarter
 * second from the start of the warm-up to the end and printed over time;
 * growth is read on each quarter of the run as a whole (see BOUND), so that
 * one collection (or one attack's burst) more or less does not move the
 * figure.
 * SOAK_BACKEND picks the backend (memory by default; sqlite uses a fresh
 * file under the temp directory, redis a fresh key prefix at the configured
 * redis_url, whose keys are deleted at the end).
 * Exits non-zero when memory leaves its bounds (stated at BOUND below) or an
 * attack was not refused as designed. Each round leaves records behind by
 * design (two gravestones, a sent-request count, a finished job with its
 * history, an activity entry); the soak runs with short retention (idle
 * mailboxes, sent-request counts and gravestones kept 8.6 s, and with memory
 * the newest 1,000 finished jobs) so that what is kept reaches its steady
 * state within the run. Connections and file descriptors must not grow.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestWorker } from '../test/modules/workers/worker'
import { memoryOf } from '../test/support/process'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { LIMITS, ROUND_MIB, attackSettings, nextSource, openSources, startAttacks, type AttackRow } from './attacks'
import { deleteKeys } from '../test/support/redis'
import { keepAlive, listen, request, rssMiB, startSwitchboard, table, writeResult } from './lib'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 30)
const RATE = Number(process.env.SOAK_RATE ?? 100)
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? 10)
const BACKEND = process.env.SOAK_BACKEND ?? 'memory'
const ATTACKS = process.env.SOAK_ATTACKS !== '0'
const ATTACK_PERIOD_S = Number(process.env.SOAK_ATTACK_PERIOD_S ?? 5)
const ADMIN = 'soak-admin-token'
/** Short retention, so that kept records turn over within the run. */
const RETENTION = { idleDays: 0.0001, gravestoneDays: 0.0001, finishedJobsKept: 1000 }
/** KiB of listen-stream messages kept for replay (sse_replay_kb's default): the churn's listeners fill it. */
const REPLAY_KIB = 8192
/**
 * Memory bounds. Growth, at the default pace: a fixed amount of RSS from the
 * first quarter of the run to the last (the warm-up has brought the heap,
 * the caches and the kept records near their steady state), a smaller one
 * from the second quarter to the last (a leak keeps growing there; a steady
 * state does not), and no descriptor growth beyond noise. Without the
 * attacks each quarter is read as its median. With them, what is judged is
 * the lowest RSS of the run's second half over that of its first: what the
 * process holds after a collection. Their garbage comes and goes above that
 * floor by hundreds of MiB within seconds, and a leak raises the floor
 * itself. The floor may grow by what one round of the lanes sends
 * (ROUND_MIB): a half can end on a plateau where one round's garbage has
 * been collected but its pages not yet given back (measured in 30 s runs:
 * +3 to +38 MiB; in a 120 s run the quarters' lows were flat, 143.6, 140.4,
 * 140.7 MiB).
 * Peak: the most the process ever held (VmHWM), over what it held idle
 * after startup. This may be:
 * - what callers can make it keep by design, i.e. the byte bounds the soak
 *   sets (the exchange's max_queued_mb on memory, the finished jobs, the
 *   replay window, an A2A answer read up to its limit);
 * - plus the churn's own growth bound;
 * - plus the garbage of one round of every attack lane (ROUND_MIB) in up to
 *   seven copies: a job's body arrives in chunks, is joined, decoded to
 *   text, parsed, serialised again for its size check and for the worker's
 *   frame, and that frame is encoded. None of these copies is kept, but the
 *   collector takes them only when it next runs.
 * Without the attacks: the replay window, the growth bound and 64 MiB.
 */
const heldMib = ATTACKS ? (BACKEND === 'memory' ? LIMITS.maxQueuedMb : 0) + LIMITS.finishedJobsMb + LIMITS.a2aResponseLimitKb / 1024 : 0
const BOUND = { mib: 32, secondHalfMib: 12, floorMib: Math.round(ROUND_MIB), fds: 10, peakMib: Math.round(heldMib + REPLAY_KIB / 1024 + 32 + (ATTACKS ? 7 * ROUND_MIB : 64)) }
const rssBound = ATTACKS ? `≤ ${BOUND.floorMib} MiB from the first half's lowest to the second half's` : `≤ ${BOUND.mib} MiB, ≤ ${BOUND.secondHalfMib} MiB from the second quarter to the last`

const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length

const agent = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(req) {
    const body = (await req.json()) as { id: unknown }
    return Response.json({ jsonrpc: '2.0', id: body.id, result: { kind: 'message', role: 'agent', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'ok' }] } })
  },
})
const scratch = mkdtempSync(join(tmpdir(), 'switchboard-soak-'))
const redisPrefix = `soak-${process.pid}-${Date.now()}`
const backendFlags: Record<string, string[]> = { sqlite: ['--db', join(scratch, 'soak.db')], redis: ['--redis-prefix', redisPrefix] }
const configFile = join(scratch, 'soak.toml')
const settings = ATTACKS ? attackSettings(BACKEND) : { top: [], backend: [] }
const backendOptions = [...(BACKEND === 'memory' ? [`finished_jobs_kept = ${RETENTION.finishedJobsKept}`] : []), ...settings.backend]
writeFileSync(
  configFile,
  [
    `mailbox_expiration_d = ${RETENTION.idleDays}`,
    `gravestone_expiration_d = ${RETENTION.gravestoneDays}`,
    `sse_replay_kb = ${REPLAY_KIB}`,
    ...settings.top,
    ...(backendOptions.length > 0 ? ['[backend_options]', ...backendOptions] : []),
    '',
  ].join('\n'),
)
const server = await startSwitchboard(['--config', configFile, '--admin-token', ADMIN, '--allow-private-agent-urls', '--backend', BACKEND, ...(backendFlags[BACKEND] ?? [])])

async function admin(path: string, body: unknown, token = ADMIN): Promise<Record<string, string>> {
  const response = await request(`${server.url}${path}`, 'POST', JSON.stringify(body), { authorization: `Bearer ${token}` }, nextSource())
  if (response.status >= 300) throw new Error(`${path}: ${response.status} ${response.text}`)
  return JSON.parse(response.text) as Record<string, string>
}
const parent = await admin('/workspaces', { name: 'soak' })
const caller = await admin('/workspaces', { name: 'caller', parent_id: parent.id })
const target = await admin('/workspaces', { name: 'target', parent_id: parent.id })
await admin('/registry/register', { id: target.id, url: `http://127.0.0.1:${agent.port}/`, agent_card: { name: 'soak' } }, target.auth_token)
const a2aBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'hi' }] } } })

const counts = { mailboxes: 0, messages: 0, listeners: 0, workers: 0, jobs: 0, a2a: 0, refusedWhileFull: 0 }

/**
 * A request of the churn from one of the soak's loopback addresses; `expect`
 * is the status it must get. The exchange's byte bound is shared by every
 * client: while an attack holds it full, a send or a create gets 507 and is
 * tried again (counted), as a client would.
 */
async function churnRequest(path: string, method: string, body: string | undefined, expect: number, headers: Record<string, string> = {}): Promise<string> {
  const deadline = Date.now() + 10_000
  for (;;) {
    const response = await request(`${server.url}${path}`, method, body, headers, nextSource())
    if (response.status === expect) return response.text
    if (response.status !== 507 || Date.now() > deadline) throw new Error(`${method} ${path}: ${response.status} ${response.text.slice(0, 200)}`)
    counts.refusedWhileFull++
    await Bun.sleep(10)
  }
}

/** One round of every kind of churn, each resource opened and closed again. */
async function churn(): Promise<void> {
  const [user, agentId] = [newUser(), newAgent()]
  await churnRequest('/mailbox', 'POST', mailboxBody(user), 200)
  await churnRequest('/mailbox', 'POST', mailboxBody(agentId), 200)
  counts.mailboxes += 2
  const inbox = await listen(`${server.url}/mailbox/listen`, listenBody(agentId), nextSource())
  counts.listeners++
  for (let i = 0; i < 5; i++) {
    await churnRequest('/message', 'PUT', sendBody(user, agentId, 'request', 1024), 200)
    await inbox.next()
    counts.messages++
  }
  inbox.close()
  await churnRequest('/mailbox', 'DELETE', mailboxBody(agentId), 200)
  await churnRequest('/mailbox', 'DELETE', mailboxBody(user), 200)

  const worker = await TestWorker.connect(server.url, { agentName: 'soak', maxProcesses: 2, loadThreshold: 1, localAddress: nextSource() })
  counts.workers++
  const job = await churnRequest('/jobs', 'POST', JSON.stringify({ agent_name: 'soak', room_id: 'soak-room' }), 201)
  worker.update((JSON.parse(job) as { id: string }).id, 'completed')
  counts.jobs++
  await worker.close()

  await churnRequest(`/workspaces/${target.id}/a2a`, 'POST', a2aBody, 200, { authorization: `Bearer ${caller.auth_token}`, 'x-workspace-id': caller.id! })
  counts.a2a++
}

/** Runs rounds at the pace until `until`; returns how many ran. */
async function churnUntil(until: number): Promise<number> {
  const from = Date.now()
  let done = 0
  while (Date.now() < until) {
    await churn()
    done++
    if (RATE > 0) {
      const due = from + (done * 1000) / RATE
      if (due > Date.now()) await Bun.sleep(due - Date.now())
    }
  }
  return done
}

const attacks = ATTACKS
  ? await startAttacks(
      {
        url: server.url,
        backend: BACKEND,
        caller: { id: caller.id!, token: caller.auth_token! },
        registerAgent: async (url) => {
          const attacked = await admin('/workspaces', { name: 'attacked', parent_id: parent.id })
          await admin('/registry/register', { id: attacked.id, url, agent_card: { name: 'attacked' } }, attacked.auth_token)
          return { id: attacked.id! }
        },
      },
      ATTACK_PERIOD_S * 1000,
    )
  : null

const round1 = (value: number) => Math.round(value * 10) / 10
/** RSS and descriptors every quarter second from here (the process idle after startup) to the end. */
const idle = { rss: rssMiB(server.pid), fds: openFds(server.pid) }
await openSources(server.url)
const soakStarted = Date.now()
const samples: { at: number; rss: number; fds: number }[] = []
const sampler = setInterval(() => samples.push({ at: Date.now(), rss: rssMiB(server.pid), fds: openFds(server.pid) }), 250)

// Warm-up at the same pace, attacks running: the heap, the caches and the records kept for a time grow to what this rate keeps.
const warmupRounds = await churnUntil(Date.now() + WARMUP_SECONDS * 1000)
const began = Date.now()
const rounds = await churnUntil(began + SECONDS * 1000)
const ended = Date.now()
const attackRows: AttackRow[] = attacks ? await attacks.stop() : []
await Bun.sleep(3000)
clearInterval(sampler)
const peak = round1(memoryOf(server.pid).peak)
const finishFds = openFds(server.pid)
await attacks?.close()
keepAlive.destroy()
await server.stop()
agent.stop(true)
rmSync(scratch, { recursive: true, force: true })
// The soaked server reads its Redis as any Switchboard does: the same URL finds its keys.
if (BACKEND === 'redis') await deleteKeys(process.env.SWITCHBOARD_REDIS_URL ?? 'redis://127.0.0.1:6379', redisPrefix)

/** The samples taken in the run's quarter `q` (0–3). */
const quarter = (q: number) => samples.filter((sample) => sample.at >= began + ((ended - began) * q) / 4 && sample.at < began + ((ended - began) * (q + 1)) / 4)
const median = (values: number[]) => {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!
}
/** The lowest RSS of a quarter (with the attacks) or its median (without), as the table shows them. */
const level = (q: number) => (ATTACKS ? Math.min(...quarter(q).map((sample) => sample.rss)) : median(quarter(q).map((sample) => sample.rss)))
const start = { rss: level(0), fds: Math.min(...quarter(0).map((sample) => sample.fds)) }
const half = { rss: level(1), fds: Math.min(...quarter(1).map((sample) => sample.fds)) }
const finish = { rss: level(3), fds: finishFds }
const rssGrowth = round1(finish.rss - start.rss)
const secondHalfGrowth = round1(finish.rss - half.rss)
const fdGrowth = finish.fds - start.fds
const peakGrowth = round1(peak - idle.rss)
const perRound = Math.round(((finish.rss - start.rss) * 1024 * 10) / Math.max(1, rounds)) / 10
/** Growth is judged once the run holds four rounds of the attacks at least: a shorter one has quarters without a collection in them. */
const growthJudged = !ATTACKS || SECONDS >= 4 * ATTACK_PERIOD_S
/** With the attacks: the floor of the run's second half over its first (each half holds three rounds or more, and a deep collection). */
const lowest = (from: number, to: number) => Math.min(...samples.filter((sample) => sample.at >= from && sample.at < to).map((sample) => sample.rss))
const floorGrowth = round1(lowest(began + (ended - began) / 2, ended) - lowest(began, began + (ended - began) / 2))
const growthWithin = !growthJudged || (ATTACKS ? floorGrowth <= BOUND.floorMib : rssGrowth <= BOUND.mib && secondHalfGrowth <= BOUND.secondHalfMib)
const rssWithin = growthWithin && peakGrowth <= BOUND.peakMib
const attacksOk = attackRows.every((row) => row.ok)
const within = rssWithin && fdGrowth <= BOUND.fds && attacksOk
const verdict = (ok: boolean) => (ok ? 'within' : 'OUTSIDE')
/** RSS over time: ten columns over the soak (warm-up included), each the highest of its samples and the second it ends at. */
const columns = Math.min(10, samples.length)
const timeline = Array.from({ length: columns }, (_, i) => {
  const slice = samples.slice(Math.floor((i * samples.length) / columns), Math.floor(((i + 1) * samples.length) / columns))
  return { second: round1((slice.at(-1)!.at - soakStarted) / 1000), rss: Math.max(...slice.map((sample) => sample.rss)) }
})
const markdown = [
  table(
    ['measure', 'idle after startup', 'first quarter of the run', 'second quarter', 'last quarter', 'growth (second quarter → last)', 'bound', ''],
    [
      [`RSS (${ATTACKS ? 'lowest' : 'median'} of the quarter)`, `${idle.rss} MiB`, `${start.rss} MiB`, `${half.rss} MiB`, `${finish.rss} MiB`, ATTACKS ? `${floorGrowth} MiB from the first half's lowest to the second half's` : `${rssGrowth} MiB (${secondHalfGrowth} MiB)`, rssBound, growthJudged ? verdict(growthWithin) : `not judged: shorter than 4 attack rounds (${4 * ATTACK_PERIOD_S} s)`],
      ['RSS, highest (VmHWM)', `${idle.rss} MiB`, '', '', `${peak} MiB`, `+${peakGrowth} MiB over idle`, `≤ +${BOUND.peakMib} MiB over idle`, verdict(peakGrowth <= BOUND.peakMib)],
      ['open file descriptors (fewest of the quarter; at the end)', idle.fds, start.fds, half.fds, finish.fds, `${fdGrowth} (${finish.fds - half.fds})`, `≤ ${BOUND.fds}`, verdict(fdGrowth <= BOUND.fds)],
    ],
  ),
  table(
    [`RSS over time: second of the soak (warm-up to ${round1((began - soakStarted) / 1000)})`, ...timeline.map((column) => `${column.second} s`)],
    [['highest RSS, MiB', ...timeline.map((column) => column.rss)]],
  ),
  ...(attackRows.length > 0
    ? [
        table(
          ['attack', 'designed outcome', 'rounds', 'what happened', ''],
          attackRows.map((row) => [row.shape, row.expected, row.runs, Object.entries(row.outcome).map(([what, n]) => `${what}: ${n}`).join(', '), row.ok ? 'as designed' : `NOT: ${row.failures.join('; ').replaceAll('|', '/')}`]),
        ),
      ]
    : []),
].join('\n\n')
const done = `${rounds} rounds in ${SECONDS} s after ${warmupRounds} in ${WARMUP_SECONDS} s of warm-up (${RATE > 0 ? `paced at ${RATE}/s` : 'back to back'}): ${counts.mailboxes} mailboxes, ${counts.messages} messages, ${counts.listeners} listeners, ${counts.workers} worker connections, ${counts.jobs} jobs, ${counts.a2a} A2A calls, ${counts.refusedWhileFull} sends or creates refused while an attack held the exchange full and tried again (idle mailboxes, sent-request counts and gravestones kept ${round1(RETENTION.gravestoneDays * 86400)} s${BACKEND === 'memory' ? `, newest ${RETENTION.finishedJobsKept} finished jobs kept` : ''})${ATTACKS ? `; attacks beside it, each lane a round at most every ${ATTACK_PERIOD_S} s: ${attacksOk ? 'every one refused as designed' : 'SOME NOT AS DESIGNED'}` : ''}`
console.log(`\nSoak (${BACKEND} backend): ${done}; ${within ? 'within' : 'OUTSIDE'} the bounds\n\n${markdown}\n`)
writeResult('soak', {
  seconds: SECONDS,
  rate: RATE,
  backend: BACKEND,
  retention: RETENTION,
  limits: ATTACKS ? LIMITS : null,
  rounds,
  counts,
  idle,
  start,
  middle: half,
  finish,
  peak,
  peakGrowthMib: peakGrowth,
  kibPerRound: perRound,
  secondHalfMib: secondHalfGrowth,
  floorGrowthMib: ATTACKS ? floorGrowth : null,
  bound: rssBound,
  peakBoundMib: BOUND.peakMib,
  fdBound: BOUND.fds,
  growthJudged,
  rssWithin,
  attacks: attackRows,
  attacksOk,
  rssOverTime: samples.map((sample) => ({ second: round1((sample.at - soakStarted) / 1000), rss: sample.rss })),
  within,
  markdown,
})
process.exit(within ? 0 : 1)
