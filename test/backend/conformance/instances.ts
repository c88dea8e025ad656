/**
 * The InstanceStore contract: heartbeats that make an instance alive for a
 * while, run against every backend plugin on a fresh backend per test.
 */
import { afterEach, describe, expect, it } from 'bun:test'
import { randomUUID } from 'node:crypto'
import type { Backend } from '../../../src/backend/index'
import type { MakeBackend } from '../conformance'

export function instanceStoreCases(makeBackend: MakeBackend): void {
  describe('InstanceStore', () => {
    let backend: Backend | null = null
    const open = async () => (backend = await makeBackend()).instances
    afterEach(async () => {
      await backend?.close()
      backend = null
    })

    it('counts an instance alive from its beat until the beat expires', async () => {
      const store = await open()
      const [brief, lasting] = [randomUUID(), randomUUID()]
      await store.beat(brief, 150)
      await store.beat(lasting, 60_000)
      expect(await store.alive()).toEqual(expect.arrayContaining([brief, lasting]))
      await Bun.sleep(300)
      const alive = await store.alive()
      expect(alive).toContain(lasting)
      expect(alive).not.toContain(brief)
    })

    it('keeps an instance alive while it beats again before each beat expires', async () => {
      const store = await open()
      const id = randomUUID()
      for (let beat = 0; beat < 4; beat++) {
        await store.beat(id, 200)
        await Bun.sleep(100)
        expect(await store.alive()).toContain(id)
      }
    })

    it('counts an instance gone at once when it leaves, and alive again if it beats after', async () => {
      const store = await open()
      const [leaving, staying] = [randomUUID(), randomUUID()]
      await store.beat(leaving, 60_000)
      await store.beat(staying, 60_000)
      await store.leave(leaving)
      expect(await store.alive()).not.toContain(leaving)
      expect(await store.alive()).toContain(staying)
      await store.leave(randomUUID())
      await store.beat(leaving, 60_000)
      expect(await store.alive()).toContain(leaving)
    })

    it('never lists an instance that never beat', async () => {
      const store = await open()
      expect(await store.alive()).not.toContain('never-beat')
    })
  })
}
