/**
 * CNI conformance of bin/pn-cni, run as a real process inside a `pn-` node namespace after
 * `pn node init`, for every supported spec version (the version is in each test title). Each
 * case creates its own pod namespaces and checks the kernel and pn's state afterwards.
 */
import assert from 'node:assert/strict'
import {cleanupNamespaces, createNamespace, deleteNamespace, inNs, ping} from '../helpers/netns.js'
import {SUPPORTED_VERSIONS} from '../../src/cni/spec.js'
import {hostIfnameFor} from '../../src/datapath/veth.js'
import {encodeEndpointKey} from '../../src/datapath/bpf/maps/endpoints.js'
import {
  add,
  check,
  cleanupHarness,
  createNode,
  del,
  invoke,
  mapIps,
  netconf,
  nodeLinks,
  podHasLink,
  podIps,
  pnState,
  hostLocalOwners,
  type CniNode,
} from './cni-harness.js'

const below = (v: string, min: string) => v.localeCompare(min, undefined, {numeric: true}) < 0

/**
 * pn in both routing modes, IPv4 and dual stack (an IPv4 and an IPv6 pod CIDR), and Debian's
 * ptp + host-local as a sanity check of the harness.
 */
const TARGETS: {kind: 'pn' | 'pn-agent' | 'pn-client' | 'ptp'; routing: 'bpf' | 'host-routes'; podCidr: string; podCidr6?: string; tag: string}[] = [
  {kind: 'pn', routing: 'bpf', podCidr: '10.211.0.0/24', tag: 'cnb'},
  {kind: 'pn', routing: 'host-routes', podCidr: '10.212.0.0/24', tag: 'cnh'},
  {kind: 'pn', routing: 'bpf', podCidr: '10.215.0.0/24', podCidr6: 'fd00:215::/112', tag: 'v6cb'},
  {kind: 'pn', routing: 'host-routes', podCidr: '10.216.0.0/24', podCidr6: 'fd00:216::/112', tag: 'v6ch'},
  {kind: 'ptp', routing: 'host-routes', podCidr: '10.214.0.0/24', tag: 'cnr'},
  // The same suite through the node agent and the native client (src/agent, native/pn-cni.c).
  {kind: 'pn-agent', routing: 'bpf', podCidr: '10.217.0.0/24', tag: 'agc'},
  // The native client with no agent: what a runtime runs on a node without one (pn-cni started
  // by the client, with the helpers it starts).
  {kind: 'pn-client', routing: 'bpf', podCidr: '10.218.0.0/24', tag: 'clc'},
]

const v4Of = (ips: {address: string}[]) => ips.find((i) => !i.address.includes(':'))!
const v6Of = (ips: {address: string}[]) => ips.find((i) => i.address.includes(':'))
const plain = (ips: {address: string}[]) => ips.map((i) => i.address.split('/')[0])

for (const target of TARGETS) {
  const {kind, routing} = target
  const isPn = kind !== 'ptp'
  const dual = target.podCidr6 !== undefined
  const label = isPn ? `${kind === 'pn-agent' ? 'pn agent + native client' : kind === 'pn-client' ? 'native client, no agent' : 'pn-cni'}, routing ${routing}${dual ? ', dual stack' : ''}` : 'reference ptp + host-local'
  describe(`cni conformance (${label})`, function () {
    this.timeout(120_000)
    let node: CniNode

    before(() => {
      node = createNode({kind, podCidr: target.podCidr, podCidr6: target.podCidr6, routing, tag: target.tag})
    })
    after(() => {
      cleanupNamespaces()
      cleanupHarness()
    })

    /** Nothing of (cid, eth0) remains: no veth on either side, no IP, no endpoint, no map entry (of either family). */
    function assertGone(cid: string, pod: string | undefined, ips?: string | string[]) {
      if (pod) assert.equal(podHasLink(pod), false, `eth0 left in ${pod}`)
      if (!isPn) {
        assert.deepEqual(hostLocalOwners(node).filter((o) => o.startsWith(`${cid}\r\n`)), [], `host-local still holds an IP for ${cid}`)
        return
      }
      assert.ok(!nodeLinks(node).includes(hostIfnameFor(cid, 'eth0')), `host veth of ${cid} left behind`)
      const st = pnState(node)
      assert.ok(!st.owners.includes(`${cid}:eth0`), `IP of ${cid} still reserved: ${st.owners}`)
      assert.ok(!st.endpoints.includes(`${cid}:eth0`), `endpoint of ${cid} still recorded`)
      if (ips && routing === 'bpf') {
        const eps = mapIps(node)
        const ipc = mapIps(node, 'pn_ipcache').map((p) => p.split('/')[0])
        for (const ip of [ips].flat()) {
          assert.ok(!eps.includes(ip), `pn_endpoints entry for ${ip} left behind`)
          assert.ok(!ipc.includes(ip), `pn_ipcache entry for ${ip} left behind`)
        }
      }
    }

    /** Host-side veths in the node: pn's lxc… or ptp's veth…. */
    const hostVeths = () => nodeLinks(node, isPn ? 'lxc' : 'veth')

    // Debian's ptp (plugins 1.1.1) speaks up to 1.0.0.
    for (const v of SUPPORTED_VERSIONS.filter((x) => isPn || x !== '1.1.0')) {
      it(`[${v}] ADD returns the ${v} result shape, pods reach the gateway and each other, CHECK passes, DEL leaves nothing`, () => {
        const podA = createNamespace('cpa').name
        const podB = createNamespace('cpb').name
        const a = add(node, v, `a-${v}`, podA, {args: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_UID=u1;K8S_POD_INFRA_CONTAINER_ID=x'})
        assert.equal(a.status, 0, a.stdout + a.stderr)
        const r = a.json
        assert.equal(r.cniVersion, v)
        assert.equal(r.interfaces.length, 2)
        if (isPn) assert.equal(r.interfaces[0].name, hostIfnameFor(`a-${v}`, 'eth0'))
        else assert.match(r.interfaces[0].name, /^veth/)
        assert.equal(r.interfaces[0].sandbox, undefined)
        assert.equal(r.interfaces[0].mac.length, 17)
        assert.equal(r.interfaces[1].name, 'eth0')
        assert.equal(r.interfaces[1].sandbox, `/run/netns/${podA}`)
        assert.equal(r.ips.length, dual ? 2 : 1)
        const ip4 = v4Of(r.ips) as any
        assert.equal(ip4.interface, 1)
        assert.match(ip4.address, isPn ? /^10\.21[125678]\.0\.\d+\/32$/ : /^10\.214\.0\.\d+\/24$/)
        assert.equal(ip4.gateway, node.gateway)
        if (below(v, '1.0.0')) assert.equal(ip4.version, '4')
        else assert.equal('version' in ip4, false)
        const ip6 = v6Of(r.ips) as any
        if (dual) {
          assert.equal(ip6.interface, 1)
          assert.match(ip6.address, /^fd00:21[56]::[0-9a-f]+\/128$/)
          assert.equal(ip6.gateway, node.gateway6)
          if (below(v, '1.0.0')) assert.equal(ip6.version, '6')
          else assert.equal('version' in ip6, false)
        } else {
          assert.equal(ip6, undefined)
        }
        if (isPn) {
          const routes = [{dst: `${node.gateway}/32`}, {dst: '0.0.0.0/0', gw: node.gateway}]
          if (dual) routes.push({dst: `${node.gateway6}/128`}, {dst: '::/0', gw: node.gateway6!})
          assert.deepEqual(r.routes, routes)
          assert.deepEqual(r.dns, {})
        }
        const ipA = ip4.address.split('/')[0]
        const ipsA = plain(r.ips)
        assert.deepEqual(podIps(podA).sort(), [...ipsA].sort())
        const mac = JSON.parse(inNs(podA, ['ip', '-j', 'link', 'show', 'dev', 'eth0']))[0].address
        assert.equal(mac, r.interfaces[1].mac)

        const b = add(node, v, `b-${v}`, podB)
        assert.equal(b.status, 0, b.stdout + b.stderr)
        const ipB = v4Of(b.json.ips).address.split('/')[0]
        const ipsB = plain(b.json.ips)
        assert.notEqual(ipA, ipB)
        assert.ok(ping(podA, node.gateway), 'pod A cannot reach the gateway')
        assert.ok(ping(podA, ipB), 'pod A cannot reach pod B')
        assert.ok(ping(podB, ipA), 'pod B cannot reach pod A')
        if (dual) {
          const ip6A = ip6.address.split('/')[0]
          const ip6B = v6Of(b.json.ips)!.address.split('/')[0]
          assert.ok(ping(podA, node.gateway6!), 'pod A cannot reach the IPv6 gateway')
          assert.ok(ping(podA, ip6B), 'pod A cannot reach pod B over IPv6')
          assert.ok(ping(podB, ip6A), 'pod B cannot reach pod A over IPv6')
          assert.ok(ping(node.ns, ip6A), 'the node cannot reach pod A over IPv6')
        }
        if (routing === 'bpf') for (const ip of ipsA) assert.ok(mapIps(node).includes(ip), `no endpoint map entry for pod A's ${ip}`)

        const c = check(node, v, `a-${v}`, podA, r)
        if (below(v, '0.4.0')) {
          assert.equal(c.status, 1)
          assert.equal(c.json.code, 1)
        } else {
          assert.equal(c.status, 0, c.stdout + c.stderr)
          assert.equal(c.stdout, '')
          if (dual && routing === 'bpf' && v === '1.1.0') {
            // CHECK looks at both families' map entries: without pod A's IPv6 entry it fails and says so.
            const ip6A = ip6.address.split('/')[0]
            const key = [...encodeEndpointKey(ip6A)].map((x) => x.toString(16).padStart(2, '0'))
            inNs(node.ns, ['bpftool', 'map', 'delete', 'pinned', `${node.bpffsRoot}/maps/pn_endpoints`, 'key', 'hex', ...key])
            const broken = check(node, v, `a-${v}`, podA, r)
            assert.equal(broken.status, 1, broken.stdout)
            assert.equal(broken.json.code, 122, broken.stdout)
            assert.match(broken.json.msg, new RegExp(`pn_endpoints has no entry for ${ip6A}`))
            assert.doesNotMatch(broken.json.msg, new RegExp(`no entry for ${ipA}\\b`))
          }
        }

        const d = del(node, v, `a-${v}`, `/run/netns/${podA}`, below(v, '0.4.0') ? {} : {prevResult: r})
        assert.equal(d.status, 0, d.stdout + d.stderr)
        assert.equal(d.stdout, '')
        assertGone(`a-${v}`, podA, ipsA)
        assert.ok(ping(podB, node.gateway), 'DEL of pod A disturbed pod B')
        assert.equal(hostVeths().length, 1)
        assert.equal(del(node, v, `b-${v}`, `/run/netns/${podB}`).status, 0)
        assertGone(`b-${v}`, podB, ipsB)
        assert.deepEqual(hostVeths(), [])
        deleteNamespace(podA)
        deleteNamespace(podB)
      })

      it(`[${v}] DEL is idempotent: twice, without ADD, with empty and with vanished CNI_NETNS`, () => {
        const pod = createNamespace('cpd').name
        const a = add(node, v, `d-${v}`, pod)
        assert.equal(a.status, 0, a.stdout + a.stderr)
        assert.equal(del(node, v, `d-${v}`, `/run/netns/${pod}`).status, 0)
        const again = del(node, v, `d-${v}`, `/run/netns/${pod}`)
        assert.equal(again.status, 0, again.stdout)
        assert.equal(again.stdout, '')
        assert.equal(del(node, v, `never-${v}`, `/run/netns/${pod}`).status, 0)
        assert.equal(del(node, v, `never-${v}`, '').status, 0)
        assertGone(`d-${v}`, pod)

        // Empty CNI_NETNS after a real ADD: the IP still goes (and for pn the veth, found by name).
        const e = add(node, v, `e-${v}`, pod)
        assert.equal(e.status, 0, e.stdout + e.stderr)
        assert.equal(del(node, v, `e-${v}`, '').status, 0)
        if (isPn) {
          assertGone(`e-${v}`, pod)
        } else {
          // ptp names its host veth randomly, so without the netns it can only release the IP.
          assertGone(`e-${v}`, undefined)
          inNs(pod, ['ip', 'link', 'del', 'eth0'])
        }

        // The pod netns vanished before DEL (pod killed): IPAM is released anyway.
        const f = add(node, v, `f-${v}`, pod)
        assert.equal(f.status, 0, f.stdout + f.stderr)
        const ipF = plain(f.json.ips)
        deleteNamespace(pod)
        const gone = del(node, v, `f-${v}`, `/run/netns/${pod}`)
        assert.equal(gone.status, 0, gone.stdout + gone.stderr)
        assertGone(`f-${v}`, undefined, ipF)
      })
    }

    // A failing ADD leaves nothing of either family.
    if (isPn) {
      for (const step of ['ipam', 'veth', 'endpoint', 'bpf', 'confirm']) {
        it(`[1.1.0] an ADD failing after ${step} is undone completely`, () => {
          const pod = createNamespace('cpf').name
          const before = nodeLinks(node)
          const r = add(node, '1.1.0', `fail-${step}`, pod, {extraEnv: {PN_CNI_FAIL_AFTER: step}})
          assert.equal(r.status, 1, r.stdout)
          assert.equal(r.json.code, 150)
          assert.match(r.json.msg, new RegExp(`injected failure after ${step}`))
          assertGone(`fail-${step}`, pod)
          assert.deepEqual(nodeLinks(node), before)
          if (routing === 'bpf') assert.deepEqual(mapIps(node).filter((ip) => ip !== node.gateway && ip !== node.gateway6), [])
          // And the attachment works afterwards.
          const again = add(node, '1.1.0', `fail-${step}`, pod)
          assert.equal(again.status, 0, again.stdout + again.stderr)
          assert.equal(again.json.ips.length, dual ? 2 : 1)
          assert.ok(ping(pod, node.gateway))
          if (dual) assert.ok(ping(pod, node.gateway6!), 'no IPv6 to the gateway after a retried ADD')
          assert.equal(del(node, '1.1.0', `fail-${step}`, `/run/netns/${pod}`).status, 0)
          assertGone(`fail-${step}`, pod, plain(again.json.ips))
          deleteNamespace(pod)
        })
      }
    }

    // What follows is pn's own behaviour (leftovers, error codes, STATUS, GC), on the IPv4 nodes.
    if (isPn && !dual) {
      it('[1.0.0] ADD on an existing foreign ifname fails and leaks nothing; a pn leftover of the same attachment is replaced', () => {
        const pod = createNamespace('cpx').name
        inNs(pod, ['ip', 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'other0'])
        const before = pnState(node)
        const r = add(node, '1.0.0', 'foreign', pod)
        assert.equal(r.status, 1)
        assert.equal(r.json.code, 113)
        assert.match(r.json.msg, /already exists/)
        assertGone('foreign', undefined)
        assert.deepEqual(pnState(node), before)
        assert.ok(podHasLink(pod, 'other0'), 'the foreign interface was touched')

        // An ADD retried after a crash: eth0 is pn's own leftover for this attachment.
        const pod2 = createNamespace('cpy').name
        assert.equal(add(node, '1.0.0', 'retry', pod2).status, 0)
        const second = add(node, '1.0.0', 'retry', pod2)
        assert.equal(second.status, 0, second.stdout + second.stderr)
        assert.equal(nodeLinks(node).filter((l) => l === hostIfnameFor('retry', 'eth0')).length, 1)
        assert.deepEqual(podIps(pod2), [second.json.ips[0].address.split('/')[0]])
        assert.ok(ping(pod2, node.gateway))
        assert.equal(pnState(node).owners.filter((o) => o === 'retry:eth0').length, 1)
        assert.equal(del(node, '1.0.0', 'retry', `/run/netns/${pod2}`).status, 0)
        assertGone('retry', pod2)
      })

      it('[every version] input errors give their spec codes and leave nothing', () => {
        const pod = createNamespace('cpe').name
        const ns = `/run/netns/${pod}`
        const ok = {command: 'ADD', containerId: 'inerr', netns: ns, ifname: 'eth0'}
        const cases: [string, Parameters<typeof invoke>[1], string, number][] = []
        for (const v of SUPPORTED_VERSIONS) {
          const conf = netconf(node, v)
          cases.push(
            [`${v} missing CNI_NETNS`, {...ok, netns: ''}, conf, 4],
            [`${v} missing CNI_CONTAINERID and CNI_IFNAME`, {...ok, containerId: '', ifname: ''}, conf, 4],
            [`${v} bad container id`, {...ok, containerId: '-bad/id'}, conf, 4],
            [`${v} ifname too long`, {...ok, ifname: 'x'.repeat(16)}, conf, 4],
            [`${v} ifname with slash`, {...ok, ifname: 'a/b'}, conf, 4],
            [`${v} ifname ..`, {...ok, ifname: '..'}, conf, 4],
            [`${v} unknown CNI_ARGS`, {...ok, args: 'FOO=bar'}, conf, 4],
            [`${v} CNI_NETNS not a netns`, {...ok, netns: '/etc/hostname'}, conf, 4],
            [`${v} unknown CNI_COMMAND`, {...ok, command: 'BOGUS'}, conf, 4],
            [`${v} bad JSON`, ok, '{"cniVersion":', 6],
            [`${v} bad network name`, ok, netconf(node, v, {name: 'bad name'}), 7],
            [`${v} delegated ipam`, ok, netconf(node, v, {ipam: {type: 'host-local'}}), 2],
            [`${v} chained prevResult on ADD`, ok, netconf(node, v, {prevResult: {cniVersion: v, interfaces: [{name: 'eth0'}], ips: []}}), 2],
          )
          if (below(v, '0.4.0')) cases.push([`${v} CHECK`, {...ok, command: 'CHECK'}, conf, 1])
          if (below(v, '1.1.0')) cases.push([`${v} GC`, {command: 'GC'}, conf, 1], [`${v} STATUS`, {command: 'STATUS'}, conf, 1])
        }
        cases.push(['unsupported version', ok, netconf(node, '9.9.9'), 1], ['missing version (0.1.0)', ok, JSON.stringify(node.conf), 1])
        cases.push(['missing name', ok, JSON.stringify({cniVersion: '1.0.0', type: 'pn'}), 7])
        cases.push(['ADD into a missing netns', {...ok, netns: '/run/netns/pn-missing0'}, netconf(node, '1.0.0'), 112])
        for (const [title, env, stdin, code] of cases) {
          const r = invoke(node, env, stdin)
          assert.equal(r.status, 1, `${title}: status ${r.status} ${r.stdout} ${r.stderr}`)
          assert.equal(r.json?.code, code, `${title}: ${r.stdout}`)
          assert.ok(r.json.msg.length > 0, title)
        }
        const named = invoke(node, {...ok, netns: '', ifname: ''}, netconf(node, '1.0.0'))
        assert.match(named.json.msg, /CNI_NETNS/)
        assert.match(named.json.msg, /CNI_IFNAME/)
        assert.equal(nodeLinks(node).length, 0)
        assert.deepEqual(pnState(node).owners, [])
      })

      it('[1.0.0] DEL with a CNI_NETNS that is not a netns cleans up the host side, then reports code 4', () => {
        const pod = createNamespace('cpn').name
        const a = add(node, '1.0.0', 'notns', pod)
        assert.equal(a.status, 0, a.stdout + a.stderr)
        const d = del(node, '1.0.0', 'notns', '/etc/hostname')
        assert.equal(d.status, 1, d.stdout)
        assert.equal(d.json.code, 4)
        assertGone('notns', pod, plain(a.json.ips))
        assert.equal(del(node, '1.0.0', 'notns', `/run/netns/${pod}`).status, 0)
      })

      it('[1.1.0] CHECK of a container pn never attached is code 3 (unknown container)', () => {
        const pod = createNamespace('cpu').name
        const fake = {cniVersion: '1.1.0', interfaces: [{name: 'lxc000000000000'}, {name: 'eth0', sandbox: `/run/netns/${pod}`}],
          ips: [{interface: 1, address: `${node.gateway.replace(/\.1$/, '.9')}/32`}]}
        const c = check(node, '1.1.0', 'nobody', pod, fake)
        assert.equal(c.status, 1, c.stdout)
        assert.equal(c.json.code, 3)
        const noPrev = invoke(node, {command: 'CHECK', containerId: 'nobody', netns: `/run/netns/${pod}`, ifname: 'eth0'}, netconf(node, '1.1.0'))
        assert.equal(noPrev.json.code, 7, noPrev.stdout)
      })

      it('[1.0.0] a requested IP (CNI_ARGS IP=, args.cni.ips) is honoured, and a taken one refused', () => {
        const base = node.podCidr.replace(/\.0\/24$/, '')
        const p1 = createNamespace('cpi').name
        const a = add(node, '1.0.0', 'wants-ip', p1, {args: `IP=${base}.200`})
        assert.equal(a.status, 0, a.stdout + a.stderr)
        assert.equal(a.json.ips[0].address, `${base}.200/32`)
        const p2 = createNamespace('cpi').name
        const b = invoke(node, {command: 'ADD', containerId: 'wants-ip2', netns: `/run/netns/${p2}`, ifname: 'eth0', args: `IP=${base}.202`},
          netconf(node, '1.0.0', {args: {cni: {ips: [`${base}.201`]}}}))
        assert.equal(b.status, 0, b.stdout + b.stderr)
        assert.equal(b.json.ips[0].address, `${base}.201/32`, 'args.cni.ips must win over CNI_ARGS IP=')
        const p3 = createNamespace('cpi').name
        const taken = add(node, '1.0.0', 'wants-taken', p3, {args: `IP=${base}.200`})
        assert.equal(taken.json.code, 109, taken.stdout)
        assertGone('wants-taken', p3)
        for (const [cid, pod] of [['wants-ip', p1], ['wants-ip2', p2]]) assert.equal(del(node, '1.0.0', cid, `/run/netns/${pod}`).status, 0)
      })

      it('[every version] VERSION answers with garbage stdin and dummy env', () => {
        for (const stdin of ['garbage{', '', '{"cniVersion":"0.3.1"}']) {
          const r = invoke(node, {command: 'VERSION', netns: 'dummy', ifname: 'dummy'}, stdin)
          assert.equal(r.status, 0, r.stdout + r.stderr)
          assert.deepEqual(r.json.supportedVersions, [...SUPPORTED_VERSIONS])
          assert.equal(r.json.cniVersion, stdin.includes('0.3.1') ? '0.3.1' : '1.1.0')
        }
      })

      it('[1.1.0] STATUS is ok on an initialised node and 50 on an uninitialised or exhausted one', () => {
        const ok = invoke(node, {command: 'STATUS'}, netconf(node, '1.1.0'))
        assert.equal(ok.status, 0, ok.stdout + ok.stderr)
        assert.equal(ok.stdout, '')
        const none = invoke(node, {command: 'STATUS'}, netconf(node, '1.1.0', {stateDir: '/tmp/pn-cni-nonexistent-state'}))
        assert.equal(none.status, 1)
        assert.equal(none.json.code, 50)
        // A /30 holds the router and one pod: after one ADD the node cannot take another.
        const tiny = createNode({podCidr: '10.213.0.0/30', routing, tag: 'cnt'})
        assert.equal(invoke(tiny, {command: 'STATUS'}, netconf(tiny, '1.1.0')).status, 0)
        const pod = createNamespace('cps').name
        assert.equal(add(tiny, '1.1.0', 'only', pod).status, 0)
        const full = invoke(tiny, {command: 'STATUS'}, netconf(tiny, '1.1.0'))
        assert.equal(full.status, 1)
        assert.equal(full.json.code, 50)
        const pod2 = createNamespace('cps').name
        const refused = add(tiny, '1.1.0', 'second', pod2)
        assert.equal(refused.json.code, 108)
        assertGoneOn(tiny, 'second', pod2)
        assert.equal(del(tiny, '1.1.0', 'only', `/run/netns/${pod}`).status, 0)
        assert.equal(invoke(tiny, {command: 'STATUS'}, netconf(tiny, '1.1.0')).status, 0)
      })

      function assertGoneOn(n: CniNode, cid: string, pod: string) {
        assert.ok(!nodeLinks(n).includes(hostIfnameFor(cid, 'eth0')))
        assert.equal(podHasLink(pod), false)
        assert.ok(!pnState(n).owners.includes(`${cid}:eth0`))
      }

      it('[1.1.0] GC removes every attachment not listed and keeps the listed ones', () => {
        const pods = ['g1', 'g2', 'g3'].map((id) => ({id, pod: createNamespace('cpg').name}))
        const ips: Record<string, string> = {}
        for (const p of pods) {
          const r = add(node, '1.1.0', p.id, p.pod)
          assert.equal(r.status, 0, r.stdout + r.stderr)
          ips[p.id] = r.json.ips[0].address.split('/')[0]
        }
        const gc = invoke(node, {command: 'GC'}, netconf(node, '1.1.0', {'cni.dev/valid-attachments': [{containerID: 'g2', ifname: 'eth0'}]}))
        assert.equal(gc.status, 0, gc.stdout + gc.stderr)
        assert.equal(gc.stdout, '')
        assertGone('g1', undefined, ips.g1)
        assertGone('g3', undefined, ips.g3)
        assert.deepEqual(nodeLinks(node), [hostIfnameFor('g2', 'eth0')])
        assert.deepEqual(pnState(node).owners, ['g2:eth0'])
        assert.ok(ping(pods[1].pod, node.gateway), 'GC disturbed the kept pod')
        // The older key name works too, and an empty list removes the rest.
        const gc2 = invoke(node, {command: 'GC'}, netconf(node, '1.1.0', {'cni.dev/attachments': []}))
        assert.equal(gc2.status, 0, gc2.stdout)
        assertGone('g2', undefined, ips.g2)
      })
    }
  })
}
