/**
 * CORS for browser clients (setting cors_origins). Only adds headers: a
 * request from an origin that is not allowed is still served as usual
 * (Molecule's client sends Origin on every call); the browser then keeps the
 * answer from the page.
 */
const ALLOW_METHODS = 'GET, POST, PUT, DELETE, OPTIONS'
const ALLOW_HEADERS = 'authorization, content-type, x-request-id, a2a-version, a2a-extensions, x-workspace-id, if-none-match, last-event-id'
const EXPOSE_HEADERS = 'x-request-id, retry-after, etag'

export interface CorsPolicy {
  /** The CORS headers for a request from `origin`, or null when it is not allowed. */
  headersFor(origin: string): Record<string, string> | null
}

/** The policy of a cors_origins setting (comma-separated origins, `*`, or empty), or null when CORS is off. */
export function corsPolicy(setting: string): CorsPolicy | null {
  const origins = setting
    .split(',')
    .map((origin) => origin.trim().replace(/\/+$/, ''))
    .filter((origin) => origin !== '')
  if (origins.length === 0) return null
  const any = origins.includes('*')
  const allowed = new Set(origins)
  return {
    headersFor(origin) {
      if (!any && !allowed.has(origin)) return null
      const headers: Record<string, string> = {
        'access-control-allow-origin': any ? '*' : origin,
        'access-control-allow-methods': ALLOW_METHODS,
        'access-control-allow-headers': ALLOW_HEADERS,
        'access-control-expose-headers': EXPOSE_HEADERS,
        'access-control-max-age': '600',
      }
      // The answer depends on the Origin header when origins are listed one by one.
      if (!any) headers.vary = 'Origin'
      return headers
    },
  }
}
