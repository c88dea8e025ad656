/**
 * Baseline for the A2A proxy: a bare forwarder on the same stack as
 * Switchboard (node:http under Bun, `fetch` to the agent) that passes the
 * body through and relays the answer, with no checks, no access rules, no
 * deadlines and no records. It is what any proxy built this way pays for
 * the extra hop; the proxy's own work is the gap between it and Switchboard.
 *
 *   bun bench/baselines/forwarder.ts http://127.0.0.1:PORT/
 */
import http from 'node:http'

const agent = process.argv[2]
if (!agent) throw new Error('usage: bun bench/baselines/forwarder.ts <agent url>')

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (chunk: Buffer) => chunks.push(chunk))
  req.on('end', async () => {
    try {
      const upstream = await fetch(agent, { method: 'POST', headers: { 'content-type': 'application/json' }, body: (chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)) as unknown as BodyInit })
      const body = await upstream.bytes()
      res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json', 'content-length': String(body.length) })
      res.end(body)
    } catch {
      res.writeHead(502, { 'content-length': '0' })
      res.end()
    }
  })
})
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
