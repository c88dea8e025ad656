/**
 * Signed agent cards (A2A §8.4): an agent's signature checked against the key
 * set its jku names (served here on loopback), the outcome recorded on the
 * workspace; the cards Switchboard serves re-signed with its own key, which
 * the official SDK's verifier accepts with the key set Switchboard publishes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { generateKeyPairSync } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import express from 'express'
import * as jose from 'jose'
import { AGENT_CARD_PATH, generateAgentCardSignature, verifyAgentCardSignature, type AgentCard } from '@a2a-js/sdk'
import { DefaultRequestHandler, InMemoryTaskStore, type AgentExecutor } from '@a2a-js/sdk/server'
import { agentCardHandler, jsonRpcHandler, restHandler, UserBuilder } from '@a2a-js/sdk/server/express'
import { createLogger } from '../../../src/ops/logger'
import { canonicalCard, CardVerifier } from '../../../src/modules/agents/signing'
import { AgentUrlGuard } from '../../../src/modules/agents/ssrf'
import { makeBackend } from '../../support/backend'
import { serveBackend, makeApp } from '../../support/app'
import { deleteKeys, randomPrefix, testRedis } from '../../support/redis'
import { tempDir } from '../../support/temp'
import { ADMIN_TOKEN, startRegistry, type Registry, type Workspace } from './support'

type Json = Record<string, unknown>

/** A key set served on loopback, counting the requests it gets. */
interface KeySetServer {
  url: string
  /** Paths requested, in order. */
  requests: string[]
  close(): Promise<void>
}

async function serveKeySet(keys: jose.JWK[]): Promise<KeySetServer> {
  const requests: string[] = []
  const server = http.createServer((req, res) => {
    requests.push(req.url ?? '')
    if (req.url === '/redirect.json') {
      res.writeHead(302, { location: '/jwks.json' })
      res.end()
      return
    }
    if (req.url === '/huge.json') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ keys, padding: 'x'.repeat(100 * 1024) }))
      return
    }
    res.writeHead(200, { 'content-type': 'application/jwk-set+json' })
    res.end(JSON.stringify({ keys }))
  })
  server.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/** An agent's signing key: its private key, and the public JWK a key set publishes. */
async function agentKey(kid: string) {
  const { privateKey, publicKey } = await jose.generateKeyPair('ES256', { extractable: true })
  return { privateKey, publicJwk: { ...(await jose.exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } }
}

/** A v1.0 card of the fields the A2A schema knows, so the SDK's canonical form and Switchboard's agree. */
const cardFor = (base: string): AgentCard => ({
  name: 'signed agent',
  description: 'signs its card',
  version: '1.0.0',
  supportedInterfaces: [
    { url: `${base}/a2a/jsonrpc`, protocolBinding: 'JSONRPC', tenant: '', protocolVersion: '1.0' },
    { url: `${base}/a2a/rest`, protocolBinding: 'HTTP+JSON', tenant: '', protocolVersion: '1.0' },
  ],
  provider: undefined,
  capabilities: { streaming: false, pushNotifications: false, extensions: [], extendedAgentCard: true },
  securitySchemes: {},
  securityRequirements: [],
  defaultInputModes: ['text'],
  defaultOutputModes: ['text'],
  skills: [{ id: 'echo', name: 'echo', description: 'echoes', tags: ['echo'], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }],
  signatures: [],
})

/** The SDK's own verifier, with keys fetched from the key set each signature names (here: Switchboard's). */
const sdkVerifier = () =>
  verifyAgentCardSignature(async (kid, jku) => {
    if (jku === undefined) throw new Error('no jku')
    const set = (await (await fetch(jku)).json()) as { keys: jose.JWK[] }
    const key = set.keys.find((entry) => entry.kid === kid)
    if (key === undefined) throw new Error(`no key ${kid}`)
    return key
  })

const headerOf = (card: Json) => jose.decodeProtectedHeader({ protected: (card.signatures as { protected: string }[])[0]!.protected })

/** An SDK agent serving its signed card, and a signed extended card, on both bindings. */
async function startSignedAgent(sign: (card: AgentCard) => Promise<AgentCard>, options: { extendedChangedAfterSigning?: boolean } = {}) {
  const app = express()
  const server = app.listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const card = await sign(cardFor(base))
  const signedExtended = await sign({ ...cardFor(base), skills: [...cardFor(base).skills, { id: 'extended', name: 'extended', description: 'for callers who authenticate', tags: ['x'], examples: [], inputModes: [], outputModes: [], securityRequirements: [] }] })
  const extended = options.extendedChangedAfterSigning ? { ...signedExtended, description: 'changed after signing' } : signedExtended
  const idle: AgentExecutor = { execute: async (_context, bus) => bus.finished(), cancelTask: async () => {} }
  const handler = new DefaultRequestHandler(card, new InMemoryTaskStore(), idle, undefined, undefined, undefined, async () => extended)
  app.use(`/${AGENT_CARD_PATH}`, agentCardHandler({ agentCardProvider: handler }))
  app.use('/a2a/jsonrpc', express.json(), jsonRpcHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  app.use('/a2a/rest', restHandler({ requestHandler: handler, userBuilder: UserBuilder.noAuthentication }))
  return {
    url: `${base}/a2a/jsonrpc`,
    card: card as unknown as Json,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

describe('signed agent cards', () => {
  let registry: Registry
  let keySet: KeySetServer
  let key: Awaited<ReturnType<typeof agentKey>>
  let agent: Awaited<ReturnType<typeof startSignedAgent>>
  let workspace: Workspace
  const lines: string[] = []

  beforeAll(async () => {
    key = await agentKey('agent-key-1')
    keySet = await serveKeySet([key.publicJwk])
    registry = await startRegistry({ log_level: 'info' }, { logger: createLogger('info', (line) => lines.push(line)) })
    const jku = `${keySet.url}/jwks.json`
    agent = await startSignedAgent(generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku }))
    workspace = await registry.createWorkspace('signed')
    await registry.register(workspace, agent.url, agent.card)
  })
  afterAll(async () => {
    await agent?.close()
    await keySet?.close()
    await registry?.close()
  })

  const workspaceRecord = async (id = workspace.id) => (await (await registry.request('GET', `/workspaces/${id}`, { token: ADMIN_TOKEN })).json()) as Json
  const servedCard = async (id = workspace.id) => (await (await registry.request('GET', `/workspaces/${id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })).json()) as Json

  it('computes the canonical form A2A §8.4.1 gives: signatures and empty values left out, keys in RFC 8785 order', () => {
    const card = { name: 'Example Agent', description: '', capabilities: { streaming: false, pushNotifications: false, extensions: [] }, skills: [], signatures: [{ protected: 'x', signature: 'y' }], é: 1, a: [null, { b: '' }, 2] }
    expect(canonicalCard(card)).toBe('{"a":[2],"capabilities":{"pushNotifications":false,"streaming":false},"name":"Example Agent","é":1}')
  })

  it('verifies a card signed with a key set served on loopback, records the outcome on the workspace, and fetches the key set once while it is cached', async () => {
    const record = await workspaceRecord()
    expect(record.card_signature).toMatchObject({ status: 'verified', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json`, reason: null })
    expect(keySet.requests.filter((path) => path === '/jwks.json')).toHaveLength(1)
    const again = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: agent.card } })
    expect(again.status).toBe(200)
    expect(keySet.requests.filter((path) => path === '/jwks.json')).toHaveLength(1)
  })

  it("serves the public card re-signed with Switchboard's key, which the SDK's verifier accepts with the published key set; a tampered card is rejected", async () => {
    const card = await servedCard()
    expect(card.signatures).toHaveLength(1)
    const header = headerOf(card)
    expect(header).toMatchObject({ alg: 'ES256', typ: 'JOSE', jku: `${registry.url}/.well-known/jwks.json` })
    const published = await registry.request('GET', '/.well-known/jwks.json')
    expect(published.headers.get('content-type')).toBe('application/jwk-set+json')
    const { keys } = (await published.json()) as { keys: jose.JWK[] }
    expect(keys.map((entry) => entry.kid)).toEqual([header.kid!])
    expect(keys[0]!.d).toBeUndefined()
    await sdkVerifier()(card as unknown as AgentCard)
    const tampered = { ...card, supportedInterfaces: [{ ...(card.supportedInterfaces as Json[])[0], url: 'https://attacker.example/a2a' }] }
    await expect(sdkVerifier()(tampered as unknown as AgentCard)).rejects.toThrow('No valid signatures')
    // The agent's own signature is not passed on: it no longer matches the rewritten card.
    expect(JSON.stringify(card.signatures)).not.toContain((agent.card.signatures as { signature: string }[])[0]!.signature)
  })

  it('serves the same bytes (and ETag) for the same card, though ECDSA signatures differ each time they are made', async () => {
    const first = await registry.request('GET', `/workspaces/${workspace.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })
    const second = await registry.request('GET', `/workspaces/${workspace.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })
    expect(await first.text()).toBe(await second.text())
    expect(first.headers.get('etag')).toBe(second.headers.get('etag'))
  })

  it('serves the extended card re-signed on JSON-RPC and on HTTP+JSON, after checking the signature the agent put on it', async () => {
    const rpc = await registry.request('POST', `/workspaces/${workspace.id}/a2a`, { token: ADMIN_TOKEN, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method: 'GetExtendedAgentCard', params: {} } })
    expect(rpc.status).toBe(200)
    const fromRpc = ((await rpc.json()) as { result: Json }).result
    const rest = await registry.request('GET', `/workspaces/${workspace.id}/a2a/extendedAgentCard`, { token: ADMIN_TOKEN, headers: { 'a2a-version': '1.0' } })
    expect(rest.status).toBe(200)
    const fromRest = (await rest.json()) as Json
    for (const card of [fromRpc, fromRest]) {
      expect((card.skills as Json[]).map((skill) => skill.id)).toEqual(['echo', 'extended'])
      expect((card.supportedInterfaces as Json[]).every((entry) => entry.url === `${registry.url}/workspaces/${workspace.id}/a2a`)).toBe(true)
      await sdkVerifier()(card as unknown as AgentCard)
    }
  })

  it("refuses an extended card whose signature does not verify with a 502 naming why, on both bindings, and relays it unsigned with --allow-unverified-cards", async () => {
    const jku = `${keySet.url}/jwks.json`
    const changed = await startSignedAgent(generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku }), { extendedChangedAfterSigning: true })
    const lenient = await startRegistry({ allow_unverified_cards: true })
    try {
      for (const server of [registry, lenient]) {
        const target = await server.createWorkspace('extended-changed')
        await server.register(target, changed.url, changed.card)
        const rpc = await server.request('POST', `/workspaces/${target.id}/a2a`, { token: ADMIN_TOKEN, headers: { 'a2a-version': '1.0' }, body: { jsonrpc: '2.0', id: 1, method: 'GetExtendedAgentCard', params: {} } })
        const rest = await server.request('GET', `/workspaces/${target.id}/a2a/extendedAgentCard`, { token: ADMIN_TOKEN, headers: { 'a2a-version': '1.0' } })
        if (server === registry) {
          expect(rpc.status).toBe(502)
          expect(((await rpc.json()) as { error: { message: string } }).error.message).toContain('extended card: the agent card of workspace')
          expect(rest.status).toBe(502)
          expect(JSON.stringify(await rest.json())).toContain('CARD_SIGNATURE_INVALID')
          const { items } = (await (await server.request('GET', `/workspaces/${target.id}/activity`, { token: ADMIN_TOKEN })).json()) as { items: Json[] }
          // Once each: the proxy records a call it ends itself, and the refusal it throws is not recorded again.
          expect(items.map((item) => [item.method, item.status, String(item.error).includes('does not verify')])).toEqual([
            ['GetExtendedAgentCard', 502, true],
            ['GetExtendedAgentCard', 502, true],
          ])
        } else {
          const cards = [((await rpc.json()) as { result: Json }).result, (await rest.json()) as Json]
          for (const card of cards) {
            expect(card.description).toBe('changed after signing')
            expect(card.signatures).toBeUndefined()
          }
        }
      }
    } finally {
      await lenient.close()
      await changed.close()
    }
  })

  it('keeps key sets for a bounded time and count: past either, the key set is fetched again', async () => {
    const verifier = new CardVerifier(new AgentUrlGuard({ allowPrivate: true }), { cacheMs: 300, cacheEntries: 1, timeoutMs: 2000, maxBytes: 65536 })
    const signedWith = (jku: string) => generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku })({ ...(agent.card as unknown as AgentCard), signatures: [] }) as unknown as Promise<Json>
    const [first, second] = await Promise.all([signedWith(`${keySet.url}/jwks.json?first`), signedWith(`${keySet.url}/jwks.json?second`)])
    const fetches = () => keySet.requests.filter((path) => path.startsWith('/jwks.json?')).length
    for (const [card, expected] of [
      [first, 1],
      [first, 1],
      [second, 2],
      [first, 3],
    ] as const) {
      expect((await verifier.check(card)).status).toBe('verified')
      expect(fetches()).toBe(expected)
    }
    await Bun.sleep(350)
    expect((await verifier.check(first)).status).toBe('verified')
    expect(fetches()).toBe(4)
  })

  it('refuses a card whose signature does not verify, with the reason, and keeps the card it had', async () => {
    const forged = { ...agent.card, description: 'changed after signing' }
    const response = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: forged } })
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as { error: { code: string; message: string } }
    expect(error.code).toBe('CARD_SIGNATURE_INVALID')
    expect(error.message).toContain('does not verify with key "agent-key-1"')
    expect(error.message).toContain('--allow-unverified-cards')
    expect(((await workspaceRecord()).agent_card as Json).description).toBe('signs its card')
    // The JS SDK signs only the fields of the v1.0 schema: a field outside it is not covered, so the card does not verify here.
    const withExtra = (await generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json` })({ ...(agent.card as unknown as AgentCard), signatures: [], vendorNote: 'unsigned by the SDK' } as AgentCard)) as unknown as Json
    expect(withExtra.vendorNote).toBe('unsigned by the SDK')
    const extra = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: withExtra } })
    expect(extra.status).toBe(400)
    const other = await registry.createWorkspace('forged')
    const refused = await registry.request('POST', '/registry/register', { token: other.token, body: { id: other.id, url: agent.url, agent_card: forged } })
    expect(refused.status).toBe(400)
    expect((await workspaceRecord(other.id)).url).toBeNull()
  })

  it('with open registration, creates no workspace for a card whose signature does not verify', async () => {
    const open = await startRegistry({ open_registration: true })
    try {
      const id = crypto.randomUUID()
      const refused = await open.request('POST', '/registry/register', { body: { id, url: agent.url, agent_card: { ...agent.card, description: 'changed after signing' } } })
      expect(refused.status).toBe(400)
      expect((await open.request('GET', `/workspaces/${id}`, { token: ADMIN_TOKEN })).status).toBe(404)
      const taken = await open.request('POST', '/registry/register', { body: { id, url: agent.url, agent_card: agent.card } })
      expect(taken.status).toBe(200)
      expect(((await (await open.request('GET', `/workspaces/${id}`, { token: ADMIN_TOKEN })).json()) as Json).card_signature).toMatchObject({ status: 'verified' })
    } finally {
      await open.close()
    }
  })

  it('refuses a signature whose key set is named at a metadata or link-local address without calling it, and one whose key set redirects or is too large', async () => {
    const cases = [
      { jku: 'http://169.254.169.254/latest/jwks.json', reason: 'link-local (cloud metadata)' },
      { jku: 'http://[::ffff:169.254.169.254]/jwks.json', reason: 'IPv4-mapped' },
      { jku: 'http://[fe80::1]/jwks.json', reason: 'link-local' },
      { jku: `${keySet.url}/redirect.json`, reason: 'HTTP 302 (redirects are not followed)' },
      { jku: `${keySet.url}/huge.json`, reason: 'larger than 65536 bytes' },
      { jku: 'file:///etc/passwd', reason: 'must use http or https' },
    ]
    for (const { jku, reason } of cases) {
      const card = (await generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku })({ ...(agent.card as unknown as AgentCard), signatures: [] })) as unknown as Json
      const response = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: card } })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain(reason)
    }
    // Only the loopback key set was called (its redirect was not followed).
    expect(keySet.requests.filter((path) => !path.startsWith('/jwks.json'))).toEqual(['/redirect.json', '/huge.json'])
  })

  it('refuses a key set in a private or loopback range unless --allow-private-agent-urls is given, without calling it', async () => {
    const strict = await startRegistry({ allow_private_agent_urls: false })
    try {
      const target = await strict.createWorkspace('strict')
      const before = keySet.requests.length
      const response = await strict.request('POST', '/registry/update-card', { token: target.token, body: { workspace_id: target.id, agent_card: agent.card } })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain('a loopback address (allowed only with --allow-private-agent-urls)')
      expect(keySet.requests.length).toBe(before)
    } finally {
      await strict.close()
    }
  })

  it('refuses a signature that names no jku, an algorithm outside the asymmetric ones, or a kid or jku past its bound (both are kept on the workspace)', async () => {
    const noJku = (await generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1' })({ ...(agent.card as unknown as AgentCard), signatures: [] })) as unknown as Json
    const longKid = (await generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'k'.repeat(257), jku: `${keySet.url}/jwks.json` })({ ...(agent.card as unknown as AgentCard), signatures: [] })) as unknown as Json
    const longJku = (await generateAgentCardSignature(key.privateKey, { alg: 'ES256', typ: 'JOSE', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json?${'q'.repeat(2048)}` })({ ...(agent.card as unknown as AgentCard), signatures: [] })) as unknown as Json
    const hmac = (await generateAgentCardSignature({ kty: 'oct', k: jose.base64url.encode('shared-secret-shared-secret-1234') }, { alg: 'HS256', typ: 'JOSE', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json` })({ ...(agent.card as unknown as AgentCard), signatures: [] })) as unknown as Json
    for (const [card, reason] of [
      [noJku, 'names no jku'],
      [hmac, 'alg "HS256" is not one of'],
      [longKid, 'its kid is longer than 256 characters'],
      [longJku, 'its jku is longer than 2048 characters'],
    ] as const) {
      const response = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: card } })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain(reason)
    }
  })

  it('refuses malformed signatures with a 400 naming what is wrong, never a 500', async () => {
    const header = (value: unknown) => jose.base64url.encode(JSON.stringify(value))
    const cases: [unknown, string][] = [
      ['not a list', '`signatures` is not an array'],
      [[null], 'needs `protected` and `signature`'],
      [[{ protected: 42, signature: 'x' }], 'needs `protected` and `signature`'],
      [[{ protected: '!!!', signature: 'x' }], 'protected header is not base64url JSON'],
      [[{ protected: header(['a']), signature: 'x' }], 'protected header is not base64url JSON'],
      [[{ protected: header({ alg: 'none', kid: 'k', jku: `${keySet.url}/jwks.json` }), signature: '' }], 'alg "none" is not one of'],
      [[{ protected: header({ alg: 'ES256', kid: 7, jku: `${keySet.url}/jwks.json` }), signature: 'x' }], 'names no kid'],
      [[{ protected: header({ alg: 'ES256', kid: 'missing', jku: `${keySet.url}/jwks.json` }), signature: 'x' }], 'has no key with kid "missing"'],
      [[{ protected: header({ alg: 'ES256', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json` }), signature: 'AAAA' }], 'does not verify with key "agent-key-1"'],
    ]
    for (const [signatures, reason] of cases) {
      const response = await registry.request('POST', '/registry/update-card', { token: workspace.token, body: { workspace_id: workspace.id, agent_card: { ...agent.card, signatures } } })
      expect(response.status).toBe(400)
      expect(((await response.json()) as { error: { message: string } }).error.message).toContain(reason)
    }
  })

  it('signs a card the agent did not sign, and records it as unsigned', async () => {
    const plain = await registry.createWorkspace('plain')
    await registry.register(plain, agent.url, { ...agent.card, signatures: [] })
    expect((await workspaceRecord(plain.id)).card_signature).toMatchObject({ status: 'unsigned', kid: null, jku: null })
    await sdkVerifier()((await servedCard(plain.id)) as unknown as AgentCard)
  })

  describe('with --allow-unverified-cards', () => {
    let lenient: Registry
    const warnings: string[] = []
    beforeAll(async () => {
      lenient = await startRegistry({ allow_unverified_cards: true, log_level: 'warn' }, { logger: createLogger('warn', (line) => warnings.push(line)) })
    })
    afterAll(async () => {
      await lenient?.close()
    })

    it('takes a card whose signature does not verify, records why, warns in the log and serves the card unsigned', async () => {
      const target = await lenient.createWorkspace('lenient')
      await lenient.register(target, agent.url, { ...agent.card, description: 'changed after signing' })
      const record = (await (await lenient.request('GET', `/workspaces/${target.id}`, { token: ADMIN_TOKEN })).json()) as Json
      expect(record.card_signature).toMatchObject({ status: 'invalid', kid: 'agent-key-1', jku: `${keySet.url}/jwks.json` })
      expect((record.card_signature as Json).reason).toContain('does not verify')
      const served = (await (await lenient.request('GET', `/workspaces/${target.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })).json()) as Json
      expect(served.signatures).toBeUndefined()
      expect(served.description).toBe('changed after signing')
      const warning = warnings.map((line) => JSON.parse(line) as Json).find((line) => line.msg === 'agent card signature does not verify: the card is served unsigned')
      expect(warning).toMatchObject({ level: 'warn', workspace: target.id, kid: 'agent-key-1' })
    })
  })
})

describe("Switchboard's card-signing key", () => {
  it('signs with the key file given (--card-signing-key, PEM), published by its thumbprint', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' })
    const path = join(tempDir('card-key'), 'card-key.pem')
    writeFileSync(path, privateKey.export({ format: 'pem', type: 'pkcs8' }))
    const registry = await startRegistry({ card_signing_key: path })
    try {
      const target = await registry.createWorkspace('keyed')
      await registry.register(target, 'http://127.0.0.1:9/a2a', { ...cardFor('http://127.0.0.1:9'), signatures: [] })
      const card = (await (await registry.request('GET', `/workspaces/${target.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })).json()) as Json
      const expectedKid = await jose.calculateJwkThumbprint(publicKey.export({ format: 'jwk' }) as jose.JWK)
      expect(headerOf(card)).toMatchObject({ alg: 'ES384', kid: expectedKid })
      await sdkVerifier()(card as unknown as AgentCard)
      // Verified with the public key the operator holds, not only the one Switchboard publishes.
      const signature = (card.signatures as { protected: string; signature: string }[])[0]!
      await jose.flattenedVerify({ ...signature, payload: jose.base64url.encode(canonicalCard(card)) }, publicKey)
    } finally {
      await registry.close()
    }
  })

  it('signs with a key file holding a JWK (Ed25519, EdDSA)', async () => {
    const { privateKey } = generateKeyPairSync('ed25519')
    const path = join(tempDir('card-key'), 'card-key.jwk')
    writeFileSync(path, JSON.stringify(privateKey.export({ format: 'jwk' })))
    const registry = await startRegistry({ card_signing_key: path })
    try {
      const target = await registry.createWorkspace('jwk-keyed')
      await registry.register(target, 'http://127.0.0.1:9/a2a', { ...cardFor('http://127.0.0.1:9'), signatures: [] })
      const card = (await (await registry.request('GET', `/workspaces/${target.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })).json()) as Json
      expect(headerOf(card).alg).toBe('EdDSA')
      await sdkVerifier()(card as unknown as AgentCard)
    } finally {
      await registry.close()
    }
  })

  it('signs a v0.3 card (url, additionalInterfaces, preferredTransport) over all its fields', async () => {
    const registry = await startRegistry()
    try {
      const target = await registry.createWorkspace('v03')
      const v03 = { name: 'v0.3 agent', description: 'old', version: '1', protocolVersion: '0.3.0', url: 'http://127.0.0.1:9/a2a', preferredTransport: 'JSONRPC', additionalInterfaces: [{ url: 'http://127.0.0.1:9/rest', transport: 'HTTP+JSON' }], capabilities: {}, skills: [] }
      await registry.register(target, 'http://127.0.0.1:9/a2a', v03)
      const card = (await (await registry.request('GET', `/workspaces/${target.id}/.well-known/agent-card.json`, { token: ADMIN_TOKEN })).json()) as Json
      expect(card.url).toBe(`${registry.url}/workspaces/${target.id}/a2a`)
      const { keys } = (await (await registry.request('GET', '/.well-known/jwks.json')).json()) as { keys: jose.JWK[] }
      const signature = (card.signatures as { protected: string; signature: string }[])[0]!
      const verify = (signed: Json) => jose.flattenedVerify({ ...signature, payload: jose.base64url.encode(canonicalCard(signed)) }, jose.createLocalJWKSet({ keys }))
      await verify(card)
      await expect(verify({ ...card, url: 'https://attacker.example/a2a' })).rejects.toThrow('signature verification failed')
    } finally {
      await registry.close()
    }
  })

  it('refuses to start with a key file that holds no private key, naming the setting', async () => {
    const path = join(tempDir('card-key'), 'public.pem')
    writeFileSync(path, generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'pem', type: 'spki' }))
    await expect(makeApp({ card_signing_key: path })).rejects.toThrow('invalid setting "card_signing_key"')
    await expect(makeApp({ card_signing_key: join(tempDir('card-key'), 'missing.pem') })).rejects.toThrow('cannot read')
  })
})

const redis = await testRedis()

describe.skipIf(redis.url === null)('card signing across instances sharing Redis', () => {
  it('two instances, with no key file, sign with the same generated key', async () => {
    const prefix = randomPrefix()
    const options = { redis_url: redis.url!, redis_prefix: prefix }
    const [a, b] = await Promise.all([makeBackend('redis', options), makeBackend('redis', options)])
    // One public URL, as instances behind one load balancer have: the cards they serve name the same URLs.
    const config = { admin_token: ADMIN_TOKEN, allow_private_agent_urls: true, public_url: 'https://switchboard.example' }
    const [one, two] = await Promise.all([serveBackend(a, config), serveBackend(b, config)])
    try {
      const auth = { authorization: `Bearer ${ADMIN_TOKEN}` }
      const created = (await (await fetch(`${one.url}/workspaces`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'shared' }) })).json()) as { id: string; auth_token: string }
      const registered = await fetch(`${one.url}/registry/register`, {
        method: 'POST',
        headers: { authorization: `Bearer ${created.auth_token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: created.id, url: 'http://127.0.0.1:9/a2a', agent_card: { ...cardFor('http://127.0.0.1:9'), signatures: [] } }),
      })
      expect(registered.status).toBe(200)
      // Both ask for their key at once: the first written is the one both use.
      const cards = await Promise.all([one, two].map(async (server) => (await (await fetch(`${server.url}/workspaces/${created.id}/.well-known/agent-card.json`, { headers: auth })).json()) as Json))
      const sets = await Promise.all([one, two].map(async (server) => (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as { keys: jose.JWK[] }))
      expect(sets[0]).toEqual(sets[1]!)
      expect(headerOf(cards[0]!).kid).toBe(headerOf(cards[1]!).kid!)
      expect(headerOf(cards[0]!).kid).toBe(sets[0]!.keys[0]!.kid!)
      // The ETag does not depend on the signature's bytes, which each instance makes anew: a cached card is good at either.
      const etags = await Promise.all([one, two].map(async (server) => (await fetch(`${server.url}/workspaces/${created.id}/.well-known/agent-card.json`, { headers: auth })).headers.get('etag')))
      expect(etags[0]).toBe(etags[1]!)
      expect((await fetch(`${two.url}/workspaces/${created.id}/.well-known/agent-card.json`, { headers: { ...auth, 'if-none-match': etags[0]! } })).status).toBe(304)
      expect(headerOf(cards[0]!).jku).toBe('https://switchboard.example/.well-known/jwks.json')
      const verify = verifyAgentCardSignature(async (kid) => sets[0]!.keys.find((entry) => entry.kid === kid)!)
      for (const card of cards) await verify(card as unknown as AgentCard)
    } finally {
      await Promise.all([one.close(), two.close()])
      await deleteKeys(redis.url!, prefix)
    }
  }, 20_000)
})
