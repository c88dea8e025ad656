/** Academy wire bodies for the benchmarks (double-encoded, as HttpExchangeFactory sends them). */
import { randomUUID } from 'node:crypto'

export interface Id {
  uid: string
  name: string | null
  role: 'agent' | 'user'
}

export const newAgent = (): Id => ({ uid: randomUUID(), name: null, role: 'agent' })
export const newUser = (): Id => ({ uid: randomUUID(), name: 'bench', role: 'user' })

export const mailboxBody = (id: Id) => JSON.stringify({ mailbox: JSON.stringify(id) })
export const listenBody = (id: Id, timeout = 60) => JSON.stringify({ mailbox: JSON.stringify(id), timeout })

/** A PUT /message body whose message is about `bytes` long. */
export function sendBody(src: Id, dest: Id, kind: 'request' | 'response', bytes: number, tag = randomUUID()): string {
  const message = (padding: string) =>
    JSON.stringify({
      header: { src, dest, tag, label: null, kind, protocol_version: '1' },
      body: kind === 'request' ? { action: 'echo', pargs: padding, kind: 'action-request' } : { result: padding, kind: 'action-response' },
    })
  const overhead = message('').length
  return JSON.stringify({ message: message('x'.repeat(Math.max(0, bytes - overhead))) })
}
