/**
 * Numbered Academy messages over real HTTP, for the tests that kill servers
 * and then count what was acknowledged against what was received.
 */
import { bodies, messageJson, type Id } from './academy'
import { rawRequest } from './http'

/** A numbered message; its number is its `body.text`. */
export const numbered = (src: Id, dest: Id, n: number) => messageJson(src, dest, { body: { kind: 'ping-request', text: String(n) } })

/** Sends one message; true when acknowledged with 200. */
export async function send(url: string, message: string): Promise<boolean> {
  const response = await rawRequest(`${url}/message`, { method: 'PUT', body: bodies.send(message) })
  if (response.status !== 200) throw new Error(`send answered ${response.status}: ${response.text}`)
  return true
}

/** Receives the next message's number, or null once the mailbox stays empty for `timeout` seconds. */
export async function receive(url: string, mailbox: Id, timeout = 1): Promise<number | null> {
  const response = await rawRequest(`${url}/message`, { body: bodies.receive(mailbox, timeout) })
  if (response.status === 408) return null
  if (response.status !== 200) throw new Error(`receive answered ${response.status}: ${response.text}`)
  const message = JSON.parse((JSON.parse(response.text) as { message: string }).message) as { body: { text: string } }
  return Number(message.body.text)
}

/** Receives until the mailbox stays empty for a second. */
export async function receiveAll(url: string, mailbox: Id): Promise<number[]> {
  const received: number[] = []
  for (let n = await receive(url, mailbox); n !== null; n = await receive(url, mailbox)) received.push(n)
  return received
}

/** Sends numbered messages back to back until the server is gone (or `until()` holds), recording each acknowledged number. */
export async function sendUntilGone(url: string, src: Id, dest: Id, numbers: { next: number }, acknowledged: number[], until: () => boolean = () => false): Promise<void> {
  try {
    while (!until()) {
      const n = numbers.next++
      await send(url, numbered(src, dest, n))
      acknowledged.push(n)
    }
  } catch {
    // The connection broke: the server is gone.
  }
}
