/**
 * Errors rendered by surface, in one place: every error a route raises, and
 * every error the pipeline raises before its handler runs (413, bad JSON,
 * 401/403, 429), is answered in the shape of the matched route's surface;
 * an unmatched path in the native shape. Unknown errors are logged with the
 * request id and answered 500 without internals.
 */
import * as v from 'valibot'
import { AppError, GoneError, internalError } from '../errors'
import type { Logger } from '../ops/logger'
import type { Reply } from './reply'
import type { Surface } from './route'

const TEXT = 'text/plain; charset=utf-8'
const JSON_TYPE = 'application/json'

/** The native REST error body: `{"error": {"code", "message"}}`. */
const NativeErrorBody = v.object({ error: v.object({ code: v.string(), message: v.string() }) })
/** VideoSDK's error body. */
const VideoSdkErrorBody = v.object({ message: v.string() })
/** Academy's errors: text/plain, worded as its server words them. */
const AcademyErrorText = v.pipe(v.string(), v.description("text/plain error, as Academy's server words it"))
/** A JSON-RPC 2.0 error response. */
const RpcErrorBody = v.object({
  jsonrpc: v.literal('2.0'),
  id: v.nullable(v.union([v.string(), v.number()])),
  error: v.object({ code: v.number(), message: v.string(), data: v.optional(v.record(v.string(), v.unknown())) }),
})

/** A2A's HTTP+JSON binding's error body: a google.rpc.Status, its details saying which error it is (A2A spec §11.6). */
const RestErrorBody = v.object({
  error: v.object({
    code: v.number(),
    status: v.string(),
    message: v.string(),
    details: v.array(v.pipe(v.looseObject({ '@type': v.string() }), v.description('google.rpc.ErrorInfo (reason, domain, metadata) or google.rpc.BadRequest (fieldViolations)'))),
  }),
})

/** Each surface's error schema and content type, for the OpenAPI document. */
export const SURFACE_ERRORS: Record<Surface, { schema: v.GenericSchema; contentType: string }> = {
  academy: { schema: AcademyErrorText, contentType: TEXT },
  videosdk: { schema: VideoSdkErrorBody, contentType: JSON_TYPE },
  native: { schema: NativeErrorBody, contentType: JSON_TYPE },
  a2a: { schema: RpcErrorBody, contentType: JSON_TYPE },
  'a2a-rest': { schema: RestErrorBody, contentType: JSON_TYPE },
}

/** Words that start every input error on a surface: Academy's server prefixes each with this. */
export const INPUT_ERROR_PREFIX: Record<Surface, string> = { academy: 'Missing or invalid field: ', videosdk: '', native: '', a2a: '', 'a2a-rest': '' }

/** A JSON-RPC error answer. */
export class RpcError extends AppError {
  constructor(
    status: number,
    code: string,
    message: string,
    /** The JSON-RPC error code (-32700 parse error, -32600 invalid request, -32603 internal). */
    readonly rpcCode: number,
    /** The request's JSON-RPC id, when it was read before the error. */
    readonly rpcId: unknown = null,
    details?: Record<string, unknown>,
  ) {
    super(status, code, message, details)
  }
}

/** A JSON-RPC error response body. */
export function rpcErrorBody(id: unknown, code: number, message: string, data?: Record<string, unknown>): string {
  return JSON.stringify({ jsonrpc: '2.0', id: id ?? null, error: data === undefined ? { code, message } : { code, message, data } })
}

/** The google.rpc.Code name of an HTTP status, as google.rpc maps them (code.proto); a gateway's 502 counts as UNAVAILABLE. */
function statusName(status: number): string {
  switch (status) {
    case 400:
    case 413:
      return 'INVALID_ARGUMENT'
    case 401:
      return 'UNAUTHENTICATED'
    case 403:
      return 'PERMISSION_DENIED'
    case 404:
    case 410:
      return 'NOT_FOUND'
    case 409:
      return 'ALREADY_EXISTS'
    case 429:
      return 'RESOURCE_EXHAUSTED'
    case 499:
      return 'CANCELLED'
    case 501:
      return 'UNIMPLEMENTED'
    case 502:
    case 503:
      return 'UNAVAILABLE'
    case 504:
      return 'DEADLINE_EXCEEDED'
    default:
      return status >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION'
  }
}

/** Where Switchboard's own error reasons come from (the ErrorInfo domain; A2A's own errors use a2a-protocol.org). */
export const ERROR_DOMAIN = 'switchboard'

/**
 * An HTTP+JSON (REST) error body: `{"error": {code, status, message, details}}`,
 * with an ErrorInfo naming `reason` and carrying `metadata` as strings; a
 * `field` in the metadata also gets a google.rpc.BadRequest naming it.
 */
export function restErrorBody(status: number, reason: string, message: string, metadata?: Record<string, unknown>): string {
  const details: Record<string, unknown>[] = []
  const strings: Record<string, string> = {}
  for (const [key, value] of Object.entries(metadata ?? {})) if (value !== undefined && value !== null) strings[key] = typeof value === 'string' ? value : JSON.stringify(value)
  details.push(Object.keys(strings).length === 0 ? { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason, domain: ERROR_DOMAIN } : { '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason, domain: ERROR_DOMAIN, metadata: strings })
  if (strings.field !== undefined) details.push({ '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: strings.field, description: message }] })
  return JSON.stringify({ error: { code: status, status: statusName(status), message, details } })
}

export interface RenderContext {
  requestId: string
  logger: Logger
  /** The JSON-RPC id of the request being answered (A2A), when known. */
  rpcId?: unknown
}

/** Renders `error` in `surface`'s shape. */
export function renderError(surface: Surface, error: unknown, context: RenderContext): Reply {
  let known: AppError
  if (error instanceof AppError) known = error
  else {
    context.logger.error('unexpected error', { surface, request_id: context.requestId, error: String((error as Error)?.stack ?? error) })
    known = internalError()
  }
  const headers: Record<string, string> = { 'content-type': SURFACE_ERRORS[surface].contentType }
  if (known.retryAfter !== undefined) headers['retry-after'] = String(Math.ceil(known.retryAfter))
  return { status: known.status, headers, body: errorBody(surface, known, context) }
}

function errorBody(surface: Surface, error: AppError, context: RenderContext): string {
  switch (surface) {
    case 'academy':
      return error.message
    case 'videosdk':
      return JSON.stringify({ message: error.message })
    case 'a2a': {
      const rpc = error instanceof RpcError ? error : null
      const code = rpc?.rpcCode ?? (error.status < 500 ? -32600 : -32603)
      const id = rpc !== null && rpc.rpcId !== null ? rpc.rpcId : (context.rpcId ?? null)
      // A 500 says nothing of its cause, in the data as in the message.
      const data = error.status === 500 ? undefined : { status: error.status, code: error.code, ...error.details }
      return rpcErrorBody(id, code, error.message, data)
    }
    case 'a2a-rest':
      // A 500 says nothing of its cause, in the details as in the message.
      return restErrorBody(error.status, error.code, error.message, error.status === 500 ? undefined : error.details)
    case 'native':
      // Molecule's client reads a removed workspace's 410 as `{error, id, removed_at, hint}`.
      if (error instanceof GoneError && error.details) return JSON.stringify({ error: error.message, ...error.details })
      return JSON.stringify({ error: { code: error.code, message: error.message } })
  }
}
