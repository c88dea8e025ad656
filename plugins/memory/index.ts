/**
 * The `memory` backend: zero setup, one process, nothing survives a restart.
 */
import * as v from 'valibot'
import type { Backend, BackendPlugin } from '../../src/backend/index'
import { LocalEventBus } from '../../src/backend/events'
import { MemoryMailboxes } from './mailboxes'
import { MemoryWorkers } from './workers'
import { MemoryAgents } from './agents'

export const DRIVER_NAME = 'memory'

const plugin: BackendPlugin<Record<string, never>> = {
  name: DRIVER_NAME,
  options: v.object({}),
  create(): Backend {
    const mailboxes = new MemoryMailboxes()
    return {
      name: DRIVER_NAME,
      mailboxes,
      workers: new MemoryWorkers(),
      agents: new MemoryAgents(),
      events: new LocalEventBus(),
      ready: async () => true,
      close: async () => mailboxes.close(),
    }
  },
}

export default plugin
