/**
 * `pn node init`: what cilium-agent does at start. Takes the node's pod CIDR (flag, cluster
 * pool or the previous node.json), creates the pn_host ↔ pn_net pair (cilium_host/cilium_net)
 * only if missing, puts the router IP on pn_host as /32, routes the pod CIDR via it, sets
 * Cilium's sysctls, prepares the bpffs folder, reserves the router IP in host-scope IPAM,
 * (bpf mode) compiles and loads the host programs and writes node.json. Idempotent: a re-run
 * with the same inputs changes nothing. Each step below is a named function over one InitRun;
 * the kernel work itself is the datapath's (src/datapath/host.ts).
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {canonicalIp, cidrContains, cidrFamily, firstUsable, ipFamily, normalizeCidr} from '../cidr/cidr.js'
import {loadHostPrograms, unloadHostPrograms} from '../datapath/bpf/index.js'
import {defaultBpffsRoot, ensureBpffs} from '../datapath/bpffs.js'
import {foreignOverlaps, hostDevices, nodeNetworks, setupHostDevices, setupHostSysctls, setupRouterAddressing, type DeviceState} from '../datapath/host.js'
import {getLink} from '../datapath/link.js'
import {deleteTunnelDevice, setupTunnelDevice} from '../datapath/tunnel.js'
import {resolveMasquerade, setupMasquerade, type MasqueradeOptions} from './masquerade.js'
import {runPlan, UndoStack, type FlowOptions, type Plan} from '../flow/plan.js'
import {ipamExists, reserveRouterIps, resetIpam} from '../ipam/host.js'
import {allocatePodCidrs, checkNodeName, openPoolStore, releasePodCidrs, resolvePoolLocation, type PoolState, type PoolStore} from '../ipam/pool.js'
import type {EtcdTlsFiles} from '../state/etcd-store.js'
import type {LockOptions} from '../state/files.js'
import {TUNNEL_OVERHEAD} from '../datapath/devices.js'
import {bpfCacheDir, HOST_DEVICE, NET_DEVICE, readNodeContext, TUNNEL_DEVICE, writeNodeContext, type NodeContext, type RoutingMode, type TunnelMode} from './context.js'
import {ipamOf} from './ipam.js'
import {reconcileNode, type ReconcileResult} from './reconcile.js'

export type {DeviceState} from '../datapath/host.js'
export {nodeSysctls, podCidrRoutes, hostAddresses, podCidrRouteOk} from '../datapath/host.js'

export interface NodeInitOptions {
  name: string
  uplink: string
  podCidrs?: string[]
  /** Cluster pool location; used when podCidrs is not given. */
  pool?: string
  mtu?: number
  routerIps?: string[]
  routing?: RoutingMode
  /** `vxlan`: pod traffic to other nodes goes through pn_vxlan (tunnel mode); `off` (default): native routing. */
  tunnel?: TunnelMode
  bpffsRoot?: string
  /** Accept a change of pod CIDR / router IP / name against an existing node.json. */
  force?: boolean
  lock?: LockOptions
  /** TLS files for an etcds:// pool. */
  etcdTls?: EtcdTlsFiles
  /** bpf/ sources when pn runs outside its tree (PN_BPF_DIR). */
  bpfSourceDir?: string
  /** The request's interrupt, checked between reaped endpoints. */
  signal?: AbortSignal
  /** --masquerade, --non-masquerade-cidr, port range and NAT timeouts (src/node/masquerade.ts). */
  masquerade?: MasqueradeOptions
}

export interface NodeInitResult {
  changed: boolean
  node: NodeContext
  devices: DeviceState[]
  /** What this run changed (empty on an idempotent re-run). */
  actions: string[]
  warnings: string[]
  /** Endpoints whose netns and host veth were gone (a reboot): reaped, their IPs freed. */
  reconciled: ReconcileResult
}

/** One run of node init: inputs, what earlier steps decided, and what the run did. */
export interface InitRun {
  runner: Runner
  stateDir: string
  opts: NodeInitOptions
  previous?: NodeContext
  undo: UndoStack
  actions: string[]
  warnings: string[]
  routing: RoutingMode
  tunnel: TunnelMode
  bpffsRoot: string
  podCidrs: string[]
  routerIps: string[]
  pool?: string
  mtu: number
  devices: DeviceState[]
  reconciled: ReconcileResult
  masquerade?: NodeContext['masquerade']
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

function contextOf(r: InitRun): NodeContext {
  return {
    version: 1,
    name: r.opts.name,
    uplink: r.opts.uplink,
    podCidrs: r.podCidrs,
    routerIps: r.routerIps,
    mtu: r.mtu,
    routeMtu: r.mtu,
    bpffsRoot: r.bpffsRoot,
    routing: r.routing,
    tunnel: r.tunnel,
    ...(r.pool ? {pool: r.pool} : {}),
    ...(r.masquerade ? {masquerade: r.masquerade} : {}),
    createdAt: r.previous?.createdAt ?? new Date().toISOString(),
  }
}

/** The pool at `location`, or PN_POOL_NOT_FOUND naming what to do instead. */
async function readPool(r: InitRun, location: string, action: string): Promise<{store: PoolStore; state: PoolState}> {
  const store = openPoolStore(location, {...r.opts.lock, etcdTls: r.opts.etcdTls})
  const state = await store.read()
  if (state === undefined) {
    throw new PnError('PN_POOL_NOT_FOUND', `${action}: no cluster pool at ${location}`, {
      hint: 'create the pool with `pn pool init --cidr CIDR --mask-size N`, or pass --pod-cidr CIDR without --pool (standalone)',
    })
  }
  return {store, state}
}

/**
 * --pod-cidr together with --pool: each CIDR must be one the pool gave this node. Taking another
 * node's block (or one the pool never handed out) would route the same pods on two nodes.
 */
function checkPoolGave(r: InitRun, state: PoolState, location: string): void {
  const mine = state.nodes.find((n) => n.name === r.opts.name)?.cidrs.map((c) => normalizeCidr(c).text) ?? []
  for (const cidr of r.podCidrs) {
    if (mine.includes(cidr)) continue
    const holder = state.nodes.find((n) => n.name !== r.opts.name && n.cidrs.some((c) => normalizeCidr(c).text === cidr))
    const cause = holder ? `the pool ${location} gave it to node ${holder.name}` : `the pool ${location} did not allocate it to ${r.opts.name}`
    throw new PnError('PN_CIDR_CONFLICT', `initialise node ${r.opts.name}: pod cidr ${cidr} is not this node's: ${cause}`, {
      hint: mine.length > 0
        ? `this node's pod CIDR in the pool is ${mine.join(', ')}: drop --pod-cidr (or pass that one)`
        : 'drop --pod-cidr to take a block from the pool, or drop --pool to use the CIDR standalone',
      details: {podCidr: cidr, pool: location, ...(holder ? {heldBy: holder.name} : {}), nodeCidrs: mine},
    })
  }
}

/** The pod CIDRs: --pod-cidr, else node.json's on a re-run, else one from the cluster pool. */
async function resolvePodCidrs(r: InitRun): Promise<void> {
  const {opts, previous} = r
  if (opts.podCidrs && opts.podCidrs.length > 0) {
    r.podCidrs = opts.podCidrs.map((c) => normalizeCidr(c, 'pod cidr').text)
    if (opts.pool) {
      const location = resolvePoolLocation(r.stateDir, opts.pool)
      checkPoolGave(r, (await readPool(r, location, `check pod cidr of ${opts.name}`)).state, location)
      r.pool = location
    }
  } else if (previous && !opts.pool) {
    r.podCidrs = previous.podCidrs
    r.pool = previous.pool
  } else {
    const location = resolvePoolLocation(r.stateDir, opts.pool)
    const {store} = await readPool(r, location, `allocate pod cidr for ${opts.name}`)
    const got = await allocatePodCidrs(store, opts.name)
    r.pool = location
    r.podCidrs = got.cidrs.map((c) => normalizeCidr(c).text)
    if (got.changed) {
      r.actions.push(`allocated ${r.podCidrs.join(', ')} from ${location}`)
      r.undo.push(`release pod cidr of ${opts.name}`, () => releasePodCidrs(store, opts.name))
    }
  }
  r.podCidrs.sort((a, b) => cidrFamily(a) - cidrFamily(b))
  const families = r.podCidrs.map(cidrFamily)
  if (new Set(families).size !== families.length) {
    throw new PnError('PN_INVALID_CIDR', `use pod cidrs ${r.podCidrs.join(', ')}: at most one per family`, {
      hint: 'pass one IPv4 and/or one IPv6 --pod-cidr',
    })
  }
}

/** Router IP per pod CIDR: --router-ip, else the previous one, else the first usable address. */
function resolveRouterIps(r: InitRun): void {
  const {opts, previous} = r
  r.routerIps = r.podCidrs.map((c) => {
    const fam = cidrFamily(c)
    const given = opts.routerIps?.find((x) => ipFamily(x) === fam)
    const prev = previous?.podCidrs.includes(c) ? previous.routerIps[previous.podCidrs.indexOf(c)] : undefined
    const ip = canonicalIp(given ?? prev ?? firstUsable(c))
    if (!cidrContains(c, ip)) {
      throw new PnError('PN_INVALID_IP', `use router ip ${ip}: outside pod cidr ${c}`, {hint: 'pick an address inside the pod CIDR'})
    }
    return ip
  })
}

/** A re-run that would change name, CIDR, router IP or uplink needs --force. */
function refuseSilentChange(r: InitRun): void {
  const {opts, previous} = r
  if (!previous || opts.force) return
  const diffs: string[] = []
  if (previous.name !== opts.name) diffs.push(`name ${previous.name} → ${opts.name}`)
  if (!sameList(previous.podCidrs, r.podCidrs)) diffs.push(`pod cidr ${previous.podCidrs.join(',')} → ${r.podCidrs.join(',')}`)
  if (!sameList(previous.routerIps, r.routerIps)) diffs.push(`router ip ${previous.routerIps.join(',')} → ${r.routerIps.join(',')}`)
  if (previous.uplink !== opts.uplink) diffs.push(`uplink ${previous.uplink} → ${opts.uplink}`)
  if ((previous.tunnel ?? 'off') !== r.tunnel) diffs.push(`tunnel ${previous.tunnel ?? 'off'} → ${r.tunnel}`)
  if (diffs.length > 0) {
    throw new PnError('PN_NODE_CONFLICT', `initialise node ${opts.name}: already initialised differently (${diffs.join('; ')})`, {
      hint: 'run `pn node reset` first, or rerun with --force to reconfigure (existing pods keep their old addresses)',
      details: {previous: {name: previous.name, podCidrs: previous.podCidrs, routerIps: previous.routerIps, uplink: previous.uplink}},
    })
  }
}

async function checkUplink(r: InitRun): Promise<void> {
  const up = await getLink(r.runner, r.opts.uplink)
  if (!up) {
    throw new PnError('PN_LINK_NOT_FOUND', `initialise node ${r.opts.name}: uplink ${r.opts.uplink} does not exist`, {
      hint: 'pass the node\'s uplink with --device (see `ip link`)',
    })
  }
  // Tunnel mode: the pod MTU leaves room for the outer headers (Cilium's TunnelOverhead), so an
  // encapsulated full-size packet still fits the uplink. A previous MTU holds only in the same mode.
  const sameMode = (r.previous?.tunnel ?? 'off') === r.tunnel
  r.mtu = r.opts.mtu ?? (sameMode ? r.previous?.mtu : undefined) ?? up.mtu - (r.tunnel === 'vxlan' ? TUNNEL_OVERHEAD : 0)
}

/** Tunnel mode runs in the BPF programs (from-container encapsulates): host-routes mode loads none. */
function checkTunnelRouting(r: InitRun): void {
  if (r.tunnel === 'vxlan' && r.routing !== 'bpf') {
    throw new PnError('PN_INVALID_ARGUMENT', `initialise node ${r.opts.name}: --tunnel vxlan needs --routing bpf`, {
      hint: 'tunnel mode encapsulates in the BPF datapath: drop --routing host-routes (or pass --tunnel off)',
    })
  }
}

/** pn_vxlan in tunnel mode; a node switched back to native routing (--force) loses it. */
async function setupTunnel(r: InitRun): Promise<void> {
  if (r.tunnel === 'vxlan') r.actions.push(...(await setupTunnelDevice(r.runner, r.mtu, r.undo)))
  else if (r.previous?.tunnel === 'vxlan' && (await deleteTunnelDevice(r.runner))) r.actions.push(`deleted ${TUNNEL_DEVICE}`)
}

/**
 * A pod CIDR must not overlap any address or route of the node (pn's own devices aside): with
 * the uplink's subnet, the router IP would duplicate the uplink's address and the pod CIDR route
 * would replace the uplink's (and go with pn_host at reset). Read-only, before any change.
 */
async function checkCidrConflicts(r: InitRun): Promise<void> {
  const networks = await nodeNetworks(r.runner)
  for (const cidr of r.podCidrs) {
    const hits = foreignOverlaps(cidr, networks)
    if (hits.length === 0) continue
    const [first, ...rest] = hits
    const more = rest.length > 0 ? ` (and ${rest.length} more: ${rest.slice(0, 3).map((h) => `${h.kind} ${h.text}`).join('; ')}${rest.length > 3 ? '; …' : ''})` : ''
    throw new PnError('PN_CIDR_CONFLICT', `initialise node ${r.opts.name}: pod cidr ${cidr} overlaps ${first.kind} ${first.text}${more}`, {
      hint: 'pick a pod CIDR outside the node\'s own networks (see `ip addr` and `ip route show table all`); nothing was changed',
      details: {podCidr: cidr, conflicts: hits.map((h) => ({kind: h.kind, cidr: h.cidr, devices: h.devs, text: h.text}))},
    })
  }
}

async function prepareBpffs(r: InitRun): Promise<void> {
  const b = await ensureBpffs(r.runner, r.bpffsRoot)
  r.warnings.push(...b.warnings)
  if (b.mounted) r.actions.push(`mounted bpffs at ${path.dirname(r.bpffsRoot)}`)
  if (b.created) {
    r.actions.push(`created ${r.bpffsRoot}`)
    const root = r.bpffsRoot
    r.undo.push(`remove ${root}`, () => fs.rm(root, {recursive: true, force: true}))
  }
}

async function reserveRouter(r: InitRun): Promise<void> {
  const {stateDir, previous, opts} = r
  const existed = await ipamExists(stateDir)
  if (previous && opts.force && !sameList(previous.podCidrs, r.podCidrs)) {
    await resetIpam(stateDir, undefined, opts.lock)
    r.warnings.push('pod CIDR changed: host-scope IPAM state was reset; existing pods keep addresses from the old CIDR')
  }
  const res = await reserveRouterIps(ipamOf(r, stateDir, opts.lock))
  r.warnings.push(...(res.warnings ?? []))
  if (res.changed) {
    r.actions.push(`reserved router ip ${r.routerIps.join(', ')}`)
    if (!existed) r.undo.push('reset ipam', () => resetIpam(stateDir, undefined, opts.lock))
  }
}

async function loadDatapath(r: InitRun): Promise<void> {
  const node = contextOf(r)
  const loaded = await loadHostPrograms(r.runner, node, {cacheDir: bpfCacheDir(r.stateDir), sourceDir: r.opts.bpfSourceDir})
  if (!loaded.cacheHit) r.actions.push('compiled bpf objects')
  if (loaded.createdMaps?.length) r.actions.push(`created maps ${loaded.createdMaps.join(', ')}`)
  if (loaded.replacedMaps?.length) r.actions.push(`replaced maps of an older layout ${loaded.replacedMaps.join(', ')}`)
  if (loaded.changed) {
    r.actions.push(`loaded host programs (${loaded.attachments.map((a) => `${a.device}/${a.direction}`).join(', ')})`)
    r.undo.push('unload host programs', () => unloadHostPrograms(r.runner, node))
  }
}

/** Reap what a reboot left: endpoints whose netns and host veth are gone, and their IPs. */
async function reconcile(r: InitRun, signal?: AbortSignal): Promise<void> {
  const res = await reconcileNode(r.stateDir, contextOf(r), {runner: r.runner, lock: r.opts.lock, ...(signal ? {signal} : {})})
  r.reconciled = res
  if (res.reaped.length > 0) {
    const ips = res.reaped.flatMap((e) => e.ips)
    r.actions.push(`reaped ${res.reaped.length} endpoint(s) whose netns and veth are gone (${res.reaped.map((e) => e.id).join(', ')}); released ${ips.join(', ') || 'no address'}`)
  }
  for (const s of res.suspect) r.warnings.push(`endpoint ${s.id} kept: ${s.reason} (its runtime's DEL or a CNI GC removes it)`)
  for (const e of res.errors) r.warnings.push(`reap ${e.id}: ${e.step} failed: ${e.message} (rerun pn node init)`)
}

async function writeContext(r: InitRun): Promise<void> {
  const node = contextOf(r)
  r.devices = await hostDevices(r.runner)
  const same = r.previous && JSON.stringify({...r.previous, createdAt: ''}) === JSON.stringify({...node, createdAt: ''})
  if (!same) {
    await writeNodeContext(r.stateDir, node)
    r.actions.push(`wrote ${path.join(r.stateDir, 'node.json')}`)
  }
}

/** Build the node-init plan; nothing runs until its steps do. */
export async function planNodeInit(runner: Runner, stateDir: string, opts: NodeInitOptions): Promise<Plan<NodeInitResult>> {
  // The name keys the pool and names the default bpffs root: checked as `pn pool alloc` checks it.
  checkNodeName(opts.name)
  const previous = await readNodeContext(stateDir)
  const r: InitRun = {
    runner,
    stateDir,
    opts,
    previous,
    undo: new UndoStack(),
    actions: [],
    warnings: [],
    routing: opts.routing ?? previous?.routing ?? 'bpf',
    tunnel: opts.tunnel ?? previous?.tunnel ?? 'off',
    bpffsRoot: opts.bpffsRoot ?? previous?.bpffsRoot ?? defaultBpffsRoot(opts.name),
    podCidrs: [],
    routerIps: [],
    mtu: 0,
    devices: [],
    reconciled: {reaped: [], kept: 0, suspect: [], errors: []},
  }
  return {
    undo: r.undo,
    steps: [
      {
        title: 'Resolve pod CIDR and router IP',
        run: async () => {
          await resolvePodCidrs(r)
          resolveRouterIps(r)
          checkTunnelRouting(r)
          refuseSilentChange(r)
          await resolveMasquerade(r)
        },
      },
      {title: 'Check the uplink device', run: () => checkUplink(r)},
      {title: "Check the pod CIDR against the node's addresses and routes", run: () => checkCidrConflicts(r)},
      {title: `Prepare the bpffs folder ${r.bpffsRoot}`, run: () => prepareBpffs(r)},
      {
        title: `Create ${HOST_DEVICE} <-> ${NET_DEVICE}`,
        run: async () => void r.actions.push(...(await setupHostDevices(runner, r.mtu, r.undo))),
      },
      {
        title: `Create ${TUNNEL_DEVICE} (VXLAN, collect metadata, port 8472)`,
        skip: () => (r.tunnel === 'vxlan' || r.previous?.tunnel === 'vxlan' ? false : 'tunnel mode off'),
        run: () => setupTunnel(r),
      },
      {
        title: 'Assign the router IP and route the pod CIDR',
        run: async () => {
          const prev = r.previous && opts.force ? {podCidrs: r.previous.podCidrs, routerIps: r.previous.routerIps} : undefined
          r.actions.push(...(await setupRouterAddressing(runner, {podCidrs: r.podCidrs, routerIps: r.routerIps, previous: prev}, r.undo)))
        },
      },
      {
        title: 'Set forwarding and rp_filter sysctls',
        run: async () => {
          const written = await setupHostSysctls(runner, r.podCidrs)
          if (written.length > 0) r.actions.push(`sysctl ${written.join(' ')}`)
        },
      },
      {title: 'Reserve the router IP in host-scope IPAM', run: () => reserveRouter(r)},
      {title: 'Configure masquerade', skip: () => (r.masquerade || r.routing === 'bpf' ? false : 'masquerade not configured'), run: () => setupMasquerade(r)},
      {
        title: 'Compile and load the host BPF programs',
        skip: () => (r.routing === 'bpf' ? false : 'routing mode host-routes'),
        run: () => loadDatapath(r),
      },
      {title: 'Reap endpoints whose netns and veth are gone (a reboot)', run: () => reconcile(r, opts.signal)},
      {title: 'Write node.json', run: () => writeContext(r)},
    ],
    result: () => ({
      changed: r.actions.length > 0,
      node: contextOf(r),
      devices: r.devices,
      actions: r.actions,
      warnings: r.warnings,
      reconciled: r.reconciled,
    }),
  }
}

/** Plan and run node init (plainly, or with a progress observer in `flow`). */
export async function initNode(runner: Runner, stateDir: string, opts: NodeInitOptions, flow: FlowOptions = {}): Promise<NodeInitResult> {
  return runPlan(await planNodeInit(runner, stateDir, {...opts, ...(flow.signal && !opts.signal ? {signal: flow.signal} : {})}), `initialise node ${opts.name}`, flow)
}
