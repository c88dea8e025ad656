/** The one UUID validator of every module: mailbox ids, message tags, workspace ids. */
import * as v from 'valibot'

const HEX = '[0-9a-fA-F]'
const HYPHENATED = `${HEX}{8}-${HEX}{4}-${HEX}{4}-${HEX}{4}-${HEX}{12}`
/** The spellings of a UUID Academy's models read: hyphenated, 32 digits, hyphenated in braces, or a urn:uuid: URN; digits of either case. */
const ANY_SPELLING = new RegExp(`^(?:${HYPHENATED}|${HEX}{32}|\\{${HYPHENATED}\\}|urn:uuid:${HYPHENATED})$`)
/** A UUID in its canonical form: hyphenated, lower case (the form Uuid gives back). */
export const CANONICAL_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Whether `value` is a UUID already in its canonical form (Uuid's own output). */
export const isCanonicalUuid = (value: unknown): value is string => typeof value === 'string' && value.length === 36 && CANONICAL_UUID.test(value)

/** The canonical form of a UUID in any of the spellings ANY_SPELLING takes. */
function canonicalUuid(text: string): string {
  if (text.length === 36) return text.toLowerCase()
  const digits = text.replace(/^urn:uuid:|[{}-]/g, '').toLowerCase()
  return `${digits.slice(0, 8)}-${digits.slice(8, 12)}-${digits.slice(12, 16)}-${digits.slice(16, 20)}-${digits.slice(20)}`
}

/** A UUID in any spelling Academy reads, given back in its canonical form (so every spelling names the same mailbox, request or workspace). */
export const Uuid = v.pipe(v.string(), v.regex(ANY_SPELLING, 'must be a UUID'), v.transform(canonicalUuid))
