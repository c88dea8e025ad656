/**
 * Baseline: Switchboard's serving layer and pipeline (src/http: node:http,
 * request ids, metrics, match, limits, body read) running a route that
 * answers a fixed body, as they run the exchange's routes. The gap between
 * this and bare node:http is what serving costs a route; the gap between
 * this and PUT /message is the exchange's own work.
 *
 * With `--reads body`, the route first reads the body as PUT /message does
 * (Academy's `{"message": "<Message JSON>"}`, parsed and checked); with
 * `--reads message`, it also parses the message inside and checks its
 * header, as PUT /message does before storing it. Each step's extra cost is
 * then a difference of two measurements (bench/instructions.ts).
 *
 *   bun bench/baselines/pipeline-floor.ts [--reads body|message]
 */
import { parseArgs } from 'node:util'
import { createApp } from '../../src/app'
import { createBackend } from '../../src/backend/index'
import { loadPlugin } from '../../plugins/index'
import { parseJsonBody } from '../../src/http/input'
import { serve } from '../../src/http/node'
import { JSON_TYPE, type Reply } from '../../src/http/reply'
import { route, type RouteRequest } from '../../src/http/route'
import { createLogger } from '../../src/ops/logger'
import { SendBody, quickSendBody } from '../../src/modules/exchange/model'
import { ExchangeService } from '../../src/modules/exchange/service'

const { values } = parseArgs({ options: { reads: { type: 'string' } } })
const reads = values.reads ?? 'nothing'
if (!['nothing', 'body', 'message'].includes(reads)) {
  console.error(`--reads takes body or message, not ${JSON.stringify(reads)}`)
  process.exit(2)
}

const logger = createLogger('error')
const backend = await createBackend(await loadPlugin('memory'), {}, { logger })
const exchange = new ExchangeService(backend.mailboxes, { listenTimeout: 60, messageSizeLimitBytes: 1024 * 1024 }, logger)
const answer = (): Reply => ({ status: 200, headers: { 'content-type': JSON_TYPE }, body: '{"status":"ok"}' })
const decoder = new TextDecoder()
const handle = ({ bytes }: RouteRequest<unknown, unknown, unknown, unknown>): Reply => {
  if (reads === 'nothing') return answer()
  try {
    const { message } = parseJsonBody(decoder.decode(bytes), SendBody, '', quickSendBody)
    if (reads === 'message') exchange.parseMessage(message)
  } catch (error) {
    return { status: 400, headers: { 'content-type': 'text/plain' }, body: String((error as Error).message) }
  }
  return answer()
}
const fixed = (method: 'GET' | 'PUT') => route({ method, path: '/', surface: 'native', access: 'none', tag: 'operations', summary: 'fixed body', body: 'raw', responses: { 200: { description: 'fixed' } }, handle })
const app = createApp({ backend, config: { log_level: 'error' }, logger, routes: [fixed('GET'), fixed('PUT')] })
const server = await serve(app, { host: '127.0.0.1', port: 0 })
console.log(`listening on ${server.url}`)
process.on('SIGTERM', async () => {
  await server.stop()
  process.exit(0)
})
