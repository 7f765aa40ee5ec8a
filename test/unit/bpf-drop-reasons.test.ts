import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {bpfSourceDir} from '../../src/datapath/bpf/compile.js'
import {DROP_REASONS, TRACE_REASONS, reasonFromMetricByte} from '../../src/datapath/bpf/drop-reasons.js'

/** `#define NAME VALUE /* text *\/` lines of the shared header. */
function parseHeader(): {name: string; code: number; description: string}[] {
  const text = readFileSync(path.join(bpfSourceDir(), 'include/drop_reasons.h'), 'utf8')
  const out = []
  for (const m of text.matchAll(/^#define\s+((?:DROP|TRACE)_[A-Z0-9_]+)\s+(-?\d+)\s*\/\*\s*(.*?)\s*\*\/\s*$/gm)) {
    out.push({name: m[1], code: Number(m[2]), description: m[3]})
  }
  return out
}

describe('bpf drop reasons (drop_reasons.h ↔ drop-reasons.ts)', () => {
  it('the TypeScript table equals the C header, name for name and code for code', () => {
    const header = parseHeader()
    assert.ok(header.length >= 10, `parsed only ${header.length} reasons from the header`)
    const ts = [...TRACE_REASONS, ...DROP_REASONS].map((r) => ({name: r.name, code: r.code, description: r.description}))
    assert.deepEqual(ts.sort((a, b) => a.code - b.code), header.sort((a, b) => a.code - b.code))
  })

  it('drops are negative and ≥130 in magnitude, traces small and non-negative, codes unique', () => {
    for (const d of DROP_REASONS) assert.ok(d.code <= -130 && d.code >= -255, d.name)
    for (const t of TRACE_REASONS) assert.ok(t.code >= 0 && t.code < 130, t.name)
    const codes = [...TRACE_REASONS, ...DROP_REASONS].map((r) => r.code)
    assert.equal(new Set(codes).size, codes.length)
  })

  it('decodes the metrics reason byte back to its name', () => {
    assert.equal(reasonFromMetricByte(132).name, 'DROP_INVALID_SOURCE')
    assert.equal(reasonFromMetricByte(132).code, -132)
    assert.equal(reasonFromMetricByte(2).name, 'TRACE_REDIRECT_PEER')
    assert.equal(reasonFromMetricByte(250).name, 'UNKNOWN_250')
  })
})
