/** Building release artifacts with package.json's `release` script, and checking a running binary, for the release tests. */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { expect } from 'bun:test'
import { agentId, bodies, messageJson, userId } from './academy'
import { rawRequest } from './http'
import { BUN, ROOT, runToEnd } from './process'

export const VERSION = (JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { version: string }).version

/** Runs `npm run release` (package.json's script, through this Bun) with `args`; resolves with its output or throws. */
export async function release(args: string[]): Promise<{ stdout: string; seconds: number }> {
  const { scripts } = JSON.parse(readFileSync(resolve(ROOT, 'package.json'), 'utf8')) as { scripts: { release: string } }
  const words = scripts.release.split(/\s+/)
  if (words[0] !== 'bun') throw new Error(`package.json's release script does not run bun: ${scripts.release}`)
  const started = performance.now()
  const run = await runToEnd([BUN, ...words.slice(1), ...args])
  if (run.code !== 0) throw new Error(`release failed (exit ${run.code}): ${run.stderr}`)
  return { stdout: run.stdout, seconds: (performance.now() - started) / 1000 }
}

/** SHA256SUMS as a map from file name to digest. */
export function readSums(file: string): Map<string, string> {
  const sums = new Map<string, string>()
  for (const line of readFileSync(file, 'utf8').trimEnd().split('\n')) {
    const match = /^([0-9a-f]{64}) {2}(\S+)$/.exec(line)
    if (!match) throw new Error(`not a sha256sum line: ${JSON.stringify(line)}`)
    sums.set(match[2]!, match[1]!)
  }
  return sums
}

export const sha256Of = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

/** /healthz answers ok, and a message goes from one mailbox to another and is received as sent. */
export async function roundTrip(url: string): Promise<void> {
  const health = await rawRequest(`${url}/healthz`)
  expect(health.status).toBe(200)
  expect(JSON.parse(health.text).status).toBe('ok')
  const [user, agent] = [userId(), agentId()]
  for (const id of [user, agent]) expect((await rawRequest(`${url}/mailbox`, { method: 'POST', body: bodies.create(id) })).status).toBe(200)
  const message = messageJson(user, agent)
  expect((await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(message) })).status).toBe(200)
  expect(JSON.parse((await rawRequest(`${url}/message`, { body: bodies.receive(agent, 5) })).text)).toEqual({ message })
}
