/**
 * Scale on one instance: 10,000 concurrent idle SSE listeners (one mailbox
 * each) — the server's resident memory, and the latency of one message
 * delivered among them.
 */
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { keepAlive, listen, request, rssMiB, startSwitchboard, summarize, table, writeResult, type Listener } from './lib'

const LISTENERS = Number(process.env.BENCH_LISTENERS ?? 10_000)
const BATCH = 500

const server = await startSwitchboard(['--listen-timeout', '600'])
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
  ],
)
console.log(`\nScale: idle SSE listeners on one instance (memory backend)\n\n${markdown}\n`)
writeResult('scale', { listeners: LISTENERS, baseRssMiB: baseRss, loadedRssMiB: loadedRss, latency, openSeconds, markdown })
