/**
 * In-process waiting room for receivers blocked on a key (a mailbox). A
 * waiter holds one deadline timer and nothing else; `notify` wakes the
 * oldest waiter so one receiver goes to take each new item.
 * Plugins use it to build "take the next message or wait" on their storage.
 */
export type WakeReason = 'notified' | 'timeout' | 'aborted'

interface Waiter {
  settled: WakeReason | 'failed' | null
  resolve(reason: WakeReason): void
  reject(error: Error): void
}

/** A registered wait: await `promise`, or `cancel()` it (a wake-up it already got is passed on). */
export interface Wait {
  promise: Promise<WakeReason>
  cancel(): void
}

export class Waiters {
  private readonly byKey = new Map<string, Set<Waiter>>()

  /** Register a waiter now; it wakes when notified, at the deadline, or when the signal aborts. */
  wait(key: string, deadline: number, signal?: AbortSignal): Wait {
    let waiter!: Waiter
    const promise = new Promise<WakeReason>((resolve, reject) => {
      let set = this.byKey.get(key)
      if (!set) this.byKey.set(key, (set = new Set()))
      const done = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        set.delete(waiter)
        if (set.size === 0 && this.byKey.get(key) === set) this.byKey.delete(key)
      }
      waiter = {
        settled: null,
        resolve: (reason) => {
          if (waiter.settled) return
          waiter.settled = reason
          done()
          resolve(reason)
        },
        reject: (error) => {
          if (waiter.settled) return
          waiter.settled = 'failed'
          done()
          reject(error)
        },
      }
      const onAbort = () => waiter.resolve('aborted')
      const timer = setTimeout(() => waiter.resolve('timeout'), Math.max(0, deadline - Date.now()))
      signal?.addEventListener('abort', onAbort, { once: true })
      set.add(waiter)
      if (signal?.aborted) waiter.resolve('aborted')
    })
    promise.catch(() => {})
    return {
      promise,
      cancel: () => {
        if (waiter.settled === 'notified') this.notify(key)
        else waiter.resolve('aborted')
      },
    }
  }

  /** Wake up to `count` of the oldest waiters on `key`. */
  notify(key: string, count = 1): void {
    const set = this.byKey.get(key)
    if (!set) return
    for (const waiter of [...set].slice(0, count)) waiter.resolve('notified')
  }

  /** Fail every waiter on `key` (the mailbox was terminated). */
  fail(key: string, error: () => Error): void {
    const set = this.byKey.get(key)
    if (!set) return
    for (const waiter of [...set]) waiter.reject(error())
  }

  /** Fail every waiter (the backend is closing). */
  failAll(error: () => Error): void {
    for (const key of [...this.byKey.keys()]) this.fail(key, error)
  }

  /** Number of receivers waiting, on one key or in all. */
  count(key?: string): number {
    if (key !== undefined) return this.byKey.get(key)?.size ?? 0
    let total = 0
    for (const set of this.byKey.values()) total += set.size
    return total
  }

  /** Keys that have at least one waiter. */
  keys(): IterableIterator<string> {
    return this.byKey.keys()
  }
}

/**
 * The take loop every plugin shares: register as a waiter, try to take, and
 * if nothing was there sleep until notified, then try again — until the
 * deadline or the signal. Registering before trying means a message that
 * arrives in between is never missed.
 */
export async function takeOrWait(
  waiters: Waiters,
  key: string,
  options: { deadline: number; signal?: AbortSignal },
  tryTake: () => Promise<string | null> | string | null,
): Promise<string | null> {
  for (;;) {
    if (options.signal?.aborted) return null
    const wait = waiters.wait(key, options.deadline, options.signal)
    let message: string | null
    try {
      message = await tryTake()
    } catch (error) {
      wait.cancel()
      throw error
    }
    if (message !== null) {
      wait.cancel()
      return message
    }
    const reason = await wait.promise
    if (reason !== 'notified') return null
  }
}
