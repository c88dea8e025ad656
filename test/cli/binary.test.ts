import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { rawRequest } from '../support/http'
import { BUN, ROOT, buildCommand, runToEnd, startProcess, type RunningProcess } from '../support/process'

const dir = mkdtempSync(join(tmpdir(), 'switchboard-binary-'))
const binary = join(dir, 'switchboard')
let running: RunningProcess
let buildOutput = ''

beforeAll(async () => {
  // The build starts the binary once to record its startup order; settings in the environment must not reach that run.
  const build = await runToEnd(await buildCommand(binary), { SWITCHBOARD_PORT: '1', SWITCHBOARD_BACKEND: 'no-such-backend' })
  if (build.code !== 0) throw new Error(`build failed: ${build.stderr}`)
  buildOutput = build.stdout
  // Run from an empty folder: the binary must need no node_modules.
  running = await startProcess([binary, '--port', '0', '--log-level', 'warn'], {}, { cwd: dir })
}, 60_000)

afterAll(() => {
  running?.process.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

describe('the compiled binary', () => {
  it('is one self-contained file', () => {
    expect(statSync(binary).size).toBeGreaterThan(1_000_000)
  })

  it('has its bytecode laid out in the order a start runs it, recorded by a start of the first build', () => {
    expect(buildOutput).toContain(`laid the bytecode out in startup order: ${binary}`)
  })

  it('is built by a script that refuses an argument it does not know, saying which', async () => {
    const refused = await runToEnd([BUN, 'scripts/build.ts', '--outfile', join(dir, 'never'), '--fast'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('unknown argument "--fast"')
    expect(refused.stderr).toContain('usage: bun scripts/build.ts')
  })

  it('answers /healthz, an exchange round trip and /swagger/json, then stops on SIGTERM with exit 0', async () => {
    const health = await rawRequest(`${running.url}/healthz`)
    expect(health.status).toBe(200)
    expect(JSON.parse(health.text).status).toBe('ok')

    const [user, agent] = [userId(), agentId()]
    for (const id of [user, agent]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const message = messageJson(user, agent)
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    expect(JSON.parse((await rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 5) })).text)).toEqual({ message })

    const document = JSON.parse((await rawRequest(`${running.url}/swagger/json`)).text)
    expect(Object.keys(document.paths)).toContain('/mailbox/listen')
    // The assets are embedded gzipped: a browser gets them so, any other caller as they are, byte for byte.
    const original = readFileSync(join(ROOT, 'node_modules/swagger-ui-dist/swagger-ui-bundle.js'))
    const asset = await rawRequest(`${running.url}/swagger/assets/swagger-ui-bundle.js`)
    expect(asset.status).toBe(200)
    expect(asset.headers['content-encoding']).toBeUndefined()
    expect(asset.bytes.equals(original)).toBe(true)
    const gzipped = await rawRequest(`${running.url}/swagger/assets/swagger-ui-bundle.js`, { headers: { 'accept-encoding': 'gzip, deflate, br' } })
    expect(gzipped.headers['content-encoding']).toBe('gzip')
    expect(gzipped.bytes.length).toBeLessThan(original.length / 3)
    expect(Buffer.from(Bun.gunzipSync(new Uint8Array(gzipped.bytes))).equals(original)).toBe(true)

    expect(await running.stop('SIGTERM')).toBe(0)
  })
})
