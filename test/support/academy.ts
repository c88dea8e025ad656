/**
 * Academy's wire format for tests: the golden strings and acceptance verdicts
 * of Academy's own models (test/fixtures/academy/exchange.json), and builders
 * for ids, messages and request bodies exactly as Academy's HttpExchangeFactory
 * sends them (double-encoded).
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'

/** What Academy's models made of one message or mailbox field. */
export interface Verdict {
  case: string
  accepted: boolean
  /** For a refused input: the field Academy names (`header.tag`, `body`). */
  field?: string
}

export interface Fixtures {
  user_id: string
  agent_id: string
  action_request: string
  ping_request: string
  shutdown_request: string
  success_response: string
  terminate_auto_reply: string
  wire: Record<string, string>
  /** A message from a newer peer: an unknown header field, protocol_version 1000.0.0, a body of a new shape. */
  incompatible_request: string
  /** The same message as Academy's client serialises it. */
  incompatible_request_as_sent: string
  /** The error response (INCOMPATIBLE_PROTOCOL) the receiving client answers with. */
  incompatible_reply: string
  /** Message.model_validate_json's verdict on each message, with the header it reads from an accepted one. */
  message_acceptance: (Verdict & { message: string; header?: { src: Id; dest: Id; tag: string; label: string | null; kind: 'request' | 'response'; protocol_version: string | null } })[]
  /** The EntityId validator's verdict on each mailbox field, with the id it reads from an accepted one. */
  mailbox_acceptance: (Verdict & { mailbox: string; id?: Id })[]
}

/** The golden strings and verdicts produced by Academy's own models. */
export const fixtures: Fixtures = JSON.parse(readFileSync(resolve(import.meta.dir, '../fixtures/academy/exchange.json'), 'utf8')) as Fixtures

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
