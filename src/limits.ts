/**
 * Limits that keep one caller from starving the others: a token-bucket rate
 * limit per caller, and a cap on the long-polls and listen streams a caller
 * holds open. Both count in this process's memory only: behind a load
 * balancer each instance enforces them on its own share of the traffic.
 */
import type { Authenticator } from './auth'
import { rpcErrorBody } from './modules/agents/proxy'
import { remoteAddressOf } from './served'

/**
 * Who a request counts against: its tokens-file client, else its remote
 * address (anonymous callers, and tokens the tokens file does not know,
 * such as workspace tokens — so inventing tokens buys no fresh bucket).
 */
export function callerKey(authorization: string | null | undefined, remoteAddress: string | undefined, auth: Authenticator): string {
  const header = authorization?.trim()
  if (auth.enabled && header) {
    // VideoSDK sends the bare token; everyone else a Bearer token.
    const token = header.startsWith('Bearer ') ? header.slice(7).trim() : header
    try {
      return `client:${auth.fromToken(token).id}`
    } catch {
      // An unknown token is counted by address, below.
    }
  }
  return `address:${remoteAddress ?? 'unknown'}`
}

export interface RateLimitOptions {
  /** Tokens added to a caller's bucket per second. */
  perSecond: number
  /** Bucket size: requests a rested caller may make at once. */
  burst: number
}

/** What one request did to its caller's bucket, as the X-RateLimit-* headers tell it. */
export interface RateDecision {
  allowed: boolean
  limit: number
  remaining: number
  /** Seconds until the bucket is full again. */
  resetSeconds: number
  /** Seconds until one request is allowed again (0 when this one was). */
  retryAfterSeconds: number
}

interface Bucket {
  tokens: number
  at: number
}

const SWEEP_EVERY_MS = 60_000

/** A token bucket per caller key. */
export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>()
  private nextSweep = 0

  constructor(
    private readonly options: RateLimitOptions,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes one token from `key`'s bucket if it has one. */
  take(key: string): RateDecision {
    const { perSecond, burst } = this.options
    const now = this.now()
    this.sweep(now)
    const bucket = this.buckets.get(key) ?? { tokens: burst, at: now }
    bucket.tokens = this.refilled(bucket, now)
    bucket.at = now
    const allowed = bucket.tokens >= 1
    if (allowed) bucket.tokens -= 1
    this.buckets.set(key, bucket)
    return {
      allowed,
      limit: burst,
      remaining: Math.floor(bucket.tokens),
      resetSeconds: Math.ceil((burst - bucket.tokens) / perSecond),
      retryAfterSeconds: allowed ? 0 : Math.ceil((1 - bucket.tokens) / perSecond),
    }
  }

  /** Callers tracked now (bounded: full buckets are forgotten). */
  get size(): number {
    return this.buckets.size
  }

  private refilled(bucket: Bucket, now: number): number {
    return Math.min(this.options.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.options.perSecond)
  }

  /** A full bucket and no bucket mean the same, so full ones are dropped and memory follows active callers only. */
  private sweep(now: number): void {
    if (now < this.nextSweep) return
    this.nextSweep = now + SWEEP_EVERY_MS
    for (const [key, bucket] of this.buckets) if (this.refilled(bucket, now) >= this.options.burst) this.buckets.delete(key)
  }
}

/** The X-RateLimit-* headers of a decision (Retry-After too when refused). */
export function rateLimitHeaders(decision: RateDecision): Record<string, string> {
  const headers: Record<string, string> = {
    'x-ratelimit-limit': String(decision.limit),
    'x-ratelimit-remaining': String(decision.remaining),
    'x-ratelimit-reset': String(decision.resetSeconds),
  }
  if (!decision.allowed) headers['retry-after'] = String(decision.retryAfterSeconds)
  return headers
}

const EXCHANGE_PATHS = new Set(['/mailbox', '/message', '/discover', '/mailbox/listen', '/mailbox/heartbeat', '/mailbox/stats', '/mailbox/share'])
const A2A_PATH = /^\/workspaces\/[^/]+\/a2a$/

/** A 429 in the error shape of the surface `path` belongs to (the limiter runs before routing, so no module renders it). */
export function tooManyRequests(path: string, message: string, headers: Record<string, string>): Response {
  const respond = (body: string, contentType: string) => new Response(body, { status: 429, headers: { 'content-type': contentType, ...headers } })
  if (EXCHANGE_PATHS.has(path)) return respond(message, 'text/plain; charset=utf-8')
  if (path.startsWith('/v2/agent/')) return respond(JSON.stringify({ message }), 'application/json')
  if (A2A_PATH.test(path)) return respond(rpcErrorBody(null, -32603, message, { status: 429, code: 'TOO_MANY_REQUESTS' }), 'application/json')
  return respond(JSON.stringify({ error: { code: 'TOO_MANY_REQUESTS', message } }), 'application/json')
}

/** Counts what each caller holds open; `enter` refuses once a caller holds `max` (0: no limit). */
export class WaitingLimit {
  private readonly held = new Map<string, number>()

  constructor(private readonly max: number) {}

  /** Admits one more wait for `key`: a release function (call it once), or null when the caller is at its limit. */
  enter(key: string): (() => void) | null {
    const count = this.held.get(key) ?? 0
    if (this.max > 0 && count >= this.max) return null
    this.held.set(key, count + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.held.get(key) ?? 1) - 1
      if (left === 0) this.held.delete(key)
      else this.held.set(key, left)
    }
  }
}

/** Probes and scrapes are never limited: a busy caller must not make the instance look dead. */
const UNLIMITED_PATHS = new Set(['/healthz', '/readyz', '/metrics'])

/** The app's onRequest hook: counts the request against its caller, sets the X-RateLimit-* headers, answers 429 when the bucket is empty. */
export function rateLimitHook(limiter: RateLimiter, auth: Authenticator) {
  return ({ request, set }: { request: Request; set: { headers: Record<string, string | number> } }): Response | undefined => {
    const path = new URL(request.url).pathname
    if (UNLIMITED_PATHS.has(path)) return undefined
    const decision = limiter.take(callerKey(request.headers.get('authorization'), remoteAddressOf(request), auth))
    const headers = rateLimitHeaders(decision)
    Object.assign(set.headers, headers)
    if (decision.allowed) return undefined
    return tooManyRequests(path, `Too many requests: try again in ${decision.retryAfterSeconds} s`, headers)
  }
}
