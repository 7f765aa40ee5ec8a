/** A FIFO mutex per key, in-process: no polling, no process start. */
export class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  /** Wait for the key; resolves to its release function. */
  async lock(key: string): Promise<() => void> {
    const prev = this.tails.get(key) ?? Promise.resolve()
    let release!: () => void
    const mine = new Promise<void>((r) => (release = r))
    const tail = prev.then(() => mine)
    this.tails.set(key, tail)
    await prev
    return () => {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }

  /** Keys somebody holds or waits for. */
  get size(): number {
    return this.tails.size
  }
}
