/**
 * Baseline for the A2A proxy: a bare forwarder that passes the body to the
 * agent with `fetch` and relays the answer, with no checks, no access rules,
 * no deadlines and no records. It is what any proxy built this way pays for
 * the extra hop; the proxy's own work is the gap between it and Switchboard.
 * By default it serves with node:http under Bun, as Switchboard does (the
 * only Bun server that hands over the JSON bodies Academy sends on GET);
 * with `--bun-serve` it serves with Bun.serve, the fastest server Bun has,
 * to show what the hop costs on the quickest stack.
 *
 *   bun bench/baselines/forwarder.ts http://127.0.0.1:PORT/ [--bun-serve]
 */
import http from 'node:http'

const agent = process.argv[2]
if (!agent) throw new Error('usage: bun bench/baselines/forwarder.ts <agent url> [--bun-serve]')

/** Sends a body to the agent; the answer's status, content type and bytes. */
async function pass(body: Uint8Array): Promise<{ status: number; type: string; body: Uint8Array }> {
  const upstream = await fetch(agent!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body as unknown as BodyInit })
  return { status: upstream.status, type: upstream.headers.get('content-type') ?? 'application/json', body: await upstream.bytes() }
}

if (process.argv.includes('--bun-serve')) {
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(request) {
      try {
        const answer = await pass(await request.bytes())
        return new Response(answer.body as unknown as BodyInit, { status: answer.status, headers: { 'content-type': answer.type } })
      } catch {
        return new Response(null, { status: 502 })
      }
    },
  })
  console.log(`listening on http://127.0.0.1:${server.port}`)
  process.on('SIGTERM', () => {
    void server.stop(true)
    process.exit(0)
  })
} else {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', async () => {
      try {
        const answer = await pass(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))
        res.writeHead(answer.status, { 'content-type': answer.type, 'content-length': String(answer.body.length) })
        res.end(answer.body)
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
}
