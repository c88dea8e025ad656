/** Shared pieces of the benchmarks: processes, load loops, percentiles, results. */
import http from 'node:http'
import Redis from 'ioredis'
import os from 'node:os'
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { deleteKeys } from '../test/support/redis'

export const ROOT = resolve(import.meta.dir, '..')
/** Where a run writes: RESULTS.md and results/ (bench/ unless BENCH_OUT names another folder). */
export const OUT = process.env.BENCH_OUT ? resolve(process.env.BENCH_OUT) : resolve(ROOT, 'bench')
export const RESULTS = resolve(OUT, 'results')
export const BUN = process.execPath

export interface Summary {
  count: number
  p50: number
  p99: number
  mean: number
}

/** p50/p99/mean of latencies in milliseconds. */
export function summarize(latencies: number[]): Summary {
  const sorted = [...latencies].sort((a, b) => a - b)
  const at = (p: number) => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!)
  const mean = sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, sorted.length)
  return { count: sorted.length, p50: round(at(0.5)), p99: round(at(0.99)), mean: round(mean) }
}

export const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits

export function machine() {
  return { cores: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', memoryGiB: round(os.totalmem() / 2 ** 30, 1), bun: Bun.version, platform: `${os.platform()} ${os.arch()}` }
}

/** Resident memory of a process in MiB (Linux). */
export function rssMiB(pid: number): number {
  return rssParts(pid).total
}

/**
 * Resident memory in MiB, whole and split: `anonymous` is the process's own
 * (heap, stacks), `file` the pages of files it maps, the executable's own
 * code and embedded data among them (clean pages the kernel can drop and
 * reread, shared by every process running the same binary).
 */
export function rssParts(pid: number): { total: number; anonymous: number; file: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) => {
    const match = new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)
    return match ? round(Number(match[1]) / 1024, 1) : Number.NaN
  }
  return { total: field('VmRSS'), anonymous: field('RssAnon'), file: field('RssFile') }
}

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on Linux unless getconf says otherwise). */
const TICKS_PER_SECOND = (() => {
  const answer = Bun.which('getconf') ? Bun.spawnSync(['getconf', 'CLK_TCK']).stdout.toString().trim() : ''
  return Number(answer) > 0 ? Number(answer) : 100
})()

/** CPU time (user + system) a process has used so far and its minor page faults (Linux /proc); null elsewhere. */
export function processUsage(pid: number): { cpuMs: number; minorFaults: number } | null {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // Fields after the parenthesised command name: state is the first, minflt the 8th, utime and stime the 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { cpuMs: ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND, minorFaults: Number(fields[7]) }
}

/** What a server process spent per request over a measured run: CPU microseconds and minor page faults (null where /proc is missing). */
export interface ServerCost {
  cpuUsPerRequest: number | null
  faultsPerRequest: number | null
}

/** Runs `work` (which reports how many requests it made) and charges the server process's CPU time and page faults to those requests. */
export async function costPerRequest<T>(pid: number, work: () => Promise<T>, requestsOf: (result: T) => number): Promise<{ result: T; cost: ServerCost }> {
  const before = processUsage(pid)
  const result = await work()
  const after = processUsage(pid)
  const requests = requestsOf(result)
  if (before === null || after === null || requests === 0) return { result, cost: { cpuUsPerRequest: null, faultsPerRequest: null } }
  return {
    result,
    cost: { cpuUsPerRequest: round(((after.cpuMs - before.cpuMs) * 1000) / requests, 1), faultsPerRequest: round((after.minorFaults - before.minorFaults) / requests, 2) },
  }
}

export interface ChildServer {
  url: string
  pid: number
  stop(): Promise<void>
}

/** Starts a process that prints `listening on <url>` and resolves once it does (within `startupMs`). */
export async function startChild(command: string[], env: Record<string, string> = {}, startupMs = 20_000): Promise<ChildServer> {
  const child = Bun.spawn(command, { cwd: ROOT, env: { ...process.env, ...env }, stdout: 'pipe', stderr: 'inherit' })
  const reader = (child.stdout as ReadableStream<Uint8Array>).getReader()
  let text = ''
  const deadline = Date.now() + startupMs
  while (!/listening on (\S+)/.test(text)) {
    if (Date.now() > deadline) throw new Error(`no startup line from ${command.join(' ')}: ${text}`)
    const { value, done } = await reader.read()
    if (done) throw new Error(`${command.join(' ')} exited: ${text}`)
    text += new TextDecoder().decode(value)
  }
  void (async () => {
    for (;;) if ((await reader.read()).done) break
  })()
  return {
    url: /listening on (\S+)/.exec(text)![1]!,
    pid: child.pid,
    async stop() {
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
      await child.exited
      clearTimeout(timer)
    },
  }
}

/** The Redis the Redis rows use. */
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Whether a Redis answers at REDIS_URL (the Redis rows are skipped, with the reason printed, when none does). */
export async function redisAvailable(): Promise<boolean> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

export type BenchBackend = 'memory' | 'sqlite' | 'redis'

/** A fresh store for one Switchboard of a benchmark: its flags, and `remove`, which deletes what it wrote. */
export interface BenchStore {
  readonly flags: string[]
  remove(): Promise<void>
}

/** A fresh store for `backend`: a new SQLite file in a folder of its own, or a new key prefix at REDIS_URL, whose keys `remove` deletes. */
export function benchStore(backend: BenchBackend): BenchStore {
  if (backend === 'sqlite') {
    const dir = mkdtempSync(join(os.tmpdir(), 'switchboard-bench-'))
    return { flags: ['--backend', 'sqlite', '--db', join(dir, 'bench.db')], remove: async () => rmSync(dir, { recursive: true, force: true }) }
  }
  if (backend === 'redis') {
    const prefix = `bench:${crypto.randomUUID()}`
    return { flags: ['--backend', 'redis', '--redis-url', REDIS_URL, '--redis-prefix', prefix], remove: async () => void (await deleteKeys(REDIS_URL, prefix)) }
  }
  return { flags: [], remove: async () => {} }
}

/** Starts Switchboard from source with the given flags. */
export function startSwitchboard(flags: string[] = [], env: Record<string, string> = {}): Promise<ChildServer> {
  return startChild([BUN, 'src/main.ts', '--port', '0', '--log-level', 'error', ...flags], env)
}

export interface LoadResult {
  requests: number
  errors: number
  perSecond: number
  latency: Summary
}

/** Runs `operation` from `concurrency` loops for `durationMs`; each operation's time is one sample. */
export async function load(concurrency: number, durationMs: number, operation: (worker: number) => Promise<void>): Promise<LoadResult> {
  const latencies: number[] = []
  let errors = 0
  const started = performance.now()
  const end = started + durationMs
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < end) {
        const t0 = performance.now()
        try {
          await operation(worker)
          latencies.push(performance.now() - t0)
        } catch {
          errors++
        }
      }
    }),
  )
  const elapsed = (performance.now() - started) / 1000
  return { requests: latencies.length, errors, perSecond: Math.round(latencies.length / elapsed), latency: summarize(latencies) }
}

export const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1024 })

/**
 * One request over node:http with keep-alive (any method may carry a body, as
 * Academy's client sends); `localAddress` sends it from that loopback address,
 * so that a server counts it against that address's rate-limit bucket.
 */
export function request(url: string, method: string, body?: string, headers: Record<string, string> = {}, localAddress?: string, retried = false): Promise<{ status: number; text: string }> {
  return new Promise((resolvePromise, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(body)
    const req = http.request(url, { method, agent: keepAlive, ...(localAddress ? { localAddress } : {}), headers: { ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', (error: NodeJS.ErrnoException) => {
      // A kept-alive socket the server closed just as it was reused: the request never reached it, so it is sent
      // again once, on a new socket (as Node's documentation advises for reused sockets).
      if (!retried && req.reusedSocket && error.code === 'ECONNRESET') resolvePromise(request(url, method, body, headers, localAddress, true))
      else reject(error)
    })
    req.end(payload)
  })
}

/** An SSE listener whose events are taken one at a time with `next()`. */
export interface Listener {
  next(): Promise<string>
  close(): void
}

export function listen(url: string, body: string, localAddress?: string): Promise<Listener> {
  return new Promise((resolvePromise, reject) => {
    const payload = Buffer.from(body)
    const req = http.request(url, { method: 'GET', ...(localAddress ? { localAddress } : {}), headers: { accept: 'text/event-stream', 'content-type': 'application/json', 'content-length': String(payload.length) } })
    req.on('error', reject)
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        reject(new Error(`listen answered ${res.statusCode}`))
        res.resume()
        return
      }
      res.setEncoding('utf8')
      const events: string[] = []
      const waiting: ((event: string) => void)[] = []
      let buffer = ''
      res.on('data', (chunk: string) => {
        buffer += chunk
        let index: number
        while ((index = buffer.indexOf('\r\n\r\n')) !== -1) {
          const block = buffer.slice(0, index)
          buffer = buffer.slice(index + 4)
          // An event is its `id:` line (listen streams number their events) and its `data:` lines.
          const data = block.split('\r\n').filter((line) => line.startsWith('data: '))
          if (data.length === 0) continue
          const event = data.map((line) => line.slice(6)).join('\n')
          const waiter = waiting.shift()
          if (waiter) waiter(event)
          else events.push(event)
        }
      })
      res.on('error', () => {})
      resolvePromise({
        next: () => (events.length > 0 ? Promise.resolve(events.shift()!) : new Promise((done) => waiting.push(done))),
        close: () => req.destroy(),
      })
    })
    req.end(payload)
  })
}

/** Writes one benchmark's figures to bench/results/<name>.json. */
export function writeResult(name: string, data: unknown): void {
  mkdirSync(RESULTS, { recursive: true })
  writeFileSync(resolve(RESULTS, `${name}.json`), JSON.stringify({ name, at: new Date().toISOString(), machine: machine(), ...(data as object) }, null, 2) + '\n')
}

/** A Markdown table from rows of cells. */
export function table(header: string[], rows: (string | number)[][]): string {
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((row) => `| ${row.join(' | ')} |`)].join('\n')
}

/** Whether wrk (Debian package `wrk`) is on PATH: the load generator for throughput figures. */
export const hasWrk = Bun.which('wrk') !== null

const toMs = (value: string, unit: string) => Number(value) * (unit === 'us' ? 0.001 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 1)

/** Runs wrk against `url` (method and body via a generated Lua script); returns req/s and latency percentiles. */
export async function wrk(url: string, options: { method?: string; body?: string; connections: number; seconds: number; threads?: number }): Promise<LoadResult> {
  // wrk takes whole seconds only: it answers anything else with its usage text and sends nothing.
  if (!Number.isInteger(options.seconds) || options.seconds < 1) throw new Error(`wrk runs for whole seconds only, not ${options.seconds} s (BENCH_SECONDS)`)
  const script = `${RESULTS}/.wrk-${process.pid}.lua`
  mkdirSync(RESULTS, { recursive: true })
  writeFileSync(script, `wrk.method = ${JSON.stringify(options.method ?? 'GET')}\nwrk.headers["Content-Type"] = "application/json"\n${options.body === undefined ? '' : `wrk.body = ${luaString(options.body)}\n`}`)
  const child = Bun.spawn(['wrk', '-t', String(options.threads ?? 1), '-c', String(options.connections), '-d', `${options.seconds}s`, '--latency', '-s', script, url], { stdout: 'pipe', stderr: 'pipe' })
  const [output, complaint, code] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited])
  const { unlinkSync } = await import('node:fs')
  unlinkSync(script)
  if (code !== 0 || !/\d+ requests in/.test(output)) throw new Error(`wrk failed (exit ${code}): ${(complaint || output).trim().split('\n')[0]}`)
  const perSecond = Number(/Requests\/sec:\s+([\d.]+)/.exec(output)?.[1] ?? Number.NaN)
  const requests = Number(/(\d+) requests in/.exec(output)?.[1] ?? 0)
  const errors = Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? 0) + [...output.matchAll(/(connect|read|write|timeout) (\d+)/g)].reduce((sum, match) => sum + Number(match[2]), 0)
  const percentile = (p: string) => {
    const match = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(output)
    return match ? round(toMs(match[1]!, match[2]!)) : Number.NaN
  }
  return { requests, errors, perSecond: Math.round(perSecond), latency: { count: requests, p50: percentile('50'), p99: percentile('99'), mean: Number.NaN } }
}

/** A Lua long string literal that holds `text` exactly. */
function luaString(text: string): string {
  let level = ''
  while (text.includes(`]${level}]`)) level += '='
  return `[${level}[${text}]${level}]`
}
