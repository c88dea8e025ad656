/**
 * Connections that stay silent while none of their requests is being
 * answered are closed after connection_idle_timeout_s: an idle keep-alive
 * connection, one that never sent a request, one whose body stopped
 * arriving. Requests being answered (long-polls, event streams) and
 * upgraded WebSocket connections are never cut for it. Past
 * max_connections, a new connection is closed at once while the open ones
 * keep being served.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import net from 'node:net'
import { agentId, bodies } from '../support/academy'
import { TestWorker } from '../modules/workers/worker'
import { openStream, rawRequest } from '../support/http'
import { startLoggedServer, type LoggedServer } from './support'

/** A raw connection to the server: what it received, and when (ms after opening) the server closed it. */
function connect(url: string) {
  const { port } = new URL(url)
  const opened = Date.now()
  const socket = net.connect(Number(port), '127.0.0.1')
  let received = ''
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
  socket.on('error', () => {})
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - opened)))
  const connected = new Promise<void>((resolve) => socket.once('connect', () => resolve()))
  return { socket, closed, connected, received: () => received }
}

/** Resolves with the close time, or 'open' if the connection is still open after `ms`. */
const closedWithin = (closed: Promise<number>, ms: number) => Promise.race([closed, Bun.sleep(ms).then(() => 'open' as const)])

const get = (path: string) => `GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`

describe('idle connections', () => {
  let running: LoggedServer | null = null
  const start = async (seconds: number) => (running = await startLoggedServer({ log_level: 'error', connection_idle_timeout_s: seconds }))
  afterEach(async () => {
    await running?.close()
    running = null
  })

  it('closes a keep-alive connection once it has been silent for the timeout after its last answer', async () => {
    const { url } = await start(1)
    const connection = connect(url)
    await connection.connected
    // Requests every 400 ms keep it open past the timeout.
    for (let index = 0; index < 5; index++) {
      connection.socket.write(get('/healthz'))
      await Bun.sleep(400)
    }
    expect(connection.received().match(/HTTP\/1\.1 200/g)?.length).toBe(5)
    expect(connection.socket.destroyed).toBe(false)
    const closedAt = await closedWithin(connection.closed, 3000)
    expect(closedAt).not.toBe('open')
    // The last answer went out at about 1.6 s, then at least the 1 s timeout of silence.
    expect(closedAt as number).toBeGreaterThanOrEqual(2500)
  })

  it('closes a connection that never sends a request, and one whose body stopped arriving', async () => {
    const { url } = await start(1)
    const silent = connect(url)
    const stalled = connect(url)
    await stalled.connected
    stalled.socket.write('PUT /message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mess')
    const [silentAt, stalledAt] = await Promise.all([closedWithin(silent.closed, 3000), closedWithin(stalled.closed, 3000)])
    expect(silentAt).not.toBe('open')
    expect(stalledAt).not.toBe('open')
    expect(stalledAt as number).toBeGreaterThanOrEqual(1000)
    expect(stalled.received()).toBe('')
  })

  it('never cuts a request being answered: a long-poll and an event stream outlast the timeout and are answered', async () => {
    const { url } = await start(1)
    const [sender, receiver, listener] = [agentId(), agentId(), agentId()]
    for (const id of [sender, receiver, listener]) await fetch(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })
    const poll = rawRequest(`${url}/message`, { body: bodies.receive(receiver, 2.5) })
    const stream = await openStream(`${url}/mailbox/listen`, { body: bodies.receive(listener, 10) })
    expect(stream.status).toBe(200)

    // Nothing is written on either for longer than the timeout (the stream's first ping is 15 s away).
    expect(await closedWithin(stream.ended.then(() => 0), 2000)).toBe('open')
    const message = JSON.stringify({ header: { src: sender, dest: listener, tag: crypto.randomUUID(), label: null, kind: 'request', protocol_version: '1' }, body: { kind: 'ping-request' } })
    expect((await fetch(`${url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    await stream.waitFor('ping-request')
    stream.close()

    // The long-poll gets its own timeout answer at 2.5 s, not a closed connection.
    expect((await poll).status).toBe(408)
  })

  it('leaves an upgraded WebSocket worker connection alone however long it is silent', async () => {
    const { url } = await start(1)
    const worker = await TestWorker.connect(url)
    await Bun.sleep(2500)
    expect(worker.isOpen).toBe(true)
    const dispatched = await fetch(`${url}/v2/agent/dispatch`, {
      method: 'POST',
      headers: { authorization: 'worker-token', 'content-type': 'application/json' },
      body: JSON.stringify({ meetingId: 'room-1', agentId: 'voice-agent' }),
    })
    expect(dispatched.status).toBe(200)
    await worker.waitFor((frame) => frame.type === 'job_assignment')
    await worker.close()
  })

  it('keeps silent connections open when the timeout is 0', async () => {
    const { url } = await start(0)
    const connection = connect(url)
    await connection.connected
    connection.socket.write(get('/healthz'))
    expect(await closedWithin(connection.closed, 2000)).toBe('open')
    expect(connection.received()).toMatch(/^HTTP\/1\.1 200/)
    connection.socket.destroy()
  })
})

describe('the connection limit', () => {
  let running: LoggedServer | null = null
  afterEach(async () => {
    await running?.close()
    running = null
  })

  it('closes a connection past max_connections at once, counting worker WebSockets, and takes new ones again when one leaves', async () => {
    running = await startLoggedServer({ log_level: 'error', max_connections: 2 })
    const { url } = running
    const worker = await TestWorker.connect(url)
    const kept = connect(url)
    await kept.connected
    kept.socket.write(get('/healthz'))
    await Bun.sleep(200)
    expect(kept.received()).toMatch(/^HTTP\/1\.1 200/)

    const refused = connect(url)
    refused.socket.write(get('/healthz'))
    expect(await closedWithin(refused.closed, 2000)).not.toBe('open')
    expect(refused.received()).toBe('')

    // The open ones are still served.
    kept.socket.write(get('/healthz'))
    await Bun.sleep(200)
    expect(kept.received().match(/HTTP\/1\.1 200/g)?.length).toBe(2)
    expect(worker.isOpen).toBe(true)

    await worker.close()
    await Bun.sleep(200)
    const later = connect(url)
    later.socket.write(get('/healthz'))
    await Bun.sleep(300)
    expect(later.received()).toMatch(/^HTTP\/1\.1 200/)
    later.socket.destroy()
    kept.socket.destroy()
  })
})

describe('request bodies that take too long', () => {
  let running: LoggedServer | null = null
  afterEach(async () => {
    await running?.close()
    running = null
  })

  /** Sends `head`, then one byte of `body` every `everyMs` until the server closes the connection or the body is out. */
  function dribble(url: string, head: string, body: string, everyMs: number) {
    const connection = connect(url)
    let sent = 0
    const timer = setInterval(() => {
      if (connection.socket.destroyed || sent >= body.length) return clearInterval(timer)
      connection.socket.write(body[sent++]!)
    }, everyMs)
    connection.closed.then(() => clearInterval(timer))
    void connection.connected.then(() => connection.socket.write(head))
    return { ...connection, sent: () => sent }
  }

  it('answers 408 in the route\'s own error shape once the body is not whole within request_body_timeout_s, and closes the connection', async () => {
    // Silence alone would never cut these: a byte arrives every 250 ms, well within connection_idle_timeout_s.
    running = await startLoggedServer({ log_level: 'error', request_body_timeout_s: 1 })
    const { url } = running
    const academyBody = bodies.create(agentId())
    const academy = dribble(url, `POST /mailbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${academyBody.length}\r\n\r\n`, academyBody, 250)
    const nativeBody = JSON.stringify({ agent_name: 'voice-agent', room_id: 'room-1' })
    const native = dribble(url, `POST /jobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${nativeBody.length}\r\n\r\n`, nativeBody, 250)
    const [academyAt, nativeAt] = await Promise.all([closedWithin(academy.closed, 4000), closedWithin(native.closed, 4000)])
    expect(academyAt).not.toBe('open')
    expect(nativeAt).not.toBe('open')
    expect(academyAt as number).toBeGreaterThanOrEqual(1000)
    expect(academyAt as number).toBeLessThan(2500)
    // Cut mid-body: the dribblers had more to send.
    expect(academy.sent()).toBeLessThan(academyBody.length)
    expect(native.sent()).toBeLessThan(nativeBody.length)
    expect(academy.received()).toMatch(/^HTTP\/1\.1 408 /)
    expect(academy.received()).toContain('text/plain')
    expect(academy.received()).toContain('request body did not arrive whole within 1 s (request_body_timeout_s)')
    expect(native.received()).toMatch(/^HTTP\/1\.1 408 /)
    expect(native.received()).toContain('{"error":{"code":"REQUEST_TIMEOUT","message":"request body did not arrive whole within 1 s (request_body_timeout_s)"}}')
    expect(native.received().toLowerCase()).toContain('connection: close')
  })

  it('reads a body that arrives whole within the deadline, however slowly', async () => {
    running = await startLoggedServer({ log_level: 'error', request_body_timeout_s: 3 })
    const body = bodies.create(agentId())
    const slow = dribble(running.url, `POST /mailbox HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`, body, 10)
    expect(await closedWithin(slow.closed, 5000)).not.toBe('open')
    expect(slow.received()).toMatch(/^HTTP\/1\.1 200 /)
  })
})
