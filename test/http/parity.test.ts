/**
 * Generated from the route table: every route is called over a real socket
 * (node:http adapter) and through `app.handle` (Elysia adapter) with the same
 * inputs — a valid request, bad JSON, a body over the limit, no credentials,
 * wrong credentials, over the rate limit, and during shutdown — and both
 * must answer with the same status, content type, headers that matter and
 * body shape. Each adapter gets an instance of its own with the same config,
 * so the same sequence of requests meets the same state on both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import type { Config } from '../../src/config'
import type { AnyRoute } from '../../src/http/route'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { call, makeApp, startServer, writeTokensFile, type TestApp, type TestServer } from '../support/app'
import { rawRequest } from '../support/http'

const ADMIN = 'parity-admin-token'
const ID = '5b0c2a3e-8f1d-4c6e-9a7b-1d2e3f405162'
const tokens = writeTokensFile([{ token: 'alice-token', client: 'alice', groups: ['team'] }])
const BASE: Partial<Config> = {
  auth: 'token',
  tokens_file: tokens,
  admin_token: ADMIN,
  max_body_kb: 8,
  listen_timeout: 1,
  dispatch_timeout_ms: 50,
  availability_timeout_ms: 50,
}

const owner = agentId('owned')
const user = userId()
/** A valid body for each route that takes one (the same on both instances). */
const VALID: Record<string, string> = {
  'POST /mailbox': bodies.create(owner, ['mod.Owned']),
  'DELETE /mailbox': bodies.mailbox(agentId()),
  'GET /mailbox': bodies.mailbox(owner),
  'PUT /message': bodies.send(messageJson(user, owner)),
  'GET /message': JSON.stringify({ mailbox: JSON.stringify(owner), timeout: 0.1 }),
  'GET /mailbox/listen': JSON.stringify({ mailbox: JSON.stringify(owner), timeout: 0.1 }),
  'GET /discover': bodies.discover('mod.Owned', true),
  'GET /mailbox/heartbeat': bodies.mailbox(owner),
  'GET /mailbox/stats': bodies.mailbox(owner),
  'POST /mailbox/share': bodies.share(owner, 'team'),
  'GET /mailbox/share': bodies.mailbox(owner),
  'DELETE /mailbox/share': bodies.share(owner, 'team'),
  'POST /v2/agent/dispatch': JSON.stringify({ meetingId: 'room-1', agentId: 'nobody' }),
  'POST /jobs': JSON.stringify({ agent_name: 'nobody', room_id: 'room-1' }),
  'POST /workspaces': JSON.stringify({ name: 'planner', id: ID }),
  'POST /workspaces/:id/a2a': JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'message/send', params: { message: { messageId: 'm', role: 'user', parts: [] } } }),
  'POST /registry/register': JSON.stringify({ id: ID, url: 'http://127.0.0.1:9/a2a' }),
  'POST /registry/heartbeat': JSON.stringify({ workspace_id: ID }),
  'POST /registry/update-card': JSON.stringify({ workspace_id: ID, agent_card: { name: 'planner' } }),
}

/** A value for each path parameter of the table. */
const PARAMS: Record<string, string> = { id: ID, name: 'swagger-ui.css', tenant: 'acme', taskId: 'task-1', configId: 'config-1' }
const key = (route: AnyRoute) => `${route.method} ${route.path}`
/** A query for routes that need one to end: an event stream stays open unless told when to end. */
const QUERY: Record<string, string> = { 'GET /events': '?timeout=0.1' }
const pathOf = (route: AnyRoute) => route.path.replace(/\/:([A-Za-z_][A-Za-z0-9_]*)/g, (_, name: string) => `/${PARAMS[name]}`) + (QUERY[key(route)] ?? '')
/** The credentials a route's access asks for. */
const credentialsFor = (route: AnyRoute): Record<string, string> =>
  route.access === 'none' ? {} : { authorization: route.access === 'client' || route.access === 'worker' ? 'Bearer alice-token' : `Bearer ${ADMIN}` }

interface Case {
  label: string
  route: AnyRoute
  body?: string
  headers: Record<string, string>
}

function casesOf(route: AnyRoute): Case[] {
  const valid = VALID[key(route)] ?? (route.body === undefined ? undefined : '{}')
  const credentials = credentialsFor(route)
  const cases: Case[] = [
    { label: 'valid', route, body: valid, headers: credentials },
    { label: 'bad JSON', route, body: '{"oops": ', headers: credentials },
    { label: 'too large', route, body: JSON.stringify({ pad: 'x'.repeat(9 * 1024) }), headers: credentials },
  ]
  if (route.access !== 'none') {
    cases.push({ label: 'no credentials', route, body: valid, headers: {} })
    cases.push({ label: 'wrong credentials', route, body: valid, headers: { authorization: 'Bearer not-a-known-token' } })
  }
  return cases
}

interface Answer {
  status: number
  type: string | null
  retryAfter: boolean
  rateLimited: boolean
  requestId: boolean
  shape: unknown
}

/** What must agree: values that differ by instance (ids, tokens, times) are reduced to their type. */
function shapeOf(text: string, type: string | null): unknown {
  if (type?.includes('json')) {
    try {
      return skeleton(JSON.parse(text))
    } catch {
      return 'invalid JSON'
    }
  }
  return text.replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>').replace(/\d+(\.\d+)?/g, '<n>').slice(0, 300)
}

function skeleton(value: unknown): unknown {
  if (Array.isArray(value)) return value.length === 0 ? [] : [skeleton(value[0])]
  if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([name, inner]) => [name, skeleton(inner)]))
  // An error's words are the same on both: they are kept (numbers masked); other strings vary by instance.
  return typeof value === 'string' ? 'string' : value === null ? null : typeof value
}

const answerOf = (status: number, header: (name: string) => string | null | undefined, text: string): Answer => {
  const type = header('content-type') ?? null
  return {
    status,
    type,
    retryAfter: header('retry-after') != null,
    rateLimited: header('x-ratelimit-limit') != null,
    requestId: header('x-request-id') != null,
    shape: shapeOf(text, type),
  }
}

async function overSocket(server: TestServer, request: Case): Promise<Answer> {
  const response = await rawRequest(`${server.url}${pathOf(request.route)}`, { method: request.route.method, body: request.body, headers: request.headers })
  return answerOf(response.status, (name) => response.headers[name] as string | undefined, response.text)
}

async function inProcess(app: TestApp, request: Case): Promise<Answer> {
  const response = await call(app, request.route.method, pathOf(request.route), request.body, request.headers)
  return answerOf(response.status, (name) => response.headers.get(name), await response.text())
}

/** Runs the cases in order on both instances, comparing each answer. */
async function compare(server: TestServer, app: TestApp, cases: Case[], phase: string): Promise<string[]> {
  const differences: string[] = []
  for (const request of cases) {
    const socket = await overSocket(server, request)
    const handled = await inProcess(app, request)
    if (JSON.stringify(socket) !== JSON.stringify(handled)) differences.push(`${phase}: ${key(request.route)} (${request.label}): socket ${JSON.stringify(socket)} ≠ app.handle ${JSON.stringify(handled)}`)
  }
  return differences
}

describe('every route, over a socket and through app.handle', () => {
  let server: TestServer
  let app: TestApp
  let routes: readonly AnyRoute[]

  beforeAll(async () => {
    server = await startServer(BASE)
    app = await makeApp(BASE)
    routes = app.decorator.switchboard.pipeline.routes
  })
  afterAll(async () => {
    await server?.close()
    await app?.decorator.switchboard.close()
  })

  it('answers valid, malformed, too large and unauthenticated requests alike', async () => {
    expect(routes.length).toBeGreaterThan(30)
    const cases = routes.flatMap(casesOf)
    const differences = await compare(server, app, cases, 'serving')
    expect(differences).toEqual([])
    // The cases reach what they aim at: each kind of refusal is among the answers.
    const statuses = new Set((await Promise.all(cases.slice(0, 40).map((request) => inProcess(app, request)))).map((answer) => answer.status))
    for (const status of [200, 400, 401, 413]) expect(statuses.has(status)).toBe(true)
  }, 30_000)

  it('answers alike once shutdown has begun', async () => {
    await server.app.decorator.switchboard.drain()
    await app.decorator.switchboard.drain()
    const cases = routes.map((route) => casesOf(route)[0]!)
    expect(await compare(server, app, cases, 'draining')).toEqual([])
    const readiness = await inProcess(app, cases.find((request) => request.route.path === '/readyz')!)
    expect(readiness.status).toBe(503)
  }, 30_000)
})

describe('every route over the rate limit, over a socket and through app.handle', () => {
  let server: TestServer
  let app: TestApp

  beforeAll(async () => {
    const limited = { ...BASE, rate_limit_per_s: 0.001, rate_limit_burst: 1 }
    server = await startServer(limited)
    app = await makeApp(limited)
  })
  afterAll(async () => {
    await server?.close()
    await app?.decorator.switchboard.close()
  })

  it('refuses alike, in each route\'s own shape, with Retry-After', async () => {
    const routes = app.decorator.switchboard.pipeline.routes
    // The first request takes the one token of the bucket; every later one is over the limit.
    const cases = routes.flatMap((route) => [casesOf(route)[0]!, casesOf(route)[0]!])
    expect(await compare(server, app, cases, 'rate limited')).toEqual([])
    const limited = await inProcess(app, cases.find((request) => request.route.path === '/message' && request.route.method === 'PUT')!)
    expect(limited).toMatchObject({ status: 429, type: 'text/plain; charset=utf-8', retryAfter: true })
  }, 30_000)
})
