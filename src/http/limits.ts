/**
 * Limits that keep one caller from starving the others: a token-bucket rate
 * limit per caller, and a cap on the long-polls and listen streams a caller
 * holds open. Both count in this process's memory only: behind a load
 * balancer each instance enforces them on its own share of the traffic.
 */
import { TooManyRequestsError } from '../errors'
import type { Authenticator, Credential } from './auth'

/**
 * Who a request counts against: its tokens-file client, else its remote
 * address (anonymous callers, and tokens the tokens file does not know,
 * such as workspace tokens — so inventing tokens buys no fresh bucket).
 */
export function callerKey(credential: Credential, remoteAddress: string | undefined, auth: Authenticator): string {
  const client = auth.known(credential)
  return client !== null ? `client:${client.id}` : `address:${remoteAddress ?? 'unknown'}`
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

/** The 429 of a refused decision, worded alike for requests and WebSocket upgrades. */
export function tooManyRequests(decision: RateDecision): TooManyRequestsError {
  return new TooManyRequestsError(`Too many requests: try again in ${decision.retryAfterSeconds} s`, decision.retryAfterSeconds)
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
