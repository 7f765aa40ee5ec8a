/**
 * One allocation in a fresh process, for bench/cluster/pool.ts: `node alloc-once.js per-key|single-key LOCATION NODE`.
 * The same process-per-allocation contention as `pn pool alloc`, without the CLI's start-up, for
 * both layouts in the same run (the CLI only opens the per-key one). Prints the result as JSON.
 */
import {allocatePodCidrs, singleKeyEtcdPool} from '../../src/ipam/pool.js'
import {EtcdPool} from '../../src/ipam/pool-etcd.js'

const [layout, location, node] = process.argv.slice(2)
const pool = layout === 'single-key' ? singleKeyEtcdPool(location) : new EtcdPool(location)
allocatePodCidrs(pool, node).then(
  (r) => process.stdout.write(JSON.stringify({status: 'ok', result: r}) + '\n'),
  (err) => {
    process.stdout.write(JSON.stringify({status: 'error', error: {code: err.code, message: err.message}}) + '\n')
    process.exitCode = 1
  },
)
