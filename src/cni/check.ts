/**
 * CHECK: compare the kernel and pn's state with the prevResult the runtime cached from ADD —
 * the pod interface (name, MAC, every address), its routes, the host veth, the IP reservation,
 * the endpoint record and (routing bpf) the attached program and the map entries of every address,
 * IPv4 and IPv6 (pn_endpoints → this veth, pn_lxc listing them). Every problem found is listed in
 * one PN_CHECK_FAILED error, so the runtime's log says all that is wrong at once.
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {dumpMap} from '../datapath/bpf/index.js'
import {getLink} from '../datapath/link.js'
import {hostIfnameFor} from '../datapath/veth.js'
import {applyOne} from '../kernel/backend.js'
import {kernelFor} from '../kernel/tools.js'
import {getEndpoint} from '../endpoint/store.js'
import {listIps} from '../ipam/host.js'
import {requireNodeContext} from '../node/context.js'
import {ipamOf} from '../node/ipam.js'
import {attachmentId} from './env.js'
import {withAttachmentLock} from './lock.js'
import {parsePrevResult} from './result.js'
import type {CniRequest} from './request.js'

interface RouteJson {
  dst: string
  gateway?: string
  dev?: string
}

export interface CheckResult {
  ok: true
  checked: string[]
}

function sameDst(want: string, got: string): boolean {
  const norm = (d: string) => (d === 'default' || d === '0.0.0.0/0' ? 'default4' : d === '::/0' ? 'default6' : d.replace(/\/(32|128)$/, ''))
  if (want === '::/0' && got === 'default') return true
  return norm(want) === norm(got)
}

async function routesIn(runner: Runner, netns: string, ifname: string, family: 4 | 6): Promise<RouteJson[]> {
  const {routes} = await applyOne(kernelFor(runner), {kind: 'route.list', family}, {netns})
  return routes.filter((r) => r.dev === ifname)
}

/** True when a bpf classifier is attached to the device's tc ingress. */
async function hasIngressBpf(runner: Runner, dev: string): Promise<boolean> {
  const {filters} = await applyOne(kernelFor(runner), {kind: 'tc.list', dev, direction: 'ingress'}).catch(() => ({filters: []}))
  return filters.some((f) => f.kind === 'bpf')
}

/** The map entries ADD wrote for each address: pn_endpoints delivers it to this veth, pn_lxc lists it. */
async function bpfEntryProblems(runner: Runner, bpffsRoot: string, ifindex: number, ips: string[]): Promise<string[]> {
  const out: string[] = []
  const [eps, lxcs] = await Promise.all([dumpMap(runner, {bpffsRoot}, 'pn_endpoints'), dumpMap(runner, {bpffsRoot}, 'pn_lxc')]).catch(() => [[], []])
  const lxc = lxcs.find((e) => e.key.ifindex === ifindex)?.value
  if (!lxc) out.push(`pn_lxc has no entry for ifindex ${ifindex}`)
  for (const ip of ips) {
    const ep = eps.find((e) => e.key.ip === ip)
    if (!ep) out.push(`pn_endpoints has no entry for ${ip}`)
    else if (ep.value.ifindex !== ifindex) out.push(`pn_endpoints sends ${ip} to ifindex ${ep.value.ifindex}, not ${ifindex}`)
    if (lxc && lxc.ip4 !== ip && lxc.ip6 !== ip) out.push(`pn_lxc entry of ifindex ${ifindex} does not list ${ip}`)
  }
  return out
}

export async function cniCheck(req: CniRequest): Promise<CheckResult> {
  return withAttachmentLock(req.stateDir, req.containerId, req.ifname, `check attachment ${attachmentId(req.containerId, req.ifname)}`, () => check(req), req.lock)
}

async function check(req: CniRequest): Promise<CheckResult> {
  const id = attachmentId(req.containerId, req.ifname)
  if (!req.conf.prevResult) {
    throw new PnError('PN_CNI_INVALID_CONFIG', `check attachment ${id}: required prevResult missing`, {
      hint: 'CHECK compares against the ADD result; the runtime must pass it as prevResult',
    })
  }
  const prev = parsePrevResult(req.conf.prevResult)
  const node = await requireNodeContext(req.stateDir)
  const netns = req.netns!
  const problems: string[] = []
  const checked: string[] = []
  const idx = prev.interfaces.findIndex((i) => i.name === req.ifname && (i.sandbox === undefined || i.sandbox === netns))
  if (idx < 0) {
    throw new PnError('PN_CHECK_FAILED', `check attachment ${id}: prevResult lists no interface ${req.ifname} in ${netns}`, {
      hint: 'the prevResult does not belong to this attachment',
    })
  }
  const want = prev.interfaces[idx]
  const wantIps = prev.ips.filter((i) => i.interface === undefined || i.interface === idx)

  const pod = await getLink(req.runner, req.ifname, netns)
  if (!pod) {
    problems.push(`interface ${req.ifname} is missing in ${netns}`)
  } else {
    checked.push('interface')
    if (pod.linkinfo?.info_kind && pod.linkinfo.info_kind !== 'veth') problems.push(`interface ${req.ifname} is a ${pod.linkinfo.info_kind}, not a veth`)
    if (want.mac && pod.address.toLowerCase() !== want.mac) problems.push(`interface ${req.ifname} has MAC ${pod.address}, prevResult says ${want.mac}`)
    const {links} = await applyOne(kernelFor(req.runner), {kind: 'addr.list', dev: req.ifname}, {netns})
    const addrs = links.flatMap((x) => x.addr_info ?? [])
    for (const ip of wantIps) {
      if (!addrs.some((x) => x.local === ip.ip && x.prefixlen === ip.prefix)) problems.push(`address ${ip.address} is missing on ${req.ifname}`)
    }
    checked.push('addresses')
    const families = new Set(prev.routes.map((r) => (r.dst.includes(':') ? 6 : 4) as 4 | 6))
    const routes: RouteJson[] = []
    for (const f of families) routes.push(...(await routesIn(req.runner, netns, req.ifname, f)))
    for (const r of prev.routes) {
      // Later chained plugins may add routes; only what pn listed must be there (gw when given).
      if (!routes.some((x) => sameDst(r.dst, x.dst) && (!r.gw || x.gateway === r.gw))) {
        problems.push(`route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} is missing in ${netns}`)
      }
    }
    checked.push('routes')
  }

  const hostName = hostIfnameFor(req.containerId, req.ifname)
  const host = await getLink(req.runner, hostName)
  if (!host) problems.push(`host veth ${hostName} is missing`)
  else if (pod && host.link_index !== pod.ifindex) problems.push(`host veth ${hostName} is not the peer of ${req.ifname}`)
  checked.push('host veth')

  const held = (await listIps(ipamOf(node, req.stateDir, req.lock))).filter((a) => a.owner === id)
  for (const ip of wantIps) {
    const a = held.find((h) => h.ip === ip.ip)
    if (!a) problems.push(`IP ${ip.ip} is not reserved for ${id}`)
    else if (a.state !== 'confirmed') problems.push(`IP ${ip.ip} reservation is ${a.state}, not confirmed`)
  }
  checked.push('ipam')

  const ep = await getEndpoint(req.stateDir, req.containerId, req.ifname)
  if (!ep && !host && held.length === 0) {
    // Spec code 3: pn knows nothing of this attachment, so there is nothing for the runtime to clean up.
    throw new PnError('PN_CNI_UNKNOWN_CONTAINER', `check attachment ${id}: unknown container (no endpoint, veth or IP)`, {
      hint: 'ADD it first, or check CNI_CONTAINERID/CNI_IFNAME and the netconf "stateDir"',
    })
  }
  if (!ep) problems.push(`endpoint record ${id} is missing`)
  else {
    for (const ip of wantIps) if (!ep.ips.includes(ip.ip)) problems.push(`endpoint ${id} does not list ${ip.ip}`)
    if (host && ep.hostIfindex !== host.ifindex) problems.push(`endpoint ${id} records ifindex ${ep.hostIfindex}, ${hostName} has ${host.ifindex}`)
  }
  checked.push('endpoint')

  if (node.routing === 'bpf') {
    if (host && !(await hasIngressBpf(req.runner, hostName))) problems.push(`no BPF program is attached to ${hostName} ingress`)
    if (host) problems.push(...(await bpfEntryProblems(req.runner, node.bpffsRoot, host.ifindex, wantIps.map((i) => i.ip))))
    checked.push('bpf')
  }

  if (problems.length > 0) {
    throw new PnError('PN_CHECK_FAILED', `check attachment ${id}: ${problems.join('; ')}`, {
      hint: `recreate the attachment (DEL then ADD), or inspect with \`pn endpoint list\` and \`ip netns exec … ip addr\``,
      details: {problems},
    })
  }
  req.log(`check ${id}: ok (${checked.join(', ')})`)
  return {ok: true, checked}
}
