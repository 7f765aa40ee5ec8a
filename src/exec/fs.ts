/**
 * The file operations of pn's CNI path as promises, on node:fs's callback API. node:fs's own
 * promise API (fs.promises: FileHandle, its streams, readline) costs every standalone pn-cni call
 * ≈ 3 ms to load, and pn needs only these, with the same arguments, results and errors (each is
 * util.promisify of the same libuv request fs.promises makes).
 */
import * as fs from 'node:fs'
import {promisify} from 'node:util'

export const fsp = {
  access: promisify(fs.access),
  mkdir: promisify(fs.mkdir),
  readdir: promisify(fs.readdir),
  readFile: promisify(fs.readFile),
  readlink: promisify(fs.readlink),
  rename: promisify(fs.rename),
  rm: promisify(fs.rm),
  stat: promisify(fs.stat),
  statfs: promisify(fs.statfs),
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
const close = promisify(fs.close)

/** open(2) `file` with `flags` (and `mode` when it creates it). */
export async function openFile(file: string, flags: string, mode?: number): Promise<OpenFile> {
  const fd = await open(file, flags, mode)
  return {
    writeFile: (data) => fsp.writeFile(fd, data),
    sync: () => fsync(fd),
    close: () => close(fd),
  }
}
