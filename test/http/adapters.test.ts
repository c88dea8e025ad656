/**
 * Both adapters run the one pipeline: a real server from node:http, and
 * `app.handle` through the Elysia app. Both ways in must answer byte for
 * byte alike, errors included; the node:http adapter writes a route's
 * reply as it is, a stream chunk by chunk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { call, makeApp, startServer, writeTokensFile, type TestServer } from '../support/app'
import http from 'node:http'
import { openStream, rawRequest } from '../support/http'
import { eventually } from '../support/wait'
import type { Chunks, Reply } from '../../src/http/reply'
import { route } from '../../src/http/route'
import { elysiaPath } from '../../src/http/elysia'

interface Answer {
  status: number
  type: string | null
  body: string
}

describe('the exchange routes, over a socket and through app.handle', () => {
  let running: TestServer
  const alice = { authorization: 'Bearer alice-token' }
  const bob = { authorization: 'Bearer bob-token' }

  beforeAll(async () => {
    const tokens = writeTokensFile([
      { token: 'alice-token', client: 'alice', groups: ['team'] },
      { token: 'bob-token', client: 'bob' },
    ])
    running = await startServer({ auth: 'token', tokens_file: tokens, listen_timeout: 5 })
  })
  afterAll(() => running?.close())

  const overSocket = async (method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<Answer> => {
    const response = await rawRequest(`${running.url}${path}`, { method, body, headers })
    return { status: response.status, type: (response.headers['content-type'] as string | undefined) ?? null, body: response.text }
  }
  const inProcess = async (method: string, path: string, body: string | undefined, headers: Record<string, string>): Promise<Answer> => {
    const response = await call(running.app, method, path, body, headers)
    return { status: response.status, type: response.headers.get('content-type'), body: await response.text() }
  }

  it('registers every route of the table with the Elysia app, under its own method and path', () => {
    const registered = new Set(running.app.routes.map((entry) => `${entry.method} ${entry.path}`))
    // Under the path Elysia's router can hold (A2A's `message:send` as `message:action`).
    const table = running.app.decorator.switchboard.pipeline.routes.map((entry) => `${entry.method} ${elysiaPath(entry.path)}`)
    expect(table.length).toBeGreaterThan(30)
    for (const entry of table) expect({ entry, registered: registered.has(entry) }).toEqual({ entry, registered: true })
  })

  it('answer over a socket as app.handle does: successes, refusals and malformed input', async () => {
    const owner = agentId('owned')
    const stranger = agentId()
    const user = userId()
    expect((await overSocket('POST', '/mailbox', bodies.create(owner, ['mod.Owned', 'academy.agent.Agent']), alice)).status).toBe(200)
    expect((await overSocket('POST', '/mailbox', bodies.create(user), alice)).status).toBe(200)
    // Two equal messages, so each way in receives the same one.
    const message = messageJson(user, owner)
    for (let i = 0; i < 2; i++) expect((await overSocket('PUT', '/message', bodies.send(message), alice)).status).toBe(200)

    const cases: [string, string, string | undefined, Record<string, string>][] = [
      ['POST', '/mailbox', bodies.create(owner), alice],
      ['GET', '/mailbox', bodies.mailbox(owner), alice],
      ['GET', '/mailbox', bodies.mailbox(stranger), alice],
      ['GET', '/mailbox', bodies.mailbox(owner), bob],
      ['GET', '/mailbox', bodies.mailbox(owner), {}],
      ['GET', '/mailbox', bodies.mailbox(owner), { authorization: 'Bearer nobody' }],
      ['GET', '/mailbox', undefined, alice],
      ['GET', '/mailbox', '   ', alice],
      ['GET', '/mailbox', '{"mailbox": ', alice],
      ['GET', '/mailbox', '{"mailbox": "not json"}', alice],
      ['GET', '/mailbox', '[1, 2]', alice],
      ['GET', '/mailbox', `\uFEFF${bodies.mailbox(owner)}`, alice],
      ['GET', '/message', bodies.receive(owner, 5), alice],
      ['GET', '/message', bodies.receive(owner, 0), alice],
      ['GET', '/message', bodies.receive(owner, null), alice],
      ['GET', '/message', bodies.receive(owner, 61), alice],
      ['GET', '/message', bodies.receive(stranger, 1), alice],
      ['GET', '/mailbox/listen', bodies.receive(stranger, 1), alice],
      ['PUT', '/message', bodies.send('{"header": {}}'), alice],
      ['PUT', '/message', bodies.send(messageJson(user, stranger)), alice],
      ['PUT', '/message', JSON.stringify({ message: 7 }), alice],
      ['GET', '/discover', bodies.discover('academy.agent.Agent', true), alice],
      ['GET', '/discover', bodies.discover('mod.Owned', false), alice],
      ['GET', '/discover', JSON.stringify({ agent: 'x' }), alice],
      ['GET', '/mailbox/heartbeat', bodies.mailbox(stranger), alice],
      ['GET', '/mailbox/stats', bodies.mailbox(owner), alice],
      ['GET', '/mailbox/stats', bodies.mailbox(stranger), alice],
      ['POST', '/mailbox/share', bodies.share(owner, 'team'), alice],
      ['POST', '/mailbox/share', bodies.share(owner, 'elsewhere'), alice],
      ['POST', '/mailbox/share', bodies.share(owner, 'team'), bob],
      ['GET', '/mailbox/share', bodies.mailbox(owner), alice],
      ['DELETE', '/mailbox/share', bodies.share(owner, 'elsewhere'), alice],
      ['DELETE', '/mailbox', bodies.mailbox(stranger), alice],
    ]
    for (const [method, path, body, headers] of cases) {
      const label = `${method} ${path} ${body ?? '(no body)'} ${headers.authorization ?? '(no token)'}`
      const socket = await overSocket(method, path, body, headers)
      const handled = await inProcess(method, path, body, headers)
      expect({ label, ...socket }).toEqual({ label, ...handled })
    }
  })

  it('answer a terminated mailbox alike, then report it TERMINATED both ways', async () => {
    const doomed = agentId()
    expect((await overSocket('POST', '/mailbox', bodies.create(doomed), alice)).status).toBe(200)
    expect((await overSocket('DELETE', '/mailbox', bodies.mailbox(doomed), alice)).status).toBe(200)
    expect(JSON.parse((await overSocket('GET', '/mailbox', bodies.mailbox(doomed), alice)).body)).toEqual({ status: 'TERMINATED' })
    for (const [method, path, body] of [
      ['GET', '/mailbox', bodies.mailbox(doomed)],
      ['GET', '/message', bodies.receive(doomed, 1)],
      ['GET', '/mailbox/listen', bodies.receive(doomed, 1)],
      ['PUT', '/message', bodies.send(messageJson(userId(), doomed))],
    ] as const) {
      const socket = await overSocket(method, path, body, alice)
      expect(socket).toEqual(await inProcess(method, path, body, alice))
      expect(socket.status).toBe(path === '/mailbox' ? 200 : 419)
    }
  })

  it('keep the request id and the body length on a whole answer', async () => {
    const response = await rawRequest(`${running.url}/mailbox`, { body: bodies.mailbox(agentId()), headers: { ...alice, 'x-request-id': 'plain-1' } })
    expect(response.headers['x-request-id']).toBe('plain-1')
    expect(response.headers['content-length']).toBe(String(Buffer.byteLength(response.text)))
    expect(JSON.parse(response.text)).toEqual({ status: 'MISSING' })
  })
})

describe('the node:http adapter writing a route\'s reply', () => {
  /** A server with one extra route, GET /probe, answered by `answer`. */
  const probing = (answer: (request: { header(name: string): string | undefined; bytes: Uint8Array; signal: AbortSignal }) => Promise<Reply>) =>
    startServer({}, {}, { routes: [route({ method: 'GET', path: '/probe', surface: 'native', access: 'none', tag: 'operations', summary: 'probe', body: 'raw', responses: { 200: { description: 'probe' } }, handle: answer })] })

  it('calls a route with the headers, the body and the caller signal, and writes its reply', async () => {
    const seen: { header: string | undefined; body: string; aborted: boolean }[] = []
    const running = await probing(async (request) => {
      seen.push({ header: request.header('x-probe'), body: new TextDecoder().decode(request.bytes), aborted: request.signal.aborted })
      return { status: 207, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: 'from the route ✓' }
    })
    try {
      const response = await rawRequest(`${running.url}/probe?ignored=1`, { body: '{"a": "ü"}', headers: { 'x-probe': 'yes' } })
      expect(response.status).toBe(207)
      expect(response.text).toBe('from the route ✓')
      expect(response.headers['content-length']).toBe(String(Buffer.byteLength('from the route ✓')))
      expect(seen).toEqual([{ header: 'yes', body: '{"a": "ü"}', aborted: false }])
      // HEAD is answered by the GET route, without a body.
      const head = await rawRequest(`${running.url}/probe`, { method: 'HEAD' })
      expect(head.status).toBe(207)
      expect(head.text).toBe('')
    } finally {
      await running.close()
    }
  })

  /** A stream of `chunks` that logs each ask, write-confirmation point and cancel, then (if `hold`) waits until cancelled. */
  const loggedStream = (chunks: string[], log: string[], hold: boolean): Chunks => {
    let cancelled: () => void = () => {}
    const gone = new Promise<null>((resolve) => (cancelled = () => resolve(null)))
    let at = 0
    return {
      async next() {
        log.push(`next ${at}`)
        if (at < chunks.length) return chunks[at++]!
        return hold ? gone : null
      },
      async cancel() {
        log.push(`cancel after ${at}`)
        cancelled()
      },
    }
  }

  it('writes a stream chunk by chunk in order, with no length, alike both ways', async () => {
    const chunks = ['retry: 0\r\n\r\n', 'data: ü\r\n\r\n', `data: ${'x'.repeat(100_000)}\r\n\r\n`]
    const logs: string[][] = []
    const running = await probing(async () => {
      const log: string[] = []
      logs.push(log)
      return { status: 200, headers: { 'content-type': 'text/event-stream' }, stream: loggedStream(chunks, log, false) }
    })
    try {
      const response = await rawRequest(`${running.url}/probe`, { headers: { 'x-request-id': 'stream-1' } })
      expect(response.status).toBe(200)
      expect(response.headers['content-type']).toBe('text/event-stream')
      expect(response.headers['x-request-id']).toBe('stream-1')
      expect(response.headers['content-length']).toBeUndefined()
      expect(response.text).toBe(chunks.join(''))
      expect(logs).toEqual([['next 0', 'next 1', 'next 2', 'next 3']])
      // app.handle reaches the same stream through a web stream.
      const inProcess = await call(running.app, 'GET', '/probe')
      expect(await inProcess.text()).toBe(chunks.join(''))
      expect(logs[1]).toEqual(['next 0', 'next 1', 'next 2', 'next 3'])
    } finally {
      await running.close()
    }
  })

  it('cancels a stream whose caller goes away while it waits for its next chunk', async () => {
    const log: string[] = []
    const running = await probing(async () => ({
      status: 200,
      headers: { 'content-type': 'text/event-stream' },
      stream: loggedStream(['retry: 0\r\n\r\n'], log, true),
    }))
    try {
      const stream = await openStream(`${running.url}/probe`)
      await stream.waitFor('retry: 0')
      await eventually(() => log.length === 2, 5000, 'the second ask')
      stream.close()
      await eventually(() => log.includes('cancel after 1'), 5000, 'the cancel')
      expect(log).toEqual(['next 0', 'next 1', 'cancel after 1'])
      await eventually(() => running.app.decorator.switchboard.connections === 0, 5000, 'the connection closed')
    } finally {
      await running.close()
    }
  })

  it('ends a listen stream cleanly, the response complete, when the server stops', async () => {
    const running = await startServer({ listen_timeout: 30 })
    const mailbox = agentId()
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(mailbox) })).status).toBe(200)
    const body = Buffer.from(bodies.receive(mailbox, 30))
    let stopped: Promise<void> | null = null
    const outcome = await new Promise<{ complete: boolean; text: string }>((resolve, reject) => {
      const request = http.request(`${running.url}/mailbox/listen`, { method: 'GET', headers: { 'content-type': 'application/json', 'content-length': String(body.length) } }, (response) => {
        let text = ''
        response.setEncoding('utf8')
        response.on('data', (chunk: string) => {
          text += chunk
          if (text.includes('retry: 0')) stopped ??= running.close()
        })
        response.on('end', () => resolve({ complete: response.complete, text }))
        response.on('close', () => resolve({ complete: response.complete, text }))
        response.on('error', reject)
      })
      request.on('error', reject)
      request.end(body)
    })
    await stopped
    expect(outcome.text).toBe('retry: 0\r\n\r\n')
    expect(outcome.complete).toBe(true)
  })
})

describe('app.handle reading a body', () => {
  /** A streamed body (no declared length): `chunks` chunks of `size` bytes, then, unless `close`, nothing more. */
  function streamed(chunks: number, size: number, close: boolean): { body: ReadableStream<Uint8Array>; pulled: () => number } {
    let pulled = 0
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (pulled < chunks) {
          pulled++
          controller.enqueue(new Uint8Array(size).fill(32))
        } else if (close) controller.close()
        else return new Promise(() => {})
      },
    })
    return { body, pulled: () => pulled }
  }
  const put = (app: Awaited<ReturnType<typeof makeApp>>, body: ReadableStream<Uint8Array>) =>
    app.handle(new Request('http://localhost/message', { method: 'PUT', body, headers: { 'content-type': 'application/json' }, duplex: 'half' } as RequestInit))

  it('refuses a body over the limit with 413 once it passes it, reading no further', async () => {
    const app = await makeApp({ max_body_kb: 64 })
    try {
      const source = streamed(1024, 16 * 1024, true)
      const answer = await put(app, source.body)
      expect(answer.status).toBe(413)
      expect(await answer.text()).toContain('request body is larger than the limit of 65536 bytes')
      // 16 MiB offered; what was read stops within a chunk or two of the limit.
      expect(source.pulled()).toBeLessThan(16)
    } finally {
      await app.decorator.switchboard.close()
    }
  })

  it('answers 408 to a body that does not arrive whole within request_body_timeout_s', async () => {
    const app = await makeApp({ request_body_timeout_s: 0.3 })
    try {
      const startedAt = performance.now()
      const answer = await put(app, streamed(1, 10, false).body)
      expect(answer.status).toBe(408)
      expect(await answer.text()).toContain('request body did not arrive whole within 0.3 s (request_body_timeout_s)')
      expect(performance.now() - startedAt).toBeLessThan(2000)
    } finally {
      await app.decorator.switchboard.close()
    }
  })
})
