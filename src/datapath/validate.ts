/**
 * Input checks shared by `pn veth`, `pn endpoint` and `pn cni`: container ids, interface names
 * and netns paths are validated before anything is created, so a bad argument never leaves a
 * half-made veth behind and never reaches a command line (whether a well-formed netns path
 * names a namespace: ./netns.ts).
 */
import {PnError} from '../errors.js'

/** CNI's container id alphabet (libcni `cniValidNameChars`). */
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

/** Linux IFNAMSIZ is 16 including the NUL. */
export const MAX_IFNAME_BYTES = 15

/** Linux PATH_MAX is 4096 including the NUL. */
export const MAX_PATH_BYTES = 4095

/**
 * C0 controls, DEL and C1 controls. No name or path pn hands on may hold one: NUL ends a C
 * string, a newline starts a new `ip -batch` line, and either would forge a log or error line.
 */
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/

/** Why a runtime-supplied string cannot be used as is (undefined when it can). */
export function textProblem(text: string, maxBytes: number): string | undefined {
  if (CONTROL_RE.test(text)) return 'contains a control character (NUL, newline, tab, …)'
  if (Buffer.byteLength(text) > maxBytes) return `longer than ${maxBytes} bytes`
  return undefined
}

/**
 * The CNI spec sets no limit; pn hashes long ids into its file names, so any length fits the file
 * system. 4096 bytes (Linux PATH_MAX) bounds what a log line or an error carries; runtimes use 64.
 */
export const MAX_CONTAINER_ID_BYTES = 4096

export function validateContainerId(containerId: string): void {
  if (containerId && containerId.length > MAX_CONTAINER_ID_BYTES) {
    throw new PnError('PN_INVALID_CONTAINER_ID', `validate container id ${JSON.stringify(containerId.slice(0, 32) + '…')}: longer than ${MAX_CONTAINER_ID_BYTES} bytes (${containerId.length})`, {
      hint: `use a container id of at most ${MAX_CONTAINER_ID_BYTES} bytes`,
      details: {length: containerId.length},
    })
  }
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
  else if (CONTROL_RE.test(ifname)) cause = 'contains a control character'
  // The kernel's isspace() also counts byte 0xa0 (Latin-1 no-break space): `à` is C3 A0 in UTF-8.
  else if (/[/:\s]/.test(ifname) || Buffer.from(ifname).includes(0xa0)) cause = 'contains `/`, `:` or whitespace'
  if (cause) {
    throw new PnError('PN_INVALID_IFNAME', `validate interface name ${JSON.stringify(ifname)}: ${cause}`, {
      hint: `use a name of 1-${MAX_IFNAME_BYTES} bytes without '/', ':', whitespace or control characters, e.g. eth0`,
      details: {ifname},
    })
  }
}

/**
 * Why a netns path (CNI_NETNS, --netns) cannot be used (undefined when it can): it must be
 * absolute (a relative one would resolve against whatever directory pn runs in) and free of
 * whitespace and control characters, because it becomes one word of an `ip -batch` line.
 */
export function netnsPathProblem(path: string): string | undefined {
  if (!path) return 'empty path'
  const text = textProblem(path, MAX_PATH_BYTES)
  if (text) return text
  if (!path.startsWith('/')) return 'not an absolute path'
  if (/\s/.test(path)) return 'contains whitespace'
  return undefined
}

/** PN_NETNS_INVALID (CNI code 4) unless the path is well-formed; it is not opened here (./netns.ts). */
export function validateNetnsPath(path: string): void {
  const cause = netnsPathProblem(path)
  if (cause) {
    throw new PnError('PN_NETNS_INVALID', `validate netns ${JSON.stringify(path)}: invalid CNI_NETNS, ${cause}`, {
      hint: 'name a network namespace by its absolute path (CNI_NETNS, --netns), e.g. /run/netns/NAME or /proc/PID/ns/net',
      details: {netns: path},
    })
  }
}
