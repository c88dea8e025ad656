/**
 * The OpenAPI document and the Swagger UI, generated from the route table:
 * each descriptor's schemas, responses and access become its operation. The
 * UI's assets are embedded in the binary, so the page works with no internet.
 */
import bundlePath from 'swagger-ui-dist/swagger-ui-bundle.js' with { type: 'file' }
import cssPath from 'swagger-ui-dist/swagger-ui.css' with { type: 'file' }
import * as v from 'valibot'
import { NotFoundError } from '../errors'
import { jsonSchemaOf } from './input'
import { JSON_TYPE, type Reply } from './reply'
import { route, type Access, type AnyRoute } from './route'
import { SURFACE_ERRORS } from './surfaces'

export const DOCS_PATH = '/swagger'
const ASSETS = `${DOCS_PATH}/assets`

const assets: Record<string, { path: string; type: string }> = {
  'swagger-ui-bundle.js': { path: bundlePath, type: 'text/javascript; charset=utf-8' },
  'swagger-ui.css': { path: cssPath, type: 'text/css; charset=utf-8' },
}

const TAGS = [
  { name: 'exchange', description: "Academy-compatible mailbox exchange (Academy's HttpExchangeFactory). Request bodies are JSON on every method, GET included; ids and messages are JSON strings." },
  { name: 'workers', description: "Worker registry and job dispatch (VideoSDK's BackendConnection and dispatch API; native REST)." },
  { name: 'agents', description: "Agent (workspace) registry and A2A proxy (Molecule's a2a_client, A2A SDK clients)." },
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

/** `/workspaces/:id/a2a` → `/workspaces/{id}/a2a` */
const openApiPath = (path: string) => path.replace(/:([A-Za-z_]+)/g, '{$1}')

/** Parameters of one kind (path or query) from an object schema's properties. */
function parametersOf(schema: v.GenericSchema | undefined, where: 'path' | 'query'): Record<string, unknown>[] {
  if (schema === undefined) return []
  const json = jsonSchemaOf(schema) as { properties?: Record<string, Record<string, unknown>>; required?: string[] }
  return Object.entries(json.properties ?? {}).map(([name, property]) => {
    const { description, ...rest } = property
    return { name, in: where, required: where === 'path' || (json.required ?? []).includes(name), ...(description ? { description } : {}), schema: rest }
  })
}

/** One route's OpenAPI operation. */
function operationOf(definition: AnyRoute): Record<string, unknown> {
  const operation: Record<string, unknown> = { tags: [definition.tag], summary: definition.summary }
  if (definition.description) operation.description = definition.description
  const parameters = [...parametersOf(definition.params, 'path'), ...parametersOf(definition.query, 'query')]
  if (parameters.length > 0) operation.parameters = parameters
  if (definition.body !== undefined) {
    const schema = definition.body === 'raw' ? { type: 'object' } : jsonSchemaOf(definition.body)
    operation.requestBody = { required: true, content: { 'application/json': { schema } } }
  }
  const errors = SURFACE_ERRORS[definition.surface]
  const responses: Record<string, unknown> = {}
  for (const [status, doc] of Object.entries(definition.responses)) {
    const isError = Number(status) >= 400
    const schema = doc.schema ?? (isError ? errors.schema : undefined)
    const contentType = doc.contentType ?? (isError ? errors.contentType : JSON_TYPE.split(';')[0]!)
    responses[status] = schema === undefined ? { description: doc.description } : { description: doc.description, content: { [contentType]: { schema: jsonSchemaOf(schema) } } }
  }
  operation.responses = responses
  if (definition.access !== 'none') operation.security = [{ [SECURITY[definition.access]]: [] }]
  return operation
}

/** The OpenAPI 3 document of a route table. */
export function openApiDocument(routes: readonly AnyRoute[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const definition of routes) {
    if (definition.hidden) continue
    ;(paths[openApiPath(definition.path)] ??= {})[definition.method.toLowerCase()] = operationOf(definition)
  }
  return {
    openapi: '3.0.3',
    info: {
      title: 'Switchboard',
      version,
      description: 'Mailbox exchange (Academy), worker registry and job dispatch (VideoSDK), agent registry and A2A proxy.',
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

/** The docs' own routes: the document (built once, on first request), the page (with and without the trailing slash) and its assets. */
export function docsRoutes(routes: () => readonly AnyRoute[], version: string): AnyRoute[] {
  let document: string | null = null
  return [
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
      handle: async ({ params }) => {
        const asset = assets[params.name]
        if (!asset) throw new NotFoundError('Not found')
        return { status: 200, headers: { 'content-type': asset.type, 'cache-control': 'public, max-age=86400' }, body: await Bun.file(asset.path).bytes() }
      },
    }),
  ]
}
