/**
 * Baseline: a bare node:http server (under Bun) answering a fixed body,
 * reading the request body first as Switchboard's serving layer does, with
 * 'data' and 'end' listeners (a third cheaper per request here than
 * `for await` over the request).
 *
 * With `--reads-header`, it also reads one request header (X-Request-Id,
 * the first one the serving layer reads): Bun's node:http builds a
 * request's headers object only when one is asked for, and then builds it
 * whole, so this row shows what any server that looks at a header pays
 * (bench/instructions.ts).
 *
 *   bun bench/baselines/node-http.ts [--reads-header]
 */
import http from 'node:http'

const readsHeader = process.argv.includes('--reads-header')

const server = http.createServer((req, res) => {
  // Reading `headers` calls the getter that builds them (a call the JIT cannot drop).
  if (readsHeader) void req.headers['x-request-id']
  req.on('data', () => {})
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': '15' })
    res.end('{"status":"ok"}')
  })
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
