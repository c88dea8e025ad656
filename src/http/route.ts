/**
 * A route is defined once, as a descriptor: method, path, surface, who may
 * call it, its input schemas, its documented responses and its handler.
 * The pipeline (pipeline.ts) runs every descriptor the same way whichever
 * adapter a request came through, and the OpenAPI document (docs.ts) is
 * generated from the same descriptors.
 */
import type * as v from 'valibot'
import type { Caller } from '../backend/agents'
import type { Client } from '../backend/mailboxes'
import type { Reply } from './reply'
import type { GoneReason } from './served'
import type http from 'node:http'
import type { Duplex } from 'node:stream'

/** Takes over an upgrade request (e.g. a `ws` WebSocketServer's handleUpgrade). */
export type UpgradeHandler = (request: http.IncomingMessage, socket: Duplex, head: Buffer) => void

/** Whose error shape a route answers in (surfaces.ts). */
export type Surface = 'academy' | 'videosdk' | 'native' | 'a2a' | 'a2a-rest'

/**
 * Who may call a route: anybody; a tokens-file client (`Authorization:
 * Bearer`); a VideoSDK caller (the bare token, or Bearer); a workspace (its
 * own token, `X-Workspace-ID` optional); the operator (admin token).
 */
export type Access = 'none' | 'client' | 'worker' | 'workspace' | 'admin'

/** What the auth step hands a handler, by access. */
export interface Callers {
  none: null
  client: Client
  worker: Client
  workspace: Caller
  admin: Caller
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE'

export type Tag = 'exchange' | 'workers' | 'agents' | 'events' | 'operations'

/** The credentials a request carries, as the auth step read them (handlers that verify them themselves get these). */
export interface Credentials {
  /** The bearer token, or null when there is no Authorization header. */
  token: string | null
  /** The X-Workspace-ID header, or null. */
  workspaceId: string | null
}

/** A request as a handler sees it: validated input, the caller, and what serving knows. */
export interface RouteRequest<P, Q, B, C> {
  readonly params: P
  readonly query: Q
  readonly body: B
  readonly caller: C
  /** The body as sent (empty when there is none); the raw input of routes with `body: 'raw'`. */
  readonly bytes: Uint8Array
  /** A request header by its lower-case name (repeated ones joined with ", "). */
  header(name: string): string | undefined
  /** The request target's path as sent (not decoded). */
  readonly path: string
  /** The query string as sent, without its '?' ('' when there is none). */
  readonly search: string
  /** scheme://host the caller reached this server at (from the Host header). */
  readonly origin: string
  readonly requestId: string
  readonly remoteAddress: string | undefined
  /** Aborted when the caller goes away or shutdown ends the request; read it only to wait. */
  readonly signal: AbortSignal
  /** Calls `listener` once, with the reason, when the caller goes away or shutdown ends the request; cheaper than `signal`. */
  onGone(listener: (reason: GoneReason) => void): () => void
  readonly credentials: Credentials
}

/** One documented response. */
export interface ResponseDoc {
  description: string
  /** The body's schema; the surface's error schema when omitted on an error status. */
  schema?: v.GenericSchema
  /** Default: the surface's (application/json, or text/plain on Academy routes). */
  contentType?: string
}

export interface Route<P = unknown, Q = unknown, B = unknown, A extends Access = Access> {
  method: Method
  path: string
  surface: Surface
  access: A
  /**
   * 'handler': the auth step reads the credentials but leaves checking them
   * to the handler, for a route whose answer must not depend on whether the
   * token is still valid (a removed workspace learns why with its revoked
   * token; open registration needs none).
   */
  verify?: 'pipeline' | 'handler'
  tag: Tag
  summary: string
  description?: string
  params?: v.GenericSchema<unknown, P>
  query?: v.GenericSchema<unknown, Q>
  /** A JSON body read on any method and validated; 'raw' hands the bytes to the handler as they are. */
  body?: v.GenericSchema<unknown, B> | 'raw'
  /** An example of a 'raw' body, for the OpenAPI document (a raw body is documented only with one). */
  rawExample?: Record<string, unknown>
  /**
   * The body schema's output for the usual shape of the body, or null for
   * anything else (which the schema then reads and words the error for);
   * test/http/quick-body.test.ts checks every one against its schema.
   */
  quickBody?: (data: unknown) => B | null
  /**
   * The body's fields may come as query parameters instead, when the body is
   * empty: a browser sends no body on GET (Academy's client does, so both
   * forms are taken). Each value is read as its field's JSON type.
   */
  queryForm?: boolean
  /** Largest body, with the setting that sets it; default: max_body_kb. */
  bodyLimit?: { bytes: number; setting: string }
  /** A call that shutdown lets finish (within shutdown_timeout_s) instead of ending it at once. */
  outlivesDrain?: boolean
  /** Told the status of every error answered before the handler ran (for a route that counts its outcomes). */
  onRefused?: (status: number) => void
  /** Probes and scrapes are never rate limited: a busy caller must not make the instance look dead. */
  unlimited?: boolean
  /** A WebSocket endpoint: the node:http adapter hands an upgrade request on this path to it (after the rate limit); a plain request gets the handler's answer. */
  upgrade?: UpgradeHandler
  /** Left out of the OpenAPI document (the docs' own assets). */
  hidden?: boolean
  responses: Record<number, ResponseDoc>
  handle(request: RouteRequest<P, Q, B, Callers[A]>): Promise<Reply> | Reply
}

/** Any route, as the table and the adapters hold it. */
// The handler's input types differ from route to route; the pipeline gives each the shape its own schemas produce.
export type AnyRoute = Route<any, any, any, Access>

/** Defines a route, inferring its input types from its schemas. */
export function route<P = Record<string, never>, Q = Record<string, never>, B = undefined, A extends Access = 'none'>(definition: Route<P, Q, B, A>): AnyRoute {
  return definition as AnyRoute
}

/**
 * A channel documented in the AsyncAPI document: the `/agent` WebSocket and
 * the event streams. `direction` is Switchboard's: it sends or receives.
 */
export interface ChannelDoc {
  id: string
  address: string
  /** ws: a WebSocket; sse: an event stream answered to an HTTP request (documented in OpenAPI too). */
  protocol: 'ws' | 'sse'
  description: string
  messages: { name: string; direction: 'send' | 'receive'; summary: string; schema: v.GenericSchema; contentType?: string }[]
}
