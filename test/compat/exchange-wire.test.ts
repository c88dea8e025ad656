/**
 * Wire compatibility with Academy, from the golden strings its own models
 * produce (test/fixtures/academy/exchange.json). Every case runs
 * twice: through `app.handle`, and over a real socket, where the serving
 * layer calls the exchange's plain routes as Academy's client reaches them.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { fixtures } from '../support/academy'
import { call, makeApp, startServer } from '../support/app'
import { openStream, rawRequest } from '../support/http'

interface Answer {
  status: number
  text: string
}

/** One way to reach Switchboard: send a request with a body on any method, open a listen stream, close. */
interface Exchange {
  send(method: string, path: string, body: string): Promise<Answer>
  /** The stream's text once it holds its first event. */
  firstEvent(body: string): Promise<string>
  close(): Promise<void>
}

const FIRST_EVENT = /\r\n\r\n(id: \d+\r\n)?data: [^\r]*\r\n\r\n/

const transports: Record<string, () => Promise<Exchange>> = {
  'app.handle': async () => {
    const app = await makeApp()
    return {
      async send(method, path, body) {
        const response = await call(app, method, path, body)
        return { status: response.status, text: await response.text() }
      },
      async firstEvent(body) {
        const response = await call(app, 'GET', '/mailbox/listen', body, { accept: 'text/event-stream' })
        const reader = response.body!.getReader()
        let text = ''
        while (!FIRST_EVENT.test(text)) text += new TextDecoder().decode((await reader.read()).value)
        await reader.cancel()
        return text
      },
      close: () => app.decorator.switchboard.close(),
    }
  },
  'a socket': async () => {
    const server = await startServer()
    return {
      async send(method, path, body) {
        const response = await rawRequest(`${server.url}${path}`, { method, body })
        return { status: response.status, text: response.text }
      },
      async firstEvent(body) {
        const stream = await openStream(`${server.url}/mailbox/listen`, { body })
        const text = await stream.waitFor(FIRST_EVENT)
        stream.close()
        return text
      },
      close: () => server.close(),
    }
  },
}

for (const [transport, start] of Object.entries(transports)) {
  describe(`Academy's exact request bodies, through ${transport}`, () => {
    const golden = fixtures
    let exchange: Exchange | null = null
    afterEach(async () => {
      await exchange?.close()
      exchange = null
    })
    const agentMailbox = () => JSON.stringify({ mailbox: golden.agent_id })
    const userMailbox = () => JSON.stringify({ mailbox: golden.user_id })

    async function setUp(): Promise<Exchange> {
      exchange = await start()
      expect((await exchange.send('POST', '/mailbox', golden.wire['POST /mailbox (agent)']!)).status).toBe(200)
      expect((await exchange.send('POST', '/mailbox', golden.wire['POST /mailbox (user)']!)).status).toBe(200)
      return exchange
    }

    it('delivers the action request byte for byte', async () => {
      const x = await setUp()
      expect((await x.send('PUT', '/message', golden.wire['PUT /message']!)).status).toBe(200)
      const response = await x.send('GET', '/message', golden.wire['GET /message']!)
      expect(response.text).toBe(JSON.stringify({ message: golden.action_request }))
    })

    it('round-trips every message kind unchanged', async () => {
      const x = await setUp()
      for (const message of [golden.ping_request, golden.shutdown_request]) {
        expect((await x.send('PUT', '/message', JSON.stringify({ message }))).status).toBe(200)
        expect(JSON.parse((await x.send('GET', '/message', golden.wire['GET /message']!)).text)).toEqual({ message })
      }
      expect((await x.send('PUT', '/message', JSON.stringify({ message: golden.success_response }))).status).toBe(200)
      expect(JSON.parse((await x.send('GET', '/message', JSON.stringify({ mailbox: golden.user_id, timeout: 1 }))).text)).toEqual({ message: golden.success_response })
    })

    it('answers a queued request with the exact terminate auto-reply', async () => {
      const x = await setUp()
      await x.send('PUT', '/message', golden.wire['PUT /message']!)
      expect((await x.send('DELETE', '/mailbox', agentMailbox())).status).toBe(200)
      const reply = await x.send('GET', '/message', JSON.stringify({ mailbox: golden.user_id, timeout: 1 }))
      expect(JSON.parse(reply.text)).toEqual({ message: golden.terminate_auto_reply })
      expect(JSON.parse((await x.send('GET', '/mailbox', userMailbox())).text)).toEqual({ status: 'ACTIVE' })
    })

    it('discovers the agent from its MRO as the client asks', async () => {
      const x = await setUp()
      const response = await x.send('GET', '/discover', golden.wire['GET /discover']!)
      expect(JSON.parse(response.text)).toEqual({ agent_ids: JSON.parse(golden.agent_id).uid })
    })

    it('streams the message on listen with the body the client sends', async () => {
      const x = await setUp()
      await x.send('PUT', '/message', golden.wire['PUT /message']!)
      // Each event carries an integer id (Academy's client reads `id:` as an integer), then the message as sent.
      expect(await x.firstEvent(golden.wire['GET /mailbox/listen']!)).toMatch(new RegExp(`^retry: 0\r\n\r\nid: \\d+\r\ndata: ${RegExp.escape(golden.action_request)}\r\n\r\n$`))
    })
  })
}
