/**
 * A TCP relay to a Redis server, for tests of a connection that is cut: it
 * can stop passing replies (the commands still reach Redis and run), or
 * drop and refuse every connection. Used in front of a single Redis, a
 * Sentinel master, or one master of a Redis Cluster (announced at the
 * relay's port, so the other nodes name the relay for it).
 */
import net from 'node:net'

export interface Relay {
  /** `redis://127.0.0.1:<port>`: where to connect to reach the target through the relay. */
  url: string
  port: number
  /** Keep forwarding commands but drop every reply. */
  swallowReplies(): void
  /** Pass traffic until a command carrying `marker` goes through; from its reply on, drop every reply (as swallowReplies). */
  swallowRepliesFrom(marker: string): void
  /** Drop every connection and refuse new ones. */
  cut(): void
  /** Drop every connection, then let reconnects through again. */
  dropAll(): void
  restore(): void
  close(): Promise<void>
}

/** A TCP relay to the Redis at `target` (a redis:// URL) that can stop passing replies, or drop and refuse every connection. */
export async function startRelay(target: URL): Promise<Relay> {
  let mode: 'pass' | 'swallow-replies' | 'refuse' = 'pass'
  /** Set by swallowRepliesFrom until a command carrying it passes. */
  let marker: string | null = null
  const sockets = new Set<net.Socket>()
  const server = net.createServer((downstream) => {
    if (mode === 'refuse') return void downstream.destroy()
    const upstream = net.connect(Number(target.port || 6379), target.hostname)
    sockets.add(downstream).add(upstream)
    // The end of the last chunk: a marker may straddle two.
    let tail = ''
    downstream.on('data', (chunk: Buffer) => {
      if (marker !== null) {
        const text = tail + chunk.toString('latin1')
        tail = text.slice(-marker.length)
        if (text.includes(marker)) {
          mode = 'swallow-replies'
          marker = null
        }
      }
      upstream.write(chunk)
    })
    upstream.on('data', (chunk) => {
      if (mode === 'pass') downstream.write(chunk)
    })
    const end = () => {
      downstream.destroy()
      upstream.destroy()
      sockets.delete(downstream)
      sockets.delete(upstream)
    }
    downstream.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    swallowReplies: () => void (mode = 'swallow-replies'),
    swallowRepliesFrom: (text) => void (marker = text),
    cut() {
      mode = 'refuse'
      for (const socket of sockets) socket.destroy()
    },
    dropAll() {
      for (const socket of sockets) socket.destroy()
      mode = 'pass'
      marker = null
    },
    restore() {
      mode = 'pass'
      marker = null
    },
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy()
      server.close(() => resolve())
    }),
  }
}
