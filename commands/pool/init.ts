import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {etcdTlsFlags, poolClusterFlag, poolFlag} from '../../src/cli/flags.js'
import {initPool, type InitPoolResult} from '../../src/ipam/pool.js'
import {table} from '../../src/cli/table.js'

export type PoolInitResult = InitPoolResult

export default class PoolInit extends BaseCommand<typeof PoolInit, PoolInitResult> {
  static summary = 'Create a cluster pool from one or more cluster CIDRs (IPv4 and/or IPv6).'
  static description = `Each node later gets one /--mask-size block per family (pn pool alloc NODE). Cluster CIDRs are used in the order given; a CIDR with host bits set is normalised to its network, with a warning. The pool file defaults to <state-dir>/cluster-pool.json; use --pool or PN_POOL to share one pool between the nodes of a lab. An existing pool is never replaced without --force.`

  static examples = [
    '<%= config.bin %> <%= command.id %> --cidr 10.20.30.0/24 --cidr 50.60.70.0/24 --mask-size 26',
    '<%= config.bin %> <%= command.id %> --cidr 10.0.0.0/16 --cidr fd00:10::/104 --mask-size 24 --mask-size-v6 120 --pool /run/pn/lab1/pool.json',
    '<%= config.bin %> <%= command.id %> --cidr 10.20.30.40/24 --mask-size 26 --force --json',
  ]

  static flags = {
    cidr: Flags.string({summary: 'Cluster CIDR (repeatable, used in this order).', multiple: true, multipleNonGreedy: true, required: true}),
    'mask-size': Flags.integer({summary: 'Prefix length of each node block for IPv4 cluster CIDRs (e.g. 24).', min: 1, max: 32}),
    'mask-size-v6': Flags.integer({summary: 'Prefix length of each node block for IPv6 cluster CIDRs (e.g. 120).', min: 1, max: 128}),
    pool: poolFlag(),
    cluster: poolClusterFlag(),
    ...etcdTlsFlags(),
    force: Flags.boolean({summary: 'Replace an existing pool (forgets every node allocation).'}),
  }

  async execute(): Promise<PoolInitResult> {
    const f = this.flags
    return initPool(await this.poolStore(f.pool, f.cluster), {cidrs: f.cidr, maskSize: f['mask-size'], maskSizeV6: f['mask-size-v6'], force: f.force})
  }

  protected render(r: PoolInitResult): string {
    return `${r.replaced ? 'replaced' : 'created'} pool ${r.pool}\n${table(
      ['CLUSTER CIDR', 'NODE MASK', 'NODE CIDRS'],
      r.clusterCidrs.map((c) => [c.cidr, `/${c.maskSize}`, c.capacity]),
    )}`
  }
}
