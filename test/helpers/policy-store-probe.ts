/**
 * Run inside a namespace that reaches the cluster store (the truth-table test's etcd lives in
 * its LAN namespace): `node dist/test/helpers/policy-store-probe.js LOCATION PROBES_JSON`. Reads
 * the store once and prints JSON {revision, endpoints, verdicts}: the store's endpoints, and for
 * each probe [fromIp, toIp, protocol, port] the verdict of `pn policy trace`'s resolution.
 */
import {resolveCluster} from '../../src/cluster/policies.js'
import {openClusterStore} from '../../src/cluster/store.js'
import {traceVerdict} from '../../src/policy/trace.js'
import type {PolicyProtocol} from '../../src/policy/types.js'

const [location, probesJson] = process.argv.slice(2)
const store = openClusterStore(location)
try {
  const state = await store.snapshot()
  const resolved = resolveCluster(state)
  const probes = JSON.parse(probesJson ?? '[]') as [string, string, PolicyProtocol, number][]
  const verdicts = probes.map(([f, t, proto, port]) => {
    const r = traceVerdict(resolved, f, t, proto, port)
    return {verdict: r.verdict, reason: r.reason}
  })
  process.stdout.write(JSON.stringify({revision: state.revision, endpoints: [...state.endpoints.values()], verdicts}))
} finally {
  await store.close()
}
