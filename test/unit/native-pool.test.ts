import assert from 'node:assert/strict'
import type {WorkerAnswer} from '../../src/exec/netlink-worker.js'
import {RecordingBackend} from '../../src/kernel/backend.js'
import {NativeBackend, type WorkerLink} from '../../src/kernel/native.js'
import type {KernelOp} from '../../src/kernel/ops.js'

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** A stand-in worker whose every request takes `ms`; `answer` builds the JSON body from the op lines. */
function slowWorker(name: string, ms: number, seen: string[], answer?: (lines: string[]) => object): WorkerLink {
  return {
    request: async (netns: string | undefined, _count: number, body: Buffer): Promise<WorkerAnswer> => {
      const lines = body.toString('latin1').trim().split('\n')
      seen.push(`${name}: ${lines.map((l) => l.split(' ')[0]).join(',')}${netns ? ` in ${netns}` : ''}`)
      await sleep(ms)
      const json = answer?.(lines) ?? {results: lines.map((l) => (l.startsWith('link.del') ? {deleted: true} : l.startsWith('link.get') ? {} : {}))}
      return {code: 0, body: Buffer.from(JSON.stringify(json))}
    },
    broken: () => undefined,
  }
}

const get = (name: string): KernelOp => ({kind: 'link.get', name})
const del = (name: string): KernelOp => ({kind: 'link.del', name})

describe('native backend over several kernel workers (src/kernel/native.ts)', () => {
  it('sends each request to the worker with the fewest in flight, the first when all are idle', async () => {
    const seen: string[] = []
    const b = new NativeBackend([slowWorker('w0', 20, seen), slowWorker('w1', 20, seen), slowWorker('w2', 20, seen)], new RecordingBackend())
    await b.apply([get('a')])
    await Promise.all([b.apply([get('b')]), b.apply([get('c')]), b.apply([get('d')]), b.apply([get('e')])])
    assert.deepEqual(seen, ['w0: link.get', 'w0: link.get', 'w1: link.get', 'w2: link.get', 'w0: link.get'])
    assert.deepEqual(b.load, [0, 0, 0])
  })

  it('answers a lone deletion in its own netns once the link is gone, before the worker answers; that worker stays busy', async () => {
    const seen: string[] = []
    let present = true
    const b = new NativeBackend([slowWorker('w0', 200, seen), slowWorker('w1', 5, seen)], new RecordingBackend(), {earlyLinkDelete: {present: () => present}})
    setTimeout(() => (present = false), 10)
    const t0 = performance.now()
    const [r] = await b.apply([del('lxc1')])
    const ms = performance.now() - t0
    assert.deepEqual(r, {kind: 'link.del', deleted: true})
    assert.ok(ms < 150, `answered after ${ms} ms, not after the worker's 200`)
    assert.deepEqual(b.load, [1, 0], 'the deletion still runs on w0')
    await b.apply([get('x')])
    assert.equal(seen.at(-1), 'w1: link.get', 'the next request goes to the idle worker')
  })

  it("gives the worker's own answer for a link that is not there, in another netns, that the worker answers first, or without the option", async () => {
    const seen: string[] = []
    const absentAnswer = (lines: string[]) => ({results: lines.map(() => ({deleted: false}))})
    const b = new NativeBackend([slowWorker('w0', 5, seen, absentAnswer)], new RecordingBackend(), {earlyLinkDelete: {present: (dev) => dev !== 'lxc-none'}})
    assert.deepEqual(await b.apply([{kind: 'link.del', name: 'lxc-none', missingOk: true}]), [{kind: 'link.del', deleted: false}], 'an absent link: DEL knows it deleted nothing')
    // The link never goes in this fake: the worker's answer (5 ms) is the answer.
    assert.deepEqual(await b.apply([del('lxc2')]), [{kind: 'link.del', deleted: false}])
    assert.deepEqual(await b.apply([del('eth0')], {netns: '/run/netns/p'}), [{kind: 'link.del', deleted: false}])
    const plain = new NativeBackend([slowWorker('w9', 5, seen, absentAnswer)], new RecordingBackend())
    assert.deepEqual(await plain.apply([del('lxc3')]), [{kind: 'link.del', deleted: false}])
    assert.equal(seen.length, 4)
  })

  it('reports a worker failure that comes after the early answer', async () => {
    const seen: string[] = []
    const late: string[] = []
    let present = true
    const failing = slowWorker('w0', 60, seen, () => ({results: [], error: {index: 0, errno: 16}}))
    const b = new NativeBackend([failing], new RecordingBackend(), {earlyLinkDelete: {present: () => present, onLateFailure: (op, why) => late.push(`${op.kind}: ${why}`)}})
    setTimeout(() => (present = false), 5)
    assert.deepEqual(await b.apply([del('lxc3')]), [{kind: 'link.del', deleted: true}])
    await sleep(100)
    assert.equal(late.length, 1)
    assert.match(late[0], /^link\.del: delete link lxc3: /)
  })

  it('an adopted (synchronous) worker stops waiting once the device is gone; its late answer is read with the next request', async () => {
    let present = true
    let looked = 0
    const late: Array<() => void> = []
    const sync: WorkerLink = {
      request: (_netns, _count, body, gaveUp) => {
        // What adoptHelper does: the request blocks until answered, or until gaveUp() says stop.
        if (gaveUp) {
          while (!gaveUp()) if (++looked === 3) present = false
          return new Promise<WorkerAnswer>((resolve) => late.push(() => resolve({code: 0, body: Buffer.from(JSON.stringify({results: [{deleted: true}]}))})))
        }
        const lines = body.toString('latin1').trim().split('\n')
        return Promise.resolve({code: 0, body: Buffer.from(JSON.stringify({results: lines.map(() => ({}))}))})
      },
      broken: () => undefined,
    }
    const b = new NativeBackend(sync, new RecordingBackend(), {earlyLinkDelete: {present: () => present, pollMs: 1}})
    assert.deepEqual(await b.apply([del('lxc9')]), [{kind: 'link.del', deleted: true}], 'answered with the worker still busy')
    assert.equal(looked, 3, 'it looked until the device was gone')
    assert.equal(late.length, 1, 'the worker\'s own answer is still due')
    late[0]()
    assert.deepEqual(await b.apply([get('lo')]), [{kind: 'link.get'}], 'the next request is served')
  })
})
