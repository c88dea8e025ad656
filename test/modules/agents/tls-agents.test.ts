/**
 * An https agent named by its host name: the proxy connects to the address
 * the name was checked at, and still sends the name as SNI and Host and
 * checks the agent's certificate against the name. A real Switchboard
 * process that trusts the test certificate (NODE_EXTRA_CA_CERTS), verifying
 * nothing less than it would for any agent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BUN, startProcess, type RunningProcess } from '../../support/process'
import { messageSend } from './support'

const ADMIN = 'operator-token'
const dir = mkdtempSync(join(tmpdir(), 'switchboard-agent-tls-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
// A certificate for the name only: an address in the URL does not match it.
const generated = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost', '-keyout', key, '-out', cert], { stdio: 'pipe' })
const missing = generated.error ? `openssl is not available (${generated.error.message})` : generated.status !== 0 ? `openssl failed: ${generated.stderr}` : null
// The agent listens on 127.0.0.1 only, so localhost must resolve there first.
const localhost = await lookup('localhost').then(
  (entry) => entry.address,
  () => null,
)
if (missing !== null && process.env.CI === 'true') throw new Error(`agent TLS tests need openssl under CI: ${missing}`)

describe.skipIf(missing !== null || localhost !== '127.0.0.1')('an https agent reached through the proxy', () => {
  let child: RunningProcess
  let agent: https.Server
  let port = 0
  const seen: { sni: string | undefined; host: string | undefined }[] = []
  beforeAll(async () => {
    agent = https.createServer({ key: readFileSync(key), cert: readFileSync(cert) }, (req, res) => {
      seen.push({ sni: (req.socket as { servername?: string }).servername, host: req.headers.host })
      req.resume()
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { kind: 'message', role: 'agent', messageId: 'm', parts: [{ kind: 'text', text: 'over tls' }] } }))
      })
    })
    await new Promise<void>((resolve) => agent.listen(0, '127.0.0.1', resolve))
    port = (agent.address() as AddressInfo).port
    child = await startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn', '--admin-token', ADMIN, '--allow-private-agent-urls'], { NODE_EXTRA_CA_CERTS: cert })
  })
  afterAll(async () => {
    if (child && child.process.exitCode === null) child.process.kill('SIGKILL')
    agent?.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** Registers `url` for a new workspace and calls it; resolves with the status and the text of the answer. */
  const callAt = async (url: string) => {
    const created = await fetch(`${child.url}/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'tls' }) })
    const { id, auth_token: token } = (await created.json()) as { id: string; auth_token: string }
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' }
    expect((await fetch(`${child.url}/registry/register`, { method: 'POST', headers, body: JSON.stringify({ id, url, agent_card: {} }) })).status).toBe(200)
    const response = await fetch(`${child.url}/workspaces/${id}/a2a`, { method: 'POST', headers, body: JSON.stringify(messageSend('hello')) })
    return { status: response.status, text: await response.text() }
  }

  it('sends the name as SNI and Host and checks the certificate against it', async () => {
    const answer = await callAt(`https://localhost:${port}/a2a`)
    expect(answer).toMatchObject({ status: 200 })
    expect(answer.text).toContain('over tls')
    expect(seen).toEqual([{ sni: 'localhost', host: `localhost:${port}` }])
  })

  it('refuses the same agent at an address its certificate does not name', async () => {
    const answer = await callAt(`https://127.0.0.1:${port}/a2a`)
    expect(answer.status).toBe(503)
    expect(answer.text).toContain('ERR_TLS_CERT_ALTNAME_INVALID')
  })
})
