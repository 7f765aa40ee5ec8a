import assert from 'node:assert/strict'
import {PnError} from '../../src/errors.js'
import {parseServiceList} from '../../src/service/model.js'
import {allocateNodePorts, expandForNode, nodePortsInUse} from '../../src/service/nodeport.js'

const file = (entries: unknown[]) => parseServiceList(JSON.stringify(entries))
const keys = (specs: {frontend: {vip: string; port: number; proto: string}}[]) => specs.map((s) => `${s.frontend.vip}:${s.frontend.port}/${s.frontend.proto}`)
const code = (c: string) => (e: unknown) => e instanceof PnError && e.code === c && !!e.hint

describe('NodePort and external IPs (service model)', () => {
  it('reads type, nodePort, externalIPs and externalTrafficPolicy with the Kubernetes names; ClusterIP and Cluster are the defaults', () => {
    const [s, plain] = file([
      {frontend: '10.96.0.10:80', backends: ['10.1.0.5:8080'], type: 'NodePort', nodePort: 30080, externalIPs: ['192.0.2.5', '192.0.2.5'], externalTrafficPolicy: 'Local'},
      {frontend: '10.96.0.11:80', backends: [], type: 'ClusterIP', externalTrafficPolicy: 'Cluster'},
    ])
    assert.deepEqual({type: s.type, nodePort: s.nodePort, externalIPs: s.externalIPs, policy: s.externalTrafficPolicy}, {type: 'NodePort', nodePort: 30080, externalIPs: ['192.0.2.5'], policy: 'Local'})
    assert.deepEqual(Object.keys(plain).sort(), ['backends', 'frontend'])
  })

  it('a saved list\'s opened frontends (`via`) are skipped: they come back from their service\'s fields', () => {
    const specs = file([
      {frontend: '10.96.0.10:80/tcp', backends: [], type: 'NodePort', nodePort: 30080},
      {frontend: '172.30.0.1:30080/tcp', backends: [], via: '10.96.0.10:80/tcp'},
    ])
    assert.deepEqual(keys(specs), ['10.96.0.10:80/tcp'])
  })

  it('refuses a bad type, a nodePort outside 30000-32767 or without type NodePort, and mistyped fields', () => {
    for (const bad of [
      {type: 'LoadBalancer'},
      {type: 'NodePort', nodePort: 80},
      {nodePort: 30080},
      {type: 'NodePort', nodePort: '30080'},
      {externalTrafficPolicy: 'Nearest'},
      {externalIPs: ['not-an-ip']},
      {externalIPs: '192.0.2.1'},
    ]) {
      assert.throws(() => file([{frontend: '10.96.0.10:80', backends: [], ...bad}]), code('PN_SERVICE_INVALID'), JSON.stringify(bad))
    }
  })

  it('allocates nodePorts in the range, the same for the same file, keeping a previous one, past ports in use', () => {
    const specs = file([
      {frontend: '10.96.0.10:80', backends: [], type: 'NodePort'},
      {frontend: '10.96.0.11:80', backends: [], type: 'NodePort'},
      {frontend: '10.96.0.12:80', backends: [], type: 'NodePort', nodePort: 30500},
    ])
    const first = allocateNodePorts(specs, {})
    const ports = first.map((s) => s.nodePort!)
    assert.ok(ports.every((p) => p >= 30000 && p <= 32767))
    assert.equal(new Set(ports).size, 3)
    assert.equal(ports[2], 30500)
    assert.deepEqual(allocateNodePorts(specs, {}).map((s) => s.nodePort), ports, 'deterministic: every node picks the same')
    const kept = allocateNodePorts(specs.slice(0, 1), {'10.96.0.10:80/tcp': {nodePort: 31111, derived: []}})
    assert.equal(kept[0].nodePort, 31111, 'a previous nodePort is kept')
    const taken = allocateNodePorts(specs.slice(0, 1), {}, new Set([`${ports[0]}/tcp`]))
    assert.notEqual(taken[0].nodePort, ports[0], 'a port in use is skipped')
    assert.throws(() => allocateNodePorts(file([
      {frontend: '10.96.0.10:80', backends: [], type: 'NodePort', nodePort: 30500},
      {frontend: '10.96.0.11:80', backends: [], type: 'NodePort', nodePort: 30500},
    ]), {}), code('PN_SERVICE_CONFLICT'))
    assert.deepEqual([...nodePortsInUse({'a:1/tcp': {nodePort: 30001, derived: []}, 'b:1/udp': {nodePort: 30002, derived: []}}, new Set(['a:1/tcp']))], ['30002/udp'])
  })

  it('expands into the node IP and external IP frontends; Local keeps only the backends in the node\'s pod CIDRs', () => {
    const specs = allocateNodePorts(file([
      {frontend: '10.96.0.10:80/udp', backends: ['10.1.0.5:53', '10.2.0.5:53'], type: 'NodePort', nodePort: 30053, externalIPs: ['192.0.2.9'], externalTrafficPolicy: 'Local'},
      {frontend: '10.96.0.11:80', backends: ['10.2.0.6:80']},
    ]), {})
    const {specs: out, index} = expandForNode(specs, {nodeIp: '172.30.0.1', podCidrs: ['10.1.0.0/24']})
    assert.deepEqual(keys(out), ['10.96.0.10:80/udp', '10.96.0.11:80/tcp', '172.30.0.1:30053/udp', '192.0.2.9:80/udp'])
    assert.equal(out[0].backends.length, 2, 'the ClusterIP keeps every backend')
    assert.deepEqual(out[2].backends, [{ip: '10.1.0.5', port: 53}], 'Local: only this node\'s backend')
    assert.deepEqual(out[3].backends, [{ip: '10.1.0.5', port: 53}])
    assert.deepEqual(index, {'10.96.0.10:80/udp': {nodePort: 30053, externalIPs: ['192.0.2.9'], externalTrafficPolicy: 'Local', derived: ['172.30.0.1:30053/udp', '192.0.2.9:80/udp']}})
    assert.ok(out.every((s) => s.type === undefined), 'the expanded frontends are plain services for the maps')
    assert.throws(() => expandForNode(specs, {podCidrs: []}), code('PN_SERVICE_INVALID'), 'NodePort without a node IPv4 address')
    assert.throws(() => expandForNode(file([
      {frontend: '10.96.0.10:80', backends: [], externalIPs: ['192.0.2.9']},
      {frontend: '10.96.0.11:80', backends: [], externalIPs: ['192.0.2.9']},
    ]), {podCidrs: []}), code('PN_SERVICE_CONFLICT'), 'two services on one external IP:port')
  })
})
