/**
 * What the serving layer knows of a request beyond its bytes: who sent it,
 * its id, and whether the caller is still there. Both adapters make one per
 * request (node:http from the socket, the Elysia adapter from the web
 * Request's own signal), so handlers never ask which way a request came in.
 */

/** Why a request was ended before its answer: the caller went away, or shutdown cut it. */
export type GoneReason = 'caller' | 'shutdown'

/**
 * A request being answered. The abort signal handlers see is made only when
 * one asks for it (a long-poll): most requests never do, and a relayed event
 * stream or an A2A call listens with `onGone`, which needs no signal.
 */
export class InFlight {
  /** Set when the caller went away (not when shutdown ended the request). */
  clientGone = false
  private controller: AbortController | null = null
  private listeners: ((reason: GoneReason) => void)[] | null = null
  private aborted: GoneReason | null = null

  constructor(
    readonly requestId: string,
    readonly remoteAddress: string | undefined,
  ) {}

  /** A request made in-process (`app.handle`): it ends when the web Request's own signal aborts. */
  static of(request: Request, requestId: string): InFlight {
    const entry = new InFlight(requestId, undefined)
    onAbort(request.signal, () => {
      entry.clientGone = true
      entry.abort('caller')
    })
    return entry
  }

  /** Aborted when the caller goes away, or when shutdown ends the request. */
  get signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController()
      // Asked for only after the request was ended (shutdown began first): aborted from the start.
      if (this.aborted) this.controller.abort()
    }
    return this.controller.signal
  }

  /** Calls `listener` once, with the reason, when the caller goes away or shutdown ends the request (at once when that already happened); returns the function that stops listening. */
  onGone(listener: (reason: GoneReason) => void): () => void {
    if (this.aborted) {
      listener(this.aborted)
      return () => {}
    }
    ;(this.listeners ??= []).push(listener)
    return () => {
      const at = this.listeners?.indexOf(listener) ?? -1
      if (at !== -1) this.listeners!.splice(at, 1)
    }
  }

  /** Ends the request: its caller went away, or shutdown cuts it (an A2A call then answers 503, not 499). */
  abort(reason: GoneReason): void {
    if (this.aborted) return
    this.aborted = reason
    this.controller?.abort()
    const listeners = this.listeners
    this.listeners = null
    if (listeners !== null) for (const listener of listeners) listener(reason)
  }
}

/** Calls `listener` once when `signal` aborts (at once when it already has); returns the function that stops listening. */
export function onAbort(signal: AbortSignal, listener: () => void): () => void {
  if (signal.aborted) {
    listener()
    return () => {}
  }
  signal.addEventListener('abort', listener, { once: true })
  return () => signal.removeEventListener('abort', listener)
}
