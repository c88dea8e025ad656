/**
 * What the serving layer knows of a request beyond the web Request it gives
 * the app: the caller's address and whether the caller is still there.
 * Both are read only when a handler asks (an address for a limit, a signal
 * for a long-poll or an A2A call), so the plain request pays for neither.
 * Requests made in-process through `app.handle` have no entry: their own
 * signal stands in and their address is unknown.
 */
export interface ServedRequest {
  readonly remoteAddress: string | undefined
  /** Aborted when the caller goes away, or when shutdown ends the request. */
  readonly signal: AbortSignal
}

export const servedRequests = new WeakMap<Request, ServedRequest>()

/** What serving knows of a request: the serving layer's record, or for an in-process request its own signal and no address. */
export function servedOf(request: Request): ServedRequest {
  return servedRequests.get(request) ?? { signal: request.signal, remoteAddress: undefined }
}

/** The caller's address, when the request came in over a socket. */
export function remoteAddressOf(request: Request): string | undefined {
  return servedRequests.get(request)?.remoteAddress
}
