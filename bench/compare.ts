/**
 * Before and after: this checkout's Switchboard against the one at a git ref
 * (default: the commit before the one-pipeline change), both running side by
 * side, on the same requests in alternating turns. Each scenario takes PAIRS
 * turns of TURN_SECONDS per side, which side goes first alternating, and
 * reports the median ratio (after ÷ before) of requests per second and of the
 * server's CPU time per request (before's µs ÷ after's: above 1 means after is
 * cheaper), with their range. A turn of one side and then the other sees the
 * same machine, so other load on it moves both alike.
 *
 *   bun bench/compare.ts [ref] [route…]   (writes bench/results/compare.json)
 *
 * Routes given after the ref (parts of their names, e.g. `message`) limit the run to them. Both sides run on the
 * memory backend, or on the Redis at REDIS_URL with BENCH_BACKEND=redis.
 *
 * The ref is unpacked with `git archive` into a temporary folder; it shares
 * this checkout's node_modules when its package-lock.json is the same, else
 * gets its own `npm ci --offline` (from npm's cache).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TestWorker } from '../test/modules/workers/worker'
import { deleteKeys } from '../test/support/redis'
import { mailboxBody, newAgent, newUser, sendBody } from './academy'
import { BUN, ROOT, costPerRequest, keepAlive, load, request, startChild, table, writeResult, type ChildServer, type LoadResult, type ServerCost } from './lib'

const REF = process.argv[2] ?? 'e4dcee8'
const ONLY = process.argv.slice(3)
const PAIRS = Number(process.env.BENCH_PAIRS ?? 6)
const TURN_SECONDS = Number(process.env.BENCH_SECONDS ?? 1)
const CONCURRENCY = 32
const ADMIN = 'bench-admin-token'

/** Unpacks `ref` into a folder of its own with its dependencies; returns the folder. */
function checkout(ref: string, dir: string): string {
  const archive = spawnSync('bash', ['-c', `git -C "${ROOT}" archive --format=tar "${ref}" | tar -x -C "${dir}"`], { encoding: 'utf8' })
  if (archive.status !== 0) throw new Error(`git archive ${ref} failed: ${archive.stderr}`)
  const sameLock = readFileSync(join(dir, 'package-lock.json'), 'utf8') === readFileSync(join(ROOT, 'package-lock.json'), 'utf8')
  if (sameLock) symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  else {
    const installed = spawnSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: dir, encoding: 'utf8' })
    if (installed.status !== 0) throw new Error(`npm ci in ${ref} failed: ${installed.stderr}`)
  }
  return dir
}

/** The backend both sides run on: memory, or the Redis at REDIS_URL with `BENCH_BACKEND=redis` (each side under a key prefix of its own, deleted after its scenario). */
const BACKEND = process.env.BENCH_BACKEND === 'redis' ? 'redis' : 'memory'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/** The Redis key prefixes of the servers running now. */
const prefixes: string[] = []

/** Starts the Switchboard of `root` with the settings every scenario needs. */
const startAt = (root: string, config: string) => {
  let backend = ['--config', config]
  if (BACKEND === 'redis') {
    const prefix = `bench-compare-${crypto.randomUUID()}`
    prefixes.push(prefix)
    backend = ['--backend', 'redis', '--redis-url', REDIS_URL, '--redis-prefix', prefix]
  }
  return startChild([BUN, join(root, 'src/main.ts'), '--port', '0', '--log-level', 'error', '--admin-token', ADMIN, '--allow-private-agent-urls', '--worker-ping-s', '30', ...backend])
}

interface Scenario {
  name: string
  /** Prepares `server` and returns one request, which throws unless it got the answer it wants. */
  prepare(server: ChildServer): Promise<() => Promise<void>>
}

const expectStatus = async (sent: Promise<{ status: number; text: string }>, wanted: number[]) => {
  const { status, text } = await sent
  if (!wanted.includes(status)) throw new Error(`HTTP ${status}: ${text.slice(0, 200)}`)
  return text
}
const workers: TestWorker[] = []
/** The A2A agent both sides proxy to, started by the first scenario that needs it. */
let agent = null as ChildServer | null

const SCENARIOS: Scenario[] = [
  { name: 'GET /healthz', prepare: async (server) => () => expectStatus(request(`${server.url}/healthz`, 'GET'), [200]).then(() => {}) },
  {
    name: 'PUT /message 1 KB (Academy)',
    prepare: async (server) => {
      const [user, agent] = [newUser(), newAgent()]
      await expectStatus(request(`${server.url}/mailbox`, 'POST', mailboxBody(user), {}), [200])
      await expectStatus(request(`${server.url}/mailbox`, 'POST', mailboxBody(agent), {}), [200])
      const body = sendBody(user, agent, 'request', 1024)
      return () => expectStatus(request(`${server.url}/message`, 'PUT', body, {}), [200]).then(() => {})
    },
  },
  {
    name: 'POST /v2/agent/dispatch (VideoSDK), one worker',
    prepare: async (server) => {
      const worker = await TestWorker.connect(server.url, { agentName: 'compare', maxProcesses: 100_000, loadThreshold: 1 })
      worker.ws.on('message', (raw) => {
        const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
        if (frame.type === 'job_assignment' && frame.job_id) worker.update(frame.job_id, 'completed')
      })
      workers.push(worker)
      const body = JSON.stringify({ agentId: 'compare', meetingId: 'compare-room' })
      return () => expectStatus(request(`${server.url}/v2/agent/dispatch`, 'POST', body, { authorization: 'bench-token' }), [200]).then(() => {})
    },
  },
  {
    name: 'POST /workspaces/{id}/a2a (A2A JSON-RPC message/send, 1 KiB)',
    prepare: async (server) => {
      agent ??= await startChild([BUN, join(ROOT, 'bench/a2a.ts'), '--agent'])
      const create = async (body: Record<string, unknown>) => JSON.parse(await expectStatus(request(`${server.url}/workspaces`, 'POST', JSON.stringify(body), { authorization: `Bearer ${ADMIN}` }), [200, 201])) as { id: string; auth_token: string }
      const parent = await create({ name: 'compare' })
      const [caller, target] = [await create({ name: 'caller', parent_id: parent.id }), await create({ name: 'target', parent_id: parent.id })]
      const registration = JSON.stringify({ id: target.id, url: agent.url, agent_card: { name: 'echo', url: agent.url } })
      await expectStatus(request(`${server.url}/registry/register`, 'POST', registration, { authorization: `Bearer ${target.auth_token}` }), [200])
      const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { role: 'user', messageId: 'm-1', parts: [{ kind: 'text', text: 'x'.repeat(1024) }] } } })
      const headers = { authorization: `Bearer ${caller.auth_token}`, 'x-workspace-id': caller.id }
      return () => expectStatus(request(`${server.url}/workspaces/${target.id}/a2a`, 'POST', body, headers), [200]).then(() => {})
    },
  },
  {
    name: 'POST /registry/heartbeat',
    prepare: async (server) => {
      const created = JSON.parse(await expectStatus(request(`${server.url}/workspaces`, 'POST', JSON.stringify({ name: 'compare' }), { authorization: `Bearer ${ADMIN}` }), [200, 201])) as { id: string; auth_token: string }
      const body = JSON.stringify({ workspace_id: created.id, error_rate: 0, active_tasks: 1 })
      const headers = { authorization: `Bearer ${created.auth_token}`, 'x-workspace-id': created.id }
      return () => expectStatus(request(`${server.url}/registry/heartbeat`, 'POST', body, headers), [200]).then(() => {})
    },
  },
]

interface Turn {
  result: LoadResult
  cost: ServerCost
}

const median = (values: number[]) => {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}
const spread = (values: number[]) => (values.length === 0 ? null : { median: median(values), min: Math.min(...values), max: Math.max(...values) })
const ofSpread = (figure: ReturnType<typeof spread>) => (figure === null ? '—' : `${figure.median.toFixed(2)} (${figure.min.toFixed(2)}–${figure.max.toFixed(2)})`)

const dir = mkdtempSync(join(tmpdir(), 'switchboard-compare-'))
const before = checkout(REF, mkdtempSync(join(dir, 'before-')))
const config = join(dir, 'switchboard.toml')
// PUT /message's mailbox is never drained: the memory backend's bound on queued bytes is raised for the run.
writeFileSync(config, '[backend_options]\nmax_queued_mb = 16384\n')
const described = spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%h %s', REF], { encoding: 'utf8' }).stdout.trim()
const head = spawnSync('git', ['-C', ROOT, 'log', '-1', '--format=%h', 'HEAD'], { encoding: 'utf8' }).stdout.trim()

const rows: { scenario: string; before: Turn[]; after: Turn[]; byRequests: ReturnType<typeof spread>; byCpu: ReturnType<typeof spread> }[] = []
try {
  for (const scenario of SCENARIOS.filter(({ name }) => ONLY.length === 0 || ONLY.some((part) => name.includes(part)))) {
    const servers = { before: await startAt(before, config), after: await startAt(ROOT, config) }
    try {
      const send = { before: await scenario.prepare(servers.before), after: await scenario.prepare(servers.after) }
      const turn = (side: 'before' | 'after', seconds: number) => costPerRequest(servers[side].pid, () => load(CONCURRENCY, seconds * 1000, send[side]), (result) => result.requests)
      await turn('before', TURN_SECONDS)
      await turn('after', TURN_SECONDS)
      const turns: { before: Turn[]; after: Turn[] } = { before: [], after: [] }
      for (let pair = 0; pair < PAIRS; pair++) {
        const order = pair % 2 === 0 ? (['before', 'after'] as const) : (['after', 'before'] as const)
        for (const side of order) turns[side].push(await turn(side, TURN_SECONDS))
      }
      const failed = [...turns.before, ...turns.after].reduce((sum, { result }) => sum + result.errors, 0)
      if (failed > 0) throw new Error(`${scenario.name}: ${failed} requests failed`)
      const byRequests = turns.after.map((after, index) => after.result.perSecond / turns.before[index]!.result.perSecond)
      const byCpu = turns.after.flatMap((after, index) => {
        const [old, now] = [turns.before[index]!.cost.cpuUsPerRequest, after.cost.cpuUsPerRequest]
        return old === null || now === null || now === 0 ? [] : [old / now]
      })
      rows.push({ scenario: scenario.name, ...turns, byRequests: spread(byRequests), byCpu: spread(byCpu) })
    } finally {
      for (const worker of workers.splice(0)) await worker.kill()
      await servers.before.stop()
      await servers.after.stop()
      for (const prefix of prefixes.splice(0)) await deleteKeys(REDIS_URL, prefix)
    }
  }
} finally {
  await agent?.stop()
  keepAlive.destroy()
  rmSync(dir, { recursive: true, force: true })
}

const medianOf = (turns: Turn[], figure: (turn: Turn) => number | null) => {
  const values = turns.map(figure).filter((value): value is number => value !== null)
  return values.length === 0 ? '—' : Math.round(median(values) * 10) / 10
}
const markdown = table(
  ['route', 'before req/s', 'after req/s', 'after ÷ before by req/s', 'before CPU µs/req', 'after CPU µs/req', 'before ÷ after by CPU'],
  rows.map((row) => [
    row.scenario,
    medianOf(row.before, (turn) => turn.result.perSecond),
    medianOf(row.after, (turn) => turn.result.perSecond),
    ofSpread(row.byRequests),
    medianOf(row.before, (turn) => turn.cost.cpuUsPerRequest),
    medianOf(row.after, (turn) => turn.cost.cpuUsPerRequest),
    ofSpread(row.byCpu),
  ]),
)
console.log(`\nBefore: ${described}; after: ${head} (this checkout). ${PAIRS} alternating pairs of ${TURN_SECONDS} s turns per route, ${CONCURRENCY} keep-alive callers, ${BACKEND === 'redis' ? `Redis at ${REDIS_URL}` : 'memory'} backend; medians with their range\n\n${markdown}\n`)
writeResult('compare', { ref: REF, backend: BACKEND, before: described, after: head, pairs: PAIRS, turnSeconds: TURN_SECONDS, concurrency: CONCURRENCY, rows, markdown })
