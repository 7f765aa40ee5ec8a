/**
 * The CNI_* environment: which variables each command needs, and validation of container id,
 * interface name and CNI_ARGS with the rules libcni applies (pkg/utils, pkg/types LoadArgs), so
 * a runtime gets the same answer from pn as from the reference plugins. libcni sets every
 * variable (empty for the ones a command does not use), so empty counts as missing.
 */
import {textProblem} from '../datapath/validate.js'
import {PnError} from '../errors.js'
import {CNI_COMMANDS, type CniCommand} from './spec.js'

export interface CniEnv {
  command?: string
  containerId?: string
  netns?: string
  ifname?: string
  args?: string
  path?: string
}

/** The raw CNI_* variables (empty strings become undefined). */
export function readCniEnv(env: NodeJS.ProcessEnv): CniEnv {
  const get = (k: string) => (env[k] === undefined || env[k] === '' ? undefined : env[k])
  return {
    command: get('CNI_COMMAND'),
    containerId: get('CNI_CONTAINERID'),
    netns: get('CNI_NETNS'),
    ifname: get('CNI_IFNAME'),
    args: get('CNI_ARGS'),
    path: get('CNI_PATH'),
  }
}

/**
 * Required variables per command. CNI_PATH is optional for pn (it delegates to no other plugin),
 * as the spec allows; CNI_NETNS is optional on DEL (the netns may already be gone).
 */
const REQUIRED: Record<CniCommand, (keyof CniEnv)[]> = {
  ADD: ['containerId', 'netns', 'ifname'],
  DEL: ['containerId', 'ifname'],
  CHECK: ['containerId', 'netns', 'ifname'],
  VERSION: [],
  STATUS: [],
  GC: [],
}

const VAR_NAMES: Record<keyof CniEnv, string> = {
  command: 'CNI_COMMAND',
  containerId: 'CNI_CONTAINERID',
  netns: 'CNI_NETNS',
  ifname: 'CNI_IFNAME',
  args: 'CNI_ARGS',
  path: 'CNI_PATH',
}

export function parseCommand(command: string | undefined): CniCommand {
  if (command === undefined) {
    throw new PnError('PN_CNI_INVALID_ENV', 'read environment: required env variables [CNI_COMMAND] missing', {
      hint: `set CNI_COMMAND to one of ${CNI_COMMANDS.join(', ')}`,
    })
  }
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    const shown = textProblem(command, 64) ? JSON.stringify(command.slice(0, 64)) : command
    throw new PnError('PN_CNI_INVALID_ENV', `read environment: unknown CNI_COMMAND: ${shown}`, {
      hint: `CNI_COMMAND must be one of ${CNI_COMMANDS.join(', ')}`,
    })
  }
  return command as CniCommand
}

/** Throw code 4 naming every missing variable, like skel's `required env variables [A,B] missing`. */
export function requireEnv(command: CniCommand, env: CniEnv): void {
  const missing = REQUIRED[command].filter((k) => env[k] === undefined).map((k) => VAR_NAMES[k])
  if (missing.length > 0) {
    throw new PnError('PN_CNI_INVALID_ENV', `read environment: required env variables [${missing.join(',')}] missing`, {
      hint: `a runtime sets these for ${command}; by hand use \`pn cni ${command.toLowerCase()}\``,
      details: {missing},
    })
  }
  // Container id, ifname and netns get their own checks (validate.ts); CNI_ARGS pairs: parseCniArgs.
  for (const k of ['path', 'args'] as const) {
    const cause = env[k] === undefined ? undefined : textProblem(env[k], MAX_ENV_BYTES)
    if (cause) {
      throw new PnError('PN_CNI_INVALID_ENV', `read environment: invalid ${VAR_NAMES[k]}: ${cause}`, {
        hint: `${VAR_NAMES[k]} must be printable text of at most ${MAX_ENV_BYTES} bytes`,
      })
    }
  }
}

/** Longest CNI_PATH or CNI_ARGS pn reads (a Kubernetes CNI_ARGS is a few hundred bytes). */
const MAX_ENV_BYTES = 65536

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/

// Container ids and interface names: the shared validators (libcni's regex, the kernel's dev_valid_name), code 4.
export {validateContainerId, validateIfname} from '../datapath/validate.js'

/** Network names follow the container id rule (and so are safe in file paths). */
export function validateNetworkName(name: unknown): string {
  if (name === undefined || name === null || name === '') {
    throw new PnError('PN_CNI_INVALID_CONFIG', 'read network config: missing network name', {
      hint: 'set "name" in the network configuration',
    })
  }
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new PnError('PN_CNI_INVALID_CONFIG', `read network config: invalid network name ${JSON.stringify(name)}`, {
      hint: 'a network name must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$',
    })
  }
  return name
}

export const KNOWN_CNI_ARGS = [
  'IgnoreUnknown',
  'IP',
  'K8S_POD_NAME',
  'K8S_POD_NAMESPACE',
  'K8S_POD_UID',
  'K8S_POD_INFRA_CONTAINER_ID',
] as const

export interface CniArgs {
  ignoreUnknown: boolean
  /** Requested IP(s) (CONVENTIONS `IP=`; comma-separated for dual stack). */
  ips: string[]
  podName?: string
  podNamespace?: string
  podUid?: string
  infraContainerId?: string
  /** Every pair, including ignored unknown ones. */
  raw: Record<string, string>
}

/** Parse `K=V;K=V`. Unknown keys fail (code 4) unless IgnoreUnknown=1|true appears anywhere. */
export function parseCniArgs(s: string | undefined): CniArgs {
  const out: CniArgs = {ignoreUnknown: false, ips: [], raw: {}}
  if (s === undefined || s === '') return out
  const pairs: [string, string][] = []
  for (const item of s.split(';')) {
    if (item === '') continue
    const cause = textProblem(item, MAX_ENV_BYTES)
    if (cause) {
      throw new PnError('PN_CNI_INVALID_ENV', `parse CNI_ARGS: invalid pair ${JSON.stringify(item.slice(0, 64))}: ${cause}`, {
        hint: 'CNI_ARGS keys and values are printable text (no NUL, newline or other control character)',
      })
    }
    const kv = item.split('=')
    if (kv.length !== 2 || kv[0] === '') {
      throw new PnError('PN_CNI_INVALID_ENV', `parse CNI_ARGS: invalid pair "${item}" (want KEY=VALUE)`, {
        hint: 'CNI_ARGS is a ;-separated list of KEY=VALUE pairs',
        details: {args: s},
      })
    }
    pairs.push([kv[0], kv[1]])
  }
  for (const [k, v] of pairs) {
    out.raw[k] = v
    if (k === 'IgnoreUnknown') out.ignoreUnknown = v === '1' || v.toLowerCase() === 'true'
  }
  const unknown = pairs.filter(([k]) => !(KNOWN_CNI_ARGS as readonly string[]).includes(k))
  if (unknown.length > 0 && !out.ignoreUnknown) {
    throw new PnError(
      'PN_CNI_INVALID_ENV',
      `parse CNI_ARGS: unknown args [${unknown.map(([k, v]) => `${k}=${v}`).join(' ')}]`,
      {hint: `known keys: ${KNOWN_CNI_ARGS.join(', ')}; add IgnoreUnknown=1 to ignore others`, details: {args: s}},
    )
  }
  for (const [k, v] of pairs) {
    if (k === 'IP' && v !== '') out.ips.push(...v.split(',').map((x) => x.trim().replace(/\/\d+$/, '')).filter(Boolean))
    if (k === 'K8S_POD_NAME') out.podName = v
    if (k === 'K8S_POD_NAMESPACE') out.podNamespace = v
    if (k === 'K8S_POD_UID') out.podUid = v
    if (k === 'K8S_POD_INFRA_CONTAINER_ID') out.infraContainerId = v
  }
  return out
}

/** The attachment key pn uses everywhere (IPAM owner, endpoint id, veth hash input). */
export function attachmentId(containerId: string, ifname: string): string {
  return `${containerId}:${ifname}`
}

/** True when an IPAM owner string looks like a CNI attachment (`<container-id>:<ifname>`). */
export function isAttachmentOwner(owner: string): boolean {
  const i = owner.lastIndexOf(':')
  if (i <= 0) return false
  const id = owner.slice(0, i)
  const ifname = owner.slice(i + 1)
  return NAME_RE.test(id) && ifname.length > 0 && Buffer.byteLength(ifname) <= 15 && !/[/:\s]/.test(ifname)
}
