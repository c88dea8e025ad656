/**
 * A listener that stalls, then resets, has had messages written to its
 * connection that it never read. Reconnecting with `Last-Event-ID` (the id
 * of the last event it processed), it gets every one of them again within
 * the replay window: none is lost. Without the header, what the kernel
 * accepted and the listener never read is lost, and this measures how much.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { agentId, bodies, messageJson, userId } from '../../support/academy'
import { startServer, type TestServer } from '../../support/app'
import { rawRequest, readEvents, stallingListener } from '../../support/http'

const COUNT = 2000

describe('a listener that stalls and resets', () => {
  let running: TestServer
  afterEach(() => running?.close())

  /** Sends COUNT numbered 1 KB messages while a listener reads 10 of them, then stalls; resets it; returns the messages and what it processed. */
  async function stallAndReset() {
    running = await startServer({ listen_timeout: 3 })
    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const listener = stallingListener(`${running.url}/mailbox/listen`, bodies.receive(agent, 3), 10)
    const messages: string[] = []
    for (let i = 0; i < COUNT; i++) {
      const message = messageJson(user, agent, { body: { kind: 'n', n: i, pad: 'x'.repeat(900) } })
      messages.push(message)
      expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    }
    await listener.stalled
    // Everything the server could write is in the connection's buffers: it has taken what it could.
    await Bun.sleep(200)
    const processed = listener.processed()
    listener.reset()
    return { agent, messages, processed }
  }

  it('gets every message it did not process again when it reconnects with Last-Event-ID: none lost', async () => {
    const { agent, messages, processed } = await stallAndReset()
    const last = processed.at(-1)!
    expect(last.id).toBeGreaterThan(0)
    const rest = await readEvents(`${running.url}/mailbox/listen`, bodies.receive(agent, 1), COUNT - processed.length, { headers: { 'last-event-id': String(last.id) } })
    const received = [...processed, ...rest].map((event) => event.data)
    expect(received.length).toBe(COUNT)
    expect(new Set(received)).toEqual(new Set(messages))
    // In the order they were sent, ids only growing.
    expect(received).toEqual(messages)
    const ids = [...processed, ...rest].map((event) => event.id!)
    expect(ids.every((id, at) => at === 0 || id > ids[at - 1]!)).toBe(true)
  }, 60_000)

  it('without Last-Event-ID loses what the kernel accepted and the listener never read (the remainder the README states)', async () => {
    const { agent, processed } = await stallAndReset()
    // Whatever was still in the mailbox is delivered; what sat in the dead connection's buffers is not.
    const rest = await readEvents(`${running.url}/mailbox/listen`, bodies.receive(agent, 0.5), COUNT)
    const lost = COUNT - processed.length - rest.length
    console.log(`stalled listener without Last-Event-ID: ${processed.length} processed, ${rest.length} still queued, ${lost} lost in the dead connection`)
    expect(lost).toBeGreaterThan(0)
  }, 60_000)
})
