/**
 * What the serving layer knows of a request beyond the web Request it gives
 * the app: the caller's address and whether the caller is still there.
 * Both are read only when a handler asks (an address for a limit, a signal
 * for a long-poll or an A2A call), so the plain request pays for neither.
 * Requests made in-process through `app.handle` have no entry: their own
 * signal stands in and their address is unknown.
 */
/** Why a request was ended before its answer: the caller went away, or shutdown cut it. */
export type GoneReason = 'caller' | 'shutdown'

export interface ServedRequest {
  readonly remoteAddress: string | undefined
  /** Aborted when the caller goes away, or when shutdown ends the request. */
  readonly signal: AbortSignal
  /**
   * Calls `listener` once when the caller goes away or shutdown ends the
   * request (at once when that already happened), without the cost of an
   * abort signal; the function returned stops listening.
   */
  onGone(listener: (reason: GoneReason) => void): () => void
}

export const servedRequests = new WeakMap<Request, ServedRequest>()

/** What serving knows of a request: the serving layer's record, or for an in-process request its own signal and no address. */
export function servedOf(request: Request): ServedRequest {
  return servedRequests.get(request) ?? { signal: request.signal, remoteAddress: undefined, onGone: (listener) => onAbort(request.signal, () => listener('caller')) }
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

/** The caller's address, when the request came in over a socket. */
export function remoteAddressOf(request: Request): string | undefined {
  return servedRequests.get(request)?.remoteAddress
}
