/**
 * Input checks shared by `pn veth`, `pn endpoint` and `pn cni`: container ids, interface names
 * and netns paths are validated before anything is created, so a bad argument never leaves a
 * half-made veth behind.
 */
import {promises as fs} from 'node:fs'
import {PnError} from '../errors.js'

/** CNI's container id alphabet (libcni `cniValidNameChars`). */
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

/** statfs magics of a namespace handle: nsfs bind mounts (/run/netns/x) and /proc/PID/ns/net. */
export const NSFS_MAGIC = 0x6e736673
export const PROC_SUPER_MAGIC = 0x9fa0

/** Linux IFNAMSIZ is 16 including the NUL. */
export const MAX_IFNAME_BYTES = 15

export function validateContainerId(containerId: string): void {
  if (!containerId || !CONTAINER_ID_RE.test(containerId)) {
    throw new PnError('PN_INVALID_CONTAINER_ID', `validate container id ${JSON.stringify(containerId)}: invalid characters`, {
      hint: 'a container id starts with a letter or digit and contains only letters, digits, `_`, `.` and `-`',
      details: {containerId},
    })
  }
}

/** The kernel's dev_valid_name(): non-empty, < IFNAMSIZ, not `.`/`..`, no `/`, `:` or whitespace. */
export function validateIfname(ifname: string): void {
  let cause: string | undefined
  if (!ifname) cause = 'empty name'
  else if (Buffer.byteLength(ifname) > MAX_IFNAME_BYTES) cause = `longer than ${MAX_IFNAME_BYTES} bytes`
  else if (ifname === '.' || ifname === '..') cause = 'reserved name'
  else if (/[/:\s]/.test(ifname)) cause = 'contains `/`, `:` or whitespace'
  if (cause) {
    throw new PnError('PN_INVALID_IFNAME', `validate interface name ${JSON.stringify(ifname)}: ${cause}`, {
      hint: `use a name of 1-${MAX_IFNAME_BYTES} bytes without '/', ':' or whitespace, e.g. eth0`,
      details: {ifname},
    })
  }
}

/**
 * A netns path must exist and be a namespace handle. Like CNI's ns.GetNS we check the
 * filesystem magic, so a plain file (or a typo'd directory) is refused instead of being
 * handed to nsenter/ip, whose errors are much less clear.
 */
export async function checkNetnsPath(netns: string): Promise<void> {
  let type: number
  try {
    type = (await fs.statfs(netns)).type
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new PnError('PN_NETNS_NOT_FOUND', `open netns ${netns}: no such file`, {
        hint: 'pass the path of an existing network namespace, e.g. /run/netns/NAME (see `ip netns list`) or /proc/PID/ns/net',
        details: {netns},
      })
    }
    throw new PnError('PN_NETNS_INVALID', `open netns ${netns}: ${(err as Error).message}`, {details: {netns}})
  }
  if (type !== NSFS_MAGIC && type !== PROC_SUPER_MAGIC) {
    throw new PnError('PN_NETNS_INVALID', `open netns ${netns}: not a network namespace (fs magic 0x${type.toString(16)})`, {
      hint: 'pass a namespace handle such as /run/netns/NAME or /proc/PID/ns/net',
      details: {netns, magic: `0x${type.toString(16)}`},
    })
  }
}

/** True when the path exists (used by DEL paths that must tolerate a vanished netns). */
export async function netnsExists(netns: string): Promise<boolean> {
  try {
    await fs.statfs(netns)
    return true
  } catch {
    return false
  }
}
