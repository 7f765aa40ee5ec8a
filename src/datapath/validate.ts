/**
 * Input checks shared by `pn veth`, `pn endpoint` and `pn cni`: container ids and interface
 * names are validated before anything is created, so a bad argument never leaves a half-made
 * veth behind (netns paths: ./netns.ts).
 */
import {PnError} from '../errors.js'

/** CNI's container id alphabet (libcni `cniValidNameChars`). */
const CONTAINER_ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

/** Linux IFNAMSIZ is 16 including the NUL. */
export const MAX_IFNAME_BYTES = 15

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
  else if (/[/:\s]/.test(ifname)) cause = 'contains `/`, `:` or whitespace'
  if (cause) {
    throw new PnError('PN_INVALID_IFNAME', `validate interface name ${JSON.stringify(ifname)}: ${cause}`, {
      hint: `use a name of 1-${MAX_IFNAME_BYTES} bytes without '/', ':' or whitespace, e.g. eth0`,
      details: {ifname},
    })
  }
}
