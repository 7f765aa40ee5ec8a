/** The bird config renderer and the flag validation of pn bgp up (pure; no root, no bird). */
import assert from 'node:assert/strict'
import {isPnError} from '../../src/errors.js'
import {peerProtocolName, renderBirdConfig} from '../../src/routing/bird-config.js'
import {buildBirdSpec, parseAsn, parsePeers, parseRouterId, type BgpSpecInput} from '../../src/routing/bgp.js'

const node = {name: 'n1', podCidrs: ['10.20.30.0/26']}
const base: BgpSpecInput = {node, localAs: '65001', peers: ['10.99.0.1'], peerAs: ['65000'], uplinkAddresses: {4: '10.99.0.2'}, logFile: '/run/pn/n1/bgp/bird.log'}

function render(over: Partial<BgpSpecInput> = {}): string {
  return renderBirdConfig(buildBirdSpec({...base, ...over}).spec)
}

/** The body of a `filter NAME { … }` or `protocol KIND NAME { … }` block (nested braces allowed). */
function block(text: string, header: string): string {
  const start = text.indexOf(header)
  assert.ok(start >= 0, `missing ${header}`)
  let depth = 0
  for (let i = text.indexOf('{', start); i < text.length; i++) {
    if (text[i] === '{') depth++
    if (text[i] === '}' && --depth === 0) return text.slice(start, i + 1)
  }
  throw new Error(`unbalanced ${header}`)
}

describe('bird config renderer', () => {
  it('announces the pod CIDR, and only it, to the peer with the uplink address as next hop', () => {
    const text = render()
    assert.match(text, /^router id 10\.99\.0\.2;$/m)
    assert.match(block(text, 'protocol static pn_pods_v4'), /route 10\.20\.30\.0\/26 unreachable;/)
    const exp = block(text, 'filter pn_export_v4')
    assert.match(exp, /if source = RTS_STATIC && proto = "pn_pods_v4" && net ~ \[ 10\.20\.30\.0\/26 \] then accept;\n\s+reject;/)
    assert.equal((exp.match(/accept/g) ?? []).length, 1, 'exactly one accept: nothing else can leave')
    const bgp = block(text, 'protocol bgp peer_10_99_0_1')
    assert.match(bgp, /local 10\.99\.0\.2 as 65001;/)
    assert.match(bgp, /neighbor 10\.99\.0\.1 as 65000;/)
    assert.match(bgp, /export filter pn_export_v4;/)
    assert.match(bgp, /import filter pn_import_v4;/)
    assert.match(bgp, /next hop address 10\.99\.0\.2;/)
    assert.match(block(text, 'filter pn_import_v4'), /if net ~ \[ 10\.20\.30\.0\/26\+ \] then reject;/)
    assert.doesNotMatch(text, /protocol kernel/, 'without --import nothing reaches the kernel table')
    assert.doesNotMatch(text, /export all/)
    assert.match(text, /^log "\/run\/pn\/n1\/bgp\/bird\.log"/m)
  })

  it('--import adds a kernel protocol that exports BGP routes only and imports nothing', () => {
    const k = block(render({importRoutes: true}), 'protocol kernel pn_kernel_v4')
    assert.match(k, /import none;/)
    assert.match(k, /export where source = RTS_BGP;/)
  })

  it('is deterministic and keeps a peer block byte-identical when another peer is added (birdc configure keeps its session)', () => {
    assert.equal(render(), render())
    const one = block(render(), 'protocol bgp peer_10_99_0_1')
    const two = render({peers: ['10.99.0.1', '10.99.0.254'], peerAs: ['65000']})
    assert.equal(block(two, 'protocol bgp peer_10_99_0_1'), one)
    assert.match(block(two, 'protocol bgp peer_10_99_0_254'), /neighbor 10\.99\.0\.254 as 65000;/)
  })

  it('handles dual stack: IPv6 peers get the IPv6 pod CIDR over an ipv6 channel', () => {
    const text = render({
      node: {name: 'n1', podCidrs: ['10.20.30.0/26', 'fd00:10::/120']},
      peers: ['10.99.0.1', 'FD00:99::0001'],
      peerAs: ['65000', '65010'],
      uplinkAddresses: {4: '10.99.0.2', 6: 'fd00:99::2'},
    })
    const v6 = block(text, 'protocol bgp peer_fd00_99__1')
    assert.match(v6, /neighbor fd00:99::1 as 65010;/)
    assert.match(v6, /local fd00:99::2 as 65001;/)
    assert.match(v6, /ipv6 \{/)
    assert.match(block(text, 'filter pn_export_v6'), /net ~ \[ fd00:10::\/120 \]/)
    assert.doesNotMatch(block(text, 'protocol bgp peer_10_99_0_1'), /ipv6/)
  })

  it('warns when a pod CIDR has no peer of its family, and never announces it', () => {
    const {spec, warnings} = buildBirdSpec({...base, node: {name: 'n1', podCidrs: ['10.20.30.0/26', 'fd00:10::/120']}})
    assert.deepEqual(warnings, ['pod cidr fd00:10::/120 is announced to no one: no IPv6 peer'])
    assert.doesNotMatch(renderBirdConfig(spec), /fd00:10::/)
  })

  it('names peer protocols after their address', () => {
    assert.equal(peerProtocolName('10.99.0.1'), 'peer_10_99_0_1')
    assert.equal(peerProtocolName('fd00::1'), 'peer_fd00__1')
  })
})

describe('pn bgp up flag validation', () => {
  const code = (fn: () => unknown) => {
    try {
      fn()
    } catch (err) {
      assert.ok(isPnError(err), String(err))
      return err.code
    }
    return 'no error'
  }

  it('accepts AS numbers 1-4294967294 except AS_TRANS', () => {
    assert.equal(parseAsn('65001'), 65001)
    assert.equal(parseAsn(4294967294), 4294967294)
    assert.equal(parseAsn(' 1 '), 1)
    for (const bad of ['0', '23456', '4294967295', '99999999999', '-1', '65001.5', '1.10', 'AS65001', '']) {
      assert.equal(code(() => parseAsn(bad)), 'PN_INVALID_ARGUMENT', bad)
    }
  })

  it('checks peers: addresses, duplicates, one --peer-as or one per peer', () => {
    assert.deepEqual(parsePeers(['10.99.0.1', '10.99.0.3'], ['65000']).map((p) => [p.address, p.as]), [['10.99.0.1', 65000], ['10.99.0.3', 65000]])
    assert.deepEqual(parsePeers(['10.99.0.1', 'fd00::0:1'], ['65000', '65010']).map((p) => [p.address, p.family, p.as]), [['10.99.0.1', 4, 65000], ['fd00::1', 6, 65010]])
    assert.equal(code(() => parsePeers(['10.99.0.300'], ['65000'])), 'PN_INVALID_IP')
    assert.equal(code(() => parsePeers(['10.99.0.1', '10.99.0.01'], ['65000'])), 'PN_INVALID_IP')
    assert.equal(code(() => parsePeers(['10.99.0.1', '10.99.0.1'], ['65000'])), 'PN_INVALID_ARGUMENT')
    assert.equal(code(() => parsePeers(['10.99.0.1', '10.99.0.2', '10.99.0.3'], ['1', '2'])), 'PN_INVALID_ARGUMENT')
    assert.equal(code(() => parsePeers([], ['65000'])), 'PN_INVALID_ARGUMENT')
    assert.equal(code(() => parsePeers(['10.99.0.1'], ['0'])), 'PN_INVALID_ARGUMENT')
  })

  it('checks the router id and the addresses the uplink has', () => {
    assert.equal(parseRouterId('10.99.0.2'), '10.99.0.2')
    for (const bad of ['0.0.0.0', 'fd00::1', 'x']) assert.equal(code(() => parseRouterId(bad)), 'PN_INVALID_IP', bad)
    assert.equal(code(() => buildBirdSpec({...base, uplinkAddresses: {}})), 'PN_INVALID_ARGUMENT')
    assert.equal(buildBirdSpec({...base, uplinkAddresses: {6: 'fd00::2'}, peers: ['fd00::1'], routerId: '1.2.3.4'}).spec.routerId, '1.2.3.4')
    assert.equal(code(() => buildBirdSpec({...base, peers: ['fd00::1']})), 'PN_INVALID_ARGUMENT', 'no IPv6 uplink address')
    assert.equal(code(() => buildBirdSpec({...base, peers: ['10.99.0.2']})), 'PN_INVALID_ARGUMENT', 'peering with itself')
  })
})
