import { afterEach, describe, expect, it } from 'bun:test'
import { agentId, bodies, idJson, messageJson, userId } from '../../support/academy'
import { startServer, type TestServer } from '../../support/app'
import { openStream, rawRequest, sseData } from '../../support/http'

let running: TestServer
afterEach(async () => {
  await running?.close()
})

async function createBoth(url: string) {
  const [user, agent] = [userId('alice'), agentId()]
  for (const id of [user, agent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
  return { user, agent }
}

describe('over a real socket', () => {
  it('reads JSON bodies sent with GET and DELETE', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const status = await rawRequest(`${running.url}/mailbox`, { method: 'GET', body: bodies.mailbox(agent) })
    expect([status.status, status.text]).toEqual([200, '{"status":"ACTIVE"}'])
    const message = messageJson(user, agent)
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    const received = await rawRequest(`${running.url}/message`, { method: 'GET', body: bodies.receive(agent, 5) })
    expect(JSON.parse(received.text)).toEqual({ message })
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })).status).toBe(200)
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'GET', body: bodies.mailbox(agent) })).text).toBe('{"status":"TERMINATED"}')
  })

  it('answers a body over the server limit with 413 without reading it all', async () => {
    running = await startServer({ max_body_kb: 4 })
    const response = await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: JSON.stringify({ mailbox: 'x'.repeat(64 * 1024) }) })
    // In the exchange's own shape (Academy's text/plain), as app.handle answers it.
    expect(response.status).toBe(413)
    expect(response.headers['content-type']).toBe('text/plain; charset=utf-8')
    expect(response.text).toMatch(/^Missing or invalid field: request body is larger than the limit of 4096 bytes/)
  })

  it('frames listen events as SSE with retry first, the event-stream headers and CRLF separators', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 10) })
    expect(stream.status).toBe(200)
    expect(stream.headers['content-type']).toBe('text/event-stream')
    expect(stream.headers['cache-control']).toBe('no-cache')
    expect(stream.headers['x-accel-buffering']).toBe('no')
    await stream.waitFor('retry: 0\r\n\r\n')
    const message = messageJson(user, agent)
    await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })
    const text = await stream.waitFor(`data: ${message}\r\n\r\n`)
    expect(text.startsWith('retry: 0\r\n\r\n')).toBe(true)
    expect(sseData(text)).toEqual([message])
    stream.close()
  })

  it('delivers 100 messages over one listen stream in order', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 10) })
    const sent: string[] = []
    for (let i = 0; i < 100; i++) {
      const message = messageJson(user, agent, { body: { kind: 'action-request', action: 'count', pargs: `[${i}]` } })
      sent.push(message)
      expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    }
    await stream.waitFor(sent[99]!, 10_000)
    expect(sseData(stream.received())).toEqual(sent)
    stream.close()
  })

  it('loses no message when a listener disconnects mid-stream', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 10) })
    const first = messageJson(user, agent)
    await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(first) })
    await stream.waitFor(first)
    stream.close()
    // Sent right after the drop: whichever way the race goes, the message must still be there.
    const second = messageJson(user, agent)
    await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(second) })
    const received = await rawRequest(`${running.url}/message`, { method: 'GET', body: bodies.receive(agent, 5) })
    expect(received.status).toBe(200)
    expect(JSON.parse(received.text)).toEqual({ message: second })
  })

  it('sends comment pings while a stream is idle and ends it after the timeout', async () => {
    running = await startServer({ sse_ping_s: 0.1 })
    const { agent } = await createBoth(running.url)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 0.5) })
    await stream.waitFor(': ping\r\n\r\n', 3000)
    await stream.ended
    expect(sseData(stream.received())).toEqual([])
  })

  it('ends a listen stream when its mailbox is terminated, and refuses new listeners with 419', async () => {
    running = await startServer()
    const { agent } = await createBoth(running.url)
    const stream = await openStream(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 30) })
    await stream.waitFor('retry: 0')
    await rawRequest(`${running.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })
    await stream.ended
    const again = await rawRequest(`${running.url}/mailbox/listen`, { body: bodies.receive(agent, 1), headers: { accept: 'text/event-stream' } })
    expect([again.status, again.text]).toEqual([419, 'Mailbox was closed'])
    const unknown = await rawRequest(`${running.url}/mailbox/listen`, { body: bodies.receive(agentId(), 1) })
    expect([unknown.status, unknown.text]).toEqual([404, 'Unknown mailbox ID'])
  })

  it('wakes a blocked long-poll with 419 on terminate and answers the pending request of the sender', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const tag = crypto.randomUUID()
    await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(messageJson(user, agent, { tag })) })
    const taken = await rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 5) })
    expect(taken.status).toBe(200)
    const blocked = rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 30) })
    await Bun.sleep(50)
    await rawRequest(`${running.url}/mailbox`, { method: 'DELETE', body: bodies.mailbox(agent) })
    const woken = await blocked
    expect([woken.status, woken.text]).toEqual([419, 'Mailbox was closed'])
    const reply = JSON.parse((await rawRequest(`${running.url}/message`, { body: bodies.receive(user, 5) })).text)
    expect(JSON.parse(reply.message)).toEqual({
      header: { src: JSON.parse(idJson(agent)), dest: JSON.parse(idJson(user)), tag, label: null, kind: 'response', protocol_version: '1' },
      body: { error_code: 0, mailbox_id: JSON.parse(idJson(agent)), kind: 'academy-error-response' },
    })
  })

  it('does not hand a message to a long-poll whose client has gone', async () => {
    running = await startServer()
    const { user, agent } = await createBoth(running.url)
    const controller = new AbortController()
    const http = await import('node:http')
    const body = bodies.receive(agent, 30)
    const request = http.request(`${running.url}/message`, { method: 'GET', headers: { 'content-type': 'application/json', 'content-length': String(body.length) }, signal: controller.signal })
    request.on('error', () => {})
    request.end(body)
    await Bun.sleep(50)
    controller.abort()
    await Bun.sleep(50)
    const message = messageJson(user, agent)
    await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })
    const received = await rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 5) })
    expect(JSON.parse(received.text)).toEqual({ message })
  })
})
