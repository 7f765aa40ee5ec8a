/** The birdc output parsers, on text captured from bird 2.0.12 (no root, no bird needed). */
import assert from 'node:assert/strict'
import {birdcError, parseBirdProtocols, parseBirdRoutes} from '../../src/routing/birdc.js'

// `birdc show protocols all` of a pn node: device, static, kernel (--import) and one Established peer.
const NODE_PROTOCOLS = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     1795800905    

pn_pods_v4 Static     master4    up     1795800905    
  Channel ipv4
    State:          UP
    Table:          master4
    Preference:     200
    Input filter:   ACCEPT
    Output filter:  REJECT
    Routes:         1 imported, 0 exported, 1 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              1          0          0          0          1
      Import withdraws:            0          0        ---          0          0
      Export updates:              0          0          0        ---          0
      Export withdraws:            0        ---        ---        ---          0

pn_kernel_v4 Kernel     master4    up     1795800915    
  Channel ipv4
    State:          UP
    Table:          master4
    Preference:     10
    Input filter:   REJECT
    Output filter:  (unnamed)
    Routes:         0 imported, 0 exported, 0 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              0          0          0          0          0
      Import withdraws:            0          0        ---          0          0
      Export updates:              1          0          1        ---          0
      Export withdraws:            0        ---        ---        ---          0

peer_10_98_0_1 BGP        ---        up     1795800908    Established   
  Description:    pn peer 10.98.0.1 AS 65000
  BGP state:          Established
    Neighbor address: 10.98.0.1
    Neighbor AS:      65000
    Local AS:         65001
    Neighbor ID:      10.98.0.1
    Local capabilities
      Multiprotocol
        AF announced: ipv4
      Route refresh
      Graceful restart
      4-octet AS numbers
      Enhanced refresh
      Long-lived graceful restart
    Neighbor capabilities
      Multiprotocol
        AF announced: ipv4
      Route refresh
      Graceful restart
      4-octet AS numbers
      Enhanced refresh
      Long-lived graceful restart
    Session:          external AS4
    Source address:   10.98.0.2
    Hold timer:       191.698/240
    Keepalive timer:  52.708/80
  Channel ipv4
    State:          UP
    Table:          master4
    Preference:     100
    Input filter:   pn_import_v4
    Output filter:  pn_export_v4
    Routes:         0 imported, 1 exported, 0 preferred
    Route change stats:     received   rejected   filtered    ignored   accepted
      Import updates:              0          0          0          0          0
      Import withdraws:            0          0        ---          0          0
      Export updates:              1          0          0        ---          1
      Export withdraws:            0        ---        ---        ---          0
    BGP Next hop:   10.98.0.2

`

// The ToR after the node's bird went down (bird's default time format: one token).
const TOR_DOWN = `BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
n1         BGP        ---        start  17:35:26.104  Active        Received: Administrative shutdown
  BGP state:          Active
    Neighbor address: 10.98.0.2
    Neighbor AS:      65001
    Local AS:         65000
    Connect delay:    4.391/5
    Last error:       Received: Administrative shutdown
`

const ROUTES = `BIRD 2.0.12 ready.
Table master4:
10.97.1.0/24         unicast [n1 17:35:11.667] * (100) [AS65001i]
\tvia 10.98.0.2 on p1
10.97.2.0/24         unicast [n2 17:35:12.001] * (100) [AS65002i]
\tvia 10.98.0.3 on p2
                     unicast [n3 17:35:13.500] (100) [AS65003 65002i]
\tvia 10.98.0.4 on p3
10.20.30.0/26        unreachable [pn_pods_v4 1795800905] * (200)
`

describe('birdc parsers', () => {
  it('reads protocols: name, proto, state, since, BGP state, neighbor, channels', () => {
    const ps = parseBirdProtocols(NODE_PROTOCOLS)
    assert.deepEqual(ps.map((p) => [p.name, p.proto, p.state]), [
      ['device1', 'Device', 'up'],
      ['pn_pods_v4', 'Static', 'up'],
      ['pn_kernel_v4', 'Kernel', 'up'],
      ['peer_10_98_0_1', 'BGP', 'up'],
    ])
    const peer = ps[3]
    assert.equal(peer.since, '1795800908')
    assert.equal(peer.info, 'Established')
    assert.deepEqual(peer.bgp, {state: 'Established', neighborAddress: '10.98.0.1', neighborAs: 65000, localAs: 65001, neighborId: '10.98.0.1', sourceAddress: '10.98.0.2'})
    assert.deepEqual(peer.channels, [{name: 'ipv4', state: 'UP', imported: 0, exported: 1, preferred: 0}])
    assert.equal(ps[1].bgp, undefined, 'only BGP protocols carry bgp fields')
    assert.equal(ps[1].channels[0].imported, 1)
  })

  it('reads a session that is not up: state start, Active, the last error', () => {
    const [p] = parseBirdProtocols(TOR_DOWN)
    assert.equal(p.state, 'start')
    assert.equal(p.since, '17:35:26.104')
    assert.match(p.info, /^Active\s+Received: Administrative shutdown$/)
    assert.equal(p.bgp?.state, 'Active')
    assert.equal(p.bgp?.lastError, 'Received: Administrative shutdown')
    assert.deepEqual(p.channels, [])
  })

  it('reads routes: prefix, type, source protocol, best, AS path, next hops; a blank prefix repeats the last', () => {
    const rs = parseBirdRoutes(ROUTES)
    assert.deepEqual(
      rs.map((r) => [r.prefix, r.type, r.protocol, r.primary, r.asPath, r.nextHops, r.device]),
      [
        ['10.97.1.0/24', 'unicast', 'n1', true, 'AS65001i', ['10.98.0.2'], 'p1'],
        ['10.97.2.0/24', 'unicast', 'n2', true, 'AS65002i', ['10.98.0.3'], 'p2'],
        ['10.97.2.0/24', 'unicast', 'n3', false, 'AS65003 65002i', ['10.98.0.4'], 'p3'],
        ['10.20.30.0/26', 'unreachable', 'pn_pods_v4', true, undefined, [], undefined],
      ],
    )
    assert.equal(rs[0].preference, 100)
    assert.deepEqual(parseBirdRoutes('BIRD 2.0.12 ready.\n'), [])
    assert.deepEqual(parseBirdRoutes('BIRD 2.0.12 ready.\nTable master4:\n'), [])
  })

  it('finds the errors birdc prints with exit code 0', () => {
    assert.equal(birdcError('BIRD 2.0.12 ready.\nsyntax error, unexpected CF_SYM_UNDEFINED\n'), 'syntax error, unexpected CF_SYM_UNDEFINED')
    assert.match(birdcError('Unable to connect to server control socket (/x/bird.ctl): No such file or directory\n') ?? '', /Unable to connect/)
    assert.match(birdcError('BIRD 2.0.12 ready.\nReading configuration from /x/bird.conf\n/x/bird.conf:3:1 syntax error, unexpected END\n') ?? '', /bird.conf:3:1 syntax error/)
    assert.equal(birdcError('BIRD 2.0.12 ready.\nReading configuration from /x/bird.conf\nReconfigured\n'), undefined)
    assert.equal(birdcError(NODE_PROTOCOLS), undefined)
  })
})
