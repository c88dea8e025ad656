/**
 * In-process waiting room for receivers blocked on a key (a mailbox). A
 * waiter holds one deadline timer and nothing else; `notify` wakes the
 * oldest waiter so one receiver goes to take each new item.
 * Plugins use it to build "take the next message or wait" on their storage.
 */
export type WakeReason = 'notified' | 'timeout' | 'aborted'

/** What `catch` needs to keep a wait nobody awaits from reporting an unhandled rejection. */
const ignore = () => {}

/**
 * One registered receiver. A class with methods rather than a set of
 * closures: the deadline timer gets the waiter as its argument and the abort
 * signal calls its `handleEvent`, so a waiter costs a few objects and no
 * functions of its own (it lives as long as a listener waits: thousands at once).
 */
class Waiter implements Wait {
  settled: WakeReason | 'failed' | null = null
  readonly promise: Promise<WakeReason>
  private fulfil!: (reason: WakeReason) => void
  private fail!: (error: Error) => void
  private readonly timer: ReturnType<typeof setTimeout>

  constructor(
    private readonly room: Waiters,
    private readonly key: string,
    private readonly set: Set<Waiter>,
    deadline: number,
    private readonly signal: AbortSignal | undefined,
  ) {
    this.promise = new Promise<WakeReason>((resolve, reject) => {
      this.fulfil = resolve
      this.fail = reject
    })
    this.promise.catch(ignore)
    this.timer = setTimeout(Waiter.expire, Math.max(0, deadline - Date.now()), this)
    set.add(this)
    if (signal?.aborted) this.resolve('aborted')
    else signal?.addEventListener('abort', this, { once: true })
  }

  private static expire(waiter: Waiter): void {
    waiter.resolve('timeout')
  }

  /** The signal aborted. */
  handleEvent(): void {
    this.resolve('aborted')
  }

  resolve(reason: WakeReason): void {
    if (this.settled) return
    this.settled = reason
    this.leave()
    this.fulfil(reason)
  }

  reject(error: Error): void {
    if (this.settled) return
    this.settled = 'failed'
    this.leave()
    this.fail(error)
  }

  cancel(): void {
    if (this.settled === 'notified') this.room.notify(this.key)
    else this.resolve('aborted')
  }

  private leave(): void {
    clearTimeout(this.timer)
    this.signal?.removeEventListener('abort', this)
    this.set.delete(this)
    this.room.dropIfEmpty(this.key, this.set)
  }
}

/** A registered wait: await `promise`, or `cancel()` it (a wake-up it already got is passed on). */
export interface Wait {
  readonly promise: Promise<WakeReason>
  cancel(): void
}

export class Waiters {
  private readonly byKey = new Map<string, Set<Waiter>>()

  /** Register a waiter now; it wakes when notified, at the deadline, or when the signal aborts. */
  wait(key: string, deadline: number, signal?: AbortSignal): Wait {
    let set = this.byKey.get(key)
    if (!set) this.byKey.set(key, (set = new Set()))
    return new Waiter(this, key, set, deadline, signal)
  }

  /** Forgets `key`'s set once its last waiter left. */
  dropIfEmpty(key: string, set: Set<Waiter>): void {
    if (set.size === 0 && this.byKey.get(key) === set) this.byKey.delete(key)
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
