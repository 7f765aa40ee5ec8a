/**
 * `pn node reset`: remove everything pn made on this node — endpoints' veths and records,
 * BPF attachments and pins under the node's bpffs root, pn_host/pn_net (their addresses and
 * the pod CIDR route go with them), host-scope IPAM state, node.json — and release the pod
 * CIDR to the pool it came from, after stopping the node's bird (pn bgp) so the routers withdraw
 * it. Nothing else (the uplink, other links, sysctls stay). Idempotent.
 */
import {promises as fs} from 'node:fs'
import type {Runner} from '../exec/runner.js'
import {detachEndpoint, unloadHostPrograms} from '../datapath/bpf/index.js'
import {deleteLinkByName} from '../datapath/link.js'
import type {Plan} from '../flow/plan.js'
import {disconnectEndpoint} from '../endpoint/connect.js'
import {endpointsDir, listEndpoints} from '../endpoint/store.js'
import {resetIpam} from '../ipam/host.js'
import {removeBpffsRoot} from '../datapath/bpffs.js'
import {HOST_DEVICE, NET_DEVICE, nodeFile, readNodeContext, type NodeContext} from './context.js'
import {releasePodCidrs} from './pool-link.js'
// The one upward import allowed into src/routing: reset stops the node's BGP speaker.
import {stopBgp} from '../routing/bgp.js'

export interface NodeResetResult {
  changed: boolean
  removed: string[]
  warnings: string[]
}

/** Reset runs forward (no undo): each step is idempotent, failures of optional parts become warnings. */
export async function planNodeReset(runner: Runner, stateDir: string): Promise<Plan<NodeResetResult>> {
  const removed: string[] = []
  const warnings: string[] = []
  let node: NodeContext | undefined
  const soft = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn()
    } catch (err) {
      warnings.push(`${what}: ${(err as Error).message}`)
    }
  }
  const steps: Plan<NodeResetResult>['steps'] = [
    {
      title: 'Read node.json',
      run: async () => {
        // A corrupt node.json must not block cleanup: reset is the documented way out of it.
        node = await readNodeContext(stateDir).catch((err) => {
          warnings.push(`node.json unreadable, resetting by well-known names: ${(err as Error).message}`)
          return undefined
        })
      },
    },
    {
      // First, so the routers withdraw the pod CIDR before its pods and devices go away.
      title: 'Stop BGP (the routers withdraw the pod CIDR)',
      run: async () => {
        await soft('stop bgp', async () => {
          const r = await stopBgp(stateDir)
          if (r.stopped !== undefined) removed.push(`bird (pid ${r.stopped})`)
          else if (r.changed) removed.push(...r.removed)
        })
      },
    },
    {
      title: 'Delete endpoints (veths, records)',
      run: async () => {
        const eps = await listEndpoints(stateDir).catch(() => [])
        for (const ep of eps) {
          if (node?.routing === 'bpf' && ep.bpfAttached) await soft(`detach ${ep.id}`, () => detachEndpoint(runner, node!, ep))
          const r = await disconnectEndpoint(runner, stateDir, {containerId: ep.containerId, ifname: ep.ifname})
          if (r.changed) removed.push(`endpoint ${ep.id} (${ep.hostIfname})`)
        }
        await fs.rm(endpointsDir(stateDir), {recursive: true, force: true})
      },
    },
    {
      title: 'Unload BPF programs and remove pins',
      run: async () => {
        if (node?.routing === 'bpf') {
          const n = node
          await soft('unload host programs', async () => {
            const r = await unloadHostPrograms(runner, n, stateDir)
            if (r.changed) removed.push('host bpf programs')
          })
        }
        if (node && (await removeBpffsRoot(node.bpffsRoot))) removed.push(node.bpffsRoot)
      },
    },
    {
      title: `Delete ${HOST_DEVICE} <-> ${NET_DEVICE}`,
      run: async () => {
        if (await deleteLinkByName(runner, HOST_DEVICE)) removed.push(`${HOST_DEVICE} <-> ${NET_DEVICE}`)
        if (await deleteLinkByName(runner, NET_DEVICE)) removed.push(NET_DEVICE)
      },
    },
    {
      title: 'Forget IPAM state and release the pod CIDR',
      run: async () => {
        const r = await resetIpam(stateDir)
        if (r.removed) removed.push(r.file)
        if (node?.pool) {
          const {pool, name} = node
          await soft(`release pod cidr of ${name}`, async () => {
            await releasePodCidrs(pool, name)
            removed.push(`pod cidr ${node!.podCidrs.join(', ')} (back to ${pool})`)
          })
        }
      },
    },
    {
      title: 'Remove node.json',
      run: async () => {
        try {
          await fs.unlink(nodeFile(stateDir))
          removed.push(nodeFile(stateDir))
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
        }
      },
    },
  ]
  return {
    steps,
    result: () => ({changed: removed.length > 0, removed, warnings}),
    rollback: async () => [],
  }
}
