import { afterEach, describe, expect, it } from 'bun:test'
import { agentId, bodies, idJson, messageJson, userId } from '../../support/academy'
import { call, makeApp, writeTokensFile, type TestApp } from '../../support/app'

let app: TestApp
afterEach(async () => {
  await app?.decorator.switchboard.close()
})

const text = async (response: Response) => [response.status, await response.text()] as const

describe('mailboxes', () => {
  it('creates a mailbox idempotently and reports ACTIVE, TERMINATED and MISSING', async () => {
    app = await makeApp()
    const agent = agentId()
    expect(await text(await call(app, 'GET', '/mailbox', bodies.mailbox(agent)))).toEqual([200, '{"status":"MISSING"}'])
    expect((await call(app, 'POST', '/mailbox', bodies.create(agent, ['m.A', 'academy.agent.Agent']))).status).toBe(200)
    expect((await call(app, 'POST', '/mailbox', bodies.create(agent, ['m.A', 'academy.agent.Agent']))).status).toBe(200)
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent))).json()).toEqual({ status: 'ACTIVE' })
    expect((await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))).status).toBe(200)
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent))).json()).toEqual({ status: 'TERMINATED' })
  })

  it('keeps a terminated mailbox terminated when it is created again', async () => {
    app = await makeApp()
    const agent = agentId()
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))
    expect((await call(app, 'POST', '/mailbox', bodies.create(agent))).status).toBe(200)
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent))).json()).toEqual({ status: 'TERMINATED' })
  })

  it('answers 200 to terminating an unknown mailbox, which stays MISSING', async () => {
    app = await makeApp()
    const agent = agentId()
    expect((await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))).status).toBe(200)
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent))).json()).toEqual({ status: 'MISSING' })
  })

  it('keeps an agent and a user with the same uid apart', async () => {
    app = await makeApp()
    const agent = agentId()
    const user = { ...agent, role: 'user' as const }
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(user))).json()).toEqual({ status: 'MISSING' })
  })
})

describe('messages', () => {
  it('delivers a message unchanged and in order', async () => {
    app = await makeApp()
    const [user, agent] = [userId('alice'), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(user))
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const sent = [messageJson(user, agent, { body: { action: 'add', pargs: '[1, 2]', kind: 'action-request' } }), messageJson(user, agent)]
    for (const message of sent) expect((await call(app, 'PUT', '/message', bodies.send(message))).status).toBe(200)
    for (const message of sent) {
      const response = await call(app, 'GET', '/message', bodies.receive(agent, 5))
      expect(response.status).toBe(200)
      expect(await response.json()).toEqual({ message })
    }
  })

  it('answers 404 for an unknown destination and 419 for a terminated one', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    expect(await text(await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent))))).toEqual([404, 'Unknown mailbox ID'])
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))
    expect(await text(await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent))))).toEqual([419, 'Mailbox was closed'])
    expect(await text(await call(app, 'GET', '/message', bodies.receive(agent, 1)))).toEqual([419, 'Mailbox was closed'])
  })

  it('times out a receive with 408 Request timeout', async () => {
    app = await makeApp()
    const agent = agentId()
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const started = Date.now()
    expect(await text(await call(app, 'GET', '/message', bodies.receive(agent, 0.2)))).toEqual([408, 'Request timeout'])
    expect(Date.now() - started).toBeGreaterThanOrEqual(150)
  })

  it('refuses a timeout that is null, zero, negative or above the listen timeout with 400', async () => {
    app = await makeApp({ listen_timeout: 60 })
    const agent = agentId()
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    for (const timeout of [null, 0, -1, 61]) {
      for (const path of ['/message', '/mailbox/listen']) {
        expect(await text(await call(app, 'GET', path, bodies.receive(agent, timeout)))).toEqual([400, 'Invalid timeout (must be less than 60 and greater than 0)'])
      }
    }
  })

  it('refuses a message larger than the limit with 413 and the size in the text', async () => {
    app = await makeApp({ message_size_limit_kb: 1 })
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const message = messageJson(user, agent, { body: { kind: 'action-request', pargs: 'x'.repeat(2000) } })
    const [status, body] = await text(await call(app, 'PUT', '/message', bodies.send(message)))
    expect(status).toBe(413)
    expect(body).toBe(`Message of size ${Buffer.byteLength(message)} larger than limit 1024.`)
    expect(await (await call(app, 'GET', '/mailbox/stats', bodies.mailbox(agent))).json()).toMatchObject({ queued: 0, incoming: 0 })
  })

  it('hands a message to exactly one of two waiting receivers', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const receivers = [call(app, 'GET', '/message', bodies.receive(agent, 0.5)), call(app, 'GET', '/message', bodies.receive(agent, 0.5))]
    await Bun.sleep(20)
    await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent)))
    const statuses = (await Promise.all(receivers)).map((response) => response.status).sort()
    expect(statuses).toEqual([200, 408])
  })

  it('wakes a blocked receiver with 419 when its mailbox is terminated', async () => {
    app = await makeApp()
    const agent = agentId()
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const receiving = call(app, 'GET', '/message', bodies.receive(agent, 30))
    await Bun.sleep(20)
    const started = Date.now()
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))
    expect(await text(await receiving)).toEqual([419, 'Mailbox was closed'])
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('answers every pending request with an academy-error-response when the destination is terminated', async () => {
    app = await makeApp()
    const [user, agent] = [userId('alice'), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(user))
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const tag = crypto.randomUUID()
    await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent, { tag })))
    await call(app, 'GET', '/message', bodies.receive(agent, 1))
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(agent))
    const reply = await (await call(app, 'GET', '/message', bodies.receive(user, 1))).json()
    const expected = `{"header":{"src":${idJson(agent)},"dest":${idJson(user)},"tag":"${tag}","label":null,"kind":"response","protocol_version":"1"},"body":{"error_code":0,"mailbox_id":${idJson(agent)},"kind":"academy-error-response"}}`
    expect(reply).toEqual({ message: expected })
  })
})

describe('listen streams', () => {
  it('gives an event back to the head of the mailbox when the stream is cancelled before its write is confirmed', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const response = await call(app, 'GET', '/mailbox/listen', bodies.receive(agent, 10))
    const reader = response.body!.getReader()
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('retry: 0\r\n\r\n')
    const [first, second] = [messageJson(user, agent), messageJson(user, agent)]
    const reading = reader.read()
    await call(app, 'PUT', '/message', bodies.send(first))
    expect(new TextDecoder().decode((await reading).value)).toMatch(new RegExp(`^id: \\d+\r\ndata: ${RegExp.escape(first)}\r\n\r\n$`))
    await call(app, 'PUT', '/message', bodies.send(second))
    await reader.cancel()
    for (const expected of [first, second]) {
      expect(await (await call(app, 'GET', '/message', bodies.receive(agent, 1))).json()).toEqual({ message: expected })
    }
  })
})

describe('discover, heartbeat and stats', () => {
  it('discovers active agents by class, with and without subclasses, in creation order', async () => {
    app = await makeApp()
    const [base, derived, other, gone] = [agentId(), agentId(), agentId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(base, ['m.Base', 'academy.agent.Agent']))
    await call(app, 'POST', '/mailbox', bodies.create(derived, ['m.Derived', 'm.Base', 'academy.agent.Agent']))
    await call(app, 'POST', '/mailbox', bodies.create(other, ['m.Other', 'academy.agent.Agent']))
    await call(app, 'POST', '/mailbox', bodies.create(gone, ['m.Base', 'academy.agent.Agent']))
    await call(app, 'DELETE', '/mailbox', bodies.mailbox(gone))
    expect(await (await call(app, 'GET', '/discover', bodies.discover('m.Base', false))).json()).toEqual({ agent_ids: base.uid })
    expect(await (await call(app, 'GET', '/discover', bodies.discover('m.Base', true))).json()).toEqual({ agent_ids: `${base.uid},${derived.uid}` })
    expect(await (await call(app, 'GET', '/discover', bodies.discover('m.Nothing', true))).json()).toEqual({ agent_ids: '' })
  })

  it("registers an empty agent as Academy does, as the class '' that discover finds", async () => {
    app = await makeApp()
    const [named, unnamed] = [agentId(), agentId()]
    await call(app, 'POST', '/mailbox', JSON.stringify({ mailbox: idJson(unnamed), agent: '' }))
    await call(app, 'POST', '/mailbox', bodies.create(named, ['m.Base', '']))
    expect(await (await call(app, 'GET', '/discover', bodies.discover('', false))).json()).toEqual({ agent_ids: unnamed.uid })
    expect(await (await call(app, 'GET', '/discover', bodies.discover('', true))).json()).toEqual({ agent_ids: `${unnamed.uid},${named.uid}` })
  })

  it('reports heartbeat as null before activity, seconds after it, and 404 for an unknown mailbox', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    expect(await text(await call(app, 'GET', '/mailbox/heartbeat', bodies.mailbox(agent)))).toEqual([404, 'Unknown mailbox ID'])
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    await call(app, 'POST', '/mailbox', bodies.create(user))
    expect(await (await call(app, 'GET', '/mailbox/heartbeat', bodies.mailbox(agent))).json()).toEqual({ heartbeat: null })
    await call(app, 'GET', '/message', bodies.receive(agent, 0.05))
    const { heartbeat } = (await (await call(app, 'GET', '/mailbox/heartbeat', bodies.mailbox(agent))).json()) as { heartbeat: number }
    expect(heartbeat).toBeGreaterThanOrEqual(0)
    expect(heartbeat).toBeLessThan(5)
    await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent)))
    expect(((await (await call(app, 'GET', '/mailbox/heartbeat', bodies.mailbox(user))).json()) as { heartbeat: number }).heartbeat).toBeLessThan(5)
  })

  it('counts incoming, outgoing, completed, in-progress and queued requests as Academy does', async () => {
    app = await makeApp()
    const [user, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(user))
    await call(app, 'POST', '/mailbox', bodies.create(agent))
    const tags = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()]
    for (const tag of tags) await call(app, 'PUT', '/message', bodies.send(messageJson(user, agent, { tag })))
    const stats = async (id: typeof user) => (await call(app, 'GET', '/mailbox/stats', bodies.mailbox(id))).json()
    expect(await stats(agent)).toEqual({ incoming: 3, outgoing: 0, completed: 0, in_progress: 0, queued: 3 })
    await call(app, 'GET', '/message', bodies.receive(agent, 1))
    await call(app, 'GET', '/message', bodies.receive(agent, 1))
    await call(app, 'PUT', '/message', bodies.send(messageJson(agent, user, { kind: 'response', tag: tags[0] })))
    expect(await stats(agent)).toEqual({ incoming: 3, outgoing: 0, completed: 1, in_progress: 1, queued: 1 })
    expect(await stats(user)).toEqual({ incoming: 0, outgoing: 3, completed: 0, in_progress: 0, queued: 1 })
    expect(await stats(agentId())).toEqual({ incoming: 0, outgoing: 0, completed: 0, in_progress: 0, queued: 0 })
  })
})

describe('bad input', () => {
  const agent = agentId()
  const cases: [string, string, string | undefined, RegExp][] = [
    ['POST', '/mailbox', undefined, /^Missing or invalid field: request body is empty/],
    ['POST', '/mailbox', 'not json', /^Missing or invalid field: request body is not valid JSON/],
    ['POST', '/mailbox', '[]', /^Missing or invalid field: /],
    ['POST', '/mailbox', '{}', /^Missing or invalid field: mailbox/],
    ['POST', '/mailbox', '{"mailbox": 7}', /^Missing or invalid field: mailbox/],
    ['POST', '/mailbox', '{"mailbox": "not json"}', /^Missing or invalid field: mailbox is not a JSON-encoded EntityId/],
    ['POST', '/mailbox', JSON.stringify({ mailbox: '{"uid":"nope","name":null,"role":"agent"}' }), /^Missing or invalid field: mailbox\.uid: must be a UUID/],
    ['POST', '/mailbox', JSON.stringify({ mailbox: JSON.stringify({ ...agent, extra: 1 }) }), /^Missing or invalid field: mailbox\.extra/],
    ['POST', '/mailbox', JSON.stringify({ mailbox: JSON.stringify({ ...agent, role: 'robot' }) }), /^Missing or invalid field: mailbox\.role/],
    ['PUT', '/message', '{"message": "{}"}', /^Missing or invalid field: message\.header/],
    ['PUT', '/message', JSON.stringify({ message: '{"header": 1, "body": {}}' }), /^Missing or invalid field: message\.header/],
    ['PUT', '/message', JSON.stringify({ message: 12 }), /^Missing or invalid field: message/],
    ['GET', '/message', JSON.stringify({ mailbox: idJson(agent), timeout: 'soon' }), /^Missing or invalid field: timeout/],
    ['GET', '/discover', JSON.stringify({ agent: 'm.A' }), /^Missing or invalid field: allow_subclasses/],
    ['GET', '/discover', JSON.stringify({ agent: 'm.A', allow_subclasses: 'yes' }), /^Missing or invalid field: allow_subclasses/],
    ['POST', '/mailbox/share', JSON.stringify({ mailbox: idJson(agent) }), /^Missing or invalid field: group_id/],
  ]
  for (const [method, path, body, expected] of cases) {
    it(`answers 400 with the field named for ${method} ${path} ${body ?? '(no body)'}`, async () => {
      app = await makeApp()
      const [status, message] = await text(await call(app, method, path, body))
      expect(status).toBe(400)
      expect(message).toMatch(expected)
    })
  }

  it('answers 413 to a body above the request limit', async () => {
    app = await makeApp({ max_body_kb: 1 })
    const [status, message] = await text(await call(app, 'POST', '/mailbox', JSON.stringify({ mailbox: 'x'.repeat(4096) })))
    expect(status).toBe(413)
    expect(message).toContain('larger than the limit')
  })
})

describe('auth with tokens', () => {
  const tokensFile = writeTokensFile([
    { token: 'alice-token', client: 'alice', groups: ['lab'] },
    { token: 'bob-token', client: 'bob', groups: ['lab'] },
    { token: 'eve-token', client: 'eve', groups: ['other'] },
  ])
  const as = (token: string) => ({ authorization: `Bearer ${token}` })
  const makeSecured = () => makeApp({ auth: 'token', tokens_file: tokensFile })

  it('answers 401 without a well-formed Authorization and 403 for an unknown token', async () => {
    app = await makeSecured()
    const body = bodies.mailbox(agentId())
    expect(await text(await call(app, 'GET', '/mailbox', body))).toEqual([401, 'Missing required headers.'])
    expect(await text(await call(app, 'GET', '/mailbox', body, { authorization: 'Bearer' }))).toEqual([401, 'Missing required headers.'])
    expect(await text(await call(app, 'GET', '/mailbox', body, { authorization: 'Token alice-token' }))).toEqual([401, 'Missing required headers.'])
    expect(await text(await call(app, 'GET', '/mailbox', body, as('mallory')))).toEqual([403, 'Token expired or revoked.'])
    expect((await call(app, 'GET', '/mailbox', body, as('alice-token'))).status).toBe(200)
  })

  it("refuses every route on another client's mailbox", async () => {
    app = await makeSecured()
    const [agent, eveUser] = [agentId(), userId()]
    await call(app, 'POST', '/mailbox', bodies.create(agent, ['m.A']), as('alice-token'))
    await call(app, 'POST', '/mailbox', bodies.create(eveUser), as('eve-token'))
    const forbidden: [string, string, string][] = [
      ['GET', '/mailbox', bodies.mailbox(agent)],
      ['POST', '/mailbox', bodies.create(agent)],
      ['DELETE', '/mailbox', bodies.mailbox(agent)],
      ['PUT', '/message', bodies.send(messageJson(eveUser, agent))],
      ['GET', '/message', bodies.receive(agent, 1)],
      ['GET', '/mailbox/listen', bodies.receive(agent, 1)],
      ['GET', '/mailbox/heartbeat', bodies.mailbox(agent)],
      ['GET', '/mailbox/stats', bodies.mailbox(agent)],
      ['POST', '/mailbox/share', bodies.share(agent, 'other')],
      ['GET', '/mailbox/share', bodies.mailbox(agent)],
      ['DELETE', '/mailbox/share', bodies.share(agent, 'lab')],
    ]
    for (const [method, path, body] of forbidden) {
      expect([method, path, ...(await text(await call(app, method, path, body, as('eve-token'))))]).toEqual([method, path, 403, 'Incorrect permissions'])
    }
    expect(await (await call(app, 'GET', '/discover', bodies.discover('m.A', false), as('eve-token'))).json()).toEqual({ agent_ids: '' })
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent), as('alice-token'))).json()).toEqual({ status: 'ACTIVE' })
  })

  it('lets members of a shared group use the mailbox, and only the owner share into its own groups', async () => {
    app = await makeSecured()
    const agent = agentId()
    await call(app, 'POST', '/mailbox', bodies.create(agent, ['m.A']), as('alice-token'))
    expect((await call(app, 'GET', '/mailbox', bodies.mailbox(agent), as('bob-token'))).status).toBe(403)
    expect(await text(await call(app, 'POST', '/mailbox/share', bodies.share(agent, 'other'), as('alice-token')))).toEqual([403, 'Incorrect permissions'])
    expect((await call(app, 'POST', '/mailbox/share', bodies.share(agent, 'lab'), as('alice-token'))).status).toBe(200)
    expect(await (await call(app, 'GET', '/mailbox/share', bodies.mailbox(agent), as('alice-token'))).json()).toEqual({ group_ids: ['lab'] })
    expect(await (await call(app, 'GET', '/mailbox', bodies.mailbox(agent), as('bob-token'))).json()).toEqual({ status: 'ACTIVE' })
    expect(await (await call(app, 'GET', '/discover', bodies.discover('m.A', false), as('bob-token'))).json()).toEqual({ agent_ids: agent.uid })
    expect((await call(app, 'POST', '/mailbox/share', bodies.share(agent, 'lab'), as('bob-token'))).status).toBe(403)
    expect((await call(app, 'DELETE', '/mailbox/share', bodies.share(agent, 'lab'), as('alice-token'))).status).toBe(200)
    expect((await call(app, 'DELETE', '/mailbox/share', bodies.share(agent, 'never-shared'), as('alice-token'))).status).toBe(200)
    expect((await call(app, 'GET', '/mailbox', bodies.mailbox(agent), as('bob-token'))).status).toBe(403)
  })

  it('refuses a message whose source mailbox belongs to someone else', async () => {
    app = await makeSecured()
    const [aliceUser, agent] = [userId(), agentId()]
    await call(app, 'POST', '/mailbox', bodies.create(aliceUser), as('alice-token'))
    await call(app, 'POST', '/mailbox', bodies.create(agent), as('alice-token'))
    await call(app, 'POST', '/mailbox/share', bodies.share(agent, 'lab'), as('alice-token'))
    expect(await text(await call(app, 'PUT', '/message', bodies.send(messageJson(aliceUser, agent)), as('bob-token')))).toEqual([403, 'Incorrect permissions'])
  })
})
