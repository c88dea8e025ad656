/**
 * Liveness of the Switchboard instances sharing a store. Every instance
 * beats into the store on a schedule; one whose beats stop (a crash, a lost
 * host) counts as dead once its last beat expires, so the work it held
 * (worker sockets, messages handed out) can be recovered by the survivors.
 * The store only keeps the beats: what is recovered, and how exactly once,
 * is each holder's compare-and-set.
 */
import type { Logger } from '../ops/logger'

export interface InstanceStore {
  /** Records that `instance` is alive for `ttlMs` more milliseconds (by the store's clock where it has one). */
  beat(instance: string, ttlMs: number): Promise<void>
  /** The instances whose last beat has not expired and that have not left. */
  alive(): Promise<string[]>
  /** A clean stop: `instance` counts as gone at once. */
  leave(instance: string): Promise<void>
}

/** Beats an instance skips before the others count it dead: one late beat (a pause, a slow store) is not a death. */
export const MISSED_BEATS = 3

/**
 * How long after an instance's death the others learn of it, at most: its
 * last beat expires `MISSED_BEATS` periods after it was written, and a
 * survivor looks once a period.
 */
export function detectionBoundMs(periodMs: number): number {
  return (MISSED_BEATS + 1) * periodMs
}

/**
 * One instance's heartbeat: beats at once and then every `periodMs`, and
 * after each beat runs `onBeat`, where the holder recovers what dead
 * instances held. Beats never overlap; a failed one is logged and the next
 * comes on time.
 */
export class Heartbeat {
  private timer: ReturnType<typeof setTimeout> | null = null
  private running: Promise<void> | null = null
  private stopped = false

  constructor(
    private readonly store: InstanceStore,
    readonly instance: string,
    private readonly periodMs: number,
    private readonly onBeat: () => Promise<void>,
    private readonly logger: Logger,
  ) {}

  /** The first beat (and its recovery), then the schedule. */
  start(): Promise<void> {
    return this.tick()
  }

  /** Beats and recovers now, unless a beat is running (then waits for it). */
  tick(): Promise<void> {
    if (this.running) return this.running
    if (this.stopped) return Promise.resolve()
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.running = this.beat().finally(() => {
      this.running = null
      if (this.stopped) return
      this.timer = setTimeout(() => void this.tick(), this.periodMs)
      // The schedule alone must not keep a process (or a test) running.
      this.timer.unref?.()
    })
    return this.running
  }

  private async beat(): Promise<void> {
    try {
      await this.store.beat(this.instance, MISSED_BEATS * this.periodMs)
      await this.onBeat()
    } catch (error) {
      this.logger.warn('instance heartbeat failed; retrying on schedule', { instance: this.instance, error: String(error) })
    }
  }

  /** Stops beating and leaves the store, so that the others need not wait for the last beat to expire. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    await this.running
    await this.store.leave(this.instance).catch((error) => this.logger.warn('could not leave the instance list', { instance: this.instance, error: String(error) }))
  }
}

/** The beats of the instances of one process (the memory backend, and plugins built on it): a map of expiry times. */
export class LocalInstances implements InstanceStore {
  private readonly expiries = new Map<string, number>()

  async beat(instance: string, ttlMs: number): Promise<void> {
    const now = Date.now()
    // Expired beats go here, so the map holds at most the instances of the last ttl.
    for (const [id, expiry] of this.expiries) if (expiry <= now) this.expiries.delete(id)
    this.expiries.set(instance, now + ttlMs)
  }

  async alive(): Promise<string[]> {
    const now = Date.now()
    return [...this.expiries].filter(([, expiry]) => expiry > now).map(([id]) => id)
  }

  async leave(instance: string): Promise<void> {
    this.expiries.delete(instance)
  }
}
