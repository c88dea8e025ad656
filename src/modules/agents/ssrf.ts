/**
 * Which agent URLs the proxy may call. A registered URL is resolved (DNS)
 * and every address it resolves to is checked: link-local (cloud metadata),
 * multicast, unspecified, broadcast and reserved ranges are never allowed;
 * private and loopback ranges only when the operator allows them. An IPv6
 * address that carries an IPv4 address (mapped, compatible, SIIT, NAT64,
 * 6to4, Teredo) is judged by the IPv4 address it leads to. The proxy then
 * connects to the address that was checked, never to a second resolution of
 * the name (DNS rebinding).
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { BadRequestError } from '../../errors'

export type AddressClass = 'public' | 'private' | 'blocked'

/** What an address is; `carried` names the IPv4 address an IPv6 one carries, when that decided. */
type Verdict = { kind: AddressClass; reason: string; carried?: string }

/** An IPv4 range as [first address as a number, prefix length, class, what it is]. */
type Range = readonly [number, number, Exclude<AddressClass, 'public'>, string]

const v4 = (text: string): number => text.split('.').reduce((value, octet) => value * 256 + Number(octet), 0)

const IPV4_RANGES: readonly Range[] = [
  [v4('0.0.0.0'), 8, 'blocked', 'unspecified ("this network")'],
  [v4('10.0.0.0'), 8, 'private', 'private'],
  [v4('100.64.0.0'), 10, 'private', 'shared address space (carrier-grade NAT)'],
  [v4('127.0.0.0'), 8, 'private', 'loopback'],
  [v4('169.254.0.0'), 16, 'blocked', 'link-local (cloud metadata)'],
  [v4('172.16.0.0'), 12, 'private', 'private'],
  [v4('192.0.0.0'), 24, 'blocked', 'IETF protocol assignments'],
  [v4('192.0.2.0'), 24, 'blocked', 'documentation'],
  [v4('192.168.0.0'), 16, 'private', 'private'],
  [v4('198.18.0.0'), 15, 'blocked', 'benchmarking'],
  [v4('198.51.100.0'), 24, 'blocked', 'documentation'],
  [v4('203.0.113.0'), 24, 'blocked', 'documentation'],
  [v4('224.0.0.0'), 4, 'blocked', 'multicast'],
  [v4('240.0.0.0'), 4, 'blocked', 'reserved or broadcast'],
]

function classifyIpv4(address: string): Verdict {
  const value = v4(address)
  for (const [first, prefix, kind, reason] of IPV4_RANGES) {
    const size = 2 ** (32 - prefix)
    if (value >= first && value < first + size) return { kind, reason }
  }
  return { kind: 'public', reason: 'public' }
}

/** The eight 16-bit groups of an IPv6 address (with an embedded IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0]!.toLowerCase()
  const tail = text.match(/(\d+\.\d+\.\d+\.\d+)$/)
  if (tail) {
    const value = v4(tail[1]!)
    text = text.slice(0, -tail[1]!.length) + `${(value >>> 16).toString(16)}:${(value & 0xffff).toString(16)}`
  }
  const [head, rest] = text.split('::') as [string, string | undefined]
  const left = head === '' ? [] : head.split(':')
  const right = rest === undefined || rest === '' ? [] : rest.split(':')
  const missing = rest === undefined ? 0 : 8 - left.length - right.length
  return [...left, ...Array<string>(missing).fill('0'), ...right].map((group) => Number.parseInt(group, 16))
}

const SEVERITY: Record<AddressClass, number> = { public: 0, private: 1, blocked: 2 }
/** The stricter of two verdicts (the first when they are alike). */
const stricter = (a: Verdict, b: Verdict): Verdict => (SEVERITY[b.kind] > SEVERITY[a.kind] ? b : a)

/** The IPv4 address in two 16-bit groups, as text. */
const v4Of = (high: number, low: number) => `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`

/** An IPv4 address carried in an IPv6 one, judged as that IPv4 address, its reason naming the form it came in. */
function embedded(form: string, high: number, low: number): Verdict {
  const address = v4Of(high, low)
  return { ...classifyIpv4(address), carried: `${address} in ${form} form` }
}

function classifyIpv6(address: string): Verdict {
  const groups = ipv6Groups(address)
  const [a, b, c, d, e, f, g, h] = groups as [number, number, number, number, number, number, number, number]
  const zeroTo = (end: number) => groups.slice(0, end).every((group) => group === 0)
  if (zeroTo(8)) return { kind: 'blocked', reason: 'unspecified' }
  if (zeroTo(7) && h === 1) return { kind: 'private', reason: 'loopback' }
  // Each form below reaches the IPv4 address it carries, so that address decides.
  if (zeroTo(5) && f === 0xffff) return embedded('IPv4-mapped', g, h)
  if (zeroTo(6)) return embedded('IPv4-compatible', g, h)
  if (zeroTo(4) && e === 0xffff && f === 0) return embedded('IPv4-translated (SIIT)', g, h)
  if (a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0) return embedded('NAT64', g, h)
  // Local-use NAT64 (RFC 8215) is a site's own translator, which reaches the site's private IPv4 under whatever
  // prefix length it uses: private at least, and what its /96 form carries when that is worse.
  if (a === 0x64 && b === 0xff9b && c === 1) return stricter(embedded('local-use NAT64', g, h), { kind: 'private', reason: 'local-use NAT64' })
  if (a === 0x2002) return embedded('6to4', b, c)
  // Teredo: a relay sends to the client's address (stored inverted) by way of the server's: both must pass.
  if (a === 0x2001 && b === 0) return stricter(embedded('Teredo server', c, d), embedded('Teredo client', g ^ 0xffff, h ^ 0xffff))
  if ((a & 0xffc0) === 0xfe80) return { kind: 'blocked', reason: 'link-local' }
  if ((a & 0xffc0) === 0xfec0) return { kind: 'private', reason: 'site-local (private)' }
  if ((a & 0xff00) === 0xff00) return { kind: 'blocked', reason: 'multicast' }
  if (a === 0x2001 && b === 0x0db8) return { kind: 'blocked', reason: 'documentation' }
  if (a === 0x0100 && b === 0 && c === 0 && d === 0) return { kind: 'blocked', reason: 'discard-only' }
  if ((a & 0xfe00) === 0xfc00) return { kind: 'private', reason: 'unique local (private)' }
  return { kind: 'public', reason: 'public' }
}

/** Classifies one IP address (v4 or v6). */
export function classifyAddress(address: string): Verdict {
  return isIP(address) === 4 ? classifyIpv4(address) : classifyIpv6(address)
}

/** Resolves a host name to its addresses, in the order to try them. */
export type Resolver = (host: string) => Promise<string[]>

/** The system resolver (what `fetch` itself would use), every address in the order it gives them. */
export const systemResolver: Resolver = async (host) => (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address)

export interface AgentUrlPolicy {
  /** Allow private and loopback ranges (development, tests, one private network). */
  allowPrivate: boolean
  /** How long a resolved hostname's verdict is reused, in ms. */
  cacheMs?: number
  /** How host names are resolved (default: the system resolver). */
  resolve?: Resolver
}

/** A checked agent URL and the address it was checked at: the one to connect to. */
export interface AgentTarget {
  url: URL
  /** An IP address (IPv6 without brackets); the URL's own host when that is an address already. */
  address: string
}

/** A URL as a refusal quotes it: its start, when it is long. */
const shown = (raw: string) => (raw.length > 200 ? `${raw.slice(0, 200)}…` : raw)

/** Thrown when an agent URL may not be called; the message says why. */
export class AgentUrlRefusedError extends BadRequestError {}

/** How many parsed agent URLs are kept: one per agent in use is what the proxy needs. */
const PARSED_URLS_KEPT = 1000

/** A host refused (`unresolved` when it has no address), or allowed with the address to connect to. */
type HostJudgement = { refusal: string; address: null; unresolved: boolean } | { refusal: null; address: string; unresolved: false }

/** A host's judgement, reused until `until`. */
type HostVerdict = HostJudgement & { until: number }

/**
 * Checks agent URLs, resolving hostnames; a host's verdict, and the address
 * it was reached at, is reused briefly so a busy proxy does not resolve on
 * every call. Calls connect to that address: the name is never resolved a
 * second time between the check and the connection.
 */
export class AgentUrlGuard {
  private readonly verdicts = new Map<string, HostVerdict>()
  /** Well-formed URLs already parsed, by their text: the proxy checks the same few URLs on every call. */
  private readonly parsed = new Map<string, { url: URL; host: string }>()
  private readonly resolve: Resolver

  constructor(private readonly policy: AgentUrlPolicy) {
    this.resolve = policy.resolve ?? systemResolver
  }

  /**
   * Parses and checks an agent URL; throws AgentUrlRefusedError with the reason when it may not be called.
   * The URL returned may be handed to other callers of the same text: read it, never change it.
   */
  async check(raw: string): Promise<URL> {
    return (await this.target(raw)).url
  }

  /**
   * Checks an agent URL as `check` does, and answers the address to connect to: the one that was checked.
   * `what` names the URL in a refusal (a push-notification webhook is held to the same rules).
   */
  async target(raw: string, what = 'agent url'): Promise<AgentTarget> {
    const { url, verdict } = await this.judged(raw, what)
    if (verdict.refusal !== null) throw new AgentUrlRefusedError(`${what} "${shown(raw)}" is not allowed: ${verdict.refusal}`)
    return { url, address: verdict.address }
  }

  /**
   * Checks a URL that an agent will call, not Switchboard (a push-notification webhook), by the same rules, except
   * that a host that does not resolve here is let through: the agent resolves it when it calls, so refusing it now
   * would refuse what the agent can reach while judging nothing. A host that resolves is judged by every address.
   */
  async checkForAgent(raw: string, what: string): Promise<void> {
    const { verdict } = await this.judged(raw, what)
    if (verdict.refusal !== null && !verdict.unresolved) throw new AgentUrlRefusedError(`${what} "${shown(raw)}" is not allowed: ${verdict.refusal}`)
  }

  /** The URL parsed and its host's verdict, from the cache while it is fresh. */
  private async judged(raw: string, what: string): Promise<{ url: URL; verdict: HostVerdict }> {
    const { url, host } = this.parsed.get(raw) ?? this.parse(raw, what)
    const now = Date.now()
    let verdict = this.verdicts.get(host)
    if (verdict === undefined || verdict.until <= now) {
      verdict = { until: now + (this.policy.cacheMs ?? 10_000), ...(await this.verdictFor(host)) }
      if (this.verdicts.size > 10_000) this.verdicts.clear()
      this.verdicts.set(host, verdict)
    }
    return { url, verdict }
  }

  /** Parses a URL that is well-formed, http(s) and without credentials, and remembers it; throws the refusal otherwise. */
  private parse(raw: string, what: string): { url: URL; host: string } {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw new AgentUrlRefusedError(`${what} "${shown(raw)}" is not a valid absolute URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AgentUrlRefusedError(`${what} "${shown(raw)}" must use http or https, not ${url.protocol.replace(':', '')}`)
    if (url.username !== '' || url.password !== '') throw new AgentUrlRefusedError(`${what} "${shown(raw)}" must not carry credentials`)
    const entry = { url, host: url.hostname.replace(/^\[|\]$/g, '') }
    // Bounded: URLs are up to 2 KiB each, and a registering workspace chooses them.
    if (this.parsed.size >= PARSED_URLS_KEPT) this.parsed.clear()
    this.parsed.set(raw, entry)
    return entry
  }

  /** Resolves and judges a host: the refusal (`unresolved` when it has no address), or the first of its addresses (all of them must pass). */
  private async verdictFor(host: string): Promise<HostJudgement> {
    const refuse = (refusal: string, unresolved = false): HostJudgement => ({ refusal, address: null, unresolved })
    let addresses: string[]
    if (isIP(host) !== 0) {
      addresses = [host]
    } else {
      try {
        addresses = await this.resolve(host)
      } catch (error) {
        return refuse(`host "${host}" does not resolve (${(error as NodeJS.ErrnoException).code ?? 'lookup failed'})`, true)
      }
      if (addresses.length === 0) return refuse(`host "${host}" does not resolve`, true)
    }
    for (const address of addresses) {
      if (isIP(address) === 0) return refuse(`${host} resolves to "${address}", which is not an IP address`)
      const { kind, reason, carried } = classifyAddress(address)
      const what = `${host} resolves to ${address}, a ${reason} address${carried === undefined ? '' : ` (${carried})`}`
      if (kind === 'blocked') return refuse(what)
      if (kind === 'private' && !this.policy.allowPrivate) return refuse(`${what} (allowed only with --allow-private-agent-urls)`)
    }
    return { refusal: null, address: addresses[0]!, unresolved: false }
  }
}
