/**
 * Instance heartbeats in Redis: one sorted set of instance ids scored by the
 * time their last beat expires. An expired entry stays until the survivors
 * have put back the messages its instance had in flight (RECOVER_INFLIGHT).
 */
import type { InstanceStore } from '../../src/backend/instances'
import { script, storeError, type RedisConnection } from './connection'
import type { RedisKeys } from './keys'
import * as lua from './scripts/instances'

const SCRIPTS = {
  beat: script(lua.BEAT, { answered: false }),
  alive: script(lua.ALIVE, { answered: false }),
}

export class RedisInstances implements InstanceStore {
  constructor(
    private readonly connection: RedisConnection,
    private readonly keys: RedisKeys,
  ) {}

  async beat(instance: string, ttlMs: number): Promise<void> {
    await this.connection.run(SCRIPTS.beat, [this.keys.instances()], [instance, Math.max(1, Math.round(ttlMs))])
  }

  async alive(): Promise<string[]> {
    return (await this.connection.run(SCRIPTS.alive, [this.keys.instances()], [])) as string[]
  }

  async leave(instance: string): Promise<void> {
    try {
      await this.connection.command.zrem(this.keys.instances(), instance)
    } catch (error) {
      throw storeError(error)
    }
  }
}
