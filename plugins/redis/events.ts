/** The event bus over Redis pub/sub: a publish on any instance reaches the subscribers of every instance. */
import type { EventBus, EventHandler } from '../../src/backend/events'
import { LocalEventBus } from '../../src/backend/events'
import { storeError, type RedisConnection } from './connection'
import type { RedisKeys } from './keys'

export class RedisEventBus implements EventBus {
  private readonly local = new LocalEventBus()
  /** Redis subscriptions by bus channel, settled once Redis confirmed them. */
  private readonly subscriptions = new Map<string, Promise<void>>()

  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  async publish(channel: string, payload: string): Promise<void> {
    try {
      // In a Cluster, every event of a store goes out through one node (the master of the store's slot), so one
      // instance's events arrive in the order it published them (a keyless PUBLISH would go to any node).
      await this.connection.atStore('PUBLISH', [this.keys.eventChannel(channel), payload])
    } catch (error) {
      throw storeError(error)
    }
  }

  async subscribe(channel: string, handler: EventHandler): Promise<() => void> {
    const stop = await this.local.subscribe(channel, handler)
    let subscription = this.subscriptions.get(channel)
    if (!subscription) {
      subscription = this.connection.listen(this.keys.eventChannel(channel), (payload) => this.local.emit(channel, payload))
      this.subscriptions.set(channel, subscription)
    }
    const unsubscribe = () => {
      stop()
      if (this.local.has(channel) || this.subscriptions.get(channel) !== subscription) return
      this.subscriptions.delete(channel)
      void this.connection.unlisten(this.keys.eventChannel(channel))
    }
    try {
      await subscription
    } catch (error) {
      unsubscribe()
      throw error
    }
    return unsubscribe
  }
}
