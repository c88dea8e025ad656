/**
 * Baseline: Switchboard's own serving layer (src/server.ts: node:http, the
 * request read into a web Request, the answer written back, request ids,
 * metrics) in front of an app that answers a fixed body. The gap between this
 * and bare node:http is the cost of bridging node:http to a web-standard app;
 * the gap between this and PUT /message is the exchange's own work.
 */
import { createApp } from '../../src/app'
import { createBackend, loadPlugin } from '../../src/backend/index'
import { createLogger } from '../../src/logger'
import { serve } from '../../src/server'

const logger = createLogger('error')
const real = createApp({ backend: await createBackend(await loadPlugin('memory'), {}, { logger }), config: { log_level: 'error' }, logger })
const fixed = {
  decorator: real.decorator,
  routes: real.routes,
  async handle(request: Request): Promise<Response> {
    await request.arrayBuffer()
    return new Response('{"status":"ok"}', { headers: { 'content-type': 'application/json' } })
  },
}
const server = await serve(fixed, { host: '127.0.0.1', port: 0, bodyLimitBytes: 16 << 20 })
console.log(`listening on ${server.url}`)
process.on('SIGTERM', async () => {
  await server.stop()
  process.exit(0)
})
