import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {bpfSourceDir} from '../../src/datapath/bpf/compile.js'
import {decodeRecord, EventPipeParser, traceGateArgs, watchdogArgv} from '../../src/datapath/bpf/monitor.js'
import {decodeTraceEvent, OBS_DEFINES, OBSERVATION_POINTS, TRACE_EVENT} from '../../src/datapath/bpf/maps/trace.js'
import {RecordingRunner} from '../../src/exec/runner.js'
import {describeEvent, gateFlags, makeResolver, matchesFilter} from '../../src/node/monitor.js'
import type {EndpointRecord} from '../../src/endpoint/store.js'

/** A trace_event as the kernel writes it (little-endian host). */
function rawEvent(o: {obs: number; point: number; reason: number; type?: number; ifindex: number; src: number[]; dst: number[]; proto?: number; l4?: number[]; ids?: [number, number]}): Buffer {
  const b = Buffer.alloc(TRACE_EVENT.size + 4) // perf pads the sample
  b.writeBigUInt64LE(5_000_000_000n, 0)
  b.writeUInt32LE(o.ifindex, 8)
  b.writeUInt32LE(98, 12)
  b[16] = o.type ?? 1
  b[17] = o.obs
  b[18] = o.point
  b[19] = o.reason
  b[20] = 2
  b[21] = 4
  b[22] = o.proto ?? 1
  Buffer.from(o.l4 ?? [8, 0, 0x12, 0x34, 0x00, 0x2a, 0x00, 0x01]).copy(b, 24)
  b.writeUInt16LE(0x0800, 32)
  Buffer.from(o.src).copy(b, 40)
  Buffer.from(o.dst).copy(b, 56)
  if (o.ids) {
    b.writeUInt32LE(o.ids[0], 88)
    b.writeUInt32LE(o.ids[1], 92)
  }
  return b
}

function pipeText(buf: Buffer): string {
  const hex = [...buf].map((x) => x.toString(16).padStart(2, '0'))
  const lines = []
  for (let i = 0; i < hex.length; i += 16) lines.push(hex.slice(i, i + 8).join(' ') + (i + 8 < hex.length ? '  ' + hex.slice(i + 8, i + 16).join(' ') : ''))
  return `== @2148.505472338 CPU: 1 index: 1 =====\n${lines.join('\n')}\n`
}

const rec = (over: Partial<EndpointRecord>): EndpointRecord =>
  ({id: 'x:eth0', containerId: 'x', ifname: 'eth0', netns: '/run/netns/x', ips: [], routerIps: [], hostIfname: 'lxcx', hostMac: '', hostIfindex: 0, podIfname: 'eth0', podMac: '', podIfindex: 2, mtu: 1500, endpointId: 1, createdAt: '', ...over}) as EndpointRecord

describe('pn monitor: events, parser, naming, filters (no root)', () => {
  it('OBS_* in trace.h equal the TypeScript table', () => {
    const text = readFileSync(path.join(bpfSourceDir(), 'include/trace.h'), 'utf8')
    const header = Object.fromEntries([...text.matchAll(/^#define\s+(OBS_[A-Z_]+)\s+(\d+)/gm)].map((m) => [m[1], Number(m[2])]))
    assert.deepEqual(header, OBS_DEFINES)
    for (const [name, n] of Object.entries(OBS_DEFINES)) assert.equal(OBSERVATION_POINTS[n], name.slice(4).toLowerCase().replace('_', '-'))
  })

  it('decodes a trace event: point, program, outcome, addresses, ICMP id/seq', () => {
    const ev = decodeTraceEvent(rawEvent({obs: 2, point: 1, reason: 2, ifindex: 5, src: [10, 0, 1, 10], dst: [10, 0, 1, 11]}))
    assert.equal(ev.type, 'trace')
    assert.equal(ev.observationPoint, 'to-endpoint')
    assert.equal(ev.program, 'from-container')
    assert.equal(ev.reason.name, 'TRACE_REDIRECT_PEER')
    assert.equal(ev.srcIp, '10.0.1.10')
    assert.equal(ev.dstIp, '10.0.1.11')
    assert.equal(ev.protocol, 'icmp')
    assert.deepEqual(ev.icmp, {type: 8, code: 0, id: 42, seq: 1})
    assert.equal(ev.ktimeNs, 5_000_000_000n)
    assert.equal(ev.service, undefined)
  })

  it('decodes a drop with its reason name and TCP ports', () => {
    const ev = decodeTraceEvent(rawEvent({type: 2, obs: 1, point: 1, reason: 132, ifindex: 5, src: [10, 0, 1, 99], dst: [10, 0, 1, 11], proto: 6, l4: [0x1f, 0x90, 0, 80, 0, 0, 0, 0]}))
    assert.equal(ev.type, 'drop')
    assert.equal(ev.reason.name, 'DROP_INVALID_SOURCE')
    assert.equal(ev.srcPort, 8080)
    assert.equal(ev.dstPort, 80)
  })

  it('decodes a policy drop with both identities (none when no policy check ran)', () => {
    const ev = decodeTraceEvent(rawEvent({type: 2, obs: 2, point: 1, reason: 133, ifindex: 5, src: [10, 0, 1, 10], dst: [10, 0, 1, 11], proto: 6, l4: [0x9c, 0x40, 0, 80, 0, 0, 0, 0], ids: [256, 257]}))
    assert.equal(ev.reason.name, 'DROP_POLICY_DENIED')
    assert.deepEqual(ev.identities, {src: 256, dst: 257})
    const plain = decodeTraceEvent(rawEvent({obs: 1, point: 1, reason: 0, ifindex: 5, src: [10, 0, 1, 10], dst: [10, 0, 1, 11]}))
    assert.equal(plain.identities, undefined)
  })

  it('the event_pipe parser cuts records out of arbitrary chunks and skips the padding', () => {
    const text = pipeText(rawEvent({obs: 1, point: 1, reason: 0, ifindex: 5, src: [10, 0, 1, 10], dst: [10, 0, 2, 10]})) + 'lost 3 events\n'
    const p = new EventPipeParser()
    const out = []
    for (let i = 0; i < text.length; i += 7) out.push(...p.feed(text.slice(i, i + 7)))
    assert.equal(out.length, 2)
    assert.equal(out[0].kind, 'sample')
    assert.ok(out[0].kind === 'sample' && out[0].data.length >= TRACE_EVENT.size)
    assert.deepEqual(out[1], {kind: 'lost', cpu: -1, count: 3})
    const item = decodeRecord(out[0])
    assert.equal(item?.kind === 'event' && item.event.observationPoint, 'from-endpoint')
  })

  it('names devices and endpoints, and filters on them', () => {
    const a = rec({containerId: 'pod-a', id: 'pod-a:eth0', ips: ['10.0.1.10'], hostIfname: 'lxca', hostIfindex: 5, endpointId: 7, podName: 'web'})
    const b = rec({containerId: 'pod-b', id: 'pod-b:eth0', ips: ['10.0.1.11'], hostIfname: 'lxcb', hostIfindex: 6, endpointId: 8})
    const res = makeResolver([{ifindex: 5, ifname: 'lxca'}, {ifindex: 6, ifname: 'lxcb'}], [a, b])
    const to = describeEvent(decodeTraceEvent(rawEvent({obs: 2, point: 1, reason: 2, ifindex: 5, src: [10, 0, 1, 10], dst: [10, 0, 1, 11]})), res, 0n)
    assert.equal(to.device, 'lxca')
    assert.equal(to.target, 'lxcb')
    assert.equal(to.endpoint?.containerId, 'pod-b')
    assert.equal(to.srcEndpoint?.podName, 'web')
    assert.equal(to.time, '1970-01-01T00:00:05.000Z')
    assert.equal(matchesFilter(to, {endpointId: 7}), true)
    assert.equal(matchesFilter(to, {containerId: 'pod-c'}), false)
    assert.equal(matchesFilter(to, {ip: '10.0.1.11'}), true)
    assert.equal(matchesFilter(to, {fromIp: '10.0.1.11'}), false)
    assert.equal(matchesFilter(to, {toIp: '10.0.1.11', types: ['trace']}), true)
    assert.equal(matchesFilter(to, {types: ['drop']}), false)
    assert.equal(gateFlags(), 3)
    assert.equal(gateFlags(['drop']), 2)
  })

  it('the watchdog is flock waiting on the monitor lock, then closing the gate; spawned through the runner', async () => {
    assert.deepEqual(traceGateArgs('/r', 0).slice(-5), ['hex', '00', '00', '00', '00'])
    assert.deepEqual(watchdogArgv('/s/monitor.lock', '/r').slice(0, 4), ['-x', '/s/monitor.lock', 'bpftool', 'map'])
    const r = new RecordingRunner(() => ({stdout: pipeText(rawEvent({obs: 1, point: 1, reason: 0, ifindex: 1, src: [1, 2, 3, 4], dst: [5, 6, 7, 8]}))}))
    await r.spawnDetached('flock', watchdogArgv('/s/monitor.lock', '/r'))
    const s = r.stream('bpftool', ['map', 'event_pipe', 'pinned', '/r/maps/pn_events'], {diesWithParent: true})
    let text = ''
    for await (const c of s.chunks) text += c
    assert.match(text, /CPU: 1/)
    assert.deepEqual(r.records.map((x) => x.argv[0]), ['flock', 'setpriv'])
  })
})
