/** Shared flag builders, so the same flag means the same thing in every command (CNI words). */
import {Flags, Interfaces} from '@oclif/core'

type Required = Interfaces.OptionFlag<string>
type Optional = Interfaces.OptionFlag<string | undefined>

/** Container ID (CNI_CONTAINERID); typed as `string` when required, `string | undefined` when not. */
export function containerIdFlag(): Required
export function containerIdFlag(required: true): Required
export function containerIdFlag(required: false): Optional
export function containerIdFlag(required = true): Required | Optional {
  return Flags.string({summary: 'Container ID (CNI_CONTAINERID).', required}) as Required | Optional
}

/** Network namespace path (CNI_NETNS); typed like containerIdFlag. */
export function netnsFlag(): Required
export function netnsFlag(required: true): Required
export function netnsFlag(required: false): Optional
export function netnsFlag(required = true): Required | Optional {
  return Flags.string({
    summary: 'Network namespace path, e.g. /run/netns/pod1 or /proc/PID/ns/net (CNI_NETNS).',
    required,
  }) as Required | Optional
}
export const ifnameFlag = () => Flags.string({summary: 'Interface name inside the pod (CNI_IFNAME).', default: 'eth0'})
export const podCidrFlag = () =>
  Flags.string({
    summary: 'Pod CIDR to work on instead of the node context (standalone use; repeat once per family).',
    multiple: true,
    // Greedy multiple flags would swallow a following positional argument (an IP, a node name).
    multipleNonGreedy: true,
  })
export const mtuFlag = () => Flags.integer({summary: 'MTU (default: the node uplink MTU).', min: 68, max: 65535})
export const poolFlag = () =>
  Flags.string({summary: 'Cluster pool file (default <state-dir>/cluster-pool.json).', env: 'PN_POOL'})
