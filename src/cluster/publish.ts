/**
 * The agent's endpoint publications: a queue that never makes CNI ADD or DEL wait on the store.
 * ADD puts the endpoint, DEL deletes it; both return at once. The queue holds at most one
 * publication per IP (the newest wins: a put then a delete is a delete, a delete then a put is
 * a put) in the order of their newest change, and is drained one at a time, oldest first, while
 * the store answers. A publication that fails stays at the head and the drain stops; it resumes
 * when told the store is back (or on the next change), so nothing is lost while etcd is down and
 * publications reach it in order once it is back.
 */
import type {ClusterEndpoint} from './layout.js'

export type Publication = {kind: 'put'; ip: string; endpoint: ClusterEndpoint} | {kind: 'delete'; ip: string}

export class PublicationQueue {
  private readonly pending = new Map<string, Publication>()
  private draining?: Promise<boolean>
  /** Publications sent, and those dropped because a newer one for the same IP replaced them. */
  sent = 0
  coalesced = 0
  /** Why the last drain stopped. */
  lastError?: unknown

  constructor(private readonly send: (p: Publication) => Promise<void>) {}

  get size(): number {
    return this.pending.size
  }

  /** The queued publications, oldest first. */
  list(): Publication[] {
    return [...this.pending.values()]
  }

  put(endpoint: ClusterEndpoint): void {
    this.enqueue({kind: 'put', ip: endpoint.ip, endpoint})
  }

  delete(ip: string): void {
    this.enqueue({kind: 'delete', ip})
  }

  private enqueue(p: Publication): void {
    if (this.pending.delete(p.ip)) this.coalesced++
    this.pending.set(p.ip, p)
  }

  /**
   * Send what is queued, oldest first; resolves true once the queue is empty, false when a send
   * failed (that publication stays queued, at the head). One drain at a time: a call while one
   * runs joins it.
   */
  drain(): Promise<boolean> {
    if (this.draining) return this.draining
    // Cleared in a callback (never synchronously): a drain with nothing to send must not leave
    // itself behind as the one running.
    this.draining = this.run().finally(() => {
      this.draining = undefined
    })
    return this.draining
  }

  private async run(): Promise<boolean> {
    for (;;) {
      const first = this.pending.values().next()
      if (first.done) return true
      const p = first.value
      try {
        await this.send(p)
      } catch (err) {
        this.lastError = err
        return false
      }
      this.sent++
      // A newer publication for the IP arrived while this one was sent: it stays queued.
      if (this.pending.get(p.ip) === p) this.pending.delete(p.ip)
    }
  }
}
