/**
 * Baseline: Switchboard's serving layer (src/server.ts: node:http, request
 * ids, metrics) calling a plain route (src/plain.ts) that answers a fixed
 * body, as it calls the exchange's routes. The gap between this and bare
 * node:http is what the serving layer costs a plain route; the gap between
 * this and PUT /message is the exchange's own work.
 *
 * With `--reads body`, the route first reads the body as PUT /message does
 * (Academy's `{"message": "<Message JSON>"}`, parsed and checked); with
 * `--reads message`, it also parses the message inside and checks its
 * header, as PUT /message does before storing it. Each step's extra cost is
 * then a difference of two measurements (bench/instructions.ts).
 *
 *   bun bench/baselines/plain-floor.ts [--reads body|message]
 */
import { parseArgs } from 'node:util'
import { createApp } from '../../src/app'
import { createBackend, loadPlugin } from '../../src/backend/index'
import { parseJsonText } from '../../src/http'
import { createLogger } from '../../src/logger'
import { SendBody, quickSendBody } from '../../src/modules/exchange/model'
import { ExchangeService } from '../../src/modules/exchange/service'
import { JSON_TYPE, type PlainRequest } from '../../src/plain'
import { serve } from '../../src/server'

const { values } = parseArgs({ options: { reads: { type: 'string' } } })
const reads = values.reads ?? 'nothing'
if (!['nothing', 'body', 'message'].includes(reads)) {
  console.error(`--reads takes body or message, not ${JSON.stringify(reads)}`)
  process.exit(2)
}

const logger = createLogger('error')
const backend = await createBackend(await loadPlugin('memory'), {}, { logger })
const app = createApp({ backend, config: { log_level: 'error' }, logger })
const { config } = app.decorator.switchboard
const limit = config.max_body_kb * 1024
const exchange = new ExchangeService(backend.mailboxes, { listenTimeout: config.listen_timeout, messageSizeLimitBytes: config.message_size_limit_kb * 1024 }, logger)
const answer = { status: 200, headers: { 'content-type': JSON_TYPE }, body: '{"status":"ok"}' }
const route = async (request: PlainRequest) => {
  if (reads === 'nothing') return answer
  try {
    const { message } = parseJsonText(request.body, SendBody, limit, '', quickSendBody)
    if (reads === 'message') exchange.parseMessage(message)
  } catch (error) {
    return { status: 400, headers: { 'content-type': 'text/plain' }, body: String((error as Error).message) }
  }
  return answer
}
// The serving layer finds plain routes by the app's route templates, so `/` is made one of them;
// the plain route answers it, the app's own handler never runs.
const served = app.get('/', () => 'unused').put('/', () => 'unused')
for (const method of ['GET', 'PUT']) served.decorator.switchboard.plainRoutes.set(`${method} /`, route)
const server = await serve(served, { host: '127.0.0.1', port: 0, bodyLimitBytes: limit })
console.log(`listening on ${server.url}`)
process.on('SIGTERM', async () => {
  await server.stop()
  process.exit(0)
})
