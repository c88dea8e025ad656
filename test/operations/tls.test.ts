/** HTTPS and WSS end to end with a self-signed certificate the clients trust (no verification turned off). */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import https from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import WebSocket from 'ws'
import { agentId, bodies } from '../support/academy'
import { BUN, runToEnd, startProcess, type RunningProcess } from '../support/process'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-tls-'))
const cert = join(dir, 'cert.pem')
const key = join(dir, 'key.pem')
const generated = spawnSync(
  'openssl',
  ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', key, '-out', cert],
  { stdio: 'pipe' },
)
const missing = generated.error ? `openssl is not available (${generated.error.message})` : generated.status !== 0 ? `openssl failed: ${generated.stderr}` : null
if (missing !== null) {
  if (process.env.CI === 'true') throw new Error(`TLS tests need openssl under CI: ${missing}`)
  console.warn(`skipping TLS tests: ${missing}`)
}

let child: RunningProcess | null = null
let ca = ''

/** One HTTPS request trusting only the test certificate; resolves with status, headers and the text read until `until` appears or the body ends. */
function request(url: string, options: { method?: string; body?: string; until?: string } = {}): Promise<{ status: number; text: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method: options.method ?? 'GET', ca, headers: options.body ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(options.body)) } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        text += chunk
        if (options.until && text.includes(options.until)) {
          resolve({ status: res.statusCode ?? 0, text, headers: res.headers })
          req.destroy()
        }
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, headers: res.headers }))
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

describe.skipIf(missing !== null)('TLS', () => {
  beforeAll(async () => {
    ca = readFileSync(cert, 'utf8')
    // Academy's exchange.toml names the files certfile and keyfile.
    const config = join(dir, 'exchange.toml')
    writeFileSync(config, `certfile = ${JSON.stringify(cert)}\nkeyfile = ${JSON.stringify(key)}\n`)
    child = await startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn', '--config', config])
  })
  afterAll(async () => {
    if (child) expect(await child.stop('SIGTERM')).toBe(0)
    rmSync(dir, { recursive: true, force: true })
  })

  it('listens on https:// and answers requests from a client that trusts the certificate', async () => {
    expect(child!.url).toStartWith('https://')
    const response = await request(`${child!.url}/healthz`)
    expect(response.status).toBe(200)
    expect(JSON.parse(response.text).status).toBe('ok')
    expect(response.headers['x-request-id']).toBeString()
  })

  it('switchboard healthcheck with the same settings asks /readyz over https:// and exits 0', async () => {
    const port = new URL(child!.url).port
    const checked = await runToEnd([BUN, 'src/main.ts', 'healthcheck', '--config', join(dir, 'exchange.toml'), '--port', port])
    expect(checked.stderr).toBe('')
    expect(checked.code).toBe(0)
  })

  it('refuses the handshake of a client that does not trust the certificate', async () => {
    ca = ''
    try {
      await expect(request(`${child!.url}/healthz`)).rejects.toThrow(/self.signed|certificate/i)
    } finally {
      ca = readFileSync(cert, 'utf8')
    }
  })

  it('relays an event stream over HTTPS as it is written', async () => {
    const mailbox = agentId()
    expect((await request(`${child!.url}/mailbox`, { method: 'POST', body: bodies.create(mailbox) })).status).toBe(200)
    const stream = await request(`${child!.url}/mailbox/listen`, { body: bodies.receive(mailbox, 10), until: 'retry: 0' })
    expect(stream.status).toBe(200)
    expect(stream.text).toStartWith('retry: 0')
  })

  it('registers a worker over wss://', async () => {
    const ws = new WebSocket(`${child!.url.replace('https', 'wss')}/agent`, { ca, headers: { authorization: 'Bearer worker-token' } })
    const reply = await new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.once('error', reject)
      ws.once('open', () => ws.send(JSON.stringify({ type: 'register', worker_id: '', agent_name: 'voice-agent', max_processes: 1, load_threshold: 0.75 })))
      ws.once('message', (raw) => resolve(JSON.parse(raw.toString()) as Record<string, unknown>))
    })
    expect(reply).toMatchObject({ type: 'register', success: true })
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)))
    ws.close(1000)
    expect(await closed).toBe(1000)
  })
})
