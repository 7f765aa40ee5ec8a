/**
 * Where IPAM state lives. The allocators only ever see this small interface (host-local's
 * pattern: a disk store beside a fake), so their logic is unit-tested without files or locks,
 * and an etcd store can slot in for a pool shared by several machines.
 */
import {promises as fs} from 'node:fs'
import {fileExists, readJsonFile, updateJsonFile, withLock, type JsonFileSpec} from '../state/files.js'

export type Mutation<T, R> = (current: T | undefined) => Promise<{next?: T; result: R}> | {next?: T; result: R}

export interface Store<T> {
  /** Where the state lives, for messages. */
  readonly location: string
  /** Current value without locking (writes are atomic, so a reader sees old or new). */
  read(): Promise<T | undefined>
  /** Read-modify-write as one exclusive step; `next: undefined` leaves the state untouched. */
  update<R>(mutate: Mutation<T, R>): Promise<R>
  /** Delete the state; false when there was none. */
  remove(): Promise<boolean>
}

/**
 * JSON file store: changes happen under a kernel flock on `<file>.lock` and land through
 * temp file + fsync + rename (src/state/files.ts), so a SIGKILL at any moment leaves the old
 * or the new file, and a killed holder's lock vanishes with it.
 */
export class FileStore<T> implements Store<T> {
  constructor(
    readonly location: string,
    private readonly spec: JsonFileSpec<T>,
  ) {}

  read(): Promise<T | undefined> {
    return readJsonFile(this.location, this.spec)
  }

  update<R>(mutate: Mutation<T, R>): Promise<R> {
    return updateJsonFile(this.location, this.spec, async (current) => {
      await holdLockForTests(this.location)
      return mutate(current)
    })
  }

  async remove(): Promise<boolean> {
    if (!(await fileExists(this.location))) return false
    return withLock(this.location, async () => {
      try {
        await fs.unlink(this.location)
        return true
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
        throw err
      }
    })
  }
}

/**
 * Test hook: with PN_TEST_HOLD_LOCK_MS set, sleep while holding the lock so a test can SIGKILL
 * the holder mid-transaction and check that the next caller is not blocked. The line on stderr
 * tells the test the lock is held (the only output the library ever writes, and only then).
 */
async function holdLockForTests(file: string): Promise<void> {
  const ms = Number(process.env.PN_TEST_HOLD_LOCK_MS)
  if (!Number.isFinite(ms) || ms <= 0) return
  process.stderr.write(`pn-test: holding lock ${file}.lock for ${ms} ms\n`)
  await new Promise((resolve) => setTimeout(resolve, ms))
}

/** In-memory store for unit tests; values are deep-copied so callers cannot alias the state. */
export class MemoryStore<T> implements Store<T> {
  readonly location: string
  private value: T | undefined
  /** Number of writes, so tests can assert that a no-op did not write. */
  writes = 0

  constructor(initial?: T, location = 'memory') {
    this.value = initial === undefined ? undefined : structuredClone(initial)
    this.location = location
  }

  async read(): Promise<T | undefined> {
    return this.value === undefined ? undefined : structuredClone(this.value)
  }

  async update<R>(mutate: Mutation<T, R>): Promise<R> {
    const {next, result} = await mutate(await this.read())
    if (next !== undefined) {
      this.value = structuredClone(next)
      this.writes++
    }
    return result
  }

  async remove(): Promise<boolean> {
    const had = this.value !== undefined
    this.value = undefined
    return had
  }

  /** Replace the raw value (tests: simulate a hand-edited or corrupt file). */
  set(value: T | undefined): void {
    this.value = value
  }
}
