/**
 * Find what attachEndpoint needs for `pn bpf load --container-id`: the endpoint record when pn
 * made the veth, else the kernel (lxc by its hashed name, pod side read inside --netns).
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {getEndpoint} from './store.js'
import {getLink} from '../datapath/link.js'
import {hostIfnameFor} from '../datapath/veth.js'
import type {DatapathEndpoint} from '../datapath/bpf/index.js'
import {kernelFor} from '../kernel/tools.js'

export async function resolveEndpoint(
  runner: Runner,
  stateDir: string,
  opts: {containerId: string; ifname: string; netns?: string},
): Promise<{endpoint: DatapathEndpoint; source: 'record' | 'kernel'}> {
  const rec = await getEndpoint(stateDir, opts.containerId, opts.ifname)
  if (rec) {
    const {containerId, ifname, endpointId, ips, hostIfname, hostIfindex, hostMac, podMac} = rec
    return {endpoint: {containerId, ifname, endpointId, ips, hostIfname, hostIfindex, hostMac, podMac}, source: 'record'}
  }
  const hostIfname = hostIfnameFor(opts.containerId, opts.ifname)
  const host = await getLink(runner, hostIfname)
  if (!host) {
    throw new PnError('PN_LINK_NOT_FOUND', `find endpoint ${opts.containerId}:${opts.ifname}: no endpoint record and no device ${hostIfname}`, {
      hint: 'create the pod interface first: `pn veth create --container-id … --netns … --ip …`',
    })
  }
  if (!opts.netns) {
    throw new PnError('PN_ENDPOINT_NOT_FOUND', `find endpoint ${opts.containerId}:${opts.ifname}: no endpoint record`, {
      hint: `pass --netns so pn can read the pod's MAC and IPs from ${opts.ifname} inside it`,
    })
  }
  // The pod side, read inside its netns: its MAC (the link) and its global addresses.
  const [got, addrs] = await kernelFor(runner).apply([{kind: 'link.get', name: opts.ifname}, {kind: 'addr.list', dev: opts.ifname}], {netns: opts.netns})
  const pod = got.kind === 'link.get' ? got.link : undefined
  if (!pod) {
    throw new PnError('PN_LINK_NOT_FOUND', `find endpoint ${opts.containerId}:${opts.ifname}: no device ${opts.ifname} in ${opts.netns}`, {
      hint: 'pass the netns the pod interface is in (--netns)',
    })
  }
  const ips = (addrs.kind === 'addr.list' ? addrs.links : []).flatMap((l) => l.addr_info ?? []).filter((a) => a.scope === 'global' && a.local).map((a) => a.local!)
  return {
    endpoint: {containerId: opts.containerId, ifname: opts.ifname, endpointId: 0, ips, hostIfname, hostIfindex: host.ifindex, hostMac: host.address, podMac: pod.address},
    source: 'kernel',
  }
}
