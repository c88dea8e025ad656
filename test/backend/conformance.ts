/**
 * The backend contract, once: every plugin's test file runs these cases
 * against a fresh backend per test.
 */
import type { Backend } from '../../src/backend/index'
import { mailboxStoreCases } from './conformance/mailboxes'
import { workerStoreCases } from './conformance/workers'
import { agentStoreCases } from './conformance/agents'
import { instanceStoreCases } from './conformance/instances'
import { journalStoreCases } from './conformance/journal'

/** A factory of fresh, isolated backends (its own key prefix or file), with the plugin options a case sets (e.g. `finished_jobs_kept`). */
export type MakeBackend = (options?: Record<string, unknown>) => Promise<Backend>

export function testBackend(makeBackend: MakeBackend): void {
  mailboxStoreCases(makeBackend)
  workerStoreCases(makeBackend)
  agentStoreCases(makeBackend)
  instanceStoreCases(makeBackend)
  journalStoreCases(makeBackend)
}
