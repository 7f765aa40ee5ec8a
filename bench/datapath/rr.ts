/**
 * A tiny TCP request/response loop (netperf TCP_RR in spirit): the client sends 1 byte, waits
 * for the 1-byte echo, repeats for a fixed time, and prints transactions per second as JSON.
 *   node dist/bench/datapath/rr.js server PORT
 *   node dist/bench/datapath/rr.js client HOST PORT SECONDS
 */
import net from 'node:net'

const [mode, a, b, c] = process.argv.slice(2)

if (mode === 'server') {
  const server = net.createServer((sock) => {
    sock.setNoDelay(true)
    sock.on('data', (d) => sock.write(d))
    sock.on('error', () => undefined)
  })
  server.listen(Number(a), '::', () => process.stdout.write('listening\n'))
} else if (mode === 'client') {
  const seconds = Number(c ?? 2)
  const sock = net.connect({host: a, port: Number(b)}, () => {
    sock.setNoDelay(true)
    const start = process.hrtime.bigint()
    const end = start + BigInt(Math.round(seconds * 1e9))
    let n = 0
    const one = Buffer.from([0x2a])
    sock.on('data', (d) => {
      n += d.length
      const now = process.hrtime.bigint()
      if (now >= end) {
        const secs = Number(now - start) / 1e9
        process.stdout.write(JSON.stringify({transactions: n, seconds: secs, rate: n / secs}) + '\n')
        sock.destroy()
        return
      }
      sock.write(one)
    })
    sock.write(one)
  })
  sock.on('error', (err) => {
    process.stderr.write(`rr client: ${err.message}\n`)
    process.exit(1)
  })
} else {
  process.stderr.write('usage: rr.js server PORT | client HOST PORT SECONDS\n')
  process.exit(2)
}
