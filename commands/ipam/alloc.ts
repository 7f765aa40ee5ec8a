import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {STRATEGIES, type Strategy} from '../../src/ipam/bitmap.js'
import {parseDuration} from '../../src/ipam/duration.js'
import {allocateIp, type AllocateResult} from '../../src/ipam/host.js'
import {table} from '../../src/cli/table.js'

export type IpamAllocResult = AllocateResult

/**
 * The target flags of every `pn ipam` command. Non-greedy: a greedy multiple flag would swallow
 * the positional IP of `pn ipam release --pod-cidr C 10.0.1.5` as a second pod CIDR.
 */
export const targetFlags = () => ({
  'pod-cidr': Flags.string({
    summary: "Pod CIDR for standalone use, in a state dir without node.json (one per family); an initialised node uses node.json's.",
    multiple: true,
    multipleNonGreedy: true,
  }),
  'router-ip': Flags.string({
    summary: 'Router IP per family when standalone (default: first usable address of the pod CIDR).',
    multiple: true,
    multipleNonGreedy: true,
  }),
})

/** `--ip` of alloc, confirm and release: one way to name an address (repeatable, one per family for alloc). */
export const ipFlag = (summary: string) => Flags.string({summary, multiple: true, multipleNonGreedy: true})

export default class IpamAlloc extends BaseCommand<typeof IpamAlloc, IpamAllocResult> {
  static summary = 'Allocate a pod IP (one per pod CIDR family) from the node pod CIDR.'
  static description = `Works on the pod CIDRs of node.json (no flag needed), or on --pod-cidr (one per family) for standalone use; state is kept in <state-dir>/ipam/. The same owner asking again gets its existing addresses (changed: false). The random strategy (default, as Cilium) starts at a random offset and takes the next free address; contiguous takes the lowest free one. With --expiration the allocation stays pending until \`pn ipam confirm\`, and returns to the pool once expired (at the next change or \`pn ipam gc\`), so a crashed CNI ADD cannot leak its IP.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --owner pod1:eth0',
    '<%= config.bin %> <%= command.id %> --pod-cidr 10.0.1.0/24 --pod-cidr fd00:1::/112 --owner c1:eth0 --json',
    '<%= config.bin %> <%= command.id %> --pod-cidr 10.0.1.0/24 --ip 10.0.1.50 --owner web',
    '<%= config.bin %> <%= command.id %> --owner c2:eth0 --expiration 10m --strategy contiguous',
  ]

  static flags = {
    ...targetFlags(),
    owner: Flags.string({summary: 'Who holds the address (CNI: <containerId>:<ifname>); default anon-<hex>.'}),
    ip: ipFlag('Claim this address (one per family) instead of the next free one.'),
    strategy: Flags.string({summary: 'How to pick the next free address.', options: [...STRATEGIES], default: 'random'}),
    expiration: Flags.string({summary: 'Keep the allocation pending, freed after this long unless confirmed (500ms, 30s, 10m, 1h).'}),
  }

  async execute(): Promise<IpamAllocResult> {
    const f = this.flags
    return allocateIp(
      await this.ipam(f),
      {
        owner: f.owner,
        ip: f.ip,
        strategy: f.strategy as Strategy,
        expirationMs: f.expiration === undefined ? undefined : parseDuration(f.expiration),
      },
    )
  }

  protected render(r: IpamAllocResult): string {
    const head = r.changed ? `allocated for ${r.owner}:` : `${r.owner} already holds (unchanged):`
    return `${head}\n${table(
      ['IP', 'CIDR', 'GATEWAY', 'STATE', 'EXPIRES'],
      r.allocations.map((a) => [a.ip, a.cidr, a.gateway, a.state, a.expiresAt]),
    )}`
  }
}
