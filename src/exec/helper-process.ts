/**
 * A native helper (pn-netlink, pn-lockd) as its Node user sees it: a byte stream each way and an
 * end. Either this process spawns it, or the process that started this one already did and hands
 * over a connected socket as an inherited fd: native/pn-cni.c, the executable a runtime runs,
 * starts both helpers next to Node when no agent answers, so a standalone call pays for neither
 * start nor a fork() of a grown Node process (which on a VM copies and write-protects every
 * page table of the heap).
 */
import {spawn} from './child-process.js'
import {Socket} from 'node:net'
import type {Readable, Writable} from 'node:stream'

export interface HelperProcess {
  /** Requests. */
  readonly input: Writable
  /** Answers. */
  readonly output: Readable
  /** Set for a helper this process spawned. */
  readonly pid?: number
  /** Resolves once the helper is gone (it exited, or its socket closed): why, for errors. */
  readonly gone: Promise<string>
  /** Resolves when it started (spawned and exec'd); rejects when it could not be. */
  readonly started: Promise<void>
}

/** Spawn `binary` with pipes; its stderr is read and dropped (the answers say what failed). */
export function spawnHelper(binary: string): HelperProcess {
  const child = spawn(binary, [], {stdio: ['pipe', 'pipe', 'pipe']})
  child.stdin.on('error', () => undefined)
  child.stderr.on('data', () => undefined)
  const started = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', reject)
  })
  const gone = new Promise<string>((resolve) => {
    child.once('error', (e) => resolve(e.message))
    child.once('exit', (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`))
  })
  return {input: child.stdin, output: child.stdout, pid: child.pid, gone, started}
}

/**
 * Adopt a helper started by the parent process: `fd` is this end of a connected UNIX socket whose
 * other end is the helper's stdin and stdout. Closing it (or this process's exit) is the helper's
 * EOF, so it ends as a spawned one does.
 */
export function adoptHelper(fd: number): HelperProcess {
  const socket = new Socket({fd, readable: true, writable: true})
  let why = 'its socket closed'
  socket.on('error', (e) => (why = e.message))
  const gone = new Promise<string>((resolve) => socket.once('close', () => resolve(why)))
  return {input: socket, output: socket, gone, started: Promise.resolve()}
}
