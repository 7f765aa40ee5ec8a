/**
 * Harness for the CNI integration suites: a node is a `pn-` network namespace with a veth
 * "uplink" pair of its own, initialised with `pn node init` (state dir in a tmp dir, bpffs root
 * /run/pn/bpffs/<unique>); the plugin runs as a real process inside it, exactly as a runtime
 * on that node would exec it: `ip netns exec NODE node bin/pn-cni` with CNI_* env and stdin.
 * The same harness drives Debian's ptp + host-local, as a sanity check of the suite itself, and
 * pn through its node agent: kind `pn-agent` starts `pn agent` in the node and runs the native
 * client (dist/native/pn-cni) as the plugin, as `pn cni install` sets it up (a call carrying a
 * test hook goes through test/helpers/agent-request.ts instead: the native client drops hooks). Kind `pn-client` runs
 * that client with no agent: its standalone path (it starts pn-cni and its helpers itself).
 */
import {spawn, spawnSync} from 'node:child_process'
import {mkdtempSync, readdirSync, readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {createNamespace, deleteNamespace, inNs, tryInNs} from '../helpers/netns.js'
import {pn, REPO_ROOT} from '../helpers/cli.js'
import {ipFromBytes} from '../../src/datapath/bpf/maps/layout.js'

export const PN_CNI = path.join(REPO_ROOT, 'bin/pn-cni')
export const PN_CNI_CLIENT = path.join(REPO_ROOT, 'dist/native/pn-cni')
/** The agent's client for a request carrying a test hook (the native client drops them). */
export const AGENT_REQUEST = path.join(REPO_ROOT, 'dist/test/helpers/agent-request.js')
const TEST_HOOKS = ['PN_TEST_HOLD_LOCK_MS', 'PN_TEST_CHECKPOINT_DELAY_MS', 'PN_CNI_FAIL_AFTER']
export const REF_CNI_DIR = '/usr/lib/cni'

export type PluginKind = 'pn' | 'pn-agent' | 'pn-client' | 'ptp'

export interface CniNode {
  ns: string
  kind: PluginKind
  stateDir: string
  bpffsRoot: string
  podCidr: string
  gateway: string
  /** Dual stack: the IPv6 pod CIDR and its router address. */
  podCidr6?: string
  gateway6?: string
  routing: 'bpf' | 'host-routes'
  /** The netconf the node's runtime would send (without cniVersion). */
  conf: Record<string, unknown>
}

export interface Invocation {
  status: number
  stdout: string
  stderr: string
  json?: any
}

const tmpDirs: string[] = []
const agents: {ns: string; stateDir: string}[] = []
const bpffsRoots: string[] = []

function parse(status: number | null, stdout: string, stderr: string): Invocation {
  let json
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined
  } catch {
    json = undefined
  }
  return {status: status ?? 1, stdout, stderr, json}
}

/** A node namespace with an uplink and (for pn) `pn node init` done. */
export function createNode(opts: {kind?: PluginKind; podCidr: string; podCidr6?: string; routing?: 'bpf' | 'host-routes'; tag?: string}): CniNode {
  const kind = opts.kind ?? 'pn'
  const {name: ns} = createNamespace(opts.tag ?? 'cn')
  inNs(ns, ['ip', 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0p'])
  inNs(ns, ['ip', 'link', 'set', 'up0', 'up'])
  inNs(ns, ['ip', 'link', 'set', 'up0p', 'up'])
  const stateDir = mkdtempSync(path.join(tmpdir(), 'pn-cni-'))
  tmpDirs.push(stateDir)
  const bpffsRoot = `/run/pn/bpffs/${ns}`
  const gateway = opts.podCidr.replace(/\.0\/\d+$/, '.1')
  const v6 = opts.podCidr6 ? {podCidr6: opts.podCidr6, gateway6: opts.podCidr6.replace(/::\/\d+$/, '::1')} : {}
  const cidrArgs = ['--pod-cidr', opts.podCidr, ...(opts.podCidr6 ? ['--pod-cidr', opts.podCidr6] : [])]
  const routing = opts.routing ?? 'host-routes'
  if (kind === 'pn' || kind === 'pn-agent' || kind === 'pn-client') {
    bpffsRoots.push(bpffsRoot)
    const r = pn(['node', 'init', '--name', ns, '--device', 'up0', ...cidrArgs, '--routing', routing,
      '--state-dir', stateDir, '--bpffs-root', bpffsRoot, '--json'], {netns: ns})
    if (r.status !== 0) throw new Error(`pn node init in ${ns} failed: ${r.stdout} ${r.stderr}`)
    if (kind === 'pn-agent') startNodeAgent({ns, stateDir})
    return {ns, kind, stateDir, bpffsRoot, podCidr: opts.podCidr, gateway, ...v6, routing, conf: {name: 'pn', type: 'pn', stateDir}}
  }
  return {
    ns,
    kind,
    stateDir,
    bpffsRoot,
    podCidr: opts.podCidr,
    gateway,
    routing,
    conf: {name: 'ref', type: 'ptp', ipam: {type: 'host-local', subnet: opts.podCidr, dataDir: stateDir}},
  }
}

/**
 * `pn agent start` in the node (background; returns once it answers), with `--test-hooks`: the
 * suites drive the agent's requests with PN_CNI_FAIL_AFTER and PN_TEST_CHECKPOINT_DELAY_MS, which
 * an agent started without it ignores.
 */
export function startNodeAgent(node: {ns: string; stateDir: string}, extraArgs: string[] = []): number {
  const r = pn(['agent', 'start', '--state-dir', node.stateDir, '--test-hooks', ...extraArgs, '--json'], {netns: node.ns})
  if (r.status !== 0) throw new Error(`pn agent start in ${node.ns} failed: ${r.stdout} ${r.stderr}`)
  if (!agents.some((a) => a.stateDir === node.stateDir)) agents.push({ns: node.ns, stateDir: node.stateDir})
  return r.json!.result.pid as number
}

/** `pn agent stop` (graceful): what the agent had in flight finishes first. */
export function stopNodeAgent(node: {ns: string; stateDir: string}): void {
  // No netns: stopping is a signal to a pid, and the node's namespace may already be gone.
  pn(['agent', 'stop', '--state-dir', node.stateDir, '--json'])
}

export function destroyNode(node: CniNode): void {
  if (node.kind === 'pn-agent') stopNodeAgent(node)
  deleteNamespace(node.ns)
}

/** Stop the agents, remove tmp state dirs and bpffs folders this process made. */
export function cleanupHarness(): void {
  for (const a of agents.splice(0)) stopNodeAgent(a)
  for (const d of tmpDirs.splice(0)) rmSync(d, {recursive: true, force: true})
  for (const d of bpffsRoots.splice(0)) rmSync(d, {recursive: true, force: true})
}

export function netconf(node: CniNode, cniVersion: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({cniVersion, ...node.conf, ...extra})
}

export interface CniEnvInput {
  command: string
  containerId?: string
  netns?: string
  ifname?: string
  args?: string
  extraEnv?: Record<string, string>
}

function argvFor(node: CniNode, e: CniEnvInput): string[] {
  const hooked = TEST_HOOKS.some((k) => e.extraEnv?.[k] !== undefined)
  const plugin =
    node.kind === 'pn'
      ? [process.execPath, PN_CNI]
      : node.kind === 'pn-agent' && hooked
        ? [process.execPath, AGENT_REQUEST]
        : node.kind === 'pn-agent' || node.kind === 'pn-client'
          ? [PN_CNI_CLIENT]
          : [path.join(REF_CNI_DIR, 'ptp')]
  return ['ip', 'netns', 'exec', node.ns, ...plugin]
}

function envFor(e: CniEnvInput): NodeJS.ProcessEnv {
  // libcni sets all six variables, empty when unused.
  return {
    PATH: process.env.PATH,
    CNI_COMMAND: e.command,
    CNI_CONTAINERID: e.containerId ?? '',
    CNI_NETNS: e.netns ?? '',
    CNI_IFNAME: e.ifname ?? '',
    CNI_ARGS: e.args ?? '',
    CNI_PATH: REF_CNI_DIR,
    ...e.extraEnv,
  }
}

/** Run the node's plugin once, synchronously, as a runtime would. */
export function invoke(node: CniNode, e: CniEnvInput, stdin: string): Invocation {
  const argv = argvFor(node, e)
  const r = spawnSync(argv[0], argv.slice(1), {encoding: 'utf8', env: envFor(e), input: stdin})
  return parse(r.status, r.stdout ?? '', r.stderr ?? '')
}

/** Same, asynchronously (for parallel ADD/DEL). */
export function invokeAsync(node: CniNode, e: CniEnvInput, stdin: string): Promise<Invocation> {
  const argv = argvFor(node, e)
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), {env: envFor(e)})
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve(parse(code, stdout, stderr)))
    child.stdin.end(stdin)
  })
}

export function add(node: CniNode, version: string, containerId: string, pod: string, opts: {ifname?: string; args?: string; extraEnv?: Record<string, string>} = {}): Invocation {
  return invoke(node, {command: 'ADD', containerId, netns: `/run/netns/${pod}`, ifname: opts.ifname ?? 'eth0', args: opts.args, extraEnv: opts.extraEnv}, netconf(node, version))
}

export function del(node: CniNode, version: string, containerId: string, netns: string, opts: {ifname?: string; prevResult?: unknown; extraEnv?: Record<string, string>} = {}): Invocation {
  const extra = opts.prevResult ? {prevResult: opts.prevResult} : {}
  return invoke(node, {command: 'DEL', containerId, netns, ifname: opts.ifname ?? 'eth0', extraEnv: opts.extraEnv}, netconf(node, version, extra))
}

export function check(node: CniNode, version: string, containerId: string, pod: string, prevResult: unknown, ifname = 'eth0'): Invocation {
  return invoke(node, {command: 'CHECK', containerId, netns: `/run/netns/${pod}`, ifname}, netconf(node, version, {prevResult}))
}

/** Links in the node netns whose name starts with `prefix`. */
export function nodeLinks(node: CniNode, prefix = 'lxc'): string[] {
  const out = JSON.parse(inNs(node.ns, ['ip', '-j', 'link', 'show'])) as {ifname: string}[]
  return out.map((l) => l.ifname).filter((n) => n.startsWith(prefix))
}

export function podHasLink(pod: string, ifname = 'eth0'): boolean {
  return tryInNs(pod, ['ip', 'link', 'show', 'dev', ifname]).status === 0
}

/** The pod's addresses on ifname (plain IPs). */
export function podIps(pod: string, ifname = 'eth0'): string[] {
  const r = tryInNs(pod, ['ip', '-j', 'addr', 'show', 'dev', ifname])
  if (r.status !== 0) return []
  return (JSON.parse(r.stdout) as {addr_info: {local: string; scope: string}[]}[])
    .flatMap((x) => x.addr_info)
    .filter((a) => a.scope === 'global')
    .map((a) => a.local)
}

/** What pn holds for the node: IP owners (not the router), endpoint ids, map keys. */
export function pnState(node: CniNode): {owners: string[]; endpoints: string[]} {
  const ips = pn(['ipam', 'list', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
  const eps = pn(['endpoint', 'list', '--state-dir', node.stateDir, '--json'], {netns: node.ns})
  const ipList = (ips.json?.result?.allocations ?? ips.json?.result ?? []) as {owner: string}[]
  const epList = (eps.json?.result?.endpoints ?? eps.json?.result ?? []) as {id: string}[]
  return {owners: ipList.map((a) => a.owner).filter((o) => o !== 'router'), endpoints: epList.map((e) => e.id)}
}

/** Map entries keyed by IP (pn_endpoints; pn_ipcache as prefixes) under the node's bpffs root, IPv4 and IPv6. */
export function mapIps(node: CniNode, map: 'pn_endpoints' | 'pn_ipcache' = 'pn_endpoints'): string[] {
  const file = path.join(node.bpffsRoot, 'maps', map)
  const r = spawnSync('bpftool', ['-j', 'map', 'dump', 'pinned', file], {encoding: 'utf8'})
  if (r.status !== 0) return []
  const entries = JSON.parse(r.stdout) as {key: string[] | number[]}[]
  return entries.map((e) => {
    const key = Buffer.from((e.key as (string | number)[]).map((b) => Number(b)))
    // endpoint_key: addr[16] then family; ipcache_key: prefixlen, family, pad[3], addr[16].
    const [addr, fam] = map === 'pn_endpoints' ? [key.subarray(0, 16), key[16]] : [key.subarray(8, 24), key[4]]
    const ip = fam === 2 ? ipFromBytes(addr, 6) : ipFromBytes(addr.subarray(0, 4), 4)
    return map === 'pn_endpoints' ? ip : `${ip}/${key.readUInt32LE(0) - 32}`
  })
}


/** host-local's reservations for the reference node: the content of each IP file ("<cid>\r\n<ifname>"). */
export function hostLocalOwners(node: CniNode): string[] {
  const dir = path.join(node.stateDir, String(node.conf.name))
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return []
  }
  return names.filter((n) => /^[0-9.]+$/.test(n)).map((n) => readFileSync(path.join(dir, n), 'utf8'))
}
