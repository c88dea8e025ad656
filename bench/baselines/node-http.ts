/**
 * Baseline: a bare node:http server (under Bun) answering a fixed body,
 * reading the request body first as Switchboard's serving layer does, with
 * 'data' and 'end' listeners (a third cheaper per request here than
 * `for await` over the request).
 */
import http from 'node:http'

const server = http.createServer((req, res) => {
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
