/**
 * The OpenAPI document (/swagger/json), generated from the route schemas,
 * and the Swagger UI (/swagger), whose assets are embedded in the binary so
 * the page works with no internet.
 */
import { Elysia } from 'elysia'
import { openapi } from '@elysiajs/openapi'
import { toJsonSchema } from '@valibot/to-json-schema'
import bundlePath from 'swagger-ui-dist/swagger-ui-bundle.js' with { type: 'file' }
import cssPath from 'swagger-ui-dist/swagger-ui.css' with { type: 'file' }

export const DOCS_PATH = '/swagger'
const ASSETS = `${DOCS_PATH}/assets`

const assets: Record<string, { path: string; type: string }> = {
  'swagger-ui-bundle.js': { path: bundlePath, type: 'text/javascript; charset=utf-8' },
  'swagger-ui.css': { path: cssPath, type: 'text/css; charset=utf-8' },
}

export function docs(version: string) {
  return new Elysia({ name: 'switchboard/docs' })
    .use(
      openapi({
        path: DOCS_PATH,
        provider: 'swagger-ui',
        mapJsonSchema: { valibot: (schema: Parameters<typeof toJsonSchema>[0]) => toJsonSchema(schema, { errorMode: 'ignore' }) },
        swagger: { cdn: `${ASSETS}/swagger-ui-bundle.js`, theme: `${ASSETS}/swagger-ui.css`, autoDarkMode: false },
        exclude: { paths: [`${ASSETS}/*`] },
        documentation: {
          info: {
            title: 'Switchboard',
            version,
            description: 'Mailbox exchange (Academy), worker registry and job dispatch (VideoSDK), agent registry and A2A proxy.',
          },
          tags: [
            { name: 'exchange', description: 'Academy-compatible mailbox exchange. Request bodies are JSON on every method, GET included; ids and messages are JSON strings.' },
            { name: 'workers', description: 'Worker registry and job dispatch.' },
            { name: 'agents', description: 'Agent (workspace) registry and A2A proxy.' },
            { name: 'operations', description: 'Health and readiness.' },
          ],
        },
      }),
    )
    .get(`${ASSETS}/:name`, ({ params, status }) => {
      const asset = assets[params.name]
      if (!asset) return status(404, 'Not found')
      return new Response(Bun.file(asset.path), { headers: { 'content-type': asset.type, 'cache-control': 'public, max-age=86400' } })
    }, { detail: { hide: true } })
}
