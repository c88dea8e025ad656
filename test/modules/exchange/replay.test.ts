/**
 * A listener that stalls, then resets, has had messages written to its
 * connection that it never read. Reconnecting with `Last-Event-ID` (the id
 * of the last event it processed), it gets every one of them again within
 * the replay window: none is lost. Without the header, what the kernel
 * accepted and the listener never read is lost, and this measures how much.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import http from 'node:http'
import { agentId, bodies, messageJson, userId } from '../../support/academy'
import { startServer, type TestServer } from '../../support/app'
import { rawRequest, sseEvents, type SseEvent } from '../../support/http'

const COUNT = 2000

/** A listener that reads until it holds `readAtLeast` events, then stops reading; `reset` drops its connection. */
function stallingListener(url: string, body: string, readAtLeast: number, headers: Record<string, string> = {}) {
  let text = ''
  let request!: http.ClientRequest
  const stalled = new Promise<void>((resolve, reject) => {
    request = http.request(`${url}/mailbox/listen`, { method: 'GET', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } })
    request.on('error', () => {})
    request.on('response', (response) => {
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        if (sseEvents(text).length >= readAtLeast) {
          response.pause()
          resolve()
        }
      })
      response.on('error', () => {})
    })
    setTimeout(() => reject(new Error(`fewer than ${readAtLeast} events arrived`)), 20_000).unref()
    request.end(body)
  })
  return {
    stalled,
    /** The events it read before stalling (all it ever processes). */
    processed: () => sseEvents(text),
    reset: () => request.destroy(),
  }
}

/** Reads the stream until `count` events arrived. */
async function readEvents(url: string, body: string, count: number, headers: Record<string, string> = {}): Promise<SseEvent[]> {
  return new Promise((resolve, reject) => {
    let text = ''
    const request = http.request(`${url}/mailbox/listen`, { method: 'GET', headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers } })
    request.on('error', reject)
    request.on('response', (response) => {
      response.setEncoding('utf8')
      response.on('data', (chunk: string) => {
        text += chunk
        const events = sseEvents(text)
        if (events.length >= count) {
          request.destroy()
          resolve(events)
        }
      })
      response.on('end', () => resolve(sseEvents(text)))
    })
    request.end(body)
  })
}

describe('a listener that stalls and resets', () => {
  let running: TestServer
  afterEach(() => running?.close())

  /** Sends COUNT numbered 1 KB messages while a listener reads 10 of them, then stalls; resets it; returns the messages and what it processed. */
  async function stallAndReset() {
    running = await startServer({ listen_timeout: 3 })
    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const listener = stallingListener(running.url, bodies.receive(agent, 3), 10)
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
    const rest = await readEvents(running.url, bodies.receive(agent, 1), COUNT - processed.length, { 'last-event-id': String(last.id) })
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
    const rest = await readEvents(running.url, bodies.receive(agent, 0.5), COUNT)
    const lost = COUNT - processed.length - rest.length
    console.log(`stalled listener without Last-Event-ID: ${processed.length} processed, ${rest.length} still queued, ${lost} lost in the dead connection`)
    expect(lost).toBeGreaterThan(0)
  }, 60_000)
})
