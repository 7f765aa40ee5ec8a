/**
 * node:child_process on first use. A standalone pn-cni started by native/pn-cni.c gets its
 * helpers as sockets and its kernel work done by pn-netlink, so it usually spawns nothing, and
 * loading the module (with dgram and the child plumbing) would cost every call ≈ 2 ms here.
 */
import type {spawn as Spawn} from 'node:child_process'
import {createRequire} from 'node:module'

let loaded: typeof import('node:child_process') | undefined

/** child_process.spawn, loading the module the first time. */
export const spawn: typeof Spawn = ((...args: Parameters<typeof Spawn>) => (loaded ??= createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process')).spawn(...args)) as typeof Spawn
