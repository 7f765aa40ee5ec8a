/**
 * `pn node reset`: remove everything pn made on this node — endpoints' veths and records (and
 * pod devices pn made that no record names), BPF attachments and pins under the node's bpffs
 * root, pn_host/pn_net (their addresses and the pod CIDR route go with them), pn_vxlan, host-scope IPAM
 * state, node.json, the lock files of attachments — and release the pod CIDR to the pool it
 * came from, after stopping the node's bird (pn bgp) so the routers withdraw it first. Nothing else (the uplink, other links, sysctls stay). It runs under the node's
 * exclusive lock (src/node/lock.ts): attachments in flight finish first, new ones are refused
 * while it runs. Idempotent: a second reset finds nothing and says so.
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import type {Runner} from '../exec/runner.js'
import {unloadHostPrograms} from '../datapath/bpf/index.js'
import {removeBpffsRoot} from '../datapath/bpffs.js'
import {HOST_DEVICE, NET_DEVICE} from '../datapath/devices.js'
import {deleteHostDevices} from '../datapath/host.js'
import {deleteLinkByName} from '../datapath/link.js'
import {TUNNEL_DEVICE} from '../datapath/devices.js'
import {deleteTunnelDevice} from '../datapath/tunnel.js'
import {IPTABLES_CHAIN, removeIptablesMasquerade} from '../datapath/masquerade.js'
import {pnPodDevices} from '../datapath/sweep.js'
import {endpointsDir, listEndpoints} from '../endpoint/store.js'
import {teardownEndpoint} from '../endpoint/teardown.js'
import {runPlan, UndoStack, type Plan} from '../flow/plan.js'
import {ipamFile, resetIpam} from '../ipam/host.js'
import {openPoolStore, releasePodCidrs} from '../ipam/pool.js'
import type {EtcdTlsFiles} from '../state/etcd-store.js'
import type {LockOptions} from '../state/files.js'
import {nodeFile, readNodeContext, type NodeContext} from './context.js'
import {peersFile} from './peer.js'
import {withAttachmentFileLock, withNodeExclusive} from './lock.js'

export interface NodeResetResult {
  changed: boolean
  removed: string[]
  warnings: string[]
}

export interface NodeResetOptions {
  lock?: LockOptions
  /** Steps of higher layers run first (e.g. stop BGP); each returns what it removed. */
  before?: {title: string; run: () => Promise<string[]>}[]
  /** TLS files for an etcds:// pool the pod CIDR goes back to (--etcd-ca/--etcd-cert/--etcd-key). */
  etcdTls?: EtcdTlsFiles
}

/** The folder of per-attachment lock files (src/node/lock.ts). */
export const attachmentLocksDir = (stateDir: string) => path.join(stateDir, 'cni')

/** Reset runs forward (nothing to undo): each step is idempotent, failures of optional parts become warnings. */
export function planNodeReset(runner: Runner, stateDir: string, opts: NodeResetOptions = {}): Plan<NodeResetResult> {
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
  return {
    undo: new UndoStack(),
    steps: [
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
      // Higher layers' parts of the node first (BGP: the routers withdraw the pod CIDR before
      // its pods and devices go away); they come in as steps, so this layer imports none of them.
      ...(opts.before ?? []).map((extra) => ({
        title: extra.title,
        run: () => soft(extra.title, async () => void removed.push(...(await extra.run()))),
      })),
      {
        title: 'Delete endpoints (BPF entries, veths, records)',
        run: async () => {
          const bpf = node?.routing === 'bpf' ? node : undefined
          for (const ep of await listEndpoints(stateDir).catch(() => [])) {
            // The same per-attachment lock as DEL (a `pn veth delete` may hold it without the node lock).
            const r = await withAttachmentFileLock(stateDir, ep.containerId, ep.ifname, () => teardownEndpoint(runner, stateDir, ep, bpf ? {bpf} : {}), opts.lock)
            for (const e of r.errors) warnings.push(`${e.step} ${ep.id}: ${e.message}`)
            if (r.veth || r.endpoint) removed.push(`endpoint ${ep.id} (${ep.hostIfname})`)
          }
          // Pod devices pn made that no record names (an ADD killed between veth and record).
          await soft('find stray pod devices', async () => {
            for (const dev of await pnPodDevices(runner, node?.podCidrs ?? [])) {
              if (await deleteLinkByName(runner, dev)) removed.push(`stray pod device ${dev}`)
            }
          })
          await fs.rm(endpointsDir(stateDir), {recursive: true, force: true})
        },
      },
      {
        title: 'Unload BPF programs and remove pins',
        run: async () => {
          if (node?.routing === 'bpf') {
            const n = node
            await soft('unload host programs', async () => {
              const r = await unloadHostPrograms(runner, n, {force: true})
              if (r.changed) removed.push('host bpf programs')
            })
          }
          if (node && (await removeBpffsRoot(runner, node.bpffsRoot))) removed.push(node.bpffsRoot)
        },
      },
      {
        title: 'Remove the iptables masquerade rule',
        skip: () => (node?.masquerade?.mode === 'iptables' ? false : 'masquerade is not iptables'),
        run: () => soft('remove iptables masquerade', async () => {
          if (await removeIptablesMasquerade(runner)) removed.push(`iptables nat chain ${IPTABLES_CHAIN}`)
        }),
      },
      {
        title: `Delete ${HOST_DEVICE} <-> ${NET_DEVICE}`,
        run: async () => {
          const r = await deleteHostDevices(runner)
          removed.push(...r.removed)
          if (r.kept.length > 0) warnings.push(`${r.kept.join(', ')} left alone: not pn's ${HOST_DEVICE} <-> ${NET_DEVICE} veth pair (pn deletes no device, and no route, it did not make)`)
        },
      },
      {
        // By its name and kind even without node.json: a VXLAN device called pn_vxlan is pn's.
        title: `Delete ${TUNNEL_DEVICE}`,
        run: async () => void ((await deleteTunnelDevice(runner)) && removed.push(TUNNEL_DEVICE)),
      },
      {
        title: 'Forget IPAM state and release the pod CIDR',
        run: async () => {
          const r = await resetIpam(stateDir, undefined, opts.lock)
          if (r.removed) removed.push(r.file)
          if (node?.pool) {
            const {pool, name, podCidrs} = node
            await soft(`release pod cidr of ${name}`, async () => {
              const rel = await releasePodCidrs(openPoolStore(pool, {...opts.lock, etcdTls: opts.etcdTls}), name)
              if (rel.changed) removed.push(`pod cidr ${podCidrs.join(', ')} (back to ${pool})`)
            })
          }
        },
      },
      {
        title: 'Remove node.json and lock files',
        run: async () => {
          try {
            await fs.unlink(nodeFile(stateDir))
            removed.push(nodeFile(stateDir))
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
          }
          // Safe under the exclusive node lock: no attachment holds or waits for these.
          await fs.rm(attachmentLocksDir(stateDir), {recursive: true, force: true})
          await fs.rm(`${ipamFile(stateDir)}.lock`, {force: true})
          await fs.rm(peersFile(stateDir), {force: true})
        },
      },
    ],
    result: () => ({changed: removed.length > 0, removed, warnings}),
  }
}

/** Reset the node under its exclusive lock; `run` runs the plan (default plainly). */
export async function resetNode(
  runner: Runner,
  stateDir: string,
  opts: NodeResetOptions = {},
  run: (plan: Plan<NodeResetResult>) => Promise<NodeResetResult> = (plan) => runPlan(plan, 'reset node'),
): Promise<NodeResetResult> {
  return withNodeExclusive(stateDir, () => run(planNodeReset(runner, stateDir, opts)), opts.lock)
}
