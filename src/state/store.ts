/**
 * Where state lives. The allocators (host-scope IPAM, the cluster pool) only ever see this
 * small interface (host-local's pattern: a disk store beside a fake), so their logic is
 * unit-tested without files or locks, and another backend (etcd, for a pool shared by several
 * machines) slots in behind the same read / update / remove.
 */
import {fileExists, readJsonFile, removeFileDurable, updateJsonFile, withLock, type JsonFileSpec, type LockOptions} from './files.js'

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
 * temp file + fsync + rename + directory fsync (src/state/files.ts), so a SIGKILL at any moment
 * leaves the old or the new file, a change that returned survives a power loss, and a killed
 * holder's lock vanishes with it. The file is 0600.
 */
export class FileStore<T> implements Store<T> {
  constructor(
    readonly location: string,
    private readonly spec: JsonFileSpec<T>,
    private readonly lock: LockOptions = {},
  ) {}

  read(): Promise<T | undefined> {
    return readJsonFile(this.location, this.spec)
  }

  update<R>(mutate: Mutation<T, R>): Promise<R> {
    return updateJsonFile(this.location, this.spec, mutate, this.lock)
  }

  async remove(): Promise<boolean> {
    if (!(await fileExists(this.location))) return false
    return withLock(this.location, () => removeFileDurable(this.location), this.lock)
  }
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
