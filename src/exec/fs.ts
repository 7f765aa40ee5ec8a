/**
 * The file operations of pn's CNI path as promises. Reads and lookups run synchronously and hand
 * back a settled promise: a read of a few hundred bytes in the page cache, a stat or a readlink
 * takes ≈ 2–8 µs here, while the same call through libuv's thread pool costs ≈ 55–150 µs (a
 * hand-off to a pool thread and back, two futex wake-ups and an event-loop turn), and an ADD makes
 * a few dozen. Changes (create, write, rename, unlink, rm) and fsync stay on the pool: they take
 * a handle on the filesystem's journal and can wait for its commit (milliseconds while fsyncs
 * run, as in a burst of ADDs), which must not stop the agent's event loop. node:fs's own promise
 * API (fs.promises: FileHandle, its streams, readline) would also cost every standalone pn-cni
 * call ≈ 3 ms to load. Arguments, results and errors are those of node:fs (a failure is a
 * rejected promise, never a throw).
 */
import * as fs from 'node:fs'
import {promisify} from 'node:util'

/** A synchronous node:fs call as a promise of its result (or its error). */
function settled<F extends (...args: never[]) => unknown>(fn: F): (...args: Parameters<F>) => Promise<ReturnType<F>> {
  return (...args) => {
    try {
      return Promise.resolve(fn(...args) as ReturnType<F>)
    } catch (err) {
      return Promise.reject(err)
    }
  }
}

export const fsp = {
  access: settled(fs.accessSync) as typeof fs.access.__promisify__,
  // An existing directory (the usual case: ensureDir) is a lookup; a new one is rare.
  mkdir: settled(fs.mkdirSync) as typeof fs.mkdir.__promisify__,
  readdir: settled(fs.readdirSync) as typeof fs.readdir.__promisify__,
  readFile: settled(fs.readFileSync) as typeof fs.readFile.__promisify__,
  readlink: settled(fs.readlinkSync) as typeof fs.readlink.__promisify__,
  rename: promisify(fs.rename),
  rm: promisify(fs.rm),
  stat: settled(fs.statSync) as typeof fs.stat.__promisify__,
  statfs: settled(fs.statfsSync) as typeof fs.statfs.__promisify__,
  symlink: promisify(fs.symlink),
  unlink: promisify(fs.unlink),
  writeFile: promisify(fs.writeFile),
}

/** An open file, for what pn used a FileHandle for: write it whole, fsync it, close it. */
export interface OpenFile {
  writeFile(data: string | Uint8Array): Promise<void>
  sync(): Promise<void>
  close(): Promise<void>
}

const open = promisify(fs.open)
const fsync = promisify(fs.fsync)

/** open(2) `file` with `flags` (and `mode` when it creates it); a file opened to read or fsync opens in place. */
export async function openFile(file: string, flags: string, mode?: number): Promise<OpenFile> {
  const fd = flags === 'r' ? fs.openSync(file, flags) : await open(file, flags, mode)
  return {
    writeFile: (data) => fsp.writeFile(fd, data),
    sync: () => fsync(fd),
    close: settled(() => fs.closeSync(fd)),
  }
}
