/**
 * W3C Trace Context (https://www.w3.org/TR/trace-context/) for proxied calls:
 * a caller's valid `traceparent` is passed on as it came, so the agent's
 * spans hang under the caller's (Switchboard exports no spans of its own,
 * so a parent id of its own would point at a span nobody reported); a
 * missing or invalid one is replaced by a new trace. `tracestate` travels
 * only with a valid `traceparent`, bounded as the specification allows.
 */

export interface TraceContext {
  traceparent: string
  /** Null when the caller sent none, or one that had to be dropped. */
  tracestate: string | null
  /** The 32 hex digits of the trace id. */
  traceId: string
}

/** version-traceid-parentid-flags; a later version may append fields after a dash. */
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/
const ZERO_TRACE = '0'.repeat(32)
const ZERO_PARENT = '0'.repeat(16)

/** A tracestate list member: key (simple or multi-tenant) = value. */
const MEMBER = /^(?:[a-z][_0-9a-z\-*/]{0,255}|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]$/
const MAX_MEMBERS = 32
/** What a vendor must pass on at least; longer lists are cut down to it. */
const TRACESTATE_KEPT = 512
/** Members dropped first when a list is cut down. */
const LONG_MEMBER = 128

/** The caller's traceparent when valid, else null. */
function validTraceparent(header: string | undefined): string | null {
  if (header === undefined) return null
  const value = header.trim()
  const match = TRACEPARENT.exec(value)
  if (match === null) return null
  const [, version, traceId, parentId, , rest] = match
  // Version ff is forbidden; version 00 has exactly four fields.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return null
  if (traceId === ZERO_TRACE || parentId === ZERO_PARENT) return null
  return value
}

/** The caller's tracestate, its members checked and the list bounded; null when absent or malformed. */
function boundedTracestate(header: string | undefined): string | null {
  if (header === undefined) return null
  const members = header
    .split(',')
    .map((member) => member.trim())
    .filter((member) => member !== '')
  if (members.length === 0 || members.length > MAX_MEMBERS || !members.every((member) => MEMBER.test(member))) return null
  let kept = members
  const length = (list: string[]) => list.join(',').length
  if (length(kept) > TRACESTATE_KEPT) kept = kept.filter((member) => member.length <= LONG_MEMBER)
  while (kept.length > 0 && length(kept) > TRACESTATE_KEPT) kept = kept.slice(0, -1)
  return kept.length === 0 ? null : kept.join(',')
}

/** The random bytes of a new trace: 16 of trace id, then 8 of parent id, drawn anew by each call before it reads them (one fill, one hex encoding: a fifth of two randomBytes calls' cost). */
const drawn = Buffer.alloc(24)

/** The trace context for a call: the caller's when its traceparent is valid, else a new trace (sampled: Switchboard records every call). */
export function traceContextOf(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
  const valid = validTraceparent(traceparent)
  if (valid !== null) return { traceparent: valid, tracestate: boundedTracestate(tracestate), traceId: valid.slice(3, 35) }
  const hex = crypto.getRandomValues(drawn).toString('hex')
  const traceId = hex.slice(0, 32)
  return { traceparent: `00-${traceId}-${hex.slice(32)}-01`, tracestate: null, traceId }
}
