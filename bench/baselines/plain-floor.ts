/**
 * Baseline: Switchboard's serving layer (src/server.ts: node:http, request
 * ids, metrics) calling a plain route (src/plain.ts) that answers a fixed
 * body, as it calls the exchange's routes. The gap between this and bare
 * node:http is what the serving layer costs a plain route; the gap between
 * this and PUT /message is the exchange's own work.
 */
import { createApp } from '../../src/app'
import { createBackend, loadPlugin } from '../../src/backend/index'
import { createLogger } from '../../src/logger'
import { JSON_TYPE } from '../../src/plain'
import { serve } from '../../src/server'

const logger = createLogger('error')
const app = createApp({ backend: await createBackend(await loadPlugin('memory'), {}, { logger }), config: { log_level: 'error' }, logger })
const fixed = async () => ({ status: 200, headers: { 'content-type': JSON_TYPE }, body: '{"status":"ok"}' })
// The serving layer finds plain routes by the app's route templates, so `/` is made one of them;
// the plain route answers it, the app's own handler never runs.
const served = app.get('/', () => 'unused').put('/', () => 'unused')
for (const method of ['GET', 'PUT']) served.decorator.switchboard.plainRoutes.set(`${method} /`, fixed)
const server = await serve(served, { host: '127.0.0.1', port: 0, bodyLimitBytes: 16 << 20 })
console.log(`listening on ${server.url}`)
process.on('SIGTERM', async () => {
  await server.stop()
  process.exit(0)
})
