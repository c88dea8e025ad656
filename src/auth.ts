/**
 * Who is calling. With auth `none` every caller is the same anonymous client
 * (as Academy's own server without auth); with `token`, a bearer token from
 * the tokens file names the client and its groups.
 */
import { readFileSync } from 'node:fs'
import type { Client } from './backend/mailboxes'
import type { Config } from './config'
import { ConfigError } from './config'
import { InvalidTokenError, UnauthorizedError } from './errors'

export const ANONYMOUS: Client = Object.freeze({ id: '', groups: Object.freeze([]) as readonly string[] })

/** Hex SHA-256 of a token (Bun's one-shot hasher: a token is hashed on every authenticated request). */
export const sha256 = (value: string): string => Bun.SHA256.hash(value, 'hex')

export interface Authenticator {
  readonly enabled: boolean
  /** The client behind an `Authorization: Bearer <token>` header (exactly two words). */
  fromHeader(authorization: string | null | undefined): Client
  /** The client behind a bare token. */
  fromToken(token: string): Client
}

/**
 * Tokens are looked up by their SHA-256 digest: the lookup never compares the
 * secret itself, so its timing says nothing about how much of a guess matched.
 */
export function createAuthenticator(config: Pick<Config, 'auth' | 'tokens_file'>): Authenticator {
  if (config.auth === 'none') {
    return { enabled: false, fromHeader: () => ANONYMOUS, fromToken: () => ANONYMOUS }
  }
  const byDigest = loadTokens(config.tokens_file!)
  const fromToken = (token: string): Client => {
    const client = byDigest.get(sha256(token))
    if (!client) throw new InvalidTokenError()
    return client
  }
  return {
    enabled: true,
    fromToken,
    fromHeader(authorization) {
      const parts = authorization?.split(' ') ?? []
      if (parts.length !== 2 || parts[0] !== 'Bearer' || parts[1] === '') throw new UnauthorizedError()
      return fromToken(parts[1]!)
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
