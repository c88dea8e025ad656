/**
 * A2A proxy overhead: the same `message/send` sent straight to an agent,
 * through two bare forwarders (bench/baselines/forwarder.ts: what the extra
 * hop alone costs, served by node:http as Switchboard is, and by Bun.serve,
 * Bun's fastest server), and through Switchboard's proxy, in one run, at 1
 * and 64 concurrent callers with 1 KiB and 64 KiB messages; then
 * time-to-first-event of a `message/stream` direct and through the proxy.
 * The same rows again on A2A's HTTP+JSON binding (`POST /message:send`),
 * with its own bare node:http forwarder, so that each binding's proxied
 * throughput is given over the forwarder that carries the same request.
 * Every route is first called by 64 callers for a while, so that no row
 * (the first is at one caller) pays for the servers' JIT compiling the path.
 * The agent, the forwarders and Switchboard run as separate processes; the
 * callers run here. Over each measured run the CPU time of the callers (this
 * process), the agent and the process in the middle is read from /proc. Each
 * row gives the middle's (forwarder, proxy) and the agent's called direct per
 * call: their own cost, whatever share of the cores the callers took. At 64
 * callers a second table adds the three up, the CPU a call costs on the
 * whole machine: with everything sharing two cores, direct's total over a
 * route's total is about the throughput ratio that route can reach.
 *
 *   bun bench/a2a.ts            (writes bench/results/a2a.json)
 *   bun bench/a2a.ts --agent    (only the echo agent, for manual runs)
 */
import { BUN, load, processUsage, round, startChild, startSwitchboard, summarize, table, writeResult, type LoadResult } from './lib'

const RUN_MS = Number(process.env.A2A_BENCH_RUN_MS ?? 2000)
const WARMUP_MS = 400
/** Before any row, each route is called this long by 64 callers with each body: the servers' JIT has then compiled the call's path, and the first row measured (one caller) is not charged for it. */
const JIT_WARMUP_MS = 1500
const STREAM_SAMPLES = 40
const ADMIN = 'bench-admin-token'

/**
 * The echo agent: answers message/send with the text it got; message/stream
 * with an event now and one later; HTTP+JSON's `POST /message:send` with the
 * text it got, in that binding's shape.
 */
function runAgent(): void {
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      if (new URL(request.url).pathname === '/message:send') {
        const sent = (await request.json()) as { message: { parts: { text: string }[] } }
        return Response.json({ message: { messageId: crypto.randomUUID(), role: 'ROLE_AGENT', parts: [{ text: sent.message.parts[0]?.text ?? '' }] } })
      }
      const body = (await request.json()) as { id: unknown; method: string; params: { message: { parts: { text: string }[] } } }
      const text = body.params.message.parts[0]?.text ?? ''
      if (body.method === 'message/stream') {
        const encoder = new TextEncoder()
        const stream = new ReadableStream<Uint8Array>({
          async start(controller) {
            controller.enqueue(encoder.encode(`data: ${JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'status-update', final: false } })}\n\n`))
            await Bun.sleep(20)
            controller.enqueue(encoder.encode(`data: ${JSON.stringify({ jsonrpc: '2.0', id: body.id, result: { kind: 'status-update', final: true } })}\n\n`))
            controller.close()
          },
        })
        return new Response(stream, { headers: { 'content-type': 'text/event-stream' } })
      }
      return Response.json({ jsonrpc: '2.0', id: body.id, result: { kind: 'message', role: 'agent', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } })
    },
  })
  process.stdout.write(`agent listening on http://127.0.0.1:${server.port}/\n`)
}

/** CPU milliseconds so far of the callers (this process), the agent and the process in the middle (none when called direct). */
interface CpuReading {
  callers: number
  agent: number
  middle: number
}

/** CPU per call, in microseconds, of each process on the machine a call goes through, and their sum. */
interface CallCpu extends CpuReading {
  total: number
}

function cpuOf(middlePid: number, agentPid: number): CpuReading | null {
  const callers = processUsage(process.pid)
  const agent = processUsage(agentPid)
  const middle = middlePid === agentPid ? { cpuMs: 0 } : processUsage(middlePid)
  if (callers === null || agent === null || middle === null) return null
  return { callers: callers.cpuMs, agent: agent.cpuMs, middle: middle.cpuMs }
}

function perCall(before: CpuReading | null, after: CpuReading | null, calls: number): CallCpu | null {
  if (before === null || after === null || calls === 0) return null
  const us = (key: keyof CpuReading) => round(((after[key] - before[key]) * 1000) / calls, 1)
  const [callers, agent, middle] = [us('callers'), us('agent'), us('middle')]
  return { callers, agent, middle, total: round(callers + agent + middle, 1) }
}

const messageSend = (text: string, method = 'message/send') =>
  JSON.stringify({ jsonrpc: '2.0', id: crypto.randomUUID(), method, params: { message: { role: 'user', messageId: crypto.randomUUID(), parts: [{ kind: 'text', text }] } } })

/** HTTP+JSON's SendMessage body. */
const restSend = (text: string) => JSON.stringify({ message: { role: 'ROLE_USER', messageId: crypto.randomUUID(), parts: [{ text }] } })

async function admin(base: string, path: string, body: unknown, token = ADMIN): Promise<Record<string, string>> {
  const response = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`)
  return (await response.json()) as Record<string, string>
}

/** Milliseconds from sending a stream request to its first `data:` event. */
async function timeToFirstEvent(url: string, headers: Record<string, string>): Promise<number> {
  const started = performance.now()
  const response = await fetch(url, { method: 'POST', headers: { ...headers, 'content-type': 'application/json', accept: 'text/event-stream' }, body: messageSend('stream', 'message/stream') })
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  let first = Number.NaN
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
    if (Number.isNaN(first) && text.includes('data:')) first = performance.now() - started
  }
  return first
}

async function main(): Promise<void> {
  const agent = await startChild([BUN, 'bench/a2a.ts', '--agent'])
  const switchboard = await startSwitchboard(['--admin-token', ADMIN, '--allow-private-agent-urls'])
  const forwarder = await startChild([BUN, 'bench/baselines/forwarder.ts', agent.url])
  const bunForwarder = await startChild([BUN, 'bench/baselines/forwarder.ts', agent.url, '--bun-serve'])
  const restForwarder = await startChild([BUN, 'bench/baselines/forwarder.ts', `${agent.url}message:send`])
  try {
    const parent = await admin(switchboard.url, '/workspaces', { name: 'bench' })
    const caller = await admin(switchboard.url, '/workspaces', { name: 'caller', parent_id: parent.id })
    const target = await admin(switchboard.url, '/workspaces', { name: 'target', parent_id: parent.id })
    // JSON-RPC at the registered URL; HTTP+JSON at the same base, its operations' paths appended.
    const card = { name: 'echo', supportedInterfaces: [{ url: agent.url, protocolBinding: 'JSONRPC', protocolVersion: '1.0' }, { url: agent.url, protocolBinding: 'HTTP+JSON', protocolVersion: '1.0' }] }
    await admin(switchboard.url, '/registry/register', { id: target.id, url: agent.url, agent_card: card }, target.auth_token)
    const asCaller = { authorization: `Bearer ${caller.auth_token}`, 'x-workspace-id': caller.id! }
    type Route = { url: string; headers: Record<string, string>; pid: number }
    // `pid`: the process whose CPU per call is charged (the agent's own when called direct).
    // HTTP+JSON is measured at 1 KiB only, to keep the run within its time: the body's size costs both bindings alike.
    const bindings: { binding: string; body: (text: string) => string; sizes: number[]; routes: Record<string, Route> }[] = [
      {
        binding: 'JSON-RPC',
        body: messageSend,
        sizes: [1024, 65536],
        routes: {
          direct: { url: agent.url, headers: {}, pid: agent.pid },
          forwarder: { url: `${forwarder.url}/`, headers: {}, pid: forwarder.pid },
          bunForwarder: { url: `${bunForwarder.url}/`, headers: {}, pid: bunForwarder.pid },
          proxied: { url: `${switchboard.url}/workspaces/${target.id}/a2a`, headers: asCaller, pid: switchboard.pid },
        },
      },
      {
        binding: 'HTTP+JSON',
        body: restSend,
        sizes: [1024],
        routes: {
          direct: { url: `${agent.url}message:send`, headers: {}, pid: agent.pid },
          forwarder: { url: `${restForwarder.url}/message:send`, headers: {}, pid: restForwarder.pid },
          proxied: { url: `${switchboard.url}/workspaces/${target.id}/a2a/message:send`, headers: asCaller, pid: switchboard.pid },
        },
      },
    ]
    const routes = bindings[0]!.routes

    /** One call of `body` along `route`, which must answer 200. */
    const sender = (route: Route, body: string) => async () => {
      const response = await fetch(route.url, { method: 'POST', headers: { ...route.headers, 'content-type': 'application/json' }, body })
      if (response.status !== 200) throw new Error(`HTTP ${response.status}`)
      await response.arrayBuffer()
    }
    for (const { body, sizes, routes: each } of bindings) for (const route of Object.values(each)) for (const size of sizes) await load(64, JIT_WARMUP_MS / sizes.length, sender(route, body('x'.repeat(size))))

    const rows: Record<string, unknown>[] = []
    for (const { binding, body: bodyOf, sizes, routes: each } of bindings) {
      for (const size of sizes) {
        const body = bodyOf('x'.repeat(size))
        for (const concurrency of [1, 64]) {
          const measured: Record<string, LoadResult> = {}
          const shares: Record<string, CallCpu | null> = {}
          for (const [mode, route] of Object.entries(each)) {
            const send = sender(route, body)
            await load(concurrency, WARMUP_MS, send)
            const before = cpuOf(route.pid, agent.pid)
            const result = await load(concurrency, RUN_MS, send)
            measured[mode] = result
            shares[mode] = perCall(before, cpuOf(route.pid, agent.pid), result.requests)
          }
          const direct = measured.direct!
          const bare = measured.forwarder!
          const bunBare = measured.bunForwarder
          const proxied = measured.proxied!
          rows.push({
            binding,
            body: `${size / 1024} KiB`,
            concurrency,
            direct_rps: direct.perSecond,
            forwarder_rps: bare.perSecond,
            bun_forwarder_rps: bunBare?.perSecond ?? null,
            proxied_rps: proxied.perSecond,
            throughput_ratio: round(proxied.perSecond / direct.perSecond, 2),
            forwarder_ratio: round(bare.perSecond / direct.perSecond, 2),
            bun_forwarder_ratio: bunBare === undefined ? null : round(bunBare.perSecond / direct.perSecond, 2),
            of_forwarder: round(proxied.perSecond / bare.perSecond, 2),
            direct_p50_ms: direct.latency.p50,
            forwarder_p50_ms: bare.latency.p50,
            proxied_p50_ms: proxied.latency.p50,
            added_p50_ms: round(proxied.latency.p50 - direct.latency.p50),
            forwarder_added_p50_ms: round(bare.latency.p50 - direct.latency.p50),
            direct_p99_ms: direct.latency.p99,
            proxied_p99_ms: proxied.latency.p99,
            added_p99_ms: round(proxied.latency.p99 - direct.latency.p99),
            agent_cpu_us: shares.direct?.agent ?? null,
            forwarder_cpu_us: shares.forwarder?.middle ?? null,
            bun_forwarder_cpu_us: shares.bunForwarder?.middle ?? null,
            proxy_cpu_us: shares.proxied?.middle ?? null,
            machine_cpu_us: shares,
            errors: direct.errors + bare.errors + (bunBare?.errors ?? 0) + proxied.errors,
          })
        }
      }
    }

    const streaming: Record<string, unknown> = {}
    // The bare forwarders read a whole answer before relaying it, so they have no time to first event.
    for (const mode of ['direct', 'proxied'] as const) {
      const route = routes[mode]!
      const samples: number[] = []
      for (let i = 0; i < STREAM_SAMPLES; i++) samples.push(await timeToFirstEvent(route.url, route.headers))
      streaming[mode] = summarize(samples)
    }

    const markdown = table(
      [
        'binding',
        'body',
        'callers',
        'direct req/s',
        'bare forwarder, node:http: req/s (÷ direct)',
        'bare forwarder, Bun.serve: req/s (÷ direct)',
        'proxied req/s',
        'proxied ÷ direct',
        'proxied ÷ node:http forwarder',
        'p50 ms direct → proxied (added; node:http forwarder adds)',
        'p99 ms direct → proxied (added)',
        'CPU µs/call: agent, node:http forwarder, Bun.serve forwarder, proxy',
        'errors',
      ],
      rows.map((row) => [
        row.binding as string,
        row.body as string,
        row.concurrency as number,
        row.direct_rps as number,
        `${row.forwarder_rps} (${row.forwarder_ratio}×)`,
        row.bun_forwarder_rps === null ? '—' : `${row.bun_forwarder_rps} (${row.bun_forwarder_ratio}×)`,
        row.proxied_rps as number,
        `${row.throughput_ratio}×`,
        `${row.of_forwarder}×`,
        `${row.direct_p50_ms} → ${row.proxied_p50_ms} (+${row.added_p50_ms}; +${row.forwarder_added_p50_ms})`,
        `${row.direct_p99_ms} → ${row.proxied_p99_ms} (+${row.added_p99_ms})`,
        [row.agent_cpu_us, row.forwarder_cpu_us, row.bun_forwarder_cpu_us, row.proxy_cpu_us].map((value) => value ?? '—').join(', '),
        row.errors as number,
      ]),
    )
    // At saturation the callers, the agent and the process in the middle share the two cores: throughput is about
    // the cores over the CPU a call costs on the whole machine, so direct's total over a route's total is about its ratio.
    // Each route with the row field holding its measured req/s ÷ direct.
    const MODES = [
      ['direct', 'direct', null],
      ['forwarder', 'bare forwarder, node:http', 'forwarder_ratio'],
      ['bunForwarder', 'bare forwarder, Bun.serve', 'bun_forwarder_ratio'],
      ['proxied', 'proxy', 'throughput_ratio'],
    ] as const
    const cpuRows: (string | number)[][] = []
    for (const row of rows.filter((candidate) => candidate.concurrency === 64)) {
      const shares = row.machine_cpu_us as Record<string, CallCpu | null>
      const direct = shares.direct
      for (const [mode, label, ratio] of MODES) {
        const share = shares[mode]
        if (!share || !direct) continue
        cpuRows.push([
          row.binding as string,
          row.body as string,
          label,
          `${share.callers} + ${share.agent} + ${share.middle || '—'} = ${share.total}`,
          ratio === null ? '1×' : `${round(direct.total / share.total, 2)}×`,
          ratio === null ? '1×' : `${row[ratio]}×`,
        ])
      }
    }
    const cpuMarkdown = table(['binding', 'body (64 callers)', 'route', 'CPU µs per call on the machine: callers + agent + middle = total', "direct's total ÷ this total", 'measured req/s ÷ direct'], cpuRows)
    const first = streaming as Record<'direct' | 'proxied', { p50: number; p99: number }>
    const streamMarkdown = table(['message/stream', 'time to first event p50 ms', 'p99 ms'], [
      ['direct', first.direct.p50, first.direct.p99],
      ['through the proxy', first.proxied.p50, first.proxied.p99],
    ])
    console.log(`\nA2A message/send (JSON-RPC) and message:send (HTTP+JSON), direct vs through bare forwarders (node:http or Bun.serve + fetch, no checks) vs through the proxy (memory backend, ${RUN_MS / 1000} s per row; agentgateway publishes 0.31–0.33× at saturation)\n\n${markdown}\n\n${cpuMarkdown}\n\n${streamMarkdown}\n`)
    writeResult('a2a', { runMs: RUN_MS, backend: 'memory', send: rows, streamTimeToFirstEventMs: streaming, markdown: `${markdown}\n\n${cpuMarkdown}\n\n${streamMarkdown}` })
  } finally {
    await forwarder.stop()
    await bunForwarder.stop()
    await restForwarder.stop()
    await switchboard.stop()
    await agent.stop()
  }
}

if (process.argv.includes('--agent')) runAgent()
else await main()
