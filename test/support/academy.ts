/**
 * Academy's wire format for tests: the golden strings from the spec's
 * fixtures, and builders for ids, messages and request bodies exactly as
 * Academy's HttpExchangeFactory sends them (double-encoded).
 */
import { randomUUID } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { resolve } from 'node:path'

/** Where the protocol specs live: beside the checkout, or SWITCHBOARD_SPEC_DIR. */
export const SPEC_DIR = resolve(import.meta.dir, '../..', process.env.SWITCHBOARD_SPEC_DIR ?? '../shared/spec')
const FIXTURES = resolve(SPEC_DIR, 'exchange-fixtures.json')

export interface Fixtures {
  user_id: string
  agent_id: string
  action_request: string
  ping_request: string
  shutdown_request: string
  success_response: string
  terminate_auto_reply: string
  wire: Record<string, string>
}

/** The golden strings produced by Academy's own models (null when the spec folder is absent). */
export const fixtures: Fixtures | null = existsSync(FIXTURES) ? (JSON.parse(readFileSync(FIXTURES, 'utf8')) as Fixtures) : null

export interface Id {
  uid: string
  name: string | null
  role: 'agent' | 'user'
}

export const agentId = (name: string | null = null): Id => ({ uid: randomUUID(), name, role: 'agent' })
export const userId = (name: string | null = null): Id => ({ uid: randomUUID(), name, role: 'user' })

/** An EntityId as pydantic serialises it. */
export const idJson = (id: Id) => `{"uid":"${id.uid}","name":${JSON.stringify(id.name)},"role":"${id.role}"}`

/** A message as Academy serialises it. */
export function messageJson(src: Id, dest: Id, options: { kind?: 'request' | 'response'; tag?: string; body?: Record<string, unknown> } = {}): string {
  const kind = options.kind ?? 'request'
  const body = options.body ?? (kind === 'request' ? { kind: 'ping-request' } : { kind: 'success-response' })
  return JSON.stringify({
    header: { src, dest, tag: options.tag ?? randomUUID(), label: null, kind, protocol_version: '1' },
    body,
  })
}

/** Request bodies, as the client sends them. */
export const bodies = {
  mailbox: (id: Id) => JSON.stringify({ mailbox: idJson(id) }),
  create: (id: Id, mro?: string[]) => JSON.stringify(mro ? { mailbox: idJson(id), agent: mro.join(',') } : { mailbox: idJson(id) }),
  send: (message: string) => JSON.stringify({ message }),
  receive: (id: Id, timeout: number | null = 60) => JSON.stringify({ mailbox: idJson(id), timeout }),
  discover: (agent: string, allowSubclasses: boolean) => JSON.stringify({ agent, allow_subclasses: allowSubclasses }),
  share: (id: Id, group: string) => JSON.stringify({ mailbox: idJson(id), group_id: group }),
}
