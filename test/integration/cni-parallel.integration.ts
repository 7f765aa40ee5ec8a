/**
 * Concurrency: 50 ADDs at once on one node (real bin/pn-cni processes, as a kubelet starting a
 * Job with parallelism 50 would run them) all succeed with distinct IPs and working
 * connectivity; then half of the pods are deleted in parallel while the other half keep
 * talking, and stay intact.
 */
import assert from 'node:assert/strict'
import {cleanupNamespaces, createNamespace, ping} from '../helpers/netns.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {cleanupHarness, createNode, invoke, invokeAsync, mapIps, netconf, nodeLinks, podHasLink, pnState, type CniNode} from './cni-harness.js'

const N = 50

for (const routing of ['bpf', 'host-routes'] as const) {
  describe(`cni parallel ADD/DEL (routing ${routing})`, function () {
    this.timeout(300_000)
    let node: CniNode
    const pods: {id: string; ns: string; ip?: string; result?: unknown}[] = []

    before(() => {
      node = createNode({podCidr: routing === 'bpf' ? '10.221.0.0/24' : '10.222.0.0/24', routing, tag: 'cnpar'})
      for (let i = 0; i < N; i++) pods.push({id: `par${i}`, ns: createNamespace('cpp').name})
    })
    after(() => {
      cleanupNamespaces()
      cleanupHarness()
    })

    it(`[1.0.0] ${N} parallel ADDs all succeed with distinct IPs and connectivity`, async () => {
      const conf = netconf(node, '1.0.0')
      const started = Date.now()
      const results = await Promise.all(pods.map((p) =>
        invokeAsync(node, {command: 'ADD', containerId: p.id, netns: `/run/netns/${p.ns}`, ifname: 'eth0', args: `K8S_POD_NAMESPACE=default;K8S_POD_NAME=${p.id}`}, conf)))
      const elapsed = Date.now() - started
      results.forEach((r, i) => {
        assert.equal(r.status, 0, `${pods[i].id}: ${r.stdout} ${r.stderr}`)
        pods[i].ip = r.json.ips[0].address.split('/')[0]
        pods[i].result = r.json
      })
      const ips = new Set(pods.map((p) => p.ip))
      assert.equal(ips.size, N, 'duplicate IPs handed out')
      assert.ok(!ips.has(node.gateway))
      assert.equal(nodeLinks(node).length, N)
      assert.equal(pnState(node).owners.length, N)
      if (routing === 'bpf') assert.equal(mapIps(node).filter((ip) => ips.has(ip)).length, N)
      for (const [i, p] of pods.entries()) {
        assert.ok(ping(p.ns, node.gateway), `${p.id} cannot reach the gateway`)
        const peer = pods[(i + 1) % N]
        assert.ok(ping(p.ns, peer.ip!), `${p.id} cannot reach ${peer.id}`)
      }
      // Reported for the record (2 shared CPUs); not asserted.
      console.log(`      ${N} parallel ADDs took ${elapsed} ms`)
    })

    it('[1.0.0] parallel DELs of half the pods do not disturb the other half', async () => {
      const conf = (prev: unknown) => netconf(node, '1.0.0', {prevResult: prev})
      const gone = pods.filter((_, i) => i % 2 === 1)
      const kept = pods.filter((_, i) => i % 2 === 0)
      const pinging = (async () => {
        const failures: string[] = []
        for (const p of kept.slice(0, 10)) {
          await new Promise((r) => setTimeout(r, 50))
          if (!ping(p.ns, node.gateway)) failures.push(p.id)
        }
        return failures
      })()
      const dels = await Promise.all(gone.map((p) =>
        invokeAsync(node, {command: 'DEL', containerId: p.id, netns: `/run/netns/${p.ns}`, ifname: 'eth0'}, conf(p.result))))
      dels.forEach((r, i) => assert.equal(r.status, 0, `${gone[i].id}: ${r.stdout} ${r.stderr}`))
      assert.deepEqual(await pinging, [], 'kept pods lost connectivity during the DELs')
      for (const p of gone) {
        assert.equal(podHasLink(p.ns), false, `${p.id} still has eth0`)
        assert.ok(!nodeLinks(node).includes(hostIfnameFor(p.id, 'eth0')))
      }
      const st = pnState(node)
      assert.deepEqual(st.owners.sort(), kept.map((p) => `${p.id}:eth0`).sort())
      assert.deepEqual(st.endpoints.sort(), kept.map((p) => `${p.id}:eth0`).sort())
      if (routing === 'bpf') {
        const inMap = new Set(mapIps(node))
        for (const p of gone) assert.ok(!inMap.has(p.ip!), `map entry of ${p.id} left`)
        for (const p of kept) assert.ok(inMap.has(p.ip!), `map entry of ${p.id} lost`)
      }
      for (const [i, p] of kept.entries()) {
        const c = invoke(node, {command: 'CHECK', containerId: p.id, netns: `/run/netns/${p.ns}`, ifname: 'eth0'}, conf(p.result))
        assert.equal(c.status, 0, `${p.id}: ${c.stdout} ${c.stderr}`)
        assert.ok(ping(p.ns, kept[(i + 1) % kept.length].ip!), `${p.id} cannot reach its neighbour`)
      }
    })
  })
}
