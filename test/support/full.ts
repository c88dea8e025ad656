/** A store filling up over the exchange: large sends until one is refused, then a listener that must get every accepted one. */
import { expect } from 'bun:test'
import { bodies, messageJson, type Id } from './academy'
import { openStream, rawRequest, type RawResponse } from './http'

const PADDING = 'x'.repeat(64 * 1024)

/** A request message of about 64 KB. */
export const largeMessage = (src: Id, dest: Id) => messageJson(src, dest, { body: { kind: 'action-request', action: 'echo', pargs: PADDING } })

/** Creates both mailboxes, then sends large messages from `user` to `agent` until one is refused (at most `most`). */
export async function fillUntilRefused(url: string, user: Id, agent: Id, most: number): Promise<{ accepted: string[]; refused: RawResponse }> {
  for (const id of [user, agent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
  const accepted: string[] = []
  for (let i = 0; i < most; i++) {
    const message = largeMessage(user, agent)
    const answer = await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(message) })
    if (answer.status !== 200) return { accepted, refused: answer }
    accepted.push(message)
  }
  throw new Error(`${most} messages of 64 KB were all accepted`)
}

/** The counters of a mailbox (GET /mailbox/stats). */
export async function mailboxStats(url: string, id: Id): Promise<Record<string, number>> {
  return JSON.parse((await rawRequest(`${url}/mailbox/stats`, { body: bodies.mailbox(id) })).text) as Record<string, number>
}

/** Listens on `agent` until every message of `accepted` has arrived, in order. */
export async function expectAllDelivered(url: string, agent: Id, accepted: string[]): Promise<void> {
  const stream = await openStream(`${url}/mailbox/listen`, { body: bodies.receive(agent, 30) })
  expect(stream.status).toBe(200)
  try {
    for (const [index, message] of accepted.entries()) {
      await stream.waitFor(`data: ${message}`, 10_000).catch(() => {
        throw new Error(`message ${index + 1} of ${accepted.length} did not arrive`)
      })
    }
  } finally {
    stream.close()
  }
}
