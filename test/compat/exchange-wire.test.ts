/**
 * Wire compatibility with Academy, from the golden strings its own models
 * produce (spec/exchange-fixtures.json beside the checkout).
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { fixtures, SPEC_DIR, type Fixtures } from '../support/academy'
import { call, makeApp, type TestApp } from '../support/app'

if (!fixtures) {
  const reason = `exchange wire fixtures not found in ${SPEC_DIR} (set SWITCHBOARD_SPEC_DIR)`
  if (process.env.CI === 'true') throw new Error(reason)
  console.warn(`skipping Academy wire-compat cases: ${reason}`)
}

describe.skipIf(!fixtures)("Academy's exact request bodies", () => {
  const golden = fixtures as Fixtures
  let app: TestApp
  afterEach(async () => {
    await app?.decorator.switchboard.close()
  })
  const agentMailbox = () => JSON.stringify({ mailbox: golden.agent_id })
  const userMailbox = () => JSON.stringify({ mailbox: golden.user_id })

  async function setUp() {
    app = await makeApp()
    expect((await call(app, 'POST', '/mailbox', golden.wire['POST /mailbox (agent)'])).status).toBe(200)
    expect((await call(app, 'POST', '/mailbox', golden.wire['POST /mailbox (user)'])).status).toBe(200)
  }

  it('delivers the action request byte for byte', async () => {
    await setUp()
    expect((await call(app, 'PUT', '/message', golden.wire['PUT /message'])).status).toBe(200)
    const response = await call(app, 'GET', '/message', golden.wire['GET /message'])
    expect(await response.text()).toBe(JSON.stringify({ message: golden.action_request }))
  })

  it('round-trips every message kind unchanged', async () => {
    await setUp()
    for (const message of [golden.ping_request, golden.shutdown_request]) {
      expect((await call(app, 'PUT', '/message', JSON.stringify({ message }))).status).toBe(200)
      expect(await (await call(app, 'GET', '/message', golden.wire['GET /message'])).json()).toEqual({ message })
    }
    expect((await call(app, 'PUT', '/message', JSON.stringify({ message: golden.success_response }))).status).toBe(200)
    expect(await (await call(app, 'GET', '/message', JSON.stringify({ mailbox: golden.user_id, timeout: 1 }))).json()).toEqual({ message: golden.success_response })
  })

  it('answers a queued request with the exact terminate auto-reply', async () => {
    await setUp()
    await call(app, 'PUT', '/message', golden.wire['PUT /message'])
    expect((await call(app, 'DELETE', '/mailbox', agentMailbox())).status).toBe(200)
    const reply = await call(app, 'GET', '/message', JSON.stringify({ mailbox: golden.user_id, timeout: 1 }))
    expect(await reply.json()).toEqual({ message: golden.terminate_auto_reply })
    expect(await (await call(app, 'GET', '/mailbox', userMailbox())).json()).toEqual({ status: 'ACTIVE' })
  })

  it('discovers the agent from its MRO as the client asks', async () => {
    await setUp()
    const response = await call(app, 'GET', '/discover', golden.wire['GET /discover'])
    expect(await response.json()).toEqual({ agent_ids: JSON.parse(golden.agent_id).uid })
  })

  it('streams the message on listen with the body the client sends', async () => {
    await setUp()
    await call(app, 'PUT', '/message', golden.wire['PUT /message'])
    const response = await call(app, 'GET', '/mailbox/listen', golden.wire['GET /mailbox/listen'], { accept: 'text/event-stream' })
    const reader = response.body!.getReader()
    let text = ''
    while (!text.includes('\r\n\r\ndata: ')) text += new TextDecoder().decode((await reader.read()).value)
    while (!text.endsWith('\r\n\r\n') || text.split('data: ').length < 2) text += new TextDecoder().decode((await reader.read()).value)
    await reader.cancel()
    expect(text).toBe(`retry: 0\r\n\r\ndata: ${golden.action_request}\r\n\r\n`)
  })
})
