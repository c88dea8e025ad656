/** A webhook receiver on loopback that verifies each delivery's signature as docs/events.md tells receivers to. */
import { createHmac, timingSafeEqual } from 'node:crypto'

export interface Delivery {
  eventId: string
  deliveryId: string
  attempt: number
  event: { id: string; type: string; tenant: string; resource: { kind: string; id: string }; data: Record<string, unknown> }
  /** The signature matched the body and timestamp, and the timestamp is within 5 minutes. */
  verified: boolean
}

/** Verifies a delivery: HMAC-SHA256 of `<timestamp>.<body>` with the secret, hex, in `Switchboard-Signature: v1=<hex>`. */
export function verifySignature(secret: string, body: string, timestamp: string | null, signature: string | null): boolean {
  if (timestamp === null || signature === null || !signature.startsWith('v1=')) return false
  if (Math.abs(Date.now() / 1000 - Number(timestamp)) > 300) return false
  const expected = Buffer.from(createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex'))
  const given = Buffer.from(signature.slice(3))
  return given.length === expected.length && timingSafeEqual(given, expected)
}

export class Receiver {
  readonly deliveries: Delivery[] = []
  /** Every request that reached it, delivered or refused. */
  calls = 0
  /** The status it answers with (2xx: taken). */
  status = 204
  /** What it answers a failure with. */
  failureBody = 'receiver is failing on purpose'
  /** Never answers (until stopped). */
  silent = false
  private server: ReturnType<typeof Bun.serve> | null = null
  port = 0

  constructor(private readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`
  }

  /** Listens (again on the same port, once it had one). */
  start(): this {
    this.server = Bun.serve({
      hostname: '127.0.0.1',
      port: this.port,
      fetch: async (request) => {
        this.calls++
        const body = await request.text()
        if (this.silent) return new Promise<Response>(() => {})
        if (this.status >= 300) return new Response(this.failureBody, { status: this.status })
        this.deliveries.push({
          eventId: request.headers.get('switchboard-event-id') ?? '',
          deliveryId: request.headers.get('switchboard-delivery-id') ?? '',
          attempt: Number(request.headers.get('switchboard-attempt')),
          event: JSON.parse(body),
          verified: verifySignature(this.secret, body, request.headers.get('switchboard-timestamp'), request.headers.get('switchboard-signature')),
        })
        return new Response(null, { status: this.status })
      },
    })
    this.port = this.server.port!
    return this
  }

  /** Stops listening: deliveries meet a refused connection. */
  async stop(): Promise<void> {
    await this.server?.stop(true)
    this.server = null
  }
}
