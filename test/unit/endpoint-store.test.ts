import assert from 'node:assert/strict'
import {mkdtempSync, rmSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {allocateEndpointId, deleteEndpoint, endpointIdOwners, getEndpoint, listEndpoints, requireEndpoint, saveEndpoint, type EndpointRecord} from '../../src/endpoint/store.js'
import {writeFileSync} from 'node:fs'
import {cniGc} from '../../src/cni/gc.js'
import {parseNetConf} from '../../src/cni/netconf.js'
import {parseCniArgs} from '../../src/cni/env.js'
import {RecordingRunner} from '../../src/exec/runner.js'

function record(containerId: string, endpointId: number): EndpointRecord {
  return {
    id: `${containerId}:eth0`, containerId, ifname: 'eth0', netns: `/run/netns/${containerId}`, ips: ['10.0.1.5'], routerIps: ['10.0.1.1'],
    hostIfname: 'lxc000000000000', hostMac: '02:00:00:00:00:01', hostIfindex: 5, podIfname: 'eth0', podMac: '02:00:00:00:00:02',
    podIfindex: 2, mtu: 1500, endpointId, createdAt: new Date(0).toISOString(),
  }
}

describe('endpoint store', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-ep-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('saves, reads, lists and deletes records keyed by containerId:ifname', async () => {
    assert.deepEqual(await listEndpoints(dir), [])
    await saveEndpoint(dir, record('b', 2))
    await saveEndpoint(dir, record('a', 1))
    assert.equal((await getEndpoint(dir, 'a', 'eth0'))?.endpointId, 1)
    assert.deepEqual((await listEndpoints(dir)).map((e) => e.id), ['a:eth0', 'b:eth0'])
    assert.deepEqual((await deleteEndpoint(dir, 'a', 'eth0')).deleted, true)
    assert.deepEqual((await deleteEndpoint(dir, 'a', 'eth0')).deleted, false)
    await assert.rejects(requireEndpoint(dir, 'a', 'eth0'), {code: 'PN_ENDPOINT_NOT_FOUND'})
  })

  it('hands out the lowest free id, idempotently per owner, and reuses freed ids', async () => {
    assert.equal(await allocateEndpointId(dir, 'a:eth0'), 1)
    assert.equal(await allocateEndpointId(dir, 'a:eth0'), 1)
    assert.equal(await allocateEndpointId(dir, 'b:eth0'), 2)
    await saveEndpoint(dir, record('a', 1))
    await deleteEndpoint(dir, 'a', 'eth0')
    assert.equal(await allocateEndpointId(dir, 'c:eth0'), 1)
  })

  it('never gives two concurrent callers the same id', async () => {
    const ids = await Promise.all(Array.from({length: 8}, (_, i) => allocateEndpointId(dir, `c${i}:eth0`)))
    assert.deepEqual([...ids].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8])
  })

  it('allocates without a lock file and without reading any record (O_EXCL id files)', async () => {
    for (let i = 0; i < 5; i++) await saveEndpoint(dir, record(`r${i}`, i + 1))
    // A record that is not JSON would fail a scan of the records; allocation never reads them.
    writeFileSync(path.join(dir, 'endpoints', 'broken:eth0.json'), '{')
    assert.equal(await allocateEndpointId(dir, 'n:eth0'), 1, 'ids come from the id files, not the records')
    assert.deepEqual((await import('node:fs')).readdirSync(path.join(dir, 'endpoints')).filter((f) => f.endsWith('.lock')), [])
  })

  it('an id taken by an ADD killed before its record is reclaimed by CNI GC', async () => {
    assert.equal(await allocateEndpointId(dir, 'killed:eth0'), 1) // the ADD died right after this
    assert.equal(await allocateEndpointId(dir, 'alive:eth0'), 2)
    await saveEndpoint(dir, record('alive', 2))
    const runner = new RecordingRunner((argv) => (argv.includes('link') ? {stdout: '[]'} : undefined))
    const conf = parseNetConf(JSON.stringify({cniVersion: '1.1.0', name: 'pn', type: 'pn', 'cni.dev/valid-attachments': [{containerID: 'alive', ifname: 'eth0'}]}))
    await cniGc({command: 'GC', conf, args: parseCniArgs(undefined), stateDir: dir, runner, log: () => {}})
    assert.deepEqual((await endpointIdOwners(dir)).map((o) => o.owner), ['alive:eth0'])
    assert.equal(await allocateEndpointId(dir, 'next:eth0'), 1, 'the reclaimed id is free again')
  })

  it('rejects invalid keys before touching the disk', async () => {
    await assert.rejects(async () => getEndpoint(dir, '../x', 'eth0'), {code: 'PN_INVALID_CONTAINER_ID'})
    await assert.rejects(async () => getEndpoint(dir, 'x', 'a/b'), {code: 'PN_INVALID_IFNAME'})
  })
})
