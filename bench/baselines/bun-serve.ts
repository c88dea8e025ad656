/** Baseline: a bare Bun.serve answering a fixed body, reading the request body first (as the node:http baseline does). */
const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  async fetch(request) {
    await request.arrayBuffer()
    return new Response('{"status":"ok"}', { headers: { 'content-type': 'application/json' } })
  },
})
console.log(`listening on http://127.0.0.1:${server.port}`)
process.on('SIGTERM', () => {
  server.stop(true)
  process.exit(0)
})
