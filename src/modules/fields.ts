/**
 * Free-form JSON object fields (job metadata and room options, agent cards):
 * the one schema that reads them and the one bound on their size, shared by
 * the modules that store them.
 */
import * as v from 'valibot'
import { PayloadTooLargeError } from '../errors'

const isJsonObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** A JSON object; an array is refused (a record schema alone takes one and gives back {"0": …}). */
export const JsonObject = (description: string) =>
  v.pipe(v.custom<Record<string, unknown>>(isJsonObject, 'must be a JSON object'), v.record(v.string(), v.unknown()), v.description(description))

/** Refuses with 413, naming the field, an object whose JSON text takes more than `limitBytes` (max_field_kb). */
export function checkFieldSize(field: string, value: Record<string, unknown> | null | undefined, limitBytes: number): void {
  if (value === null || value === undefined) return
  const size = Buffer.byteLength(JSON.stringify(value))
  if (size > limitBytes) throw new PayloadTooLargeError(`${field} takes ${size} bytes of JSON, more than the ${limitBytes} of max_field_kb`)
}
