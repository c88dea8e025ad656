/**
 * Signed agent cards (A2A §8.4): an agent's card signatures checked against
 * the key set its `jku` names, fetched under the URL guard; and the cards
 * Switchboard serves signed with its own key, published at
 * /.well-known/jwks.json. A signature is a JWS (RFC 7515, flattened JSON
 * form) over the card's canonical form (RFC 8785) without `signatures`.
 */
import { createHash, createPrivateKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import canonicalize from 'canonicalize'
import * as jose from 'jose'
import type { AgentStore, CardSignatureCheck } from '../../backend/agents'
import { AppError, UnavailableError } from '../../errors'
import { destinationOf } from './proxy'
import type { AgentUrlGuard } from './ssrf'

type JsonObject = Record<string, unknown>
const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value)

/**
 * A value with its empty parts left out (null, "", [] and {}, inside arrays
 * too), undefined when nothing is left. A2A §8.4.1 leaves out fields at
 * their default values; without the card's schema the empty ones are those
 * that can be told apart, and they are the ones the official SDKs (JS and
 * Python) leave out before canonicalizing, so their signatures and ours
 * cover the same text.
 */
function withoutEmpty(value: unknown): unknown {
  if (value === null || value === undefined || value === '') return undefined
  if (Array.isArray(value)) {
    const kept = value.map(withoutEmpty).filter((item) => item !== undefined)
    return kept.length > 0 ? kept : undefined
  }
  if (isObject(value)) {
    const kept: JsonObject = {}
    for (const [key, inner] of Object.entries(value)) {
      const cleaned = withoutEmpty(inner)
      if (cleaned !== undefined) kept[key] = cleaned
    }
    return Object.keys(kept).length > 0 ? kept : undefined
  }
  return value
}

/** The text a card's signatures cover: the card without `signatures` and its empty values, in RFC 8785 canonical form. */
export function canonicalCard(card: JsonObject): string {
  const { signatures: _signatures, ...signed } = card
  return canonicalize(withoutEmpty(signed) ?? {}) ?? '{}'
}

/** Algorithms a card signature may use: asymmetric ones only (never `none`, never an HMAC keyed by a public key). */
const ALGORITHMS = ['ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'EdDSA', 'Ed25519']

/** The JWS algorithm for a private key, from its type and curve. */
function algorithmOf(jwk: jose.JWK): string {
  if (jwk.kty === 'EC') {
    const byCurve: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }
    if (jwk.crv !== undefined && byCurve[jwk.crv] !== undefined) return byCurve[jwk.crv]!
  }
  if (jwk.kty === 'RSA') return 'RS256'
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA'
  throw new Error(`a ${jwk.kty}${jwk.crv ? ` ${jwk.crv}` : ''} key cannot sign cards: use an EC (P-256, P-384, P-521), RSA or Ed25519 private key`)
}

/** The public half of a private JWK (the members RFC 7518 lists as private left out). */
function publicOf(jwk: jose.JWK): jose.JWK {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, key_ops: _ops, ext: _ext, ...rest } = jwk as jose.JWK & { oth?: unknown }
  return rest
}

/**
 * Reads a private key file (PEM, PKCS#8 or SEC1/PKCS#1, or a JWK) at start-up, as a private JWK; throws an error
 * naming the file when it holds no private key Switchboard can sign with.
 */
export function readSigningKeyFile(path: string): jose.JWK {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new Error(`cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
  }
  try {
    const key = text.trimStart().startsWith('{') ? createPrivateKey({ key: JSON.parse(text), format: 'jwk' }) : createPrivateKey(text)
    const jwk = key.export({ format: 'jwk' }) as jose.JWK
    algorithmOf(jwk)
    return jwk
  } catch (error) {
    throw new Error(`${path} holds no private key Switchboard can sign with (${(error as Error).message})`)
  }
}

/** Switchboard's signing key, ready to use. */
interface SigningKey {
  key: CryptoKey | Uint8Array
  alg: string
  kid: string
  /** The key set published at /.well-known/jwks.json. */
  jwks: { keys: jose.JWK[] }
}

/** How many signed cards are kept: a card served again is answered with the same bytes (and ETag). */
const SIGNED_CARDS_KEPT = 1000

/**
 * Signs the cards Switchboard serves with one key: the operator's
 * (card_signing_key), or one generated on first use and kept in the backend,
 * where the first instance to write it wins, so every instance sharing the
 * store signs with the same key.
 */
export class CardSigner {
  private loading: Promise<SigningKey> | null = null
  /** Signatures by what they sign: ECDSA signatures differ each time, and a card served again should not. */
  private readonly signed = new Map<string, JsonObject>()

  constructor(private readonly source: { jwk: jose.JWK } | { store: AgentStore }) {}

  /** The key, loaded once; a store that could not be reached is asked again next time. */
  private key(): Promise<SigningKey> {
    this.loading ??= this.load().catch((error: unknown) => {
      this.loading = null
      throw error
    })
    return this.loading
  }

  private async load(): Promise<SigningKey> {
    let jwk: jose.JWK
    if ('jwk' in this.source) {
      jwk = this.source.jwk
    } else {
      const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true })
      const candidate = JSON.stringify({ ...(await jose.exportJWK(privateKey)), alg: 'ES256' })
      const stored = await this.source.store.cardSigningKey(candidate).catch(() => {
        throw new UnavailableError('the card-signing key cannot be read from the backend right now', 2)
      })
      jwk = JSON.parse(stored) as jose.JWK
    }
    const alg = algorithmOf(jwk)
    const kid = await jose.calculateJwkThumbprint(publicOf(jwk))
    return { key: await jose.importJWK({ ...jwk, alg }, alg), alg, kid, jwks: { keys: [{ ...publicOf(jwk), kid, alg, use: 'sig' }] } }
  }

  /** The key set that verifies Switchboard's card signatures. */
  async jwks(): Promise<{ keys: jose.JWK[] }> {
    return (await this.key()).jwks
  }

  /** The card with its signatures replaced by Switchboard's one, whose header names the key (`kid`) and its key set (`jku`). */
  async sign(card: JsonObject, jku: string): Promise<JsonObject> {
    const { key, alg, kid } = await this.key()
    const header = { alg, typ: 'JOSE', kid, jku }
    const payload = canonicalCard(card)
    const digest = createHash('sha256').update(JSON.stringify(header)).update('\n').update(payload).digest('base64url')
    let signature = this.signed.get(digest)
    if (signature === undefined) {
      const jws = await new jose.FlattenedSign(new TextEncoder().encode(payload)).setProtectedHeader(header).sign(key)
      signature = { protected: jws.protected, signature: jws.signature }
      if (this.signed.size >= SIGNED_CARDS_KEPT) this.signed.clear()
      this.signed.set(digest, signature)
    }
    return { ...card, signatures: [signature] }
  }
}

export interface CardVerifierOptions {
  /** How long a fetched key set is used, in ms. */
  cacheMs: number
  /** Key sets kept at most (one per `jku` in use). */
  cacheEntries: number
  /** Longest wait for a key set, in ms. */
  timeoutMs: number
  /** Largest key set read, in bytes. */
  maxBytes: number
}

/** Signatures of one card checked at most: each may name its own key set, and each key set is one fetch. */
const SIGNATURES_CHECKED = 4
/** Keys of one key set used at most. */
const KEYS_READ = 100
/** Longest `kid` and `jku` taken (they are kept on the workspace): a jku as long as an agent URL may be. */
const KID_MAX = 256
const JKU_MAX = 2048
/** A key set this young is not fetched again for a `kid` it lacks (an agent rotating keys is seen after that). */
const REFETCH_AFTER_MS = 30_000

const shown = (text: string, most = 200) => (text.length > most ? `${text.slice(0, most)}…` : text)
/** Characters of a check's reason kept (it is stored on the workspace). */
const REASON_MAX = 1000

/** Thrown for a signature that does not verify; the message says why. */
class SignatureProblem extends Error {}

/**
 * Checks agent cards' signatures. The key set a signature's `jku` names is
 * fetched under the URL guard (the address checked is the one connected to,
 * redirects are not followed), and kept for a while, bounded in count.
 */
export class CardVerifier {
  private readonly keySets = new Map<string, { fetchedAt: number; keys: jose.JSONWebKeySet }>()

  constructor(
    private readonly urls: AgentUrlGuard,
    private readonly options: CardVerifierOptions,
  ) {}

  /** Checks the card's signatures: verified when one of them verifies, unsigned when it has none, invalid otherwise (`reason` says why). */
  async check(card: JsonObject): Promise<CardSignatureCheck> {
    const checkedAt = Date.now()
    const signatures = card.signatures
    if (signatures === undefined || (Array.isArray(signatures) && signatures.length === 0)) return { status: 'unsigned', kid: null, jku: null, reason: null, checkedAt }
    if (!Array.isArray(signatures)) return { status: 'invalid', kid: null, jku: null, reason: '`signatures` is not an array', checkedAt }
    const payload = jose.base64url.encode(canonicalCard(card))
    const problems: string[] = []
    let named: { kid: string | null; jku: string | null } = { kid: null, jku: null }
    for (const [index, entry] of signatures.slice(0, SIGNATURES_CHECKED).entries()) {
      try {
        const header = this.headerOf(entry)
        named = header
        await this.verify(entry as JsonObject, payload, header)
        return { status: 'verified', ...header, reason: null, checkedAt }
      } catch (error) {
        if (!(error instanceof SignatureProblem || error instanceof AppError)) throw error
        problems.push(`signatures[${index}]: ${error.message}`)
      }
    }
    if (signatures.length > SIGNATURES_CHECKED) problems.push(`only the first ${SIGNATURES_CHECKED} of ${signatures.length} signatures were checked`)
    return { status: 'invalid', ...named, reason: shown(problems.join('; '), REASON_MAX), checkedAt }
  }

  /** The key a signature names: its `kid`, in the key set at its `jku`. */
  private headerOf(entry: unknown): { kid: string; jku: string } {
    if (!isObject(entry) || typeof entry.protected !== 'string' || typeof entry.signature !== 'string') throw new SignatureProblem('needs `protected` and `signature` (strings)')
    let header: jose.ProtectedHeaderParameters
    try {
      header = jose.decodeProtectedHeader({ protected: entry.protected })
    } catch (error) {
      throw new SignatureProblem(`its protected header is not base64url JSON (${(error as Error).message})`)
    }
    if (typeof header.alg !== 'string' || !ALGORITHMS.includes(header.alg)) throw new SignatureProblem(`alg ${JSON.stringify(header.alg ?? null)} is not one of ${ALGORITHMS.join(', ')}`)
    if (typeof header.kid !== 'string' || header.kid === '') throw new SignatureProblem('its protected header names no kid')
    if (header.kid.length > KID_MAX) throw new SignatureProblem(`its kid is longer than ${KID_MAX} characters`)
    if (typeof header.jku === 'string' && header.jku.length > JKU_MAX) throw new SignatureProblem(`its jku is longer than ${JKU_MAX} characters`)
    if (typeof header.jku !== 'string' || header.jku === '') throw new SignatureProblem(`its protected header names no jku: Switchboard verifies a card by the key set the signature names, and holds no keys of its own for kid ${JSON.stringify(shown(header.kid))}`)
    return { kid: header.kid, jku: header.jku }
  }

  private async verify(entry: JsonObject, payload: string, { kid, jku }: { kid: string; jku: string }): Promise<void> {
    const jws: jose.FlattenedJWS = { payload, protected: entry.protected as string, signature: entry.signature as string }
    if (isObject(entry.header)) jws.header = entry.header as jose.JWSHeaderParameters
    let keys = await this.keySet(jku, false)
    if (!keys.keys.some((key) => key.kid === kid)) keys = await this.keySet(jku, true)
    if (!keys.keys.some((key) => key.kid === kid)) throw new SignatureProblem(`the key set at ${shown(jku)} has no key with kid ${JSON.stringify(shown(kid))}`)
    try {
      await jose.flattenedVerify(jws, jose.createLocalJWKSet(keys), { algorithms: ALGORITHMS })
    } catch (error) {
      throw new SignatureProblem(`does not verify with key ${JSON.stringify(shown(kid))} of ${shown(jku)} (${(error as Error).message})`)
    }
  }

  /** The key set at `jku`, from the cache unless it is stale (or, with `refresh`, older than REFETCH_AFTER_MS). */
  private async keySet(jku: string, refresh: boolean): Promise<jose.JSONWebKeySet> {
    const now = Date.now()
    const cached = this.keySets.get(jku)
    if (cached !== undefined && now - cached.fetchedAt < (refresh ? REFETCH_AFTER_MS : this.options.cacheMs)) return cached.keys
    const keys = await this.fetchKeySet(jku)
    this.keySets.delete(jku)
    // Bounded: the oldest key set goes first (a Map keeps the order keys were set in).
    while (this.keySets.size >= this.options.cacheEntries) this.keySets.delete(this.keySets.keys().next().value!)
    this.keySets.set(jku, { fetchedAt: now, keys })
    return keys
  }

  /** Fetches a key set under the URL guard, at the address it checked; bounded in time and bytes. */
  private async fetchKeySet(jku: string): Promise<jose.JSONWebKeySet> {
    const { url, address } = await this.urls.target(jku, 'JWKS url (jku)')
    const destination = destinationOf(url, address)
    const headers: Record<string, string> = { accept: 'application/json, application/jwk-set+json', 'accept-encoding': 'identity' }
    if (destination.host !== undefined) headers.host = destination.host
    let text: string
    try {
      const response = await fetch(destination.href, {
        headers,
        redirect: 'manual',
        decompress: false,
        signal: AbortSignal.timeout(this.options.timeoutMs),
        tls: destination.serverName === undefined ? undefined : { serverName: destination.serverName },
      })
      if (response.status !== 200) {
        await response.body?.cancel()
        throw new SignatureProblem(`the key set at ${shown(jku)} answered HTTP ${response.status}${response.status >= 300 && response.status < 400 ? ' (redirects are not followed)' : ''}`)
      }
      text = await this.readBounded(response, jku)
    } catch (error) {
      if (error instanceof SignatureProblem) throw error
      throw new SignatureProblem(`the key set at ${shown(jku)} could not be fetched (${(error as Error).name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : (error as Error).message})`)
    }
    let keys: unknown
    try {
      keys = JSON.parse(text)
    } catch {
      throw new SignatureProblem(`the key set at ${shown(jku)} is not JSON`)
    }
    if (!isObject(keys) || !Array.isArray(keys.keys)) throw new SignatureProblem(`the key set at ${shown(jku)} has no "keys" array`)
    return { keys: keys.keys.filter(isObject).slice(0, KEYS_READ) as jose.JWK[] }
  }

  /** The body as text, refused past `maxBytes`. */
  private async readBounded(response: Response, jku: string): Promise<string> {
    const declared = Number(response.headers.get('content-length') ?? Number.NaN)
    const tooLarge = () => new SignatureProblem(`the key set at ${shown(jku)} is larger than ${this.options.maxBytes} bytes`)
    if (declared > this.options.maxBytes) {
      await response.body?.cancel()
      throw tooLarge()
    }
    const chunks: Uint8Array[] = []
    let size = 0
    for await (const chunk of response.body ?? []) {
      size += chunk.length
      if (size > this.options.maxBytes) throw tooLarge()
      chunks.push(chunk)
    }
    return Buffer.concat(chunks).toString('utf8')
  }
}
