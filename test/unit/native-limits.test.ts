/**
 * The native code's protocol limits seen from TypeScript (each C side checks the same; its own
 * tests and fuzzing are scripts/test-native.sh): the agent's wire format, and the record frames
 * the addon (dist/native/pn-sys.node, no root) writes into maps.
 */
import assert from 'node:assert/strict'
import {decodeRequest, encodeRequest, MAGIC, MAX_WIRE_ENV, MAX_WIRE_FIELD, MAX_WIRE_REQUEST, WireError} from '../../src/agent/wire.js'
import {sys} from '../../src/exec/sys.js'
import {MAX_RECORDS, OP_UPDATE, OpList, RECORD_LAYOUT, RECORD_SIZE} from '../../src/datapath/bpf/op-list.js'

describe('native protocol limits (TypeScript side)', function () {
  this.timeout(20_000)

  it('wire: a netstring over 16 MiB or with a 9-digit length, too many variables, or a request over 32 MiB is malformed, not incomplete', () => {
    const refused = (b: Buffer, re: RegExp) =>
      assert.throws(() => decodeRequest(b), (e: WireError) => e instanceof WireError && !e.incomplete && re.test(e.message))
    refused(Buffer.from(`${MAGIC}${MAX_WIRE_FIELD + 1}:`), /over the limit/)
    refused(Buffer.from(`${MAGIC}123456789:`), /too long/)
    refused(Buffer.from(`${MAGIC}0:,4:${MAX_WIRE_ENV + 1},`), /environment count/)
    refused(Buffer.alloc(MAX_WIRE_REQUEST + 1), /request of .* bytes is over the limit/)
    // At the limit it still decodes.
    const big = encodeRequest({netnsIno: '1', env: {CNI_COMMAND: 'ADD'}, stdin: 'x'.repeat(MAX_WIRE_FIELD)})
    assert.equal(decodeRequest(big).stdin.length, MAX_WIRE_FIELD)
  })

  it('the addon refuses a frame that is not 4 + 28 × count bytes with count ≤ 1048576, or has a bad op or map index, before it opens a map', () => {
    const frame = (count: number, bytes = 4 + count * RECORD_SIZE) => {
      const b = Buffer.alloc(bytes)
      b.writeUInt32LE(count, 0)
      return b
    }
    const refused = (paths: string[], f: Buffer, re: RegExp) => assert.throws(() => sys().mapWriteFrame(paths, f, RECORD_LAYOUT), (e: Error) => e instanceof TypeError && re.test(e.message))
    const nowhere = ['/nonexistent/pn-map']
    refused(nowhere, frame(MAX_RECORDS, 4), /not a u32 count/)
    refused(nowhere, frame(MAX_RECORDS + 1, 4 + (MAX_RECORDS + 1) * RECORD_SIZE), /at most 1048576/)
    refused(nowhere, frame(2, 4 + RECORD_SIZE), /frame of 32 bytes/)
    refused(nowhere, Buffer.alloc(3), /frame of 3 bytes/)
    const ops = new OpList([{name: 'm', keySize: 4, valueSize: 4}])
    ops.add(OP_UPDATE, 0)
    ops.add(3, 0)
    refused(nowhere, ops.frame(), /record 1 has op 3/)
    const other = new OpList([{name: 'm', keySize: 4, valueSize: 4}])
    other.add(OP_UPDATE, 1)
    refused(nowhere, other.frame(), /record 0 has op 1 and map 1 \(ops 1 and 2, 1 maps\)/)
    // The layout is the caller's (op-list.ts); one that cannot hold an op, a map and a key is refused.
    assert.throws(() => sys().mapWriteFrame(nowhere, frame(0), [28, 1, 16]), (e: Error) => e instanceof TypeError && /2 <= keyOffset/.test(e.message))
    // A good frame gets as far as opening the map.
    assert.throws(() => sys().mapWriteFrame(nowhere, frame(0), RECORD_LAYOUT), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && /open map \/nonexistent\/pn-map/.test(e.message))
  })
})
