/**
 * CORS for browser clients (setting cors_origins). Only adds headers: a
 * request from an origin that is not allowed is still served as usual
 * (Molecule's client sends Origin on every call); the browser then keeps the
 * answer from the page.
 */
import type { ServerResponse } from 'node:http'

const ALLOW_METHODS = 'GET, POST, PUT, DELETE, OPTIONS'
const ALLOW_HEADERS = 'authorization, content-type, x-request-id, a2a-version, a2a-extensions, x-workspace-id, if-none-match'
const EXPOSE_HEADERS = 'x-request-id, retry-after, etag'

export interface CorsPolicy {
  /** Sets the CORS headers on `res` when `origin` is allowed; tells whether it was. */
  apply(origin: string, res: ServerResponse): boolean
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
    apply(origin, res) {
      if (!any && !allowed.has(origin)) return false
      res.setHeader('access-control-allow-origin', any ? '*' : origin)
      // The answer depends on the Origin header when origins are listed one by one.
      if (!any) res.setHeader('vary', 'Origin')
      res.setHeader('access-control-allow-methods', ALLOW_METHODS)
      res.setHeader('access-control-allow-headers', ALLOW_HEADERS)
      res.setHeader('access-control-expose-headers', EXPOSE_HEADERS)
      res.setHeader('access-control-max-age', '600')
      return true
    },
  }
}
