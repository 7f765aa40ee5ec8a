/** The policy commands end to end on a directory cluster store: flags → library → --json result, and pn's errors. */
import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {pn} from '../helpers/cli.js'

const POLICY = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: x}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}]
    ports: [{port: 80, endPort: 81}]
`

describe('pn policy, identity, namespace label (cluster store in a directory)', function () {
  this.timeout(60_000)
  let dir: string
  let file: string
  let env: NodeJS.ProcessEnv

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pn-polcli-'))
    file = path.join(dir, 'web.yaml')
    writeFileSync(file, POLICY)
    env = {PN_CLUSTER: path.join(dir, 'cluster')}
    assert.equal(pn(['cluster', 'init', '--json'], {env}).json?.status, 'ok')
  })
  after(() => rmSync(dir, {recursive: true, force: true}))

  it('apply (FILE or -f, PN_CLUSTER), list, get, identity list, delete', () => {
    const dry = pn(['policy', 'apply', '-f', file, '--dry-run', '--json'], {env})
    assert.deepEqual(dry.json?.result.policies, [{policy: 'x/web', action: 'create'}], dry.stdout + dry.stderr)
    assert.equal(dry.json?.result.dryRun, true)
    const applied = pn(['policy', 'apply', file, '--json'], {env})
    assert.equal(applied.json?.result.changed, true, applied.stdout + applied.stderr)
    assert.match(pn(['policy', 'apply', file], {env}).stdout, /already these policies/)
    const list = pn(['policy', 'list', '--json'], {env})
    assert.deepEqual(list.json?.result, [{namespace: 'x', name: 'web', podSelector: 'app=web', policyTypes: ['Ingress'], ingressRules: 1, egressRules: 0, endpoints: 0}])
    const got = pn(['policy', 'get', 'web', '-n', 'x', '--json'], {env})
    assert.deepEqual(got.json?.result.policy.spec.ingress[0].ports, [{protocol: 'TCP', port: 80, endPort: 81}])
    const ids = pn(['identity', 'list', '--json'], {env})
    assert.deepEqual(ids.json?.result.map((i: {id: number; kind: string; labels: string[]}) => [i.id, i.kind, i.labels[0]]), [
      [1, 'reserved', 'reserved:host'], [2, 'reserved', 'reserved:world'], [6, 'reserved', 'reserved:remote-node'],
      [16777216, 'cidr', 'cidr:192.0.2.0/24'], [16777217, 'cidr', 'cidr:192.0.2.128/25'],
    ])
    assert.equal(pn(['identity', 'get', '2', '--json'], {env}).json?.result.identity.labels[0], 'reserved:world')
    assert.equal(pn(['policy', 'delete', 'x/web', '--json'], {env}).json?.status, 'ok')
    const gone = pn(['policy', 'delete', 'x/web', '--json'], {env})
    assert.deepEqual([gone.status, gone.json?.error?.code], [3, 'PN_POLICY_NOT_FOUND'])
  })

  it('a named port is refused naming the field, exit 2, and nothing is written', () => {
    const bad = path.join(dir, 'bad.yaml')
    writeFileSync(bad, POLICY.replace('port: 80, endPort: 81', 'port: http'))
    const r = pn(['policy', 'apply', bad, '--json'], {env})
    assert.equal(r.status, 2)
    assert.equal(r.json?.error?.code, 'PN_POLICY_INVALID')
    assert.match(r.json!.error!.message, /spec\.ingress\[0\]\.ports\[0\]\.port: named ports are not supported/)
    assert.deepEqual(pn(['policy', 'list', '--json'], {env}).json?.result, [])
    const both = pn(['policy', 'apply', bad, '-f', bad, '--json'], {env})
    assert.equal(both.json?.error?.code, 'PN_INVALID_ARGUMENT')
  })

  it('namespace label takes key=value and key- words; trace parses --port and names a missing pod', () => {
    const set = pn(['namespace', 'label', 'y', 'team=blue', 'tier=db', '--json'], {env})
    assert.deepEqual(set.json?.result.labels, {team: 'blue', tier: 'db'}, set.stdout + set.stderr)
    const removed = pn(['namespace', 'label', 'y', 'tier-', '--json'], {env})
    assert.deepEqual(removed.json?.result.labels, {team: 'blue'})
    const bad = pn(['namespace', 'label', 'y', 'tier', '--json'], {env})
    assert.deepEqual([bad.status, bad.json?.error?.code, (bad.json?.error as {details?: unknown} | undefined)?.details], [2, 'PN_INVALID_ARGUMENT', {args: ['tier']}])
    const noCluster = pn(['namespace', 'label', 'y', 'a=b', '--json'], {env: {PN_CLUSTER: ''}})
    assert.equal(noCluster.json?.error?.code, 'PN_INVALID_ARGUMENT')
    const port = pn(['policy', 'trace', '--from', 'x/a', '--to', 'y/b', '--port', '80/icmp', '--json'], {env})
    assert.match(port.json?.error?.message ?? '', /parse port "80\/icmp"/)
    const missing = pn(['policy', 'trace', '--from', 'x/a', '--to', '192.0.2.1', '--port', '80', '--json'], {env})
    assert.deepEqual([missing.status, missing.json?.error?.code], [3, 'PN_ENDPOINT_NOT_FOUND'])
    const outside = pn(['policy', 'trace', '--from', '198.51.100.1', '--to', '192.0.2.1', '--port', '53/udp', '--json'], {env})
    assert.equal(outside.json?.result.verdict, 'allowed', outside.stdout)
  })
})
