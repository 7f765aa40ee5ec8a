/**
 * Safety rails of the CNI path: one (container id, ifname) names one attachment, so a second ADD
 * into another live netns is refused (PN_ENDPOINT_EXISTS, CNI code 116) and the DEL a runtime
 * sends after it leaves the live pod alone; container ids of any length (hashed into file names)
 * go through ADD and DEL and leave no endpoint id, IP, record or lock file behind. Run through
 * bin/pn-cni and through the node agent.
 */
import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {mkdirSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {cleanupNamespaces, createNamespace, deleteNamespace, ping} from '../helpers/netns.js'
import {add, cleanupHarness, createNode, del, destroyNode, podHasLink, podIps, pnState, type CniNode} from './cni-harness.js'

const BPFFS = '/run/pn/bpffs'
const V = '1.1.0'

/** Every file pn keeps per attachment (ids, owners, records, locks, IPAM owner records). */
function attachmentFiles(node: CniNode): string[] {
  const ls = (d: string) => {
    try {
      return readdirSync(path.join(node.stateDir, d)).map((n) => `${d}/${n}`)
    } catch {
      return []
    }
  }
  return [...ls('endpoints').filter((n) => !/\/\.(ids|owners)$/.test(n)), ...ls('endpoints/.ids'), ...ls('endpoints/.owners'), ...ls('cni'),
    ...ls('ipam/owners').filter((n) => !n.endsWith('/router.json')), ...ls('ipam/pending')]
}

for (const kind of ['pn', 'pn-agent'] as const) {
  describe(`cni safety rails (${kind === 'pn' ? 'pn-cni' : 'pn agent + native client'}, routing bpf)`, function () {
    this.timeout(120_000)
    let node: CniNode

    before(() => {
      mkdirSync(BPFFS, {recursive: true})
      if (execFileSync('stat', ['-f', '-c', '%T', BPFFS], {encoding: 'utf8'}).trim() !== 'bpf_fs') execFileSync('mount', ['-t', 'bpf', 'bpf', BPFFS])
      node = createNode({kind, podCidr: kind === 'pn' ? '10.231.0.0/24' : '10.232.0.0/24', routing: 'bpf', tag: kind === 'pn' ? 'rlc' : 'rla'})
    })
    after(() => {
      if (node) destroyNode(node)
      cleanupNamespaces()
      cleanupHarness()
    })

    it('a second ADD of a live attachment into another netns fails with PN_ENDPOINT_EXISTS and the pod keeps its eth0', () => {
      const a = createNamespace('rpa').name
      const b = createNamespace('rpb').name
      const first = add(node, V, 'dup1', a)
      assert.equal(first.status, 0, first.stdout + first.stderr)
      const ip = podIps(a)[0]

      const second = add(node, V, 'dup1', b)
      assert.notEqual(second.status, 0, 'the second ADD must fail')
      assert.equal(second.json?.code, 116, second.stdout)
      assert.match(second.json?.msg ?? '', new RegExp(`dup1 \\(eth0\\) in /run/netns/${a}, a live netns other than /run/netns/${b}`))
      assert.match(second.json?.details ?? '', /^PN_ENDPOINT_EXISTS; hint: .*pn cni del --container-id dup1 --ifname eth0/)
      assert.ok(podHasLink(a), 'the live pod lost its eth0')
      assert.deepEqual(podIps(a), [ip])
      assert.ok(ping(a, node.gateway))
      assert.equal(podHasLink(b), false, 'nothing may be made in the second netns')

      // The DEL a runtime sends after the failed ADD names the second netns: it leaves the pod alone.
      const d = del(node, V, 'dup1', `/run/netns/${b}`)
      assert.equal(d.status, 0, d.stdout + d.stderr)
      assert.ok(podHasLink(a), 'the DEL for the other netns removed the live pod')
      assert.ok(ping(a, node.gateway))
      assert.deepEqual(pnState(node).owners, ['dup1:eth0'])

      assert.equal(del(node, V, 'dup1', `/run/netns/${a}`).status, 0)
      assert.equal(podHasLink(a), false)
      assert.deepEqual(pnState(node).owners, [])
    })

    it('a repeated ADD into the same netns replaces the attachment (one eth0, one record, one IP)', () => {
      const a = createNamespace('rps').name
      assert.equal(add(node, V, 'same1', a).status, 0)
      const again = add(node, V, 'same1', a)
      assert.equal(again.status, 0, again.stdout + again.stderr)
      assert.deepEqual(podIps(a), [again.json.ips[0].address.split('/')[0]])
      assert.deepEqual(pnState(node).endpoints, ['same1:eth0'])
      assert.deepEqual(pnState(node).owners, ['same1:eth0'])
      assert.ok(ping(a, node.gateway))
      assert.equal(del(node, V, 'same1', `/run/netns/${a}`).status, 0)
    })

    it('the leftover of an attachment whose netns is gone is removed by the next ADD elsewhere', () => {
      const a = createNamespace('rpg').name
      const b = createNamespace('rph').name
      assert.equal(add(node, V, 'gone1', a).status, 0)
      deleteNamespace(a)
      const r = add(node, V, 'gone1', b)
      assert.equal(r.status, 0, r.stdout + r.stderr)
      assert.ok(ping(b, node.gateway))
      assert.deepEqual(pnState(node).owners, ['gone1:eth0'])
      assert.equal(del(node, V, 'gone1', `/run/netns/${b}`).status, 0)
      assert.deepEqual(pnState(node).owners, [])
    })

    for (const n of [240, 300, 1000]) {
      it(`a ${n}-character container id goes through ADD and DEL and leaves no file behind`, () => {
        const cid = `c${n}-`.padEnd(n, 'x')
        const a = createNamespace('rpl').name
        const r = add(node, V, cid, a)
        assert.equal(r.status, 0, r.stdout.slice(0, 2000) + r.stderr.slice(0, 2000))
        assert.ok(ping(a, node.gateway))
        assert.deepEqual(pnState(node).owners, [`${cid}:eth0`])
        assert.deepEqual(pnState(node).endpoints, [`${cid}:eth0`])
        const d = del(node, V, cid, `/run/netns/${a}`)
        assert.equal(d.status, 0, d.stdout.slice(0, 2000))
        assert.equal(podHasLink(a), false)
        assert.deepEqual(pnState(node).owners, [])
        assert.deepEqual(attachmentFiles(node), [])
      })
    }

    it('a failed ADD of a long container id leaves no endpoint id, IP or lock file', () => {
      const cid = 'f'.repeat(300)
      const a = createNamespace('rpf').name
      const r = add(node, V, cid, a, {extraEnv: {PN_CNI_FAIL_AFTER: 'endpoint'}})
      assert.notEqual(r.status, 0)
      assert.equal(r.json?.code, 150, r.stdout.slice(0, 500))
      // Undone at once; only the attachment's lock file waits for the DEL the runtime sends next.
      assert.deepEqual(pnState(node).owners, [])
      assert.deepEqual(attachmentFiles(node).filter((f) => !f.startsWith('cni/')), [])
      assert.equal(del(node, V, cid, `/run/netns/${a}`).status, 0)
      assert.deepEqual(pnState(node).owners, [])
      assert.deepEqual(attachmentFiles(node), [])
    })

    it('a container id over 4096 bytes is refused with code 4 and leaves nothing', () => {
      const a = createNamespace('rpx').name
      const r = add(node, V, 'x'.repeat(4097), a)
      assert.equal(r.json?.code, 4, r.stdout.slice(0, 500))
      assert.match(r.json?.msg ?? '', /longer than 4096 bytes/)
      assert.equal(podHasLink(a), false)
      assert.deepEqual(attachmentFiles(node), [])
    })
  })
}
