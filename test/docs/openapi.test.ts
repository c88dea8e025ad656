/**
 * The OpenAPI document is generated from the route table: it must be a
 * valid OpenAPI 3.1 document (checked by a maintained validator), document
 * every route with its security, give every request body an example, and
 * let every exchange route's body come as query parameters, which the
 * server takes as it documents them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { validate } from '@readme/openapi-parser'
import { agentId, bodies, idJson } from '../support/academy'
import { startServer, writeTokensFile, type TestServer } from '../support/app'
import { rawRequest } from '../support/http'
import { openApiPath } from '../../src/http/docs'

type Operation = { tags: string[]; security?: Record<string, string[]>[]; parameters?: { name: string; in: string; example?: unknown }[]; requestBody?: { content: Record<string, { example?: unknown }> } }

describe('the OpenAPI document', () => {
  let running: TestServer
  let document: { openapi: string; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } }

  beforeAll(async () => {
    running = await startServer({ auth: 'token', tokens_file: writeTokensFile([{ token: 'alice-token', client: 'alice' }]), admin_token: 'docs-admin' })
    document = JSON.parse((await rawRequest(`${running.url}/swagger/json`)).text)
  })
  afterAll(() => running?.close())

  it('is valid OpenAPI 3.1', async () => {
    expect(document.openapi).toBe('3.1.0')
    const result = await validate(structuredClone(document) as never)
    expect(result.valid ? [] : result.errors).toEqual([])
  })

  it('documents every route of the table, each with the security its access asks for', () => {
    const table = running.app.decorator.switchboard.pipeline.routes.filter((route) => !route.hidden)
    for (const route of table) {
      const operation = document.paths[openApiPath(route.path)]?.[route.method.toLowerCase()]
      expect({ route: `${route.method} ${route.path}`, documented: operation !== undefined }).toEqual({ route: `${route.method} ${route.path}`, documented: true })
      const schemes = (operation!.security ?? []).flatMap((requirement) => Object.keys(requirement))
      if (route.access === 'none') expect(schemes).toEqual([])
      else expect(schemes.length).toBe(1)
    }
    expect(Object.keys(document.components.securitySchemes).sort()).toEqual(['adminToken', 'clientToken', 'videoSdkToken', 'workspaceToken'])
    expect(document.paths['/workspaces/{id}/.well-known/agent-card.json']?.get).toBeDefined()
  })

  it('gives every JSON request body an example', () => {
    const missing: string[] = []
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const media = operation.requestBody?.content['application/json']
        if (media === undefined) continue
        if (media.example === undefined) missing.push(`${method.toUpperCase()} ${path}`)
      }
    }
    expect(missing).toEqual([])
  })

  it('documents the query form of every exchange body, and the server takes it as documented', async () => {
    const getMailbox = document.paths['/mailbox']!.get!
    expect(getMailbox.parameters!.map((parameter) => `${parameter.in}:${parameter.name}`)).toEqual(['query:mailbox'])
    const mailbox = agentId()
    const alice = { authorization: 'Bearer alice-token' }
    expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(mailbox), headers: alice })).status).toBe(200)
    // A browser's GET: no body, the fields as query parameters (a number read as a number).
    const status = await rawRequest(`${running.url}/mailbox?mailbox=${encodeURIComponent(idJson(mailbox))}`, { headers: alice })
    expect(status.status).toBe(200)
    expect(JSON.parse(status.text)).toEqual({ status: 'ACTIVE' })
    const poll = await rawRequest(`${running.url}/message?mailbox=${encodeURIComponent(idJson(mailbox))}&timeout=0.2`, { headers: alice })
    expect(poll.status).toBe(408)
    const bad = await rawRequest(`${running.url}/message?mailbox=${encodeURIComponent(idJson(mailbox))}&timeout=soon`, { headers: alice })
    expect(bad.status).toBe(400)
    expect(bad.text).toStartWith('Missing or invalid field: timeout')
  })
})

describe('the AsyncAPI document', () => {
  let running: TestServer
  beforeAll(async () => {
    running = await startServer()
  })
  afterAll(() => running?.close())

  it('is valid AsyncAPI 3, linked from the OpenAPI document, with every frame of /agent both ways and the event streams', async () => {
    const { Parser } = await import('@asyncapi/parser')
    const openapi = JSON.parse((await rawRequest(`${running.url}/swagger/json`)).text)
    expect(openapi.info.description).toContain('/swagger/asyncapi.json')
    const text = (await rawRequest(`${running.url}/swagger/asyncapi.json`)).text
    const { document, diagnostics } = await new Parser().parse(text)
    // Severity 0 is an error; warnings and hints are left to taste.
    expect(diagnostics.filter((diagnostic) => diagnostic.severity === 0).map((diagnostic) => `${diagnostic.path.join('.')}: ${diagnostic.message}`)).toEqual([])
    expect(document).toBeDefined()
    const parsed = JSON.parse(text)
    expect(Object.values(parsed.channels as Record<string, { address: string }>).map((channel) => channel.address).sort()).toEqual(['/agent', '/events', '/mailbox/listen', '/workspaces/{id}/a2a', '/workspaces/{id}/a2a/message:stream'])
    const eventNames = Object.values(parsed.channels.events.messages as Record<string, { name: string }>).map((message) => message.name)
    expect(eventNames).toEqual(['event', 'events.missed', 'events.overflow'])
    const agent = parsed.channels.workerSocket.messages as Record<string, { payload: { properties: { type: { const: string } } } }>
    const types = Object.values(agent).map((message) => message.payload.properties.type.const)
    for (const type of ['register', 'availability_response', 'job_update', 'status_update', 'ping', 'availability_request', 'job_assignment', 'job_termination', 'pong']) expect(types).toContain(type)
    const actions = Object.values(parsed.operations as Record<string, { action: string }>).map((operation) => operation.action)
    expect(new Set(actions)).toEqual(new Set(['send', 'receive']))
  })

  it('serves the UI assets gzipped to a caller that takes gzip, and as swagger-ui-dist has them to one that does not', async () => {
    for (const [name, type] of [['swagger-ui-bundle.js', 'text/javascript; charset=utf-8'], ['swagger-ui.css', 'text/css; charset=utf-8']]) {
      const original = await Bun.file(Bun.resolveSync(`swagger-ui-dist/${name}`, import.meta.dir)).bytes()
      const plain = await rawRequest(`${running.url}/swagger/assets/${name}`)
      expect([plain.status, plain.headers['content-type'], plain.headers['content-encoding'], plain.headers.vary]).toEqual([200, type, undefined, 'accept-encoding'])
      expect(plain.bytes.equals(original)).toBe(true)
      const gzipped = await rawRequest(`${running.url}/swagger/assets/${name}`, { headers: { 'accept-encoding': 'gzip' } })
      expect(gzipped.headers['content-encoding']).toBe('gzip')
      expect(Buffer.from(Bun.gunzipSync(new Uint8Array(gzipped.bytes))).equals(Buffer.from(original))).toBe(true)
    }
    expect((await rawRequest(`${running.url}/swagger/assets/other.js`)).status).toBe(404)
  })
})
