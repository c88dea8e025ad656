/**
 * Soak: churns mailboxes, listeners, workers and A2A proxy calls against one
 * Switchboard process for SOAK_SECONDS (default 30), at SOAK_RATE rounds a
 * second (default 100; 0 runs them back to back), then compares its
 * resident memory and open file descriptors with those after a warm-up of
 * SOAK_WARMUP_SECONDS (default 10) at the same pace. The
 * fixed pace makes runs on fast and slow machines comparable: what a process
 * keeps in its steady state depends on the rate (records kept for a time, the
 * garbage between two collections). Resident memory is sampled every half
 * second and read as the median of the samples in the run's second quarter
 * and in its last quarter, so that one collection more or less does not move
 * the figure.
 * SOAK_BACKEND picks the backend (memory by default; sqlite uses a fresh
 * file under the temp directory, redis a fresh key prefix at the configured
 * redis_url, whose keys are deleted at the end).
 * Exits non-zero when growth passes the stated bound. Each round leaves
 * records behind by design (two gravestones, a finished job with its history,
 * an activity entry); the soak runs with short retention (gravestones kept
 * 8.6 s, and with memory the newest 1,000 finished jobs) so that what is kept
 * reaches its steady state within the run, and the bound is a fixed amount
 * for every backend. Connections and file descriptors must not grow at all.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestWorker } from '../test/modules/workers/worker'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { deleteKeys } from '../test/support/redis'
import { keepAlive, listen, request, rssMiB, startSwitchboard, table, writeResult } from './lib'

const SECONDS = Number(process.env.SOAK_SECONDS ?? 30)
const RATE = Number(process.env.SOAK_RATE ?? 100)
const WARMUP_SECONDS = Number(process.env.SOAK_WARMUP_SECONDS ?? 10)
const BACKEND = process.env.SOAK_BACKEND ?? 'memory'
const ADMIN = 'soak-admin-token'
/**
 * Growth allowed after warm-up, at the default pace: a fixed amount of RSS
 * over the whole run (the warm-up has brought the heap, the caches and the
 * kept records near their steady state), a smaller one from the second
 * quarter to the last (a leak keeps growing there; a steady state does not),
 * and no descriptor growth beyond noise.
 */
const BOUND = { mib: 32, secondHalfMib: 12, fds: 10 }
const rssBound = `≤ ${BOUND.mib} MiB, ≤ ${BOUND.secondHalfMib} MiB from the second quarter to the last`
/** Short retention, so that kept records turn over within the run. */
const RETENTION = { gravestoneDays: 0.0001, finishedJobsKept: 1000 }

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
writeFileSync(configFile, `gravestone_expiration_d = ${RETENTION.gravestoneDays}\n${BACKEND === 'memory' ? `[backend_options]\nfinished_jobs_kept = ${RETENTION.finishedJobsKept}\n` : ''}`)
const server = await startSwitchboard(['--config', configFile, '--admin-token', ADMIN, '--allow-private-agent-urls', '--backend', BACKEND, ...(backendFlags[BACKEND] ?? [])])

async function admin(path: string, body: unknown, token = ADMIN): Promise<Record<string, string>> {
  const response = await request(`${server.url}${path}`, 'POST', JSON.stringify(body), { authorization: `Bearer ${token}` })
  if (response.status >= 300) throw new Error(`${path}: ${response.status} ${response.text}`)
  return JSON.parse(response.text) as Record<string, string>
}
const parent = await admin('/workspaces', { name: 'soak' })
const caller = await admin('/workspaces', { name: 'caller', parent_id: parent.id })
const target = await admin('/workspaces', { name: 'target', parent_id: parent.id })
await admin('/registry/register', { id: target.id, url: `http://127.0.0.1:${agent.port}/`, agent_card: { name: 'soak' } }, target.auth_token)
const a2aBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text: 'hi' }] } } })

const counts = { mailboxes: 0, messages: 0, listeners: 0, workers: 0, jobs: 0, a2a: 0 }

/** One round of every kind of churn, each resource opened and closed again. */
async function churn(): Promise<void> {
  const [user, agentId] = [newUser(), newAgent()]
  await request(`${server.url}/mailbox`, 'POST', mailboxBody(user))
  await request(`${server.url}/mailbox`, 'POST', mailboxBody(agentId))
  counts.mailboxes += 2
  const inbox = await listen(`${server.url}/mailbox/listen`, listenBody(agentId))
  counts.listeners++
  for (let i = 0; i < 5; i++) {
    await request(`${server.url}/message`, 'PUT', sendBody(user, agentId, 'request', 1024))
    await inbox.next()
    counts.messages++
  }
  inbox.close()
  await request(`${server.url}/mailbox`, 'DELETE', mailboxBody(agentId))
  await request(`${server.url}/mailbox`, 'DELETE', mailboxBody(user))

  const worker = await TestWorker.connect(server.url, { agentName: 'soak', maxProcesses: 2, loadThreshold: 1 })
  counts.workers++
  const job = await request(`${server.url}/jobs`, 'POST', JSON.stringify({ agent_name: 'soak', room_id: 'soak-room' }))
  if (job.status !== 201) throw new Error(`job: ${job.status} ${job.text}`)
  worker.update((JSON.parse(job.text) as { id: string }).id, 'completed')
  counts.jobs++
  await worker.close()

  const call = await request(`${server.url}/workspaces/${target.id}/a2a`, 'POST', a2aBody, { authorization: `Bearer ${caller.auth_token}`, 'x-workspace-id': caller.id! })
  if (call.status !== 200) throw new Error(`a2a: ${call.status} ${call.text}`)
  counts.a2a++
}

/** Runs rounds at the pace until `until`, calling `afterRound` after each; returns how many ran. */
async function churnUntil(until: number, afterRound: (now: number) => void = () => {}): Promise<number> {
  const from = Date.now()
  let done = 0
  while (Date.now() < until) {
    await churn()
    done++
    afterRound(Date.now())
    if (RATE > 0) {
      const due = from + (done * 1000) / RATE
      if (due > Date.now()) await Bun.sleep(due - Date.now())
    }
  }
  return done
}

// Warm-up at the same pace: the heap, the caches and the records kept for a time grow to what this rate keeps.
const warmupRounds = await churnUntil(Date.now() + WARMUP_SECONDS * 1000)
await Bun.sleep(2000)
const start = { rss: rssMiB(server.pid), fds: openFds(server.pid) }
const began = Date.now()
/** RSS samples by the run's quarter they fall in (0–3), one every half second. */
const quarters: number[][] = [[], [], [], []]
let nextSample = began
let halfFds = start.fds
const rounds = await churnUntil(began + SECONDS * 1000, (now) => {
  if (now < nextSample) return
  const quarter = Math.min(3, Math.floor(((now - began) * 4) / (SECONDS * 1000)))
  quarters[quarter]!.push(rssMiB(server.pid))
  if (quarter === 1) halfFds = openFds(server.pid)
  nextSample = now + 500
})
await Bun.sleep(3000)
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? rssMiB(server.pid) : sorted[Math.floor(sorted.length / 2)]!
}
const half = { rss: median(quarters[1]!), fds: halfFds }
const finish = { rss: median(quarters[3]!), fds: openFds(server.pid) }
keepAlive.destroy()
await server.stop()
agent.stop(true)
rmSync(scratch, { recursive: true, force: true })
// The soaked server reads its Redis as any Switchboard does: the same URL finds its keys.
if (BACKEND === 'redis') await deleteKeys(process.env.SWITCHBOARD_REDIS_URL ?? 'redis://127.0.0.1:6379', redisPrefix)

const rssGrowth = Math.round((finish.rss - start.rss) * 10) / 10
const secondHalfGrowth = Math.round((finish.rss - half.rss) * 10) / 10
const fdGrowth = finish.fds - start.fds
const perRound = Math.round(((finish.rss - start.rss) * 1024 * 10) / Math.max(1, rounds)) / 10
const within = rssGrowth <= BOUND.mib && secondHalfGrowth <= BOUND.secondHalfMib && fdGrowth <= BOUND.fds
const markdown = table(
  ['measure', 'after warm-up', 'second quarter of the run', 'last quarter of the run', 'growth (second quarter → last)', 'bound'],
  [
    ['RSS', `${start.rss} MiB`, `${half.rss} MiB`, `${finish.rss} MiB`, `${rssGrowth} MiB (${secondHalfGrowth} MiB)`, rssBound],
    ['open file descriptors', start.fds, half.fds, finish.fds, `${fdGrowth} (${finish.fds - half.fds})`, `≤ ${BOUND.fds}`],
  ],
)
const done = `${rounds} rounds in ${SECONDS} s after ${warmupRounds} in ${WARMUP_SECONDS} s of warm-up (${RATE > 0 ? `paced at ${RATE}/s` : 'back to back'}): ${counts.mailboxes} mailboxes, ${counts.messages} messages, ${counts.listeners} listeners, ${counts.workers} worker connections, ${counts.jobs} jobs, ${counts.a2a} A2A calls (gravestones kept ${Math.round(RETENTION.gravestoneDays * 86400 * 10) / 10} s${BACKEND === 'memory' ? `, newest ${RETENTION.finishedJobsKept} finished jobs kept` : ''})`
console.log(`\nSoak (${BACKEND} backend): ${done}; ${within ? 'within' : 'OUTSIDE'} the bound\n\n${markdown}\n`)
writeResult('soak', { seconds: SECONDS, rate: RATE, backend: BACKEND, retention: RETENTION, rounds, counts, start, middle: half, finish, kibPerRound: perRound, secondHalfMib: secondHalfGrowth, bound: rssBound, fdBound: BOUND.fds, within, markdown })
process.exit(within ? 0 : 1)
