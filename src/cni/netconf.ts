/**
 * The network configuration a runtime writes on stdin. pn tolerates what real runtimes send
 * (`capabilities` left in, `runtimeConfig`, `args`, unknown fields, `prevResult`) and checks
 * only what it uses: version, name, pn's own keys and the ipam section it cannot delegate.
 */
import {MAX_PATH_BYTES, textProblem} from '../datapath/validate.js'
import {PnError} from '../errors.js'
import {validateNetworkName} from './env.js'
import {podLabels} from './labels.js'
import {isSupportedVersion, SUPPORTED_VERSIONS, type CniVersion} from './spec.js'

export interface PortMapping {
  hostPort: number
  containerPort: number
  protocol: string
  hostIP?: string
}

export interface NetConf {
  cniVersion: CniVersion
  name: string
  type: string
  /** pn: state dir of the node this network belongs to (several lab nodes on one machine). */
  stateDir?: string
  /** pn: append logs here instead of stderr. */
  logFile?: string
  /** pn: reservation expiry for an ADD in flight, ms (Cilium: 10 min). */
  ipamExpirationMs?: number
  dns?: {nameservers?: string[]; domain?: string; search?: string[]; options?: string[]}
  /** Requested IPs from `args.cni.ips` (CONVENTIONS), which wins over CNI_ARGS IP=. */
  argsIps: string[]
  /** The pod's labels: `args.cni.labels` and the `pn.cni/labels` pod annotation (src/cni/labels.ts). */
  labels: Record<string, string>
  portMappings: PortMapping[]
  prevResult?: Record<string, unknown>
  /** GC: attachments to keep, `<containerId>:<ifname>`. */
  validAttachments?: {containerId: string; ifname: string}[]
  /** The whole parsed document. */
  raw: Record<string, unknown>
}

/**
 * Decode stdin JSON (code 6) and check it as a network config (codes 1, 2, 7). The pod's labels
 * are read and checked for ADD only (and when no command is named): DEL, CHECK, GC and STATUS
 * ignore them, so the DEL a runtime sends after an ADD that a bad label failed, with the same
 * netconf, still succeeds (containerd retries a failing DEL and cannot remove the sandbox).
 */
export function parseNetConf(stdin: string, command?: string): NetConf {
  let raw: unknown
  try {
    raw = JSON.parse(stdin)
  } catch (err) {
    throw new PnError('PN_CNI_DECODE', `decode network config: ${(err as Error).message}`, {
      hint: 'the runtime must write the network configuration as JSON on stdin',
    })
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new PnError('PN_CNI_DECODE', 'decode network config: not a JSON object', {
      hint: 'the runtime must write the network configuration as a JSON object on stdin',
    })
  }
  const o = raw as Record<string, unknown>
  const version = checkVersion(o.cniVersion)
  const name = validateNetworkName(o.name)
  if (o.type !== undefined && typeof o.type !== 'string') throw invalid('type', o.type, 'must be a string')
  const badType = typeof o.type === 'string' ? textProblem(o.type, 256) : undefined
  if (badType) throw invalid('type', o.type, badType)
  const conf: NetConf = {
    cniVersion: version,
    name,
    type: typeof o.type === 'string' ? o.type : 'pn',
    argsIps: [],
    labels: {},
    portMappings: [],
    raw: o,
  }
  if (o.stateDir !== undefined) {
    if (typeof o.stateDir !== 'string' || !o.stateDir.startsWith('/')) throw invalid('stateDir', o.stateDir, 'must be an absolute path')
    const bad = textProblem(o.stateDir, MAX_PATH_BYTES)
    if (bad) throw invalid('stateDir', o.stateDir, bad)
    conf.stateDir = o.stateDir
  }
  if (o.logFile !== undefined) {
    if (typeof o.logFile !== 'string' || !o.logFile.startsWith('/')) throw invalid('logFile', o.logFile, 'must be an absolute path')
    const bad = textProblem(o.logFile, MAX_PATH_BYTES)
    if (bad) throw invalid('logFile', o.logFile, bad)
    conf.logFile = o.logFile
  }
  if (o.ipamExpirationMs !== undefined) {
    if (typeof o.ipamExpirationMs !== 'number' || !(o.ipamExpirationMs > 0)) throw invalid('ipamExpirationMs', o.ipamExpirationMs, 'must be a positive number')
    conf.ipamExpirationMs = o.ipamExpirationMs
  }
  checkIpam(o.ipam)
  if (o.dns !== undefined) {
    if (!o.dns || typeof o.dns !== 'object' || Array.isArray(o.dns)) throw invalid('dns', o.dns, 'must be an object')
    conf.dns = pickDns(o.dns as Record<string, unknown>)
  }
  conf.argsIps = argsIps(o.args)
  if (command === undefined || command === 'ADD') conf.labels = podLabels(o.args, o.runtimeConfig)
  conf.portMappings = portMappings(o.runtimeConfig)
  if (o.prevResult !== undefined && o.prevResult !== null) {
    if (typeof o.prevResult !== 'object' || Array.isArray(o.prevResult)) throw invalid('prevResult', o.prevResult, 'must be an object')
    conf.prevResult = o.prevResult as Record<string, unknown>
  }
  const gcList = o['cni.dev/valid-attachments'] ?? o['cni.dev/attachments']
  if (gcList !== undefined) conf.validAttachments = attachments(gcList)
  return conf
}

function checkVersion(v: unknown): CniVersion {
  // libcni reads a missing cniVersion as 0.1.0, which pn does not speak.
  const version = v === undefined || v === '' ? '0.1.0' : v
  if (typeof version !== 'string') {
    throw new PnError('PN_CNI_DECODE', `decode network config: cniVersion ${JSON.stringify(v)} is not a string`, {
      hint: `set "cniVersion" to one of ${SUPPORTED_VERSIONS.join(', ')}`,
    })
  }
  if (!isSupportedVersion(version)) {
    throw new PnError('PN_CNI_INCOMPATIBLE_VERSION', `check cni version: config is "${version}", plugin supports [${SUPPORTED_VERSIONS.join(' ')}]`, {
      hint: `set "cniVersion" to one of ${SUPPORTED_VERSIONS.join(', ')}`,
      details: {cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS]},
    })
  }
  return version
}

function invalid(key: string, value: unknown, cause: string): PnError {
  return new PnError('PN_CNI_INVALID_CONFIG', `read network config: ${key} ${JSON.stringify(value)} ${cause}`, {
    hint: `fix "${key}" in the network configuration`,
  })
}

/** pn allocates from the node's pod CIDR itself; a delegated IPAM plugin is refused (code 2 names key and value). */
function checkIpam(ipam: unknown): void {
  if (ipam === undefined || ipam === null) return
  if (typeof ipam !== 'object' || Array.isArray(ipam)) throw invalid('ipam', ipam, 'must be an object')
  const type = (ipam as Record<string, unknown>).type
  if (type === undefined || type === 'pn') return
  throw new PnError('PN_CNI_UNSUPPORTED_FIELD', `read network config: unsupported field ipam.type=${JSON.stringify(type)}`, {
    hint: 'pn allocates pod IPs from the node pod CIDR itself; remove "ipam" or set "ipam": {"type": "pn"}',
    details: {key: 'ipam.type', value: type},
  })
}

function pickDns(d: Record<string, unknown>): NetConf['dns'] {
  const strs = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : undefined)
  const out: NonNullable<NetConf['dns']> = {}
  const ns = strs(d.nameservers)
  if (ns) out.nameservers = ns
  if (typeof d.domain === 'string') out.domain = d.domain
  const search = strs(d.search)
  if (search) out.search = search
  const options = strs(d.options)
  if (options) out.options = options
  return out
}

function argsIps(args: unknown): string[] {
  if (!args || typeof args !== 'object') return []
  const cni = (args as Record<string, unknown>).cni
  if (!cni || typeof cni !== 'object') return []
  const ips = (cni as Record<string, unknown>).ips
  if (!Array.isArray(ips)) return []
  return ips.filter((x): x is string => typeof x === 'string').map((x) => x.replace(/\/\d+$/, ''))
}

/** runtimeConfig.portMappings, with keys in either case (podman sends hostPort, some send HostPort). */
function portMappings(rc: unknown): PortMapping[] {
  if (!rc || typeof rc !== 'object') return []
  const list = (rc as Record<string, unknown>).portMappings
  if (!Array.isArray(list)) return []
  const out: PortMapping[] = []
  for (const item of list) {
    if (!item || typeof item !== 'object') continue
    const m = item as Record<string, unknown>
    const pick = (k: string) => m[k] ?? m[k[0].toUpperCase() + k.slice(1)]
    const hostPort = Number(pick('hostPort'))
    const containerPort = Number(pick('containerPort'))
    if (!Number.isInteger(hostPort) || !Number.isInteger(containerPort)) continue
    const protocol = String(pick('protocol') ?? 'tcp').toLowerCase()
    const hostIP = pick('hostIP') ?? m.HostIp ?? m.hostIp
    out.push({hostPort, containerPort, protocol, ...(typeof hostIP === 'string' && hostIP !== '' ? {hostIP} : {})})
  }
  return out
}

function attachments(v: unknown): {containerId: string; ifname: string}[] {
  if (!Array.isArray(v)) throw invalid('cni.dev/valid-attachments', v, 'must be a list of {containerID, ifname}')
  const out: {containerId: string; ifname: string}[] = []
  for (const a of v) {
    const o = (a ?? {}) as Record<string, unknown>
    const containerId = o.containerID ?? o.containerId
    const ifname = o.ifname ?? o.ifName
    if (typeof containerId !== 'string' || typeof ifname !== 'string') {
      throw invalid('cni.dev/valid-attachments', a, 'entry must be {"containerID": …, "ifname": …}')
    }
    const bad = textProblem(containerId, 1024) ?? textProblem(ifname, 1024)
    if (bad) throw invalid('cni.dev/valid-attachments', a, `entry ${bad}`)
    out.push({containerId, ifname})
  }
  return out
}
