/**
 * Third-party backend plugins given as a file path: loaded from source and
 * by the compiled binary, and refused at startup when they break the contract.
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { agentId, bodies, messageJson, userId } from '../support/academy'
import { rawRequest } from '../support/http'
import { BUN, buildCommand, ROOT, runToEnd, startProcess, type RunningProcess } from '../support/process'

const FIXTURES = join(ROOT, 'test/fixtures/plugins')
const dir = mkdtempSync(join(tmpdir(), 'switchboard-plugins-'))
const binary = join(dir, 'switchboard')
const started: RunningProcess[] = []

beforeAll(async () => {
  const build = await runToEnd(await buildCommand(binary))
  if (build.code !== 0) throw new Error(`build failed: ${build.stderr}`)
  // Outside the project, as a third party's plugin would be.
  for (const fixture of ['renamed-memory.ts', 'incomplete-backend.ts', 'imports-a-package.ts']) copyFileSync(join(FIXTURES, fixture), join(dir, fixture))
  const bundle = await runToEnd([BUN, 'build', join(FIXTURES, 'renamed-memory.ts'), '--target', 'bun', '--outfile', join(dir, 'renamed-memory.js')])
  if (bundle.code !== 0) throw new Error(`bundling the example plugin failed: ${bundle.stderr}`)
}, 90_000)

afterAll(() => {
  for (const running of started) running.process.kill('SIGKILL')
  rmSync(dir, { recursive: true, force: true })
})

async function start(command: string[], cwd: string = ROOT): Promise<RunningProcess> {
  const running = await startProcess([...command, '--port', '0', '--log-level', 'warn'], {}, { cwd })
  started.push(running)
  return running
}

/** Runs a command that must fail at startup; returns its exit code and error output. */
async function refused(command: string[], cwd: string = ROOT): Promise<{ code: number; stderr: string }> {
  const child = Bun.spawn([...command, '--port', '0'], { cwd, stdout: 'pipe', stderr: 'pipe' })
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
  const [stderr, code] = await Promise.all([new Response(child.stderr).text(), child.exited])
  clearTimeout(timer)
  return { code, stderr }
}

/** Ready under the plugin's name, and one message makes the round trip. */
async function expectWorking(running: RunningProcess, backendName: string): Promise<void> {
  expect(running.stdout()).toContain(`(backend ${backendName},`)
  const ready = await rawRequest(`${running.url}/readyz`)
  expect(ready.status).toBe(200)
  expect(JSON.parse(ready.text)).toMatchObject({ status: 'ready', backend: backendName })
  const [user, agent] = [userId(), agentId()]
  for (const id of [user, agent]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
  const message = messageJson(user, agent)
  expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
  expect(JSON.parse((await rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 5) })).text)).toEqual({ message })
  expect(await running.stop('SIGTERM')).toBe(0)
}

describe('a third-party plugin file', () => {
  it('runs from source: ready under its own name, and a message makes the round trip', async () => {
    await expectWorking(await start([BUN, 'src/main.ts', '--backend', 'test/fixtures/plugins/renamed-memory.ts']), 'renamed-memory')
  })

  it('runs in the compiled binary, from a folder outside the project', async () => {
    await expectWorking(await start([binary, '--backend', './renamed-memory.ts'], dir), 'renamed-memory')
  })

  it('runs in the compiled binary as a bundled .js file', async () => {
    await expectWorking(await start([binary, '--backend', './renamed-memory.js'], dir), 'renamed-memory')
  })

  it('is refused at startup when its backend lacks parts of the contract, naming them', async () => {
    for (const command of [[BUN, 'src/main.ts', '--backend', 'test/fixtures/plugins/incomplete-backend.ts'], [binary, '--backend', join(dir, 'incomplete-backend.ts')]]) {
      const { code, stderr } = await refused(command)
      expect(code).not.toBe(0)
      expect(stderr).toContain('backend plugin "incomplete" created a backend that lacks: backend.ready(), backend.mailboxes, backend.workers, backend.agents')
    }
  })

  it('is refused at startup when its default export is not a plugin, naming what is missing', async () => {
    const { code, stderr } = await refused([BUN, 'src/main.ts', '--backend', 'test/fixtures/plugins/not-a-plugin.ts'])
    expect(code).not.toBe(0)
    expect(stderr).toContain('does not follow the plugin contract: `options` (a valibot schema) is missing; `create(options, context)` is missing')
  })

  it('is refused by the compiled binary when it imports a package, saying which', async () => {
    const { code, stderr } = await refused([binary, '--backend', './imports-a-package.ts'], dir)
    expect(code).not.toBe(0)
    expect(stderr).toContain('cannot load backend plugin')
    expect(stderr).toContain("'valibot'")
  })

  it('is refused when the file does not exist', async () => {
    const { code, stderr } = await refused([BUN, 'src/main.ts', '--backend', './no-such-plugin.ts'])
    expect(code).not.toBe(0)
    expect(stderr).toContain(`cannot load backend plugin ${join(ROOT, 'no-such-plugin.ts')}`)
  })
})

describe('the compiled binary with the built-in sqlite backend', () => {
  it('keeps a message across a restart', async () => {
    const db = join(dir, 'binary.db')
    const [user, agent] = [userId(), agentId()]
    let running = await start([binary, '--backend', 'sqlite', '--db', db], dir)
    expect(running.stdout()).toContain('(backend sqlite,')
    for (const id of [user, agent]) expect((await rawRequest(`${running.url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
    const message = messageJson(user, agent)
    expect((await rawRequest(`${running.url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
    expect(await running.stop('SIGTERM')).toBe(0)

    running = await start([binary, '--backend', 'sqlite', '--db', db], dir)
    expect(JSON.parse((await rawRequest(`${running.url}/message`, { body: bodies.receive(agent, 5) })).text)).toEqual({ message })
    expect(await running.stop('SIGTERM')).toBe(0)
  })
})
