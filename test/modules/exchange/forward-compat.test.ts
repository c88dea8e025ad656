/**
 * Messages of any body, as Academy's server takes them: the header is read,
 * the body is relayed as sent. This is what lets a peer on a newer protocol
 * reach an older one and be told "incompatible protocol" instead of failing
 * at the exchange. Over a real socket, on the backend TEST_BACKEND names.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Config } from '../../../src/config'
import { fixtures, idJson, type Id } from '../../support/academy'
import { startServer, type TestServer } from '../../support/app'
import { openStream, rawRequest, sseData } from '../../support/http'

let running: TestServer | null = null
afterEach(async () => {
  await running?.close()
  running = null
})

const user = JSON.parse(fixtures.user_id) as Id
const agent = JSON.parse(fixtures.agent_id) as Id

/** Switchboard on a real port with Academy's user and agent mailboxes (the fixtures' ids) created. */
async function exchange(config: Partial<Config> = {}) {
  running = await startServer(config)
  const url = running.url
  const send = (message: string) => rawRequest(`${url}/message`, { method: 'PUT', body: JSON.stringify({ message }) })
  const receive = async (id: Id) => {
    const response = await rawRequest(`${url}/message`, { method: 'GET', body: JSON.stringify({ mailbox: idJson(id), timeout: 5 }) })
    expect(response.status).toBe(200)
    return (JSON.parse(response.text) as { message: string }).message
  }
  const listen = (id: Id) => openStream(`${url}/mailbox/listen`, { body: JSON.stringify({ mailbox: idJson(id), timeout: 10 }) })
  const stats = async (id: Id) => JSON.parse((await rawRequest(`${url}/mailbox/stats`, { body: JSON.stringify({ mailbox: idJson(id) }) })).text)
  for (const mailbox of [fixtures.user_id, fixtures.agent_id]) {
    expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: JSON.stringify({ mailbox }) })).status).toBe(200)
  }
  return { url, send, receive, listen, stats }
}

/** The text of a message from `src` to `dest` whose body is `body`, written out as JSON text (kept as it is, spacing and all). */
const withBody = (src: Id, dest: Id, body: string, options: { kind?: 'request' | 'response'; tag?: string } = {}) =>
  `{"header":{"src":${idJson(src)},"dest":${idJson(dest)},"tag":"${options.tag ?? randomUUID()}","label":null,"kind":"${options.kind ?? 'request'}","protocol_version":"1"}, "body" : ${body}}`

/** Bodies Academy's server takes as they are, in the spelling a sender might use: relayed, they must come out in the same one. */
const BODIES: Record<string, string> = {
  'a string': '"hello, older peer"',
  'a number': '-1.50e3',
  null: 'null',
  'an array': '[1, "two", {"three": 3.0}]',
  'an empty object': '{}',
  'an object of a new shape': '{ "type": "brand-new-type-of-request", "with_arbitrary_info": {"nested": [true, false, null]} }',
}

describe("Academy's incompatible-protocol exchange", () => {
  for (const [name, request] of [
    ['as a newer peer writes it', fixtures.incompatible_request],
    ["as Academy's client sends it", fixtures.incompatible_request_as_sent],
  ] as const) {
    it(`delivers the newer peer's request ${name} and the error response back, over long-poll`, async () => {
      const x = await exchange()
      expect((await x.send(request)).status).toBe(200)
      expect(await x.receive(user)).toBe(request)
      expect((await x.send(fixtures.incompatible_reply)).status).toBe(200)
      expect(await x.receive(agent)).toBe(fixtures.incompatible_reply)
      // The request and its response are counted from their headers, whatever the body.
      expect(await x.stats(user)).toEqual({ incoming: 1, outgoing: 0, completed: 1, in_progress: 0, queued: 0 })
      expect((await x.stats(agent)).outgoing).toBe(1)
    })

    it(`delivers the newer peer's request ${name} and the error response back, over listen streams`, async () => {
      const x = await exchange()
      const userStream = await x.listen(user)
      const agentStream = await x.listen(agent)
      try {
        expect((await x.send(request)).status).toBe(200)
        expect(await userStream.waitFor(`data: ${request}\r\n\r\n`)).toMatch(new RegExp(`^retry: 0\r\n\r\nid: \\d+\r\ndata: ${RegExp.escape(request)}\r\n\r\n$`))
        expect((await x.send(fixtures.incompatible_reply)).status).toBe(200)
        await agentStream.waitFor(`data: ${fixtures.incompatible_reply}\r\n\r\n`)
        expect(sseData(agentStream.received())).toEqual([fixtures.incompatible_reply])
      } finally {
        userStream.close()
        agentStream.close()
      }
    })
  }
})

describe('a body of any JSON value', () => {
  for (const [name, body] of Object.entries(BODIES)) {
    it(`takes ${name} as the body and delivers the message byte for byte, over long-poll and a listen stream`, async () => {
      const x = await exchange()
      const [first, second] = [withBody(user, agent, body), withBody(user, agent, body)]
      expect((await x.send(first)).status).toBe(200)
      expect(await x.receive(agent)).toBe(first)
      const stream = await x.listen(agent)
      try {
        expect((await x.send(second)).status).toBe(200)
        await stream.waitFor(`data: ${second}\r\n\r\n`)
        expect(sseData(stream.received())).toEqual([second])
      } finally {
        stream.close()
      }
    })
  }

  it('delivers a 1 MiB body of an unknown shape unchanged under the size limit, and refuses one over it with 413', async () => {
    const x = await exchange({ message_size_limit_kb: 2048 })
    const body = (size: number) => `{"blob":"${'x'.repeat(size)}","shape":["new",1]}`
    const big = withBody(user, agent, body(1024 * 1024))
    expect((await x.send(big)).status).toBe(200)
    expect(await x.receive(agent)).toBe(big)
    const stream = await x.listen(agent)
    try {
      expect((await x.send(big)).status).toBe(200)
      await stream.waitFor(`data: ${big}\r\n\r\n`, 10_000)
      expect(sseData(stream.received())).toEqual([big])
    } finally {
      stream.close()
    }
    const tooBig = withBody(user, agent, body(2048 * 1024))
    const refused = await x.send(tooBig)
    expect([refused.status, refused.text]).toEqual([413, `Message of size ${Buffer.byteLength(tooBig)} larger than limit ${2048 * 1024}.`])
  })
})

describe("Switchboard's own uses of a message, whatever its body", () => {
  it("counts requests and responses of unknown bodies from their headers, and answers the pending ones on terminate", async () => {
    const x = await exchange()
    const tags = [randomUUID(), randomUUID(), randomUUID()]
    for (const [i, body] of ['"a string"', '{"type": "brand-new-type-of-request"}', 'null'].entries()) {
      expect((await x.send(withBody(user, agent, body, { tag: tags[i] }))).status).toBe(200)
    }
    expect(await x.stats(agent)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 0, queued: 3 })
    expect(await x.stats(user)).toMatchObject({ outgoing: 3 })
    // The agent takes two requests and answers the first with a body of a new shape.
    await x.receive(agent)
    await x.receive(agent)
    const answer = withBody(agent, user, '[1, 2]', { kind: 'response', tag: tags[0] })
    expect((await x.send(answer)).status).toBe(200)
    expect(await x.stats(agent)).toEqual({ incoming: 3, outgoing: 0, completed: 1, in_progress: 1, queued: 1 })
    expect(await x.receive(user)).toBe(answer)

    // Terminated, the agent's two pending requests (one taken, one still queued) are answered as Academy answers them.
    expect((await rawRequest(`${x.url}/mailbox`, { method: 'DELETE', body: JSON.stringify({ mailbox: fixtures.agent_id }) })).status).toBe(200)
    const replies = [await x.receive(user), await x.receive(user)].sort()
    const expected = tags
      .slice(1)
      .map(
        (tag) =>
          `{"header":{"src":${fixtures.agent_id},"dest":${fixtures.user_id},"tag":"${tag}","label":null,"kind":"response","protocol_version":"1"},"body":{"error_code":0,"mailbox_id":${fixtures.agent_id},"kind":"academy-error-response"}}`,
      )
      .sort()
    expect(replies).toEqual(expected)
  })
})

describe("PUT /message takes and refuses what Academy's Message takes and refuses", () => {
  it('answers each case of the fixtures as Academy does, delivering every message it takes unchanged', async () => {
    const x = await exchange()
    const verdicts: string[] = []
    for (const { case: name, message, accepted, field } of fixtures.message_acceptance) {
      const response = await x.send(message)
      if (accepted) {
        verdicts.push(`${name}: ${response.status}`)
        // Each one is addressed to the agent, in whatever spelling of its id.
        if (response.status === 200) expect([name, await x.receive(agent)]).toEqual([name, message])
      } else {
        verdicts.push(`${name}: ${response.status} ${response.text.startsWith(`Missing or invalid field: message.${field}`) ? `names message.${field}` : response.text}`)
      }
    }
    expect(verdicts).toEqual(fixtures.message_acceptance.map(({ case: name, accepted, field }) => (accepted ? `${name}: 200` : `${name}: 400 names message.${field}`)))
  })

  it("takes every spelling of a mailbox id Academy takes as the same mailbox, and refuses the others naming the field", async () => {
    const x = await exchange()
    const verdicts: string[] = []
    for (const { case: name, mailbox } of fixtures.mailbox_acceptance) {
      const response = await rawRequest(`${x.url}/mailbox`, { method: 'GET', body: JSON.stringify({ mailbox }) })
      verdicts.push(`${name}: ${response.status} ${response.status === 200 ? response.text : response.text.startsWith('Missing or invalid field: mailbox') ? 'names mailbox' : response.text}`)
    }
    expect(verdicts).toEqual(fixtures.mailbox_acceptance.map(({ case: name, accepted }) => `${name}: ${accepted ? '200 {"status":"ACTIVE"}' : '400 names mailbox'}`))
  })
})
