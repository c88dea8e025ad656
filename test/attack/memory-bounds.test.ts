/**
 * What clients can make a real Switchboard process on the memory backend
 * hold, by the traffic shapes that went past its bounds: requests whose
 * messages are taken at once (their pending records held, 100 KiB names in
 * them), CJK text (three UTF-8 bytes a character), failed jobs with
 * 8 MiB of metadata each, and open registrations with 1 MiB cards. Each time the process's resident memory stays
 * within the configured bound plus SLACK_MB (measured: about 40 MiB of
 * parsed bodies the collector had not yet taken), and the traffic past the
 * bound gets its 507 (the exchange, the registry) or pushes out the oldest
 * finished job.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { existsSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { agentId, bodies, messageJson, type Id } from '../support/academy'
import { rawRequest } from '../support/http'
import { BUN, memoryOf, startProcess, type RunningProcess } from '../support/process'
import { tempDir } from '../support/temp'

const MIB = 1024 * 1024
/** The byte bounds each process runs with (max_queued_mb, finished_jobs_max_mb). */
const BOUND_MB = 32
/** What the process may hold above its start beyond the bound: parsed bodies not yet collected, allocator slack. */
const SLACK_MB = 64
/** Failed jobs of 8 MiB of metadata each sent in the jobs case. */
const JOBS = 16

/** A Switchboard process on the memory backend with these backend options and flags. */
async function start(options: Record<string, number>, flags: string[] = []): Promise<RunningProcess> {
  const config = join(tempDir('bounds'), 'switchboard.toml')
  writeFileSync(config, `[backend_options]\n${Object.entries(options).map(([key, value]) => `${key} = ${value}`).join('\n')}\n`)
  return startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn', '--config', config, ...flags])
}

/**
 * Resident memory once the process has had time to collect what the traffic left: the lowest reading over up to
 * 10 s, sooner once it is within `bound` MiB of `before` (the collector and the allocator's return of pages to the
 * system run on their own schedule, later on a busy machine).
 */
async function settled(child: RunningProcess, before: number, bound = BOUND_MB + SLACK_MB): Promise<number> {
  let lowest = Number.POSITIVE_INFINITY
  for (const started = Date.now(); Date.now() - started < 10_000; ) {
    await Bun.sleep(500)
    lowest = Math.min(lowest, memoryOf(child.process.pid).now)
    if (lowest - before < bound) break
  }
  return lowest
}

describe.skipIf(!existsSync('/proc/self/status'))('a Switchboard process on the memory backend under traffic that fills its bounds', () => {
  let child: RunningProcess | null = null
  afterEach(() => {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL')
    child = null
  })

  const exchange = (method: string, path: string, body: string) => rawRequest(`${child!.url}${path}`, { method, body, headers: { 'content-type': 'application/json' } })

  it(`holds the pending requests of messages taken at once, 100 KiB names in them, within max_queued_mb (${BOUND_MB} MiB) + ${SLACK_MB} MiB`, async () => {
    child = await start({ max_queued_mb: BOUND_MB })
    const dest = agentId()
    expect((await exchange('POST', '/mailbox', bodies.create(dest))).status).toBe(200)
    const before = memoryOf(child.process.pid).now
    const statuses: Record<number, number> = {}
    // Until 50 are refused: the refusals hold nothing, but each leaves its parsed body for the collector.
    for (let i = 0; i < 1500 && (statuses[507] ?? 0) < 50; i++) {
      const name = `${i}:`.padEnd(100 * 1024, 'n')
      const src: Id = { ...agentId(), name }
      const sent = await exchange('PUT', '/message', bodies.send(messageJson(src, { ...dest, name })))
      statuses[sent.status] = (statuses[sent.status] ?? 0) + 1
      if (sent.status === 200) expect((await exchange('GET', '/message', bodies.receive(dest, 1))).status).toBe(200)
    }
    const after = await settled(child, before)
    const stats = JSON.parse((await exchange('GET', '/mailbox/stats', bodies.mailbox(dest))).text) as { incoming: number; queued: number }
    console.log(`pending requests: ${JSON.stringify(statuses)}, RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (+${(after - before).toFixed(1)})`)
    // Each pending request holds two 100 KiB names: about 160 fit in 32 MiB, and the rest are refused.
    expect(statuses[200]).toBeGreaterThan(140)
    expect(statuses[200]).toBeLessThan(170)
    expect(statuses[507]).toBe(50)
    expect(stats).toMatchObject({ incoming: statuses[200], queued: 0 })
    expect(after - before).toBeLessThan(BOUND_MB + SLACK_MB)
  }, 120_000)

  it(`holds CJK text within max_queued_mb counted in UTF-8 bytes (${BOUND_MB} MiB) + ${SLACK_MB} MiB`, async () => {
    child = await start({ max_queued_mb: BOUND_MB })
    const [src, dest] = [agentId(), agentId()]
    for (const id of [src, dest]) expect((await exchange('POST', '/mailbox', bodies.create(id))).status).toBe(200)
    const before = memoryOf(child.process.pid).now
    // 80,000 characters: 240,000 bytes of UTF-8 each.
    const text = '漢字'.repeat(40_000)
    let accepted = 0
    let refused = 0
    for (let i = 0; i < 600 && refused < 5; i++) {
      const message = messageJson(src, dest, { kind: 'response', body: { kind: 'text', text } })
      const sent = await exchange('PUT', '/message', bodies.send(message))
      if (sent.status === 200) accepted += Buffer.byteLength(message)
      else {
        expect(sent.status).toBe(507)
        refused++
      }
    }
    const after = await settled(child, before)
    console.log(`CJK: ${(accepted / MIB).toFixed(1)} MiB of UTF-8 accepted, RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (+${(after - before).toFixed(1)})`)
    expect(refused).toBe(5)
    expect(accepted).toBeLessThanOrEqual(BOUND_MB * MIB)
    expect(accepted).toBeGreaterThan((BOUND_MB - 1) * MIB)
    expect(after - before).toBeLessThan(BOUND_MB + SLACK_MB)
  }, 120_000)

  it(`holds open registrations with 1 MiB cards within max_registry_mb (${BOUND_MB} MiB) + ${SLACK_MB} MiB, refusing the rest with 507`, async () => {
    child = await start({ max_registry_mb: BOUND_MB }, ['--open-registration', '--allow-private-agent-urls', '--max-field-kb', '2048'])
    const before = memoryOf(child.process.pid).now
    const card = { name: 'agent', pad: 'c'.repeat(MIB) }
    const statuses: Record<number, number> = {}
    let refusal = ''
    // 64 of them: 64 MiB of cards, past the bound plus the slack, so keeping them all would fail the test.
    for (let i = 0; i < 64; i++) {
      const registered = await rawRequest(`${child.url}/registry/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: crypto.randomUUID(), url: 'http://127.0.0.1:9/', agent_card: { ...card, i } }),
      })
      statuses[registered.status] = (statuses[registered.status] ?? 0) + 1
      if (registered.status === 507) refusal = registered.text
    }
    const after = await settled(child, before)
    console.log(`registrations: ${JSON.stringify(statuses)}, RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (+${(after - before).toFixed(1)})`)
    // 31 cards of 1 MiB fit in 32 MiB with their records.
    expect(statuses).toEqual({ 200: BOUND_MB - 1, 507: 64 - (BOUND_MB - 1) })
    expect(JSON.parse(refusal)).toEqual({ error: { code: 'STORE_FULL', message: expect.stringContaining('The registry is full') } })
    expect(after - before).toBeLessThan(BOUND_MB + SLACK_MB)
  }, 120_000)

  it(`holds ${JOBS} failed jobs with 8 MiB of metadata each within finished_jobs_max_mb (${BOUND_MB} MiB) + ${SLACK_MB} MiB, and lists no more`, async () => {
    // max_field_kb raised so that 8 MiB of metadata is taken: the bound on finished jobs is what holds here.
    child = await start({ finished_jobs_max_mb: BOUND_MB }, ['--max-field-kb', '16384'])
    const before = memoryOf(child.process.pid).now
    const metadata = { pad: 'm'.repeat(8 * MIB) }
    // 16 of them: 128 MiB in all, past the bound plus the slack, so keeping them all would fail the test.
    for (let i = 0; i < JOBS; i++) {
      const created = await rawRequest(`${child.url}/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ agent_name: 'nobody', room_id: `room-${i}`, metadata: { ...metadata, i } }),
      })
      expect(created.status).toBe(503)
    }
    // Every page, by cursor: a page holds at most 8 MiB of JSON or one job, so one of these jobs a page.
    const jobs: { room_id: string }[] = []
    let largest = 0
    for (let cursor: string | null = '', pages = 0; cursor !== null && pages < JOBS; pages++) {
      const listed = await rawRequest(`${child.url}/jobs?limit=9999${cursor === '' ? '' : `&cursor=${cursor}`}`)
      const page = JSON.parse(listed.text) as { jobs: { room_id: string }[]; next_cursor: string | null }
      jobs.push(...page.jobs)
      largest = Math.max(largest, listed.bytes.length)
      cursor = page.next_cursor
    }
    const after = await settled(child, before)
    console.log(`jobs: ${jobs.length} of ${JOBS} kept, largest GET /jobs page ${(largest / MIB).toFixed(1)} MiB, RSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (+${(after - before).toFixed(1)})`)
    // Three of 8 MiB fit in 32 MiB: the newest three.
    expect(jobs.map((job) => job.room_id)).toEqual([`room-${JOBS - 1}`, `room-${JOBS - 2}`, `room-${JOBS - 3}`])
    expect(largest).toBeLessThan(9 * MIB)
    expect(after - before).toBeLessThan(BOUND_MB + SLACK_MB)
  }, 120_000)
})
