/**
 * `bun bench/compare.ts`, turned down to one short pair per route and run
 * against this checkout's own HEAD: it must unpack the ref, start both
 * servers, answer every request of every route, and print and write its table.
 */
import { expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { BUN, ROOT, runToEnd } from '../support/process'
import { tempDir } from '../support/temp'

it('compares HEAD with this checkout on every route, in alternating turns, and writes its JSON', async () => {
  const out = tempDir('bench-compare')
  const run = await runToEnd([BUN, join(ROOT, 'bench/compare.ts'), 'HEAD'], { BENCH_OUT: out, BENCH_PAIRS: '1', BENCH_SECONDS: '0.2' })
  expect(run.stderr.slice(-2000)).not.toContain('error:')
  expect(run.code).toBe(0)
  const result = JSON.parse(readFileSync(join(out, 'results', 'compare.json'), 'utf8'))
  expect(result.rows.map((row: { scenario: string }) => row.scenario)).toEqual(['GET /healthz', 'PUT /message 1 KB (Academy)', 'POST /v2/agent/dispatch (VideoSDK), one worker', 'POST /workspaces/{id}/a2a (A2A JSON-RPC message/send, 1 KiB)', 'POST /registry/heartbeat'])
  for (const row of result.rows) {
    expect(row.before).toHaveLength(1)
    expect(row.after[0].result.requests).toBeGreaterThan(0)
    expect(row.byRequests.median).toBeGreaterThan(0)
  }
  expect(run.stdout).toContain('| GET /healthz |')
}, 120_000)
