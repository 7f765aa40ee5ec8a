/**
 * Endpoint store rails: `pn endpoint show <id>` finds a record by its numeric endpoint id, and
 * attachment keys too long for a file name (CNI sets no limit on a container id) are stored
 * under hashed names while short ones keep theirs.
 */
import assert from 'node:assert/strict'
import {mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {spawnSync} from 'node:child_process'
import {
  allocateEndpointId, attachmentFileName, deleteEndpoint, getEndpoint, listEndpoints, requireEndpointById, saveEndpoint, type EndpointRecord,
} from '../../src/endpoint/store.js'
import {attachmentLockFile} from '../../src/node/lock.js'
import {PN_BIN} from '../helpers/cli.js'

function record(containerId: string, endpointId: number): EndpointRecord {
  return {
    id: `${containerId}:eth0`, containerId, ifname: 'eth0', netns: `/run/netns/x`, ips: ['10.0.1.5'], routerIps: ['10.0.1.1'],
    hostIfname: 'lxc000000000000', hostMac: '02:00:00:00:00:01', hostIfindex: 5, podIfname: 'eth0', podMac: '02:00:00:00:00:02',
    podIfindex: 2, mtu: 1500, endpointId, createdAt: new Date(0).toISOString(),
  }
}

describe('endpoint rails (ids, long container ids)', () => {
  let dir: string
  beforeEach(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'pn-epr-'))))
  afterEach(() => rmSync(dir, {recursive: true, force: true}))

  it('finds a record by endpoint id, through its reservation or by reading the records', async () => {
    const id = await allocateEndpointId(dir, 'web:eth0')
    await saveEndpoint(dir, record('web', id))
    assert.equal((await requireEndpointById(dir, id)).id, 'web:eth0')
    // A record written without a reservation (an older pn) is still found.
    await saveEndpoint(dir, record('old', 7))
    assert.equal((await requireEndpointById(dir, 7)).id, 'old:eth0')
    await assert.rejects(requireEndpointById(dir, 8), {code: 'PN_ENDPOINT_NOT_FOUND'})
    await assert.rejects(requireEndpointById(dir, 0), {code: 'PN_INVALID_ARGUMENT'})
    await assert.rejects(requireEndpointById(dir, 70000), {code: 'PN_INVALID_ARGUMENT'})
  })

  it('pn endpoint show takes the numeric id or --container-id, not neither or both', function () {
    this.timeout(30_000)
    const show = (args: string[]) => {
      const r = spawnSync(process.execPath, [PN_BIN, 'endpoint', 'show', ...args, '--state-dir', dir, '--json'], {encoding: 'utf8'})
      return JSON.parse(r.stdout)
    }
    return (async () => {
      await allocateEndpointId(dir, 'a:eth0')
      const id = await allocateEndpointId(dir, 'web:eth0')
      await saveEndpoint(dir, record('web', id))
      assert.equal(show([String(id)]).result.id, 'web:eth0')
      assert.equal(show(['--container-id', 'web']).result.endpointId, id)
      assert.equal(show([]).error.code, 'PN_INVALID_ARGUMENT')
      assert.equal(show([String(id), '--container-id', 'web']).error.code, 'PN_INVALID_ARGUMENT')
      assert.equal(show(['web']).error.code, 'PN_INVALID_ARGUMENT')
      assert.equal(show(['1']).error.code, 'PN_ENDPOINT_NOT_FOUND')
    })()
  })

  it('an id whose owner reservation cannot be written is given back, not left taken until GC', async () => {
    // `.owners` as a file: writing the owner reservation fails (as ENAMETOOLONG did for long ids).
    await allocateEndpointId(dir, 'first:eth0')
    rmSync(path.join(dir, 'endpoints', '.owners'), {recursive: true, force: true})
    writeFileSync(path.join(dir, 'endpoints', '.owners'), 'not a folder')
    await assert.rejects(allocateEndpointId(dir, 'second:eth0'))
    assert.deepEqual(readdirSync(path.join(dir, 'endpoints', '.ids')), ['1'], 'id 2 stayed taken')
  })

  it('keys up to 200 bytes keep their file names; longer ones are hashed and still read, list and delete', async () => {
    assert.equal(attachmentFileName('abc:eth0'), 'abc:eth0')
    const at200 = `${'a'.repeat(195)}:eth0`
    assert.equal(attachmentFileName(at200), at200)
    assert.match(attachmentFileName(`${'a'.repeat(196)}:eth0`), /^~[0-9a-f]{64}$/)
    for (const n of [240, 300, 1000]) {
      const cid = 'c'.repeat(n)
      const id = await allocateEndpointId(dir, `${cid}:eth0`)
      assert.equal(await allocateEndpointId(dir, `${cid}:eth0`), id, 'a retried ADD gets its id again')
      await saveEndpoint(dir, record(cid, id))
      assert.equal((await getEndpoint(dir, cid, 'eth0'))?.containerId, cid)
      assert.ok(path.basename(attachmentLockFile(dir, cid, 'eth0')).length <= 70)
    }
    assert.equal((await listEndpoints(dir)).length, 3)
    for (const n of [240, 300, 1000]) await deleteEndpoint(dir, 'c'.repeat(n), 'eth0')
    assert.deepEqual(readdirSync(path.join(dir, 'endpoints')).filter((f) => !f.startsWith('.')), [])
    assert.deepEqual(readdirSync(path.join(dir, 'endpoints', '.ids')), [])
    assert.deepEqual(readdirSync(path.join(dir, 'endpoints', '.owners')), [])
  })
})
