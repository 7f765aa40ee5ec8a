/**
 * `pn node init`: what cilium-agent does at start. Takes the node's pod CIDR, creates the
 * pn_host ↔ pn_net pair (cilium_host/cilium_net) only if missing, puts the router IP on pn_host
 * as /32, routes the pod CIDR via it, sets Cilium's sysctls, prepares the bpffs folder,
 * reserves the router IP in host-scope IPAM, (bpf mode) compiles and loads the host programs
 * and writes node.json. Idempotent: a re-run with the same inputs changes nothing.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {firstUsable, cidrContains, hostPrefix, normalizeIp, parseCidr} from '../datapath/addr.js'
import {compileObjects, loadHostPrograms, unloadHostPrograms} from '../datapath/bpf/index.js'
import {deleteLinkByName, getLink, ipBatch, isVethPairOf, parseJson, randomMac, type LinkInfo} from '../datapath/link.js'
import {UndoStack, type Plan} from '../flow/plan.js'
import {devSysctl, readSysctls, writeSysctls} from '../datapath/sysctl.js'
import {reserveRouterIps, resetIpam, ipamFile} from '../ipam/host.js'
import {fileExists} from '../state/files.js'
import {defaultBpffsRoot, ensureBpffs} from '../datapath/bpffs.js'
import {HOST_DEVICE, NET_DEVICE, readNodeContext, writeNodeContext, type NodeContext, type RoutingMode} from './context.js'
import {allocatePodCidrs, releasePodCidrs, resolvePoolPath} from './pool-link.js'
import {isEtcdLocation} from '../ipam/pool.js'

export interface NodeInitOptions {
  name: string
  uplink: string
  podCidrs?: string[]
  /** Cluster pool file; used when podCidrs is not given. */
  pool?: string
  mtu?: number
  routerIps?: string[]
  routing?: RoutingMode
  bpffsRoot?: string
  /** Accept a change of pod CIDR / router IP / name against an existing node.json. */
  force?: boolean
}

export interface DeviceState {
  name: string
  ifindex: number
  mac: string
  mtu: number
}

export interface NodeInitResult {
  changed: boolean
  node: NodeContext
  devices: DeviceState[]
  /** What this run changed (empty on an idempotent re-run). */
  actions: string[]
  warnings: string[]
}

/** Every sysctl Cilium sets for the host devices, plus global forwarding; ip_forward first (it resets per-device forwarding). */
export function nodeSysctls(podCidrs: string[]): Record<string, string> {
  const out: Record<string, string> = {'net.ipv4.ip_forward': '1', 'net.ipv4.conf.all.rp_filter': '0'}
  const v6 = podCidrs.some((c) => parseCidr(c).family === 6)
  for (const dev of [HOST_DEVICE, NET_DEVICE]) {
    out[devSysctl('ipv4', dev, 'forwarding')] = '1'
    out[devSysctl('ipv4', dev, 'rp_filter')] = '0'
    out[devSysctl('ipv4', dev, 'accept_local')] = '1'
    out[devSysctl('ipv4', dev, 'send_redirects')] = '0'
    if (v6) out[devSysctl('ipv6', dev, 'forwarding')] = '1'
  }
  return out
}

/** `ip route` lines for the pod CIDRs: v4 via the router IP, v6 without `via` (a gateway cannot be a local v6 address). */
export function podCidrRoutes(podCidrs: string[], routerIps: string[]): string[] {
  return podCidrs.map((c, i) =>
    parseCidr(c).family === 4
      ? `${c} via ${routerIps[i]} dev ${HOST_DEVICE} src ${routerIps[i]}`
      : `${c} dev ${HOST_DEVICE} src ${routerIps[i]}`,
  )
}

interface AddrInfo {
  addr_info?: {local: string; prefixlen: number; family: string; scope?: string}[]
}
interface RouteInfo {
  dst: string
  gateway?: string
  dev?: string
  prefsrc?: string
}

/** Router addresses currently on pn_host. */
export async function hostAddresses(runner: Runner): Promise<string[]> {
  const r = await runner.run('ip', ['-j', 'addr', 'show', 'dev', HOST_DEVICE], {readOnly: true, allowFailure: true})
  if (r.exitCode !== 0) return []
  const info = parseJson<AddrInfo[]>(r.stdout, 'show addresses')
  return (info[0]?.addr_info ?? [])
    .filter((a) => !(a.family === 'inet6' && a.local.startsWith('fe80')))
    .map((a) => `${normalizeIp(a.local)}/${a.prefixlen}`)
}

/** True when the main table routes `cidr` exactly as pn wants. */
export async function podCidrRouteOk(runner: Runner, cidr: string, routerIp: string): Promise<boolean> {
  const fam = parseCidr(cidr).family
  const r = await runner.run('ip', [`-${fam}`, '-j', 'route', 'show', 'exact', cidr], {readOnly: true, allowFailure: true})
  if (r.exitCode !== 0) return false
  const routes = parseJson<RouteInfo[]>(r.stdout, 'show routes')
  return routes.some(
    (rt) => rt.dev === HOST_DEVICE && rt.prefsrc !== undefined && normalizeIp(rt.prefsrc) === routerIp &&
      (fam === 6 || (rt.gateway !== undefined && normalizeIp(rt.gateway) === routerIp)),
  )
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** Build the node-init plan; nothing runs until its steps do. */
export async function planNodeInit(runner: Runner, stateDir: string, opts: NodeInitOptions): Promise<Plan<NodeInitResult>> {
  const undo = new UndoStack()
  const actions: string[] = []
  const warnings: string[] = []
  const previous = await readNodeContext(stateDir)
  const routing: RoutingMode = opts.routing ?? previous?.routing ?? 'bpf'
  let podCidrs: string[] = []
  let routerIps: string[] = []
  let pool: string | undefined
  let mtu = 0
  let devices: DeviceState[] = []
  let node: NodeContext | undefined
  const bpffsRoot = opts.bpffsRoot ?? previous?.bpffsRoot ?? defaultBpffsRoot(opts.name)

  const steps: Plan<NodeInitResult>['steps'] = [
    {
      title: 'Resolve pod CIDR and router IP',
      run: async () => {
        if (opts.podCidrs && opts.podCidrs.length > 0) {
          podCidrs = opts.podCidrs.map((c) => parseCidr(c).cidr)
        } else if (previous && !opts.pool && !process.env.PN_POOL) {
          podCidrs = previous.podCidrs
          pool = previous.pool
        } else {
          pool = resolvePoolPath(stateDir, opts.pool)
          // An etcd:// pool has no file to look for; the pool module says PN_POOL_NOT_FOUND itself.
          if (!isEtcdLocation(pool) && !(await fileExists(pool))) {
            throw new PnError('PN_POOL_NOT_FOUND', `allocate pod cidr for ${opts.name}: no cluster pool at ${pool}`, {
              hint: 'pass --pod-cidr CIDR, or create a pool with `pn pool init --cidr CIDR --mask-size N`',
            })
          }
          const got = await allocatePodCidrs(pool, opts.name)
          podCidrs = got.cidrs.map((c) => parseCidr(c).cidr)
          if (got.changed) {
            actions.push(`allocated ${podCidrs.join(', ')} from ${pool}`)
            const file = pool
            undo.push(`release pod cidr of ${opts.name}`, () => releasePodCidrs(file, opts.name))
          }
        }
        podCidrs.sort((a, b) => parseCidr(a).family - parseCidr(b).family)
        const families = podCidrs.map((c) => parseCidr(c).family)
        if (new Set(families).size !== families.length) {
          throw new PnError('PN_INVALID_CIDR', `use pod cidrs ${podCidrs.join(', ')}: at most one per family`, {
            hint: 'pass one IPv4 and/or one IPv6 --pod-cidr',
          })
        }
        routerIps = podCidrs.map((c) => {
          const fam = parseCidr(c).family
          const given = opts.routerIps?.find((r) => (r.includes(':') ? 6 : 4) === fam)
          const prev = previous?.podCidrs.includes(c) ? previous.routerIps[previous.podCidrs.indexOf(c)] : undefined
          const ip = normalizeIp(given ?? prev ?? firstUsable(c))
          if (!cidrContains(c, ip)) {
            throw new PnError('PN_INVALID_IP', `use router ip ${ip}: outside pod cidr ${c}`, {hint: 'pick an address inside the pod CIDR'})
          }
          return ip
        })
        if (previous && !opts.force) {
          const diffs: string[] = []
          if (previous.name !== opts.name) diffs.push(`name ${previous.name} → ${opts.name}`)
          if (!sameList(previous.podCidrs, podCidrs)) diffs.push(`pod cidr ${previous.podCidrs.join(',')} → ${podCidrs.join(',')}`)
          if (!sameList(previous.routerIps, routerIps)) diffs.push(`router ip ${previous.routerIps.join(',')} → ${routerIps.join(',')}`)
          if (previous.uplink !== opts.uplink) diffs.push(`uplink ${previous.uplink} → ${opts.uplink}`)
          if (diffs.length > 0) {
            throw new PnError('PN_NODE_CONFLICT', `initialise node ${opts.name}: already initialised differently (${diffs.join('; ')})`, {
              hint: 'run `pn node reset` first, or rerun with --force to reconfigure (existing pods keep their old addresses)',
              details: {previous: {name: previous.name, podCidrs: previous.podCidrs, routerIps: previous.routerIps, uplink: previous.uplink}},
            })
          }
        }
      },
    },
    {
      title: 'Check the uplink device',
      run: async () => {
        const up = await getLink(runner, opts.uplink)
        if (!up) {
          throw new PnError('PN_LINK_NOT_FOUND', `initialise node ${opts.name}: uplink ${opts.uplink} does not exist`, {
            hint: 'pass the node\'s uplink with --device (see `ip link`)',
          })
        }
        mtu = opts.mtu ?? previous?.mtu ?? up.mtu
      },
    },
    {
      title: `Prepare the bpffs folder ${bpffsRoot}`,
      run: async () => {
        const r = await ensureBpffs(runner, bpffsRoot)
        warnings.push(...r.warnings)
        if (r.mounted) actions.push(`mounted bpffs at ${path.dirname(bpffsRoot)}`)
        if (r.created) {
          actions.push(`created ${bpffsRoot}`)
          undo.push(`remove ${bpffsRoot}`, () => fs.rm(bpffsRoot, {recursive: true, force: true}))
        }
      },
    },
    {
      title: `Create ${HOST_DEVICE} <-> ${NET_DEVICE}`,
      run: async () => {
        const [host, net] = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE)])
        const pairOk = isVethPairOf(host, net)
        const lines: string[] = []
        if (!host && !net) {
          // Only when missing: recreating would change MACs and ifindexes under loaded programs (Cilium PR #4214).
          lines.push(
            `link add name ${HOST_DEVICE} address ${randomMac()} mtu ${mtu} txqueuelen 1000 type veth ` +
              `peer name ${NET_DEVICE} address ${randomMac()} mtu ${mtu}`,
          )
          undo.push(`delete ${HOST_DEVICE}`, () => deleteLinkByName(runner, HOST_DEVICE))
          actions.push(`created ${HOST_DEVICE} <-> ${NET_DEVICE}`)
        } else if (!pairOk) {
          throw new PnError('PN_NODE_CONFLICT', `create ${HOST_DEVICE}/${NET_DEVICE}: a device with that name exists but is not pn's veth pair`, {
            hint: 'run `pn node reset` (removes pn_host/pn_net) and init again',
          })
        } else {
          for (const d of [host, net] as LinkInfo[]) {
            if (d.mtu !== mtu) {
              lines.push(`link set dev ${d.ifname} mtu ${mtu}`)
              actions.push(`set ${d.ifname} mtu ${mtu}`)
            }
          }
        }
        for (const [name, d] of [[HOST_DEVICE, host], [NET_DEVICE, net]] as const) {
          if (!d || !(d.flags ?? []).includes('UP')) lines.push(`link set dev ${name} up`)
        }
        if (lines.length === 0) return
        if (host && net && lines.some((l) => l.endsWith(' up'))) actions.push(`set ${HOST_DEVICE}/${NET_DEVICE} up`)
        await ipBatch(runner, lines)
      },
    },
    {
      title: 'Assign the router IP and route the pod CIDR',
      run: async () => {
        const have = await hostAddresses(runner)
        const wanted = routerIps.map((r) => `${r}/${hostPrefix(r)}`)
        const lines: string[] = []
        if (previous && opts.force) {
          // Reconfiguring: drop the previous router addresses/routes that are no longer wanted.
          previous.podCidrs.forEach((c, i) => {
            if (!podCidrs.includes(c)) lines.push(`route del ${c} dev ${HOST_DEVICE}`)
            const old = `${previous.routerIps[i]}/${hostPrefix(previous.routerIps[i])}`
            if (!wanted.includes(old) && have.includes(old)) lines.push(`addr del ${old} dev ${HOST_DEVICE}`)
          })
        }
        for (const a of wanted) {
          if (!have.includes(a)) {
            lines.push(`addr replace ${a} dev ${HOST_DEVICE} scope link${a.includes(':') ? ' nodad' : ''}`)
            actions.push(`added ${a} to ${HOST_DEVICE}`)
          }
        }
        const routes = podCidrRoutes(podCidrs, routerIps)
        for (let i = 0; i < podCidrs.length; i++) {
          if (!(await podCidrRouteOk(runner, podCidrs[i], routerIps[i])) || lines.length > 0) {
            lines.push(`route replace ${routes[i]}`)
            actions.push(`route ${routes[i]}`)
            const cidr = podCidrs[i]
            undo.push(`delete route ${cidr}`, () => runner.run('ip', ['route', 'del', cidr, 'dev', HOST_DEVICE], {allowFailure: true}))
          }
        }
        await ipBatch(runner, lines)
      },
    },
    {
      title: 'Set forwarding and rp_filter sysctls',
      run: async () => {
        const wanted = nodeSysctls(podCidrs)
        const current = await readSysctls(runner, Object.keys(wanted))
        const written = await writeSysctls(runner, wanted, {current})
        if (written.length > 0) actions.push(`sysctl ${written.map((k) => `${k}=${wanted[k]}`).join(' ')}`)
      },
    },
    {
      title: 'Reserve the router IP in host-scope IPAM',
      run: async () => {
        const existed = await fileExists(ipamFile(stateDir))
        if (previous && opts.force && !sameList(previous.podCidrs, podCidrs)) {
          await resetIpam(stateDir)
          warnings.push('pod CIDR changed: host-scope IPAM state was reset; existing pods keep addresses from the old CIDR')
        }
        const r = await reserveRouterIps({stateDir, podCidrs, routerIps})
        warnings.push(...(r.warnings ?? []))
        if (r.changed) {
          actions.push(`reserved router ip ${routerIps.join(', ')}`)
          if (!existed) undo.push('reset ipam', () => resetIpam(stateDir))
        }
      },
    },
    {
      title: 'Compile and load the host BPF programs',
      skip: () => (routing === 'bpf' ? false : 'routing mode host-routes'),
      run: async () => {
        const ctx = context()
        const compiled = await compileObjects(runner, {cacheDir: path.join(stateDir, 'bpf')})
        if (!compiled.cacheHit) actions.push('compiled bpf objects')
        const loaded = await loadHostPrograms(runner, ctx, stateDir)
        if (loaded.changed) {
          actions.push(`loaded host programs (${loaded.attachments.map((a) => `${a.device}/${a.direction}`).join(', ')})`)
          undo.push('unload host programs', () => unloadHostPrograms(runner, ctx, stateDir))
        }
      },
    },
    {
      title: 'Write node.json',
      run: async () => {
        const ctx = context()
        const devs = await Promise.all([getLink(runner, HOST_DEVICE), getLink(runner, NET_DEVICE)])
        devices = devs.filter((d): d is LinkInfo => !!d).map((d) => ({name: d.ifname, ifindex: d.ifindex, mac: d.address, mtu: d.mtu}))
        const same = previous && JSON.stringify({...previous, createdAt: ''}) === JSON.stringify({...ctx, createdAt: ''})
        if (!same) {
          await writeNodeContext(stateDir, ctx)
          actions.push(`wrote ${path.join(stateDir, 'node.json')}`)
        }
        node = ctx
      },
    },
  ]

  function context(): NodeContext {
    return {
      version: 1,
      name: opts.name,
      uplink: opts.uplink,
      podCidrs,
      routerIps,
      mtu,
      routeMtu: mtu,
      bpffsRoot,
      routing,
      ...(pool ? {pool} : {}),
      createdAt: previous?.createdAt ?? new Date().toISOString(),
    }
  }

  return {
    steps,
    result: () => ({changed: actions.length > 0, node: node ?? context(), devices, actions, warnings}),
    rollback: () => undo.unwind(),
  }
}
