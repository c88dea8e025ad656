/** Request-reading helpers shared by every module. */
import * as v from 'valibot'
import { toJsonSchema } from '@valibot/to-json-schema'
import { AppError, BadRequestError, PayloadTooLargeError } from './errors'
import type { Logger } from './logger'

const BLANK = /^\s*$/

/** Describes the first valibot issue as `path: message`. */
export function describeIssue(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!
  const path = issue.path?.map((item) => String(item.key)).join('.')
  return path ? `${path}: ${issue.message}` : issue.message
}

/**
 * Reads a JSON object body from any method (Academy sends bodies on GET and
 * DELETE), then validates it. `prefix` starts every error message.
 */
export async function readJsonBody<S extends v.GenericSchema>(request: Request, schema: S, limitBytes: number, prefix = ''): Promise<v.InferOutput<S>> {
  const length = Number(request.headers.get('content-length') ?? 0)
  if (length > limitBytes) throw new PayloadTooLargeError(`${prefix}request body of ${length} bytes is larger than the limit of ${limitBytes} bytes`)
  let text: string
  try {
    text = await request.text()
  } catch {
    throw new BadRequestError(`${prefix}request body could not be read`)
  }
  return parseJsonText(text, schema, limitBytes, prefix)
}

/**
 * Parses and validates a JSON object body already read as text. `quick`,
 * when given, is tried first: it gives the schema's output for the usual
 * shape of the body, or null for anything else, which the schema then reads
 * (and words the error for).
 */
export function parseJsonText<S extends v.GenericSchema>(text: string, schema: S, limitBytes: number, prefix = '', quick?: (data: unknown) => v.InferOutput<S> | null): v.InferOutput<S> {
  // A UTF-8 byte is at most one UTF-16 unit, a unit at most three bytes: only a long text needs counting.
  if (text.length * 3 > limitBytes && Buffer.byteLength(text) > limitBytes) throw new PayloadTooLargeError(`${prefix}request body is larger than the limit of ${limitBytes} bytes`)
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

/** Validates `data`, turning the first issue into a 400 that names the field. */
export function parseWith<S extends v.GenericSchema>(schema: S, data: unknown, prefix = ''): v.InferOutput<S> {
  const parsed = v.safeParse(schema, data)
  if (!parsed.success) throw new BadRequestError(`${prefix}${describeIssue(parsed.issues)}`)
  return parsed.output
}

/** The JSON Schema of a valibot schema, for OpenAPI documents (the one conversion every module uses). */
export function jsonSchemaOf(schema: v.GenericSchema): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = toJsonSchema(schema, { errorMode: 'ignore' }) as Record<string, unknown>
  return rest
}

/** An OpenAPI requestBody for a JSON body read by `readJsonBody` (which Elysia does not see, e.g. on GET). */
export function documentedBody(schema: v.GenericSchema, description?: string) {
  return { required: true, description, content: { 'application/json': { schema: jsonSchemaOf(schema) } } }
}

/** The native REST error body: `{"error": {"code", "message"}}`. */
export const ErrorBody = v.object({ error: v.object({ code: v.string(), message: v.string() }) })

/** Renders an error in the native REST shape. */
export function errorResponse(status: number, code: string, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error: { code, message } }), { status, headers: { 'content-type': 'application/json', ...headers } })
}

/** The native REST error handler: AppErrors by their status, framework errors as 4xx, anything else logged and answered 500 without internals. */
export function nativeError(code: unknown, error: unknown, logger: Logger): Response {
  if (error instanceof AppError) {
    const headers: Record<string, string> = {}
    const retry = (error as { retryAfterSeconds?: number }).retryAfterSeconds
    if (retry !== undefined) headers['retry-after'] = String(Math.ceil(retry))
    return errorResponse(error.status, error.code, error.message, headers)
  }
  if (code === 'NOT_FOUND') return errorResponse(404, 'NOT_FOUND', 'No such route')
  if (code === 'VALIDATION') {
    // Elysia puts the first valibot issue of a query, params or body schema in `valueError`.
    const issue = (error as { valueError?: v.BaseIssue<unknown> }).valueError
    return errorResponse(400, 'BAD_REQUEST', issue?.message ? describeIssue([issue]) : 'Request does not match its schema')
  }
  if (code === 'PARSE') return errorResponse(400, 'BAD_REQUEST', 'Request body could not be parsed')
  if (code === 'INVALID_COOKIE_SIGNATURE') return errorResponse(400, 'BAD_REQUEST', 'Invalid cookie')
  logger.error('unexpected error', { code: String(code), error: String((error as Error)?.stack ?? error) })
  return errorResponse(500, 'INTERNAL', 'Internal Server Error')
}
