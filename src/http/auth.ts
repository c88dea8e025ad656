/**
 * Who is calling. The one place an Authorization header is read: the bearer
 * parser, the tokens file (auth `token`: a bearer token names a client and
 * its groups; auth `none`: every caller is the same anonymous client, as with
 * Academy's own server without auth), and VideoSDK's bare token.
 */
import { readFileSync } from 'node:fs'
import { sha256 } from '../backend/agents'
import type { Client } from '../backend/mailboxes'
import type { Config } from '../config'
import { ConfigError } from '../config'
import { InvalidTokenError, UnauthorizedError } from '../errors'

export const ANONYMOUS: Client = Object.freeze({ id: '', groups: Object.freeze([]) as readonly string[] })

/** An Authorization header as read: absent (or blank), a bearer token, or anything else (VideoSDK's bare token). */
export type Credential = { kind: 'none' } | { kind: 'bearer'; token: string } | { kind: 'other'; value: string }

const BEARER = /^Bearer[ \t]+(\S+)[ \t]*$/i
const NONE: Credential = Object.freeze({ kind: 'none' })

/** The one bearer parser: `Bearer <token>` (the scheme in any case, RFC 7235), or what else the header holds. */
export function credentialOf(header: string | null | undefined): Credential {
  if (header === undefined || header === null) return NONE
  const match = BEARER.exec(header)
  if (match) return { kind: 'bearer', token: match[1]! }
  const value = header.trim()
  return value === '' ? NONE : { kind: 'other', value }
}

export interface Authenticator {
  readonly enabled: boolean
  /** The client of a tokens-file bearer token (`Authorization: Bearer <token>`). */
  client(credential: Credential): Client
  /** The client of a VideoSDK caller: its bare token, or a bearer token. */
  worker(credential: Credential): Client
  /** The tokens-file client a credential names, or null (for rate limiting and logs: never throws). */
  known(credential: Credential): Client | null
}

/**
 * Tokens are looked up by their SHA-256 digest: the lookup never compares the
 * secret itself, so its timing says nothing about how much of a guess matched.
 */
export function createAuthenticator(config: Pick<Config, 'auth' | 'tokens_file'>): Authenticator {
  if (config.auth === 'none') return { enabled: false, client: () => ANONYMOUS, worker: () => ANONYMOUS, known: () => null }
  const byDigest = loadTokens(config.tokens_file!)
  const fromToken = (token: string): Client => {
    const client = byDigest.get(sha256(token))
    if (!client) throw new InvalidTokenError()
    return client
  }
  return {
    enabled: true,
    client(credential) {
      if (credential.kind !== 'bearer') throw new UnauthorizedError()
      return fromToken(credential.token)
    },
    worker(credential) {
      if (credential.kind === 'none') throw new UnauthorizedError('Missing Authorization header')
      return fromToken(credential.kind === 'bearer' ? credential.token : credential.value)
    },
    known(credential) {
      if (credential.kind === 'none') return null
      return byDigest.get(sha256(credential.kind === 'bearer' ? credential.token : credential.value)) ?? null
    },
  }
}

function loadTokens(path: string): Map<string, Client> {
  let document: { tokens?: unknown }
  try {
    document = Bun.TOML.parse(readFileSync(path, 'utf8')) as { tokens?: unknown }
  } catch (error) {
    throw new ConfigError(`cannot read tokens file ${path}: ${(error as Error).message}`)
  }
  if (!Array.isArray(document.tokens)) throw new ConfigError(`tokens file ${path} has no [[tokens]] entries`)
  const byDigest = new Map<string, Client>()
  document.tokens.forEach((entry: Record<string, unknown>, index: number) => {
    const where = `tokens file ${path}, entry ${index + 1}`
    const digest = typeof entry.token === 'string' && entry.token !== '' ? sha256(entry.token) : entry.token_sha256
    if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) throw new ConfigError(`${where}: needs token or token_sha256 (64 hex digits)`)
    if (typeof entry.client !== 'string' || entry.client === '') throw new ConfigError(`${where}: needs client (a non-empty string)`)
    const groups = entry.groups ?? []
    if (!Array.isArray(groups) || !groups.every((group) => typeof group === 'string')) throw new ConfigError(`${where}: groups must be a list of strings`)
    byDigest.set(digest, Object.freeze({ id: entry.client, groups: Object.freeze([...groups]) }))
  })
  return byDigest
}
