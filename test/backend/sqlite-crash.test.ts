/**
 * Crash safety of the sqlite backend, on the real server process: messages
 * acknowledged with 200 survive `kill -9` at any moment and come out in order.
 */
import { afterAll, afterEach, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { agentId, bodies, userId, type Id } from '../support/academy'
import { rawRequest } from '../support/http'
import { numbered, receive, receiveAll, send, sendUntilGone } from '../support/numbered'
import { BUN, startProcess, type RunningProcess } from '../support/process'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-crash-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let running: RunningProcess | null = null
afterEach(() => {
  running?.process.kill('SIGKILL')
  running = null
})

/** Starts the server on `db`, with backend options from a config file. */
async function start(db: string, backendOptions: Record<string, number> = {}): Promise<RunningProcess> {
  const config = join(dir, `${Bun.hash(db)}.toml`)
  writeFileSync(config, `[backend_options]\n${Object.entries(backendOptions).map(([key, value]) => `${key} = ${value}`).join('\n')}\n`)
  running = await startProcess([BUN, 'src/main.ts', '--config', config, '--backend', 'sqlite', '--db', db, '--port', '0', '--log-level', 'warn'])
  return running
}

/** kill -9, and wait until the process is gone. */
async function crash(server: RunningProcess): Promise<void> {
  server.process.kill('SIGKILL')
  await server.process.exited
  running = null
}

/** After a round's kill: the kill timer cleared and the process gone. */
async function roundEnded(server: RunningProcess, killer: Timer): Promise<void> {
  clearTimeout(killer)
  await server.process.exited
  running = null
}

async function createMailboxes(url: string, ...ids: Id[]): Promise<void> {
  for (const id of ids) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
}

describe('the sqlite backend under kill -9', () => {
  it('delivers every message acknowledged before each of three kills, in order, after the restart', async () => {
    const db = join(dir, 'kills.db')
    const [sender, receiver] = [userId(), agentId()]
    let server = await start(db)
    await createMailboxes(server.url, sender, receiver)
    const acknowledged: number[] = []
    const numbers = { next: 0 }
    for (let round = 0; round < 3; round++) {
      if (round > 0) server = await start(db)
      const target = server
      // Kill while a send is in flight: the sends never pause between messages.
      const killer = setTimeout(() => target.process.kill('SIGKILL'), 150 + Math.floor(Math.random() * 250))
      await sendUntilGone(target.url, sender, receiver, numbers, acknowledged)
      await roundEnded(target, killer)
    }
    expect(acknowledged.length).toBeGreaterThan(10)

    server = await start(db)
    const received = await receiveAll(server.url, receiver)
    // In order and once each; a message whose 200 was cut off by the kill may or may not be there.
    for (let i = 1; i < received.length; i++) expect(received[i]!).toBeGreaterThan(received[i - 1]!)
    const delivered = new Set(received)
    expect(acknowledged.filter((n) => !delivered.has(n))).toEqual([])
    expect(received.length - acknowledged.length).toBeLessThanOrEqual(3)
  }, 30_000)

  it('loses nothing under a steady send and receive load killed three times; repeats only what was handed out within the window', async () => {
    const db = join(dir, 'mixed.db')
    const [sender, receiver] = [userId(), agentId()]
    let server = await start(db)
    await createMailboxes(server.url, sender, receiver)
    const acknowledged: number[] = []
    const received: { n: number; at: number }[] = []
    const killedAt: number[] = []
    const numbers = { next: 0 }
    for (let round = 0; round < 3; round++) {
      if (round > 0) server = await start(db)
      const target = server
      const killer = setTimeout(() => {
        killedAt.push(Date.now())
        target.process.kill('SIGKILL')
      }, 300 + Math.floor(Math.random() * 300))
      const sending = sendUntilGone(target.url, sender, receiver, numbers, acknowledged)
      const receiving = (async () => {
        try {
          for (;;) {
            const n = await receive(target.url, receiver)
            if (n !== null) received.push({ n, at: Date.now() })
          }
        } catch {
          // The server is gone.
        }
      })()
      await Promise.all([sending, receiving])
      await roundEnded(target, killer)
    }
    server = await start(db)
    const after = await receiveAll(server.url, receiver)
    const all = [...received.map((entry) => entry.n), ...after]
    const seen = new Set(all)
    expect(acknowledged.length).toBeGreaterThan(10)
    expect(acknowledged.filter((n) => !seen.has(n))).toEqual([])
    // A repeat is allowed only for a message handed out shortly before a kill: within the redelivery
    // window (1 s) plus the lag of the settling timer on a loaded machine. A receipt is timed when the
    // client reads it, which can be just after the kill that cut the server off.
    const handedOutNearKill = new Set(received.filter((entry) => killedAt.some((at) => at - entry.at <= 3000 && entry.at - at <= 500)).map((entry) => entry.n))
    const counts = new Map<number, number>()
    for (const n of all) counts.set(n, (counts.get(n) ?? 0) + 1)
    for (const [n, count] of counts) if (count > 1) expect(handedOutNearKill.has(n)).toBe(true)
    // First deliveries come in the order sent.
    const firsts = all.filter((n, index) => all.indexOf(n) === index)
    for (let i = 1; i < firsts.length; i++) expect(firsts[i]!).toBeGreaterThan(firsts[i - 1]!)
  }, 30_000)

  it('delivers again, first and in order, what was handed to receivers within the redelivery window before the kill', async () => {
    const db = join(dir, 'window.db')
    const [sender, receiver] = [userId(), agentId()]
    let server = await start(db, { redelivery_window_ms: 60_000 })
    await createMailboxes(server.url, sender, receiver)
    for (let n = 0; n < 5; n++) await send(server.url, numbered(sender, receiver, n))
    expect(await receive(server.url, receiver)).toBe(0)
    expect(await receive(server.url, receiver)).toBe(1)
    await crash(server)

    server = await start(db, { redelivery_window_ms: 60_000 })
    expect(await receiveAll(server.url, receiver)).toEqual([0, 1, 2, 3, 4])
  }, 20_000)

  it('does not deliver again what was handed out longer than the redelivery window before the kill', async () => {
    const db = join(dir, 'settled.db')
    const [sender, receiver] = [userId(), agentId()]
    let server = await start(db, { redelivery_window_ms: 20 })
    await createMailboxes(server.url, sender, receiver)
    for (let n = 0; n < 3; n++) await send(server.url, numbered(sender, receiver, n))
    expect(await receive(server.url, receiver)).toBe(0)
    // Fifty times the window: the delivery is settled by then.
    await Bun.sleep(1000)
    await crash(server)

    server = await start(db, { redelivery_window_ms: 20 })
    expect(await receiveAll(server.url, receiver)).toEqual([1, 2])
  }, 20_000)
})
