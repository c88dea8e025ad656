/**
 * Scale on one instance: 10,000 concurrent idle SSE listeners (one mailbox
 * each) and 1,000 connected workers — the server's resident memory, and the
 * latency of one message, and of one dispatch, among them.
 */
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { TestWorker } from '../test/modules/workers/worker'
import { keepAlive, listen, request, rssMiB, startSwitchboard, summarize, table, writeResult, type Listener } from './lib'

const LISTENERS = Number(process.env.BENCH_LISTENERS ?? 10_000)
const BATCH = 500
const WORKERS = Number(process.env.BENCH_WORKERS ?? 1000)

const server = await startSwitchboard(['--listen-timeout', '600', '--max-waiting-per-client', '0'])
const baseRss = rssMiB(server.pid)
const sender = newUser()
await request(`${server.url}/mailbox`, 'POST', mailboxBody(sender))
const agents = Array.from({ length: LISTENERS }, newAgent)
const listeners: Listener[] = []
const opening = performance.now()
for (let i = 0; i < agents.length; i += BATCH) {
  const batch = agents.slice(i, i + BATCH)
  await Promise.all(batch.map((agent) => request(`${server.url}/mailbox`, 'POST', mailboxBody(agent))))
  listeners.push(...(await Promise.all(batch.map((agent) => listen(`${server.url}/mailbox/listen`, listenBody(agent, 600))))))
}
const openSeconds = (performance.now() - opening) / 1000
await Bun.sleep(1000)
const loadedRss = rssMiB(server.pid)

const samples: number[] = []
for (let i = 0; i < 50; i++) {
  const index = Math.floor(Math.random() * LISTENERS)
  const started = performance.now()
  const event = listeners[index]!.next()
  await request(`${server.url}/message`, 'PUT', sendBody(sender, agents[index]!, 'request', 1024))
  await event
  samples.push(performance.now() - started)
}
const latency = summarize(samples)
for (const listener of listeners) listener.close()

// 1,000 workers of one agent name, each accepting and finishing at once.
const workers: TestWorker[] = []
for (let i = 0; i < WORKERS; i += 100) {
  workers.push(...(await Promise.all(Array.from({ length: Math.min(100, WORKERS - i) }, () => TestWorker.connect(server.url, { agentName: 'scale', maxProcesses: 4, loadThreshold: 1 })))))
}
const assigned = new Map<string, () => void>()
for (const worker of workers) {
  worker.ws.on('message', (raw) => {
    const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
    if (frame.type !== 'job_assignment' || !frame.job_id) return
    worker.update(frame.job_id, 'completed')
    assigned.get(frame.job_id)?.()
  })
}
await Bun.sleep(1000)
const workersRss = rssMiB(server.pid)
const dispatchSamples: number[] = []
for (let i = 0; i < 30; i++) {
  const started = performance.now()
  let arrived!: () => void
  const arrival = new Promise<void>((resolve) => (arrived = resolve))
  const response = await request(`${server.url}/jobs`, 'POST', JSON.stringify({ agent_name: 'scale', room_id: `room-${i}` }))
  if (response.status !== 201) throw new Error(`dispatch answered ${response.status}: ${response.text}`)
  const jobId = (JSON.parse(response.text) as { id: string }).id
  assigned.set(jobId, arrived)
  // The assignment frame can arrive before the HTTP answer: the job is then already assigned.
  if (!workers.some((worker) => worker.frames.some((frame) => frame.type === 'job_assignment' && frame.job_id === jobId))) await arrival
  dispatchSamples.push(performance.now() - started)
}
const dispatch = summarize(dispatchSamples)
for (const worker of workers) await worker.close()
keepAlive.destroy()
await server.stop()

const markdown = table(
  ['measure', 'value', 'target'],
  [
    ['idle listeners', LISTENERS, '10,000'],
    ['RSS before listeners', `${baseRss} MiB`, '—'],
    ['RSS with listeners', `${loadedRss} MiB`, '≤ 300 MB'],
    ['memory per listener', `${(((loadedRss - baseRss) * 1024) / LISTENERS).toFixed(1)} KiB`, '—'],
    ['one message among them, PUT → event (p50 / p99 of 50)', `${latency.p50} / ${latency.p99} ms`, '—'],
    ['time to open all listeners', `${openSeconds.toFixed(1)} s`, '—'],
    ['connected workers (listeners closed)', WORKERS, '1,000'],
    ['RSS with workers', `${workersRss} MiB`, '—'],
    ['one dispatch among them, POST /jobs → assigned (p50 / p99 of 30)', `${dispatch.p50} / ${dispatch.p99} ms`, '≤ 5 ms p50 (100 workers)'],
  ],
)
console.log(`\nScale on one instance (memory backend)\n\n${markdown}\n`)
writeResult('scale', { listeners: LISTENERS, baseRssMiB: baseRss, loadedRssMiB: loadedRss, latency, openSeconds, workers: WORKERS, workersRssMiB: workersRss, dispatch, markdown })
