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
