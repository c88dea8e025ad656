/**
 * The mailboxes this instance emptied with its own take and has heard no
 * wake-up for since that take was sent, each with the caller that took. That
 * caller's next take of such a mailbox could only find it empty (any put,
 * restore, termination or withdrawn share since would have published a
 * wake-up that cleared the mark), so it waits for the wake-up at once
 * instead of asking Redis: a listener's take after each message costs no
 * Redis call. Another caller's take always asks Redis, which checks its access.
 *
 * A wake-up can arrive before the reply of the take it follows (they come on
 * different connections), so wake-ups heard while a take of the mailbox is
 * in flight are remembered by their order against the take's sending.
 */
export class Drained {
  /** Orders the sending of takes and the arrival of wake-ups. */
  private clock = 0
  /** Takes in flight, by mailbox key. */
  private readonly taking = new Map<string, number>()
  /** When the last wake-up for a key with a take in flight arrived (by `clock`). */
  private readonly woken = new Map<string, number>()
  /** Keys known empty, oldest first, each with the caller whose take emptied it. */
  private readonly empty = new Map<string, string>()

  /** @param limit keys remembered at most; past it the oldest mark is dropped (and that mailbox asked again). */
  constructor(private readonly limit = 65_536) {}

  /** A take of `key` is about to be sent; pass what this returns to `taken`. */
  sending(key: string): number {
    this.taking.set(key, (this.taking.get(key) ?? 0) + 1)
    return ++this.clock
  }

  /** The take by `caller` sent at `sent` is answered (or failed); `emptied` when it popped the last message. */
  taken(key: string, sent: number, emptied: boolean, caller: string): void {
    const wokenAt = this.woken.get(key) ?? 0
    const left = (this.taking.get(key) ?? 1) - 1
    if (left === 0) {
      this.taking.delete(key)
      this.woken.delete(key)
    } else this.taking.set(key, left)
    // Marked anew, so that the oldest mark is the first dropped.
    this.empty.delete(key)
    if (!emptied || wokenAt > sent) return
    this.empty.set(key, caller)
    if (this.empty.size > this.limit) this.empty.delete(this.empty.keys().next().value!)
  }

  /** A wake-up for `key` arrived (a put, restore, termination or withdrawn share): it may hold something again. */
  wake(key: string): void {
    this.empty.delete(key)
    if (this.taking.has(key)) this.woken.set(key, ++this.clock)
  }

  /** True once when `key` is known empty to `caller`: the mark is used up, so the take after the next wake-up asks Redis. */
  claim(key: string, caller: string): boolean {
    if (this.empty.get(key) !== caller) return false
    return this.empty.delete(key)
  }

  /** Wake-ups may have been lost (the subscriber reconnected): no mailbox is known empty. */
  forget(): void {
    this.empty.clear()
    for (const key of this.taking.keys()) this.woken.set(key, ++this.clock)
  }

  /** Keys marked empty (for tests). */
  get size(): number {
    return this.empty.size
  }
}
