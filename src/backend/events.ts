/**
 * A small publish/subscribe bus. In one process it is a plain emitter; with
 * Redis it spans every instance, so a waiter or a WebSocket held by another
 * instance can be reached.
 */
export type EventHandler = (payload: string) => void

export interface EventBus {
  /** Deliver `payload` to every subscriber of `channel`, on every instance. */
  publish(channel: string, payload: string): Promise<void>
  /** Start receiving `channel`; resolves once the subscription is live. Returns the function that stops it. */
  subscribe(channel: string, handler: EventHandler): Promise<() => void>
}

/** The in-process bus used by single-instance backends. */
export class LocalEventBus implements EventBus {
  private readonly handlers = new Map<string, Set<EventHandler>>()

  async publish(channel: string, payload: string): Promise<void> {
    this.emit(channel, payload)
  }

  /** Synchronous delivery to local subscribers (used by distributed buses on receipt). */
  emit(channel: string, payload: string): void {
    const set = this.handlers.get(channel)
    if (!set) return
    for (const handler of [...set]) handler(payload)
  }

  async subscribe(channel: string, handler: EventHandler): Promise<() => void> {
    let set = this.handlers.get(channel)
    if (!set) this.handlers.set(channel, (set = new Set()))
    set.add(handler)
    return () => {
      set.delete(handler)
      if (set.size === 0 && this.handlers.get(channel) === set) this.handlers.delete(channel)
    }
  }

  /** Whether anybody in this process listens on `channel`. */
  has(channel: string): boolean {
    return this.handlers.has(channel)
  }
}
