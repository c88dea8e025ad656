/**
 * What an agent's answer can make a real Switchboard process hold: a 400 MiB
 * answer (with its length declared, in pieces, or as one event of a stream)
 * and a gzip bomb (300 MiB in ~300 KiB) each get the caller a clear JSON-RPC
 * error, and the process's peak resident memory stays within 64 MiB of what
 * it was before, with the default a2a_response_limit_kb (16 MiB).
 */
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { existsSync } from 'node:fs'
import { gzipBomb, messageSend, startPlainAgent, type PlainAgent } from '../modules/agents/support'
import { BUN, memoryOf, startProcess, type RunningProcess } from '../support/process'

const ADMIN = 'operator-token'
const MIB = 1024 * 1024
/** How far above its resident memory before the attacks the process's peak may go. */
const BOUND_MIB = 64

describe.skipIf(!existsSync('/proc/self/status'))('a Switchboard process proxying oversized agent answers', () => {
  let child: RunningProcess
  let agent: PlainAgent
  let workspace: { id: string; token: string }
  beforeAll(async () => {
    child = await startProcess([BUN, 'src/main.ts', '--port', '0', '--log-level', 'warn', '--admin-token', ADMIN, '--allow-private-agent-urls'])
    agent = await startPlainAgent()
    const created = await fetch(`${child.url}/workspaces`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'big' }) })
    const body = (await created.json()) as { id: string; auth_token: string }
    workspace = { id: body.id, token: body.auth_token }
    const registered = await fetch(`${child.url}/registry/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${workspace.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ id: workspace.id, url: agent.url, agent_card: { name: 'big', url: agent.url } }),
    })
    expect(registered.status).toBe(200)
  })
  afterAll(async () => {
    if (child.process.exitCode === null) child.process.kill('SIGKILL')
    await agent.close()
  })

  const call = (text: string, method = 'message/send') =>
    fetch(`${child.url}/workspaces/${workspace.id}/a2a`, { method: 'POST', headers: { authorization: `Bearer ${workspace.token}`, 'content-type': 'application/json' }, body: JSON.stringify(messageSend(text, method)) })

  /** A whole answer: its status and error message (an answer that is no error is not read). */
  const whole = async (text: string) => {
    const response = await call(text)
    if (response.status === 200) {
      await response.body?.cancel()
      return { status: 200, error: null }
    }
    return { status: response.status, error: ((await response.json()) as { error: { message: string } }).error.message }
  }

  /** A stream: its status, the last event's error message, and whether more than 64 MiB came (then it is left). */
  const streamed = async (text: string) => {
    const response = await call(text, 'message/stream')
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let tail = ''
    let received = 0
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      received += value.length
      tail = (tail + decoder.decode(value, { stream: true })).slice(-4096)
      if (received > 64 * MIB) {
        await reader.cancel()
        return { status: response.status, error: null, relayedPast64MiB: true }
      }
    }
    const last = tail.trim().split('\n').at(-1) ?? ''
    const error = last.startsWith('data: {') ? ((JSON.parse(last.slice(6)) as { error?: { message: string } }).error?.message ?? null) : null
    return { status: response.status, error, relayedPast64MiB: false }
  }

  it(`keeps its peak resident memory within ${BOUND_MIB} MiB of its start through 400 MiB answers and a gzip bomb, and answers each with a clear error`, async () => {
    const bomb = await gzipBomb(300 * MIB)
    expect(bomb.length).toBeLessThan(MIB)
    // Warm-up: the paths the attacks take, once with answers of ordinary size.
    for (let i = 0; i < 3; i++) {
      expect((await whole('big:100000:sized')).status).toBe(200)
      expect((await whole('big:100000:chunked')).status).toBe(200)
      expect((await streamed('events:5:1000')).error).toBeNull()
    }
    Bun.gc(true)
    await Bun.sleep(200)
    const before = memoryOf(child.process.pid)
    const limit = 'is larger than the limit of 16777216 bytes (a2a_response_limit_kb)'
    const results = {
      sized: await whole(`big:${400 * MIB}:sized`),
      chunked: await whole(`big:${400 * MIB}:chunked`),
      gzip: await whole(`gzip:${300 * MIB}`),
      event: await streamed(`bigevent:${400 * MIB}`),
    }
    const after = memoryOf(child.process.pid)
    console.log(`switchboard RSS: ${before.now.toFixed(1)} MiB before, peak ${after.peak.toFixed(1)} MiB (+${(after.peak - before.now).toFixed(1)}), ${after.now.toFixed(1)} MiB after; gzip bomb ${(bomb.length / 1024).toFixed(0)} KiB`)
    expect(results).toEqual({
      sized: { status: 502, error: `agent response of ${400 * MIB} bytes ${limit}` },
      chunked: { status: 502, error: `agent response ${limit}` },
      gzip: { status: 502, error: 'agent answered with Content-Encoding "gzip", though it was asked for identity: Switchboard does not decompress agent answers' },
      event: { status: 200, error: 'agent stream sent an event larger than the limit of 16777216 bytes (a2a_response_limit_kb)', relayedPast64MiB: false },
    })
    expect(after.peak - before.now).toBeLessThan(BOUND_MIB)
    // Still serving.
    expect((await whole('echo:still here')).status).toBe(200)
  }, 120_000)
})
