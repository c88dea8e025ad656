/**
 * The abuse of issue 30, run by the soak beside its churn against the same
 * Switchboard process, each shape over and over: pending requests with
 * 100 KiB names taken at once, CJK text up to the exchange's byte bound, a
 * listener that stalls and then resets, jobs with oversized and with large
 * metadata (a worker of the soak completes them), an A2A agent answering
 * 400 MiB (declared, in pieces, as one stream event) and a gzip bomb, worker
 * sockets that never register, bodies dribbled a byte at a time, and
 * WebSocket upgrades past the rate limit. Each shape checks that it was
 * refused (or, for the listener, recovered) as designed, and records a row.
 *
 * The soak's own clients send from 250 loopback addresses in turn (every
 * one far under the rate limit, as many clients would be) and the upgrade
 * flood from one more, 127.0.0.2, so that the flood alone passes its limit.
 */
import http from 'node:http'
import net from 'node:net'
import { randomUUID } from 'node:crypto'
import { TestWorker } from '../test/modules/workers/worker'
import { readEvents, stallingListener } from '../test/support/http'
import { gzipBomb, messageSend, startPlainAgent, type PlainAgent } from '../test/modules/agents/support'
import { listenBody, mailboxBody, newAgent, newUser, sendBody } from './academy'
import { request } from './lib'

const KIB = 1024
const MIB = 1024 * 1024

/** The bounds the soaked process runs with, small enough for each shape to reach its bound within one round of the attacks. */
export const LIMITS = {
  /** Memory backend: queued messages, pending requests and mailboxes together, MiB. */
  maxQueuedMb: 8,
  /** Finished jobs: MiB on the memory backend; on the others, this many jobs of at most max_field_kb. */
  finishedJobsMb: 8,
  maxFieldKb: 1024,
  a2aResponseLimitKb: 4096,
  registerTimeoutS: 1,
  bodyTimeoutS: 1,
  ratePerS: 50,
  rateBurst: 50,
}

/**
 * MiB that one round of every lane sends at most: the exchange filled twice
 * (names, CJK) and the stalled listener's messages, the oversized and the
 * large jobs and the listing of what is kept, four A2A answers read up to
 * their limit.
 */
export const ROUND_MIB = 2 * LIMITS.maxQueuedMb + 1 + 8 + ((LIMITS.finishedJobsMb + 4) * LIMITS.maxFieldKb) / 1024 + LIMITS.finishedJobsMb + (4 * LIMITS.a2aResponseLimitKb) / 1024

/** Settings for the soaked process's config file: top-level lines and [backend_options] lines. */
export function attackSettings(backend: string): { top: string[]; backend: string[] } {
  return {
    top: [
      `max_field_kb = ${LIMITS.maxFieldKb}`,
      `a2a_response_limit_kb = ${LIMITS.a2aResponseLimitKb}`,
      `worker_register_timeout_s = ${LIMITS.registerTimeoutS}`,
      `request_body_timeout_s = ${LIMITS.bodyTimeoutS}`,
      `rate_limit_per_s = ${LIMITS.ratePerS}`,
      `rate_limit_burst = ${LIMITS.rateBurst}`,
    ],
    backend: backend === 'memory' ? [`max_queued_mb = ${LIMITS.maxQueuedMb}`, `finished_jobs_max_mb = ${LIMITS.finishedJobsMb}`] : [`finished_jobs_kept = ${LIMITS.finishedJobsMb}`],
  }
}

/** Loopback addresses the soak's clients take in turn (250 of them: at 2,500 requests a second, 10 a second each). */
const SOURCES = Array.from({ length: 250 }, (_, i) => `127.0.1.${i + 1}`)
let turn = 0
/** Opens a kept-alive connection from every source (`/healthz` is never rate limited), so that descriptors are counted from a full pool. */
export async function openSources(url: string): Promise<void> {
  await Promise.all(SOURCES.map((source) => request(`${url}/healthz`, 'GET', undefined, {}, source)))
}
export const nextSource = (): string => SOURCES[turn++ % SOURCES.length]!
/** Where the upgrade flood comes from: a bucket of its own. */
const FLOOD_SOURCE = '127.0.0.2'

/** One attack shape's results over the soak. */
export interface AttackRow {
  shape: string
  /** What the design promises for it. */
  expected: string
  runs: number
  /** What happened, summed over the runs. */
  outcome: Record<string, number>
  /** Runs that did not go as designed (the first few, each saying why). */
  failures: string[]
  ok: boolean
}

class Shape {
  runs = 0
  readonly outcome: Record<string, number> = {}
  readonly failures: string[] = []
  private failed = 0

  constructor(
    readonly shape: string,
    readonly expected: string,
  ) {}

  count(what: string, by = 1): void {
    this.outcome[what] = (this.outcome[what] ?? 0) + by
  }

  /** Runs one attack: a thrown error or a returned complaint is a failure. */
  async run(attack: () => Promise<string | null>): Promise<void> {
    let complaint: string | null
    try {
      complaint = await attack()
    } catch (error) {
      complaint = `threw ${(error as Error).message}`
    }
    this.runs++
    if (complaint === null) return
    this.failed++
    if (this.failures.length < 5) this.failures.push(complaint.slice(0, 300))
  }

  row(): AttackRow {
    return { shape: this.shape, expected: this.expected, runs: this.runs, outcome: this.outcome, failures: this.failures, ok: this.runs > 0 && this.failed === 0 }
  }
}

interface Target {
  url: string
  backend: string
  /** The workspace that calls, and the one whose agent the attacks register. */
  caller: { id: string; token: string }
  registerAgent(url: string): Promise<{ id: string }>
}

/** Starts every lane of attacks; `stop` lets each finish its round (every lane runs at least one) and returns the rows. */
export async function startAttacks(target: Target, periodMs: number): Promise<{ stop(): Promise<AttackRow[]>; close(): Promise<void> }> {
  const { url } = target
  const call = (path: string, method: string, body?: string, headers: Record<string, string> = {}) => request(`${url}${path}`, method, body, headers, nextSource())
  const memory = target.backend === 'memory'

  // A bomb is made once, before the soak starts: 300 MiB of JSON in about 300 KiB.
  await gzipBomb(300 * MIB)
  const agent: PlainAgent = await startPlainAgent()
  const attacked = await target.registerAgent(agent.url)
  const jobWorker = await TestWorker.connect(url, { agentName: 'soak-metadata', maxProcesses: 10_000, loadThreshold: 1, localAddress: nextSource() })
  const completed = new Map<string, () => void>()
  jobWorker.ws.on('message', (raw) => {
    const frame = JSON.parse(raw.toString()) as { type: string; job_id?: string }
    if (frame.type !== 'job_assignment' || !frame.job_id) return
    jobWorker.update(frame.job_id, 'completed')
    completed.get(frame.job_id)?.()
  })

  const shapes = {
    pending: new Shape('pending requests, 100 KiB names, each taken at once', memory ? `507 once max_queued_mb (${LIMITS.maxQueuedMb} MiB) is reached, never more held` : 'held by the store'),
    cjk: new Shape('CJK text (3 bytes a character) up to the queue bound', memory ? `507 once ${LIMITS.maxQueuedMb} MiB of UTF-8 is queued, never more` : 'held by the store'),
    stalled: new Shape('listener stalls with ~1,000 events unread, resets, reconnects with Last-Event-ID', 'every message delivered, in order'),
    bigField: new Shape('job with 8 MiB metadata', `413 naming metadata (max_field_kb ${LIMITS.maxFieldKb})`),
    finished: new Shape('jobs with ~1 MiB metadata, completed by a worker', memory ? `GET /jobs ≤ finished_jobs_max_mb (${LIMITS.finishedJobsMb} MiB) + 2 MiB` : `GET /jobs ≤ finished_jobs_kept (${LIMITS.finishedJobsMb}) × max_field_kb + 2 MiB`),
    a2a: new Shape('A2A answers of 400 MiB (declared, in pieces), a gzip bomb (300 MiB in ~300 KiB)', `502 naming a2a_response_limit_kb (${LIMITS.a2aResponseLimitKb} KiB) or the encoding`),
    event: new Shape('A2A stream with one 400 MiB event', 'stream ends with an error event, ≤ the limit relayed'),
    unregistered: new Shape('worker sockets that never register (20 a round)', `refused register reply and close 1008 within worker_register_timeout_s (${LIMITS.registerTimeoutS} s) + 2 s`),
    dribble: new Shape('request bodies dribbled a byte every 200 ms (5 a round)', `408 and closed within request_body_timeout_s (${LIMITS.bodyTimeoutS} s) + 2 s`),
    flood: new Shape('150 /agent upgrades at once from one address', `past rate_limit_burst (${LIMITS.rateBurst}) + rate_limit_per_s (${LIMITS.ratePerS}) × the flood's time: 429 with Retry-After, no handshake`),
  }

  /** Sends requests with 100 KiB names to one mailbox and takes each at once, until refused; then terminates it. */
  const pendingRequests = async (): Promise<string | null> => {
    const dest = newAgent()
    const created = await call('/mailbox', 'POST', mailboxBody(dest))
    if (created.status !== 200) return `creating the mailbox answered ${created.status}`
    const recordBytes = 2 * 100 * KIB
    const cap = Math.ceil((LIMITS.maxQueuedMb * MIB) / recordBytes) + (memory ? 20 : 0)
    let accepted = 0
    let refusal: string | null = null
    let complaint: string | null = null
    for (let i = 0; i < cap && refusal === null && complaint === null; i++) {
      const name = `${i}:`.padEnd(100 * KIB, 'n')
      const sent = await call('/message', 'PUT', sendBody({ uid: randomUUID(), name, role: 'agent' }, { ...dest, name }, 'request', 0))
      if (sent.status === 507) refusal = sent.text
      else if (sent.status !== 200) complaint = `a send answered ${sent.status}: ${sent.text.slice(0, 120)}`
      else {
        accepted++
        const taken = await call('/message', 'GET', listenBody(dest, 1))
        if (taken.status !== 200) complaint = `taking answered ${taken.status}`
      }
    }
    await call('/mailbox', 'DELETE', mailboxBody(dest))
    shapes.pending.count('accepted', accepted)
    if (refusal !== null) shapes.pending.count('refused (507)')
    if (complaint !== null) return complaint
    if (!memory) return accepted === cap ? null : `${accepted} of ${cap} accepted`
    if (refusal === null) return `${accepted} requests (${((accepted * recordBytes) / MIB).toFixed(1)} MiB of names) held without a refusal`
    if (!refusal.includes('Exchange is full')) return `the 507 said: ${refusal.slice(0, 120)}`
    return accepted * recordBytes <= LIMITS.maxQueuedMb * MIB ? null : `${accepted} requests hold ${((accepted * recordBytes) / MIB).toFixed(1)} MiB of names, past the bound`
  }

  /** Queues CJK text in one mailbox until refused, counting its UTF-8 bytes; then terminates it. */
  const cjkText = async (): Promise<string | null> => {
    const [src, dest] = [newUser(), newAgent()]
    for (const id of [src, dest]) {
      const created = await call('/mailbox', 'POST', mailboxBody(id))
      if (created.status !== 200) return `creating a mailbox answered ${created.status}`
    }
    // 80,000 characters, 240,000 bytes of UTF-8.
    const text = '漢字'.repeat(40_000)
    const cap = Math.ceil((LIMITS.maxQueuedMb * MIB) / (text.length * 3)) + (memory ? 10 : 0)
    let bytes = 0
    let accepted = 0
    let refusal: string | null = null
    let complaint: string | null = null
    for (let i = 0; i < cap && refusal === null && complaint === null; i++) {
      const message = JSON.stringify({ header: { src, dest, tag: randomUUID(), label: null, kind: 'response', protocol_version: '1' }, body: { result: text, kind: 'action-response' } })
      const sent = await call('/message', 'PUT', JSON.stringify({ message }))
      if (sent.status === 507) refusal = sent.text
      else if (sent.status !== 200) complaint = `a send answered ${sent.status}: ${sent.text.slice(0, 120)}`
      else {
        accepted++
        bytes += Buffer.byteLength(message)
      }
    }
    for (const id of [dest, src]) await call('/mailbox', 'DELETE', mailboxBody(id))
    shapes.cjk.count('accepted', accepted)
    shapes.cjk.count('MiB of UTF-8 accepted', Math.round((bytes / MIB) * 10) / 10)
    shapes.cjk.outcome['MiB of UTF-8 accepted'] = Math.round(shapes.cjk.outcome['MiB of UTF-8 accepted']! * 10) / 10
    if (refusal !== null) shapes.cjk.count('refused (507)')
    if (complaint !== null) return complaint
    if (!memory) return accepted === cap ? null : `${accepted} of ${cap} accepted`
    if (refusal === null) return `${(bytes / MIB).toFixed(1)} MiB of UTF-8 queued without a refusal`
    if (!refusal.includes('Exchange is full')) return `the 507 said: ${refusal.slice(0, 120)}`
    return bytes <= LIMITS.maxQueuedMb * MIB ? null : `${(bytes / MIB).toFixed(1)} MiB of UTF-8 queued, past the bound`
  }

  /** A listener reads 10 events and stalls while 1,000 more are sent; it resets, reconnects with Last-Event-ID and must get the rest. */
  const stalledListener = async (): Promise<string | null> => {
    const [user, box] = [newUser(), newAgent()]
    for (const id of [user, box]) {
      const created = await call('/mailbox', 'POST', mailboxBody(id))
      if (created.status !== 200) return `creating a mailbox answered ${created.status}`
    }
    const count = 1000
    const listener = stallingListener(`${url}/mailbox/listen`, listenBody(box, 3), 10, { localAddress: nextSource(), timeoutMs: 10_000 })
    const expected = Array.from({ length: count }, () => randomUUID())
    const messages = expected.map((tag) => sendBody(user, box, 'response', 1024, tag))
    try {
      // One after another: the order they were answered in is the order the mailbox keeps.
      for (const body of messages) {
        const sent = await call('/message', 'PUT', body)
        if (sent.status !== 200) return `a send answered ${sent.status}: ${sent.text.slice(0, 120)}`
      }
      await listener.stalled
      // What the server could write is in the connection's buffers by now.
      await Bun.sleep(200)
      const processed = listener.processed()
      listener.reset()
      const last = processed.at(-1)
      if (last?.id === null || last === undefined) return 'the stalled stream carried no event ids'
      const rest = await readEvents(`${url}/mailbox/listen`, listenBody(box, 1), count - processed.length, { headers: { 'last-event-id': String(last.id) }, localAddress: nextSource(), timeoutMs: 10_000 })
      const tags = [...processed, ...rest].map((event) => (JSON.parse(event.data) as { header: { tag: string } }).header.tag)
      const seen = new Set(tags)
      const lost = expected.filter((tag) => !seen.has(tag)).length
      shapes.stalled.count('delivered twice', tags.length - seen.size)
      shapes.stalled.count('read before the stall', processed.length)
      shapes.stalled.count('replayed or delivered after', rest.length)
      shapes.stalled.count('lost', lost)
      if (lost > 0) return `${lost} of ${count} lost`
      return tags.join() === expected.join() ? null : 'delivered out of order'
    } finally {
      listener.reset()
      for (const id of [box, user]) await call('/mailbox', 'DELETE', mailboxBody(id))
    }
  }

  let largestListing = 0
  /** One job whose metadata is past max_field_kb, then enough jobs of ~1 MiB to push the finished jobs past their bound; then the listing. */
  const jobs = async (): Promise<void> => {
    await shapes.bigField.run(async () => {
      const refused = await call('/jobs', 'POST', JSON.stringify({ agent_name: 'soak-metadata', room_id: 'big', metadata: { pad: 'm'.repeat(8 * MIB) } }))
      shapes.bigField.count(`answered ${refused.status}`)
      return refused.status === 413 && refused.text.includes('metadata') && refused.text.includes('max_field_kb') ? null : `answered ${refused.status}: ${refused.text.slice(0, 120)}`
    })
    await shapes.finished.run(async () => {
      const metadata = { pad: 'm'.repeat(LIMITS.maxFieldKb * KIB - 64 * KIB) }
      const count = LIMITS.finishedJobsMb + 4
      for (let i = 0; i < count; i++) {
        const created = await call('/jobs', 'POST', JSON.stringify({ agent_name: 'soak-metadata', room_id: `metadata-${i}`, metadata }))
        if (created.status !== 201) return `a job answered ${created.status}: ${created.text.slice(0, 120)}`
      }
      // Every job finished (the worker completes each as it is assigned) before the listing: only finished jobs are bounded.
      await untilNoneRunning()
      jobWorker.frames.length = 0
      jobWorker.assignments.length = 0
      const listed = await call('/jobs?limit=9999', 'GET')
      const kept = (JSON.parse(listed.text) as { jobs: { room_id: string }[] }).jobs.filter((job) => job.room_id.startsWith('metadata-')).length
      shapes.finished.count('jobs made', count)
      largestListing = Math.max(largestListing, Math.round((listed.text.length / MIB) * 10) / 10)
      shapes.finished.outcome['largest GET /jobs, MiB'] = largestListing
      const bound = (LIMITS.finishedJobsMb + 2) * MIB
      return listed.text.length <= bound ? null : `GET /jobs answered ${(listed.text.length / MIB).toFixed(1)} MiB (${kept} jobs of ~1 MiB kept), past ${bound / MIB} MiB`
    })
  }

  const untilNoneRunning = async () => {
    for (let tries = 0; tries < 100; tries++) {
      const running = await call('/jobs?agent_name=soak-metadata&state=running&limit=9999', 'GET')
      if (running.status === 200 && (JSON.parse(running.text) as { jobs: unknown[] }).jobs.length === 0) return
      await Bun.sleep(20)
    }
    throw new Error('jobs still running after 2 s')
  }

  const a2aHeaders = { authorization: `Bearer ${target.caller.token}`, 'x-workspace-id': target.caller.id }
  const limit = `is larger than the limit of ${LIMITS.a2aResponseLimitKb * KIB} bytes (a2a_response_limit_kb)`
  /** Four oversized answers: declared, in pieces, a gzip bomb, one event of a stream. */
  const oversizedAnswers = async (): Promise<void> => {
    await shapes.a2a.run(async () => {
      const wanted: [string, string][] = [
        [`big:${400 * MIB}:sized`, `agent response of ${400 * MIB} bytes ${limit}`],
        [`big:${400 * MIB}:chunked`, `agent response ${limit}`],
        [`gzip:${300 * MIB}`, 'agent answered with Content-Encoding "gzip", though it was asked for identity'],
      ]
      for (const [text, message] of wanted) {
        const answer = await call(`/workspaces/${attacked.id}/a2a`, 'POST', JSON.stringify(messageSend(text)), a2aHeaders)
        shapes.a2a.count(`answered ${answer.status}`)
        const error = answer.status === 502 ? ((JSON.parse(answer.text) as { error?: { message?: string } }).error?.message ?? '') : ''
        if (!error.startsWith(message)) return `${text} answered ${answer.status}: ${answer.text.slice(0, 160)}`
      }
      return null
    })
    await shapes.event.run(async () => {
      const streamed = await stream(`${url}/workspaces/${attacked.id}/a2a`, JSON.stringify(messageSend(`bigevent:${400 * MIB}`, 'message/stream')), a2aHeaders, 2 * LIMITS.a2aResponseLimitKb * KIB)
      shapes.event.count(`answered ${streamed.status}`)
      shapes.event.count('MiB relayed', Math.round((streamed.received / MIB) * 10) / 10)
      shapes.event.outcome['MiB relayed'] = Math.round(shapes.event.outcome['MiB relayed']! * 10) / 10
      if (streamed.status !== 200) return `answered ${streamed.status}`
      if (streamed.cut) return `relayed ${(streamed.received / MIB).toFixed(1)} MiB, past twice the limit`
      return streamed.lastError === `agent stream sent an event larger than the limit of ${LIMITS.a2aResponseLimitKb * KIB} bytes (a2a_response_limit_kb)` ? null : `last event: ${streamed.lastError}`
    })
  }

  /** Sockets on /agent that never register: each must get the refused register reply and close 1008 in time. */
  const unregistered = async (): Promise<string | null> => {
    const started = Date.now()
    const sockets = await Promise.all(Array.from({ length: 20 }, () => TestWorker.open(url, { localAddress: nextSource() }, false)))
    const deadline = (LIMITS.registerTimeoutS + 2) * 1000
    const closes = await Promise.all(sockets.map((socket) => Promise.race([socket.closed, Bun.sleep(deadline).then(() => null)])))
    const late = closes.filter((close) => close === null).length
    for (const socket of sockets) if (socket.isOpen) socket.ws.terminate()
    const refused = sockets.filter((socket, i) => closes[i]?.code === 1008 && socket.frames[0]?.type === 'register' && socket.frames[0]?.success === false).length
    shapes.unregistered.count('closed 1008 after a refused register reply', refused)
    if (late > 0) return `${late} of 20 still open after ${Date.now() - started} ms`
    return refused === sockets.length ? null : `${sockets.length - refused} closed otherwise: ${JSON.stringify(closes)}`
  }

  /** Bodies that arrive a byte every 200 ms: 408 and a closed connection within the body deadline + 2 s. */
  const dribbled = async (): Promise<string | null> => {
    const results = await Promise.all(Array.from({ length: 5 }, () => dribble(url, nextSource(), (LIMITS.bodyTimeoutS + 2) * 1000)))
    const cut = results.filter((result) => result.answer.startsWith('HTTP/1.1 408') && result.closed).length
    shapes.dribble.count('408 and closed', cut)
    const bad = results.find((result) => !(result.answer.startsWith('HTTP/1.1 408') && result.closed))
    if (bad) return `answered ${JSON.stringify(bad.answer.split('\r\n')[0] ?? '')} after ${bad.ms} ms, ${bad.closed ? 'closed' : 'still open'}`
    const early = results.find((result) => result.ms < LIMITS.bodyTimeoutS * 1000 - 100)
    return early ? `cut after ${early.ms} ms, before the deadline` : null
  }

  /** 150 upgrades at once from one address: past its bucket, each gets 429 before any handshake. */
  const upgradeFlood = async (): Promise<string | null> => {
    const started = performance.now()
    const answers = await Promise.all(Array.from({ length: 150 }, () => upgrade(url, FLOOD_SOURCE)))
    const seconds = (performance.now() - started) / 1000
    const switched = answers.filter((answer) => answer.startsWith('HTTP/1.1 101')).length
    const refused = answers.filter((answer) => answer.startsWith('HTTP/1.1 429') && /\r\nretry-after: \d+\r\n/i.test(answer) && !answer.includes('Sec-WebSocket-Accept')).length
    shapes.flood.count('101', switched)
    shapes.flood.count('429', refused)
    // The bucket is full at the start (a round is at least a second after the last): burst + what refills during the flood.
    const allowed = LIMITS.rateBurst + Math.ceil(LIMITS.ratePerS * seconds) + 1
    if (switched + refused !== answers.length) return `${answers.length - switched - refused} answered otherwise: ${JSON.stringify(answers.find((answer) => !answer.startsWith('HTTP/1.1 101') && !answer.startsWith('HTTP/1.1 429'))?.slice(0, 80))}`
    return switched <= allowed ? null : `${switched} upgrades went through in ${seconds.toFixed(2)} s, more than ${allowed}`
  }

  let stopping = false
  /** Runs `round` until stopped, at most once every periodMs; always at least once. */
  const lane = async (round: () => Promise<void>) => {
    do {
      const started = Date.now()
      await round()
      while (!stopping && Date.now() < started + periodMs) await Bun.sleep(50)
    } while (!stopping)
  }
  const only = process.env.SOAK_LANES?.split(',').map(Number)
  const lanes = [
    // The exchange's shapes take turns: each fills the one byte bound the others would share.
    () => lane(async () => {
      await shapes.pending.run(pendingRequests)
      await shapes.cjk.run(cjkText)
      await shapes.stalled.run(stalledListener)
    }),
    () => lane(jobs),
    () => lane(oversizedAnswers),
    () => lane(async () => {
      await Promise.all([shapes.unregistered.run(unregistered), shapes.dribble.run(dribbled), shapes.flood.run(upgradeFlood)])
    }),
  ].filter((_, i) => only === undefined || only.includes(i)).map((start) => start())

  return {
    async stop() {
      stopping = true
      await Promise.all(lanes)
      return Object.values(shapes).map((shape) => shape.row())
    },
    async close() {
      await jobWorker.close()
      await agent.close()
    },
  }
}

/** A relayed stream: its status, how much came, the last event's error, and whether it was cut for passing `cutAt` bytes. */
function stream(url: string, body: string, headers: Record<string, string>, cutAt: number): Promise<{ status: number; received: number; lastError: string | null; cut: boolean }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', localAddress: nextSource(), headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } })
    req.on('error', reject)
    req.on('response', (response) => {
      let received = 0
      let tail = ''
      response.on('data', (chunk: Buffer) => {
        received += chunk.length
        tail = (tail + chunk.toString('latin1')).slice(-4096)
        if (received > cutAt) {
          req.destroy()
          resolve({ status: response.statusCode ?? 0, received, lastError: null, cut: true })
        }
      })
      response.on('end', () => {
        const last = tail.trim().split('\n').at(-1) ?? ''
        const lastError = last.startsWith('data: {') ? ((JSON.parse(last.slice(6)) as { error?: { message: string } }).error?.message ?? null) : null
        resolve({ status: response.statusCode ?? 0, received, lastError, cut: false })
      })
      response.on('error', () => {})
    })
    req.end(body)
  })
}

/** Sends a request's head and then its body a byte every 200 ms; what the server answered, whether it closed, and when. */
function dribble(url: string, localAddress: string, giveUpMs: number): Promise<{ answer: string; closed: boolean; ms: number }> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const started = Date.now()
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', localAddress })
    let answer = ''
    let drip: ReturnType<typeof setInterval> | undefined
    const done = (closed: boolean) => {
      clearInterval(drip)
      clearTimeout(giveUp)
      socket.destroy()
      resolve({ answer, closed, ms: Date.now() - started })
    }
    const giveUp = setTimeout(() => done(false), giveUpMs)
    socket.on('connect', () => {
      socket.write('POST /mailbox HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n')
      drip = setInterval(() => socket.write(' '), 200)
    })
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString()))
    socket.on('error', () => {})
    socket.on('close', () => done(true))
  })
}

/** A WebSocket upgrade of /agent on a raw socket from `localAddress`; resolves with the server's answer (a 101 is closed at once). */
function upgrade(url: string, localAddress: string): Promise<string> {
  const { port } = new URL(url)
  return new Promise((resolve) => {
    const socket = net.connect({ port: Number(port), host: '127.0.0.1', localAddress })
    let received = ''
    const giveUp = setTimeout(() => socket.destroy(), 5000)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString()
      if (received.startsWith('HTTP/1.1 101') && received.includes('\r\n\r\n')) socket.destroy()
    })
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(giveUp)
      resolve(received)
    })
    socket.on('connect', () => {
      const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString('base64')
      socket.write(`GET /agent HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    })
  })
}
