/** Reading a request's input: the JSON body, and the one "first validation issue" formatter. */
import * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import { BadRequestError } from '../errors'

const BLANK = /^\s*$/

/** Describes the first valibot issue as `path: message`. */
export function describeIssue(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!
  const path = issue.path?.map((item) => String(item.key)).join('.')
  return path ? `${path}: ${issue.message}` : issue.message
}

/** Validates `data`, turning the first issue into a 400 that names the field. */
export function parseWith<S extends v.GenericSchema>(schema: S, data: unknown, prefix = ''): v.InferOutput<S> {
  const parsed = v.safeParse(schema, data)
  if (!parsed.success) throw new BadRequestError(`${prefix}${describeIssue(parsed.issues)}`)
  return parsed.output
}

/**
 * Parses a JSON body and validates it. `quick`, when given, is tried first:
 * it gives the schema's output for the usual shape of the body, or null for
 * anything else, which the schema then reads (and words the error for).
 */
export function parseJsonBody<S extends v.GenericSchema>(text: string, schema: S, prefix = '', quick?: (data: unknown) => v.InferOutput<S> | null): v.InferOutput<S> {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (error) {
    // A blank body is not JSON either: told apart only once parsing failed, so a valid body is not scanned twice.
    if (BLANK.test(text)) throw new BadRequestError(`${prefix}request body is empty; expected a JSON object`)
    throw new BadRequestError(`${prefix}request body is not valid JSON (${(error as Error).message})`)
  }
  return quick?.(data) ?? parseWith(schema, data, prefix)
}

/** The JSON Schema of a valibot schema, for the OpenAPI document (the one conversion). */
export function jsonSchemaOf(schema: v.GenericSchema): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = toJsonSchema(schema, { errorMode: 'ignore' }) as Record<string, unknown>
  return rest
}

/** The JSON type of each top-level field of an object schema (for reading the same fields from a query string). */
export function fieldTypesOf(schema: v.GenericSchema): Record<string, string> {
  const json = jsonSchemaOf(schema) as { properties?: Record<string, { type?: string | string[]; anyOf?: { type?: string }[] }> }
  const types: Record<string, string> = {}
  for (const [name, property] of Object.entries(json.properties ?? {})) {
    const candidates = [property.type, ...(property.anyOf ?? []).map((option) => option.type)].flat().filter((type): type is string => typeof type === 'string')
    types[name] = candidates.find((type) => type !== 'null') ?? 'string'
  }
  return types
}

/**
 * Query parameters read as the JSON values of the fields they stand for:
 * numbers and booleans from their text, `null` as null, strings as they are.
 * A value that does not read as its type is kept as text, so the schema names it.
 */
export function queryAsFields(query: Record<string, string>, types: Record<string, string>): Record<string, unknown> {
  const fields: Record<string, unknown> = {}
  for (const [name, text] of Object.entries(query)) {
    const type = types[name]
    if (text === 'null') fields[name] = null
    else if ((type === 'number' || type === 'integer') && text.trim() !== '' && Number.isFinite(Number(text))) fields[name] = Number(text)
    else if (type === 'boolean' && (text === 'true' || text === 'false')) fields[name] = text === 'true'
    else fields[name] = text
  }
  return fields
}
