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
