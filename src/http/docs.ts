/**
 * The OpenAPI document and the Swagger UI, generated from the route table:
 * each descriptor's schemas, responses and access become its operation. The
 * UI's assets are embedded in the binary, so the page works with no internet.
 */
import * as v from 'valibot'
import { NotFoundError } from '../errors'
import { jsonSchemaOf } from './input'
import { JSON_TYPE, type Reply } from './reply'
import { route, type Access, type AnyRoute, type ChannelDoc } from './route'
import { SURFACE_ERRORS } from './surfaces'

export const DOCS_PATH = '/swagger'
export const ASYNCAPI_PATH = `${DOCS_PATH}/asyncapi.json`
const ASSETS = `${DOCS_PATH}/assets`

/** The UI's assets (from swagger-ui-dist) by name, with their types. */
export const DOCS_ASSETS: Record<string, string> = {
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
}

const gzipped = new Map<string, Promise<Uint8Array<ArrayBuffer>>>()
const plain = new Map<string, Uint8Array>()

/**
 * An asset gzipped: the binary embeds it so (scripts/build.ts, `<name>.gz`), which keeps 1.4 MiB out of every
 * binary; run from source, it is read from swagger-ui-dist and gzipped on first use.
 */
function gzippedAsset(name: string): Promise<Uint8Array<ArrayBuffer>> {
  let asset = gzipped.get(name)
  if (asset === undefined) {
    const embedded = Bun.embeddedFiles.find((file) => (file as Blob & { name?: string }).name === `${name}.gz`)
    asset = embedded ? embedded.bytes() : Bun.file(Bun.resolveSync(`swagger-ui-dist/${name}`, import.meta.dir)).bytes().then((bytes) => Bun.gzipSync(bytes, { level: 9 }))
    gzipped.set(name, asset)
  }
  return asset
}

/** The reply for an asset: gzipped to a caller that takes gzip (every browser), else as it is. */
async function assetReply(name: string, acceptEncoding: string | undefined): Promise<Reply> {
  const type = DOCS_ASSETS[name]
  if (type === undefined) throw new NotFoundError('Not found')
  const headers = { 'content-type': type, 'cache-control': 'public, max-age=86400', vary: 'accept-encoding' }
  const bytes = await gzippedAsset(name)
  if (/\bgzip\b/.test(acceptEncoding ?? '')) return { status: 200, headers: { ...headers, 'content-encoding': 'gzip' }, body: bytes }
  let body = plain.get(name)
  if (body === undefined) plain.set(name, (body = Bun.gunzipSync(bytes)))
  return { status: 200, headers, body }
}

const TAGS = [
  { name: 'exchange', description: "Academy-compatible mailbox exchange (Academy's HttpExchangeFactory). Request bodies are JSON on every method, GET included; ids and messages are JSON strings." },
  { name: 'workers', description: "Worker registry and job dispatch (VideoSDK's BackendConnection and dispatch API; native REST)." },
  { name: 'agents', description: "Agent (workspace) registry and A2A proxy (Molecule's a2a_client, A2A SDK clients)." },
  { name: 'events', description: 'Everything that happens to jobs, workers, workspaces and mailboxes: an SSE stream resumable with Last-Event-ID, and signed webhooks.' },
  { name: 'operations', description: 'Health, readiness, metrics and these docs.' },
]

/** The security scheme each access kind asks for. */
const SECURITY: Record<Exclude<Access, 'none'>, string> = {
  client: 'clientToken',
  worker: 'videoSdkToken',
  workspace: 'workspaceToken',
  admin: 'adminToken',
}

const SECURITY_SCHEMES = {
  clientToken: { type: 'http', scheme: 'bearer', description: 'A token from the tokens file (--auth token); any value with --auth none.' },
  videoSdkToken: { type: 'apiKey', in: 'header', name: 'Authorization', description: "VideoSDK's bare token in the Authorization header (a Bearer token works too)." },
  workspaceToken: { type: 'http', scheme: 'bearer', description: "A workspace's own token (X-Workspace-ID, when sent, must name its workspace); the admin token works too." },
  adminToken: { type: 'http', scheme: 'bearer', description: 'The operator token (--admin-token).' },
}

/** A route's path in OpenAPI's form: `/workspaces/:id/a2a/tasks/:taskId:cancel` → `/workspaces/{id}/a2a/tasks/{taskId}:cancel` (a parameter starts a segment; a colon later in it is literal). */
export const openApiPath = (path: string) => path.replace(/\/:([A-Za-z_][A-Za-z0-9_]*)/g, '/{$1}')

/** Parameters of one kind (path or query) from an object schema's properties; `optional` makes every one optional (the query form of a body). */
function parametersOf(schema: v.GenericSchema | undefined, where: 'path' | 'query', optional = false): Record<string, unknown>[] {
  if (schema === undefined) return []
  const json = jsonSchemaOf(schema) as { properties?: Record<string, Record<string, unknown>>; required?: string[]; examples?: Record<string, unknown>[] }
  const example = json.examples?.[0]
  return Object.entries(json.properties ?? {}).map(([name, property]) => {
    const { description, examples, ...rest } = property as { description?: string; examples?: unknown[] }
    const value = examples?.[0] ?? example?.[name]
    return {
      name,
      in: where,
      required: where === 'path' || (!optional && (json.required ?? []).includes(name)),
      ...(description ? { description } : {}),
      schema: rest,
      ...(value !== undefined ? { example: value } : {}),
    }
  })
}

/** A schema's JSON Schema with its first example lifted out, as OpenAPI's media type `example` (what Swagger UI fills in). */
function mediaOf(schema: v.GenericSchema): Record<string, unknown> {
  const json = jsonSchemaOf(schema) as { examples?: unknown[] }
  return json.examples?.[0] !== undefined ? { schema: json, example: json.examples[0] } : { schema: json }
}

/** One route's OpenAPI operation. */
function operationOf(definition: AnyRoute): Record<string, unknown> {
  const operation: Record<string, unknown> = { tags: [definition.tag], summary: definition.summary }
  if (definition.description) operation.description = definition.description
  const body = definition.body === 'raw' || definition.body === undefined ? undefined : definition.body
  // A body that may come as query parameters is documented both ways (browsers send no body on GET).
  const queryForm = definition.queryForm === true && body !== undefined
  const parameters = [...parametersOf(definition.params, 'path'), ...parametersOf(definition.query, 'query'), ...(queryForm ? parametersOf(body, 'query', true) : [])]
  if (parameters.length > 0) operation.parameters = parameters
  if (definition.body === 'raw') {
    if (definition.rawExample !== undefined) operation.requestBody = { required: true, content: { 'application/json': { schema: { type: 'object' }, example: definition.rawExample } } }
  }
  else if (body !== undefined && queryForm && definition.method === 'GET') {
    // A GET documented with a body makes the UI send one, which browsers refuse: the body form is described instead.
    operation.description = [definition.description, 'The same fields are taken as a JSON body too, as Academy\'s client sends them on GET.'].filter(Boolean).join(' ')
  } else if (body !== undefined) operation.requestBody = { required: !queryForm, ...(queryForm ? { description: 'Or the same fields as query parameters.' } : {}), content: { 'application/json': mediaOf(body) } }
  const errors = SURFACE_ERRORS[definition.surface]
  const responses: Record<string, unknown> = {}
  for (const [status, doc] of Object.entries(definition.responses)) {
    const isError = Number(status) >= 400
    const schema = doc.schema ?? (isError ? errors.schema : undefined)
    const contentType = doc.contentType ?? (isError ? errors.contentType : JSON_TYPE.split(';')[0]!)
    responses[status] = schema === undefined ? { description: doc.description } : { description: doc.description, content: { [contentType]: mediaOf(schema) } }
  }
  operation.responses = responses
  if (definition.access !== 'none') operation.security = [{ [SECURITY[definition.access]]: [] }]
  return operation
}

/** The AsyncAPI 3 document of the WebSocket and event-stream channels, from Switchboard's side (it sends or receives). */
export function asyncApiDocument(channels: readonly ChannelDoc[], version: string): Record<string, unknown> {
  const documented: Record<string, unknown> = {}
  const operations: Record<string, unknown> = {}
  for (const channel of channels) {
    const messages: Record<string, unknown> = {}
    for (const message of channel.messages) {
      messages[message.name] = { name: message.name, summary: message.summary, contentType: message.contentType ?? 'application/json', payload: jsonSchemaOf(message.schema) }
      operations[`${channel.id}.${message.name}`] = {
        action: message.direction,
        channel: { $ref: `#/channels/${channel.id}` },
        summary: message.summary,
        messages: [{ $ref: `#/channels/${channel.id}/messages/${message.name}` }],
      }
    }
    documented[channel.id] = { address: channel.address, description: `${channel.description} (${channel.protocol === 'ws' ? 'WebSocket' : 'server-sent events'})`, messages }
  }
  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Switchboard',
      version,
      description: `The WebSocket and event streams of Switchboard; its HTTP routes are in the OpenAPI document (${DOCS_PATH}/json).`,
    },
    channels: documented,
    operations,
  }
}

/** The OpenAPI 3 document of a route table. */
export function openApiDocument(routes: readonly AnyRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const definition of routes) {
    if (definition.hidden) continue
    ;(paths[openApiPath(definition.path)] ??= {})[definition.method.toLowerCase()] = operationOf(definition)
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Switchboard',
      version,
      description: `Mailbox exchange (Academy), worker registry and job dispatch (VideoSDK), agent registry and A2A proxy. The /agent WebSocket's frames and the event streams' formats are in the [AsyncAPI document](${ASYNCAPI_PATH}).`,
    },
    tags: TAGS,
    paths,
    components: { securitySchemes: SECURITY_SCHEMES },
  }
}

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Switchboard</title>
<link rel="stylesheet" href="${ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${ASSETS}/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({ url: '${DOCS_PATH}/json', dom_id: '#swagger-ui' })</script>
</body>
</html>
`

const html = (): Reply => ({ status: 200, headers: { 'content-type': 'text/html; charset=utf-8' }, body: page })
const Page = v.pipe(v.string(), v.description('The Swagger UI page'))
const AssetParams = v.object({ name: v.pipe(v.string(), v.maxLength(64)) })

/** The docs' own routes: the documents (each built once, on first request), the page (with and without the trailing slash) and its assets. */
export function docsRoutes(routes: () => readonly AnyRoute[], channels: readonly ChannelDoc[], version: string): AnyRoute[] {
  let document: string | null = null
  let asyncDocument: string | null = null
  return [
    route({
      method: 'GET',
      path: ASYNCAPI_PATH,
      surface: 'native',
      access: 'none',
      tag: 'operations',
      summary: 'The AsyncAPI 3 document: the /agent WebSocket frames and the event streams',
      unlimited: true,
      responses: { 200: { description: 'AsyncAPI 3 document', schema: v.record(v.string(), v.unknown()) } },
      handle: () => {
        asyncDocument ??= JSON.stringify(asyncApiDocument(channels, version))
        return { status: 200, headers: { 'content-type': JSON_TYPE }, body: asyncDocument }
      },
    }),
    route({
      method: 'GET',
      path: `${DOCS_PATH}/json`,
      surface: 'native',
      access: 'none',
      tag: 'operations',
      summary: 'This OpenAPI document',
      unlimited: true,
      responses: { 200: { description: 'OpenAPI 3 document', schema: v.record(v.string(), v.unknown()) } },
      handle: () => {
        document ??= JSON.stringify(openApiDocument(routes(), version))
        return { status: 200, headers: { 'content-type': JSON_TYPE }, body: document }
      },
    }),
    route({ method: 'GET', path: DOCS_PATH, surface: 'native', access: 'none', tag: 'operations', summary: 'Swagger UI', unlimited: true, responses: { 200: { description: 'HTML page', schema: Page, contentType: 'text/html' } }, handle: html }),
    route({ method: 'GET', path: `${DOCS_PATH}/`, surface: 'native', access: 'none', tag: 'operations', summary: 'Swagger UI', unlimited: true, hidden: true, responses: { 200: { description: 'HTML page' } }, handle: html }),
    route({
      method: 'GET',
      path: `${ASSETS}/:name`,
      surface: 'native',
      access: 'none',
      tag: 'operations',
      summary: 'Swagger UI assets',
      unlimited: true,
      hidden: true,
      params: AssetParams,
      responses: { 200: { description: 'asset' } },
      handle: ({ params, header }) => assetReply(params.name, header('accept-encoding')),
    }),
  ]
}
