/**
 * Which agent URLs the proxy may call. A registered URL is resolved (DNS)
 * and every address it resolves to is checked: link-local (cloud metadata),
 * multicast, unspecified, broadcast and reserved ranges are never allowed;
 * private and loopback ranges only when the operator allows them.
 */
import { lookup } from 'node:dns/promises'
import { isIP } from 'node:net'
import { BadRequestError } from '../../errors'

export type AddressClass = 'public' | 'private' | 'blocked'

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

function classifyIpv4(address: string): { kind: AddressClass; reason: string } {
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

function classifyIpv6(address: string): { kind: AddressClass; reason: string } {
  const groups = ipv6Groups(address)
  const [a, b, c, d, e, f, g, h] = groups as [number, number, number, number, number, number, number, number]
  const embeddedV4 = `${g >> 8}.${g & 0xff}.${h >> 8}.${h & 0xff}`
  if (a === 0 && b === 0 && c === 0 && d === 0 && e === 0 && f === 0xffff) return classifyIpv4(embeddedV4)
  if (a === 0x64 && b === 0xff9b && c === 0 && d === 0 && e === 0 && f === 0) return classifyIpv4(embeddedV4)
  if (groups.every((group) => group === 0)) return { kind: 'blocked', reason: 'unspecified' }
  if (groups.slice(0, 7).every((group) => group === 0) && h === 1) return { kind: 'private', reason: 'loopback' }
  if ((a & 0xffc0) === 0xfe80) return { kind: 'blocked', reason: 'link-local' }
  if ((a & 0xff00) === 0xff00) return { kind: 'blocked', reason: 'multicast' }
  if (a === 0x2001 && b === 0x0db8) return { kind: 'blocked', reason: 'documentation' }
  if ((a & 0xfe00) === 0xfc00) return { kind: 'private', reason: 'unique local (private)' }
  return { kind: 'public', reason: 'public' }
}

/** Classifies one IP address (v4 or v6). */
export function classifyAddress(address: string): { kind: AddressClass; reason: string } {
  return isIP(address) === 4 ? classifyIpv4(address) : classifyIpv6(address)
}

export interface AgentUrlPolicy {
  /** Allow private and loopback ranges (development, tests, one private network). */
  allowPrivate: boolean
  /** How long a resolved hostname's verdict is reused, in ms. */
  cacheMs?: number
}

/** Thrown when an agent URL may not be called; the message says why. */
export class AgentUrlRefusedError extends BadRequestError {}

/** How many parsed agent URLs are kept: one per agent in use is what the proxy needs. */
const PARSED_URLS_KEPT = 1000

/** Checks agent URLs, resolving hostnames; a host's verdict is reused briefly so a busy proxy does not resolve on every call. */
export class AgentUrlGuard {
  private readonly verdicts = new Map<string, { until: number; refusal: string | null }>()
  /** Well-formed URLs already parsed, by their text: the proxy checks the same few URLs on every call. */
  private readonly parsed = new Map<string, { url: URL; host: string }>()

  constructor(private readonly policy: AgentUrlPolicy) {}

  /**
   * Parses and checks an agent URL; throws AgentUrlRefusedError with the reason when it may not be called.
   * The URL returned may be handed to other callers of the same text: read it, never change it.
   */
  async check(raw: string): Promise<URL> {
    const { url, host } = this.parsed.get(raw) ?? this.parse(raw)
    const cached = this.verdicts.get(host)
    const now = Date.now()
    let refusal: string | null
    if (cached && cached.until > now) {
      refusal = cached.refusal
    } else {
      refusal = await this.refusalFor(host)
      if (this.verdicts.size > 10_000) this.verdicts.clear()
      this.verdicts.set(host, { until: now + (this.policy.cacheMs ?? 10_000), refusal })
    }
    if (refusal !== null) throw new AgentUrlRefusedError(`agent url "${raw}" is not allowed: ${refusal}`)
    return url
  }

  /** Parses a URL that is well-formed, http(s) and without credentials, and remembers it; throws the refusal otherwise. */
  private parse(raw: string): { url: URL; host: string } {
    let url: URL
    try {
      url = new URL(raw)
    } catch {
      throw new AgentUrlRefusedError(`agent url "${raw}" is not a valid absolute URL`)
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new AgentUrlRefusedError(`agent url "${raw}" must use http or https, not ${url.protocol.replace(':', '')}`)
    if (url.username !== '' || url.password !== '') throw new AgentUrlRefusedError(`agent url "${raw}" must not carry credentials`)
    const entry = { url, host: url.hostname.replace(/^\[|\]$/g, '') }
    // Bounded: URLs are up to 2 KiB each, and a registering workspace chooses them.
    if (this.parsed.size >= PARSED_URLS_KEPT) this.parsed.clear()
    this.parsed.set(raw, entry)
    return entry
  }

  private async refusalFor(host: string): Promise<string | null> {
    let addresses: string[]
    if (isIP(host) !== 0) {
      addresses = [host]
    } else {
      try {
        addresses = (await lookup(host, { all: true, verbatim: true })).map((entry) => entry.address)
      } catch (error) {
        return `host "${host}" does not resolve (${(error as NodeJS.ErrnoException).code ?? 'lookup failed'})`
      }
      if (addresses.length === 0) return `host "${host}" does not resolve`
    }
    for (const address of addresses) {
      const { kind, reason } = classifyAddress(address)
      if (kind === 'blocked') return `${host} resolves to ${address}, a ${reason} address`
      if (kind === 'private' && !this.policy.allowPrivate) {
        return `${host} resolves to ${address}, a ${reason} address (allowed only with --allow-private-agent-urls)`
      }
    }
    return null
  }
}
