/**
 * Find what attachEndpoint needs for `pn bpf load --container-id`: the endpoint record when pn
 * made the veth, else the kernel (lxc by its hashed name, pod side read inside --netns).
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {getEndpoint} from './store.js'
import {getLink, parseJson} from '../datapath/link.js'
import {hostIfnameFor} from '../datapath/veth.js'
import type {DatapathEndpoint} from '../datapath/bpf/index.js'

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
  const r = await runner.run('ip', ['-j', 'addr', 'show', 'dev', opts.ifname], {netns: opts.netns, readOnly: true})
  const [pod] = parseJson<{address: string; addr_info?: {local: string; scope: string}[]}[]>(r.stdout, `show ${opts.ifname} in ${opts.netns}`)
  const ips = (pod?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => a.local)
  return {
    endpoint: {containerId: opts.containerId, ifname: opts.ifname, endpointId: 0, ips, hostIfname, hostIfindex: host.ifindex, hostMac: host.address, podMac: pod.address},
    source: 'kernel',
  }
}
