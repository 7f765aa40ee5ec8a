/**
 * A real etcd (Debian etcd-server) on 127.0.0.1 with free ports and its data dir in a folder the
 * caller owns, stopped by its pid. With `tls`, it serves clients over https with a certificate
 * made here by openssl (a CA, a server certificate for 127.0.0.1 as SAN) and, with
 * `clientCertAuth`, requires a client certificate signed by that CA (also made here).
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import net from 'node:net'
import path from 'node:path'

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port
      srv.close(() => resolve(port))
    })
  })
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.on('connect', () => {
      s.destroy()
      resolve(true)
    })
    s.on('error', () => resolve(false))
  })
}

export interface TestCerts {
  ca: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
  /** A CA etcd does not trust, and a client certificate it signed. */
  otherCa: string
  otherClientCert: string
  otherClientKey: string
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, {cwd, encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`)
}

/** A CA, a server certificate for 127.0.0.1 (SAN), a client certificate; and a second, untrusted CA with its client. */
export function makeCerts(dir: string): TestCerts {
  const f = (name: string) => path.join(dir, name)
  const ca = (name: string) => openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.pem`)], dir)
  const leaf = (name: string, signer: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext)
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${name}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`)], dir)
    openssl(['x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${signer}.pem`), '-CAkey', f(`${signer}.key`), '-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`)], dir)
  }
  ca('pn-test-ca')
  ca('pn-other-ca')
  leaf('server', 'pn-test-ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n')
  leaf('client', 'pn-test-ca', 'extendedKeyUsage=clientAuth\n')
  leaf('other-client', 'pn-other-ca', 'extendedKeyUsage=clientAuth\n')
  return {
    ca: f('pn-test-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    otherCa: f('pn-other-ca.pem'),
    otherClientCert: f('other-client.pem'),
    otherClientKey: f('other-client.key'),
  }
}

export interface TestEtcdOptions {
  /** Serve clients over TLS with these certificates. */
  tls?: TestCerts
  /** With tls: require a client certificate signed by the CA (--client-cert-auth). */
  clientCertAuth?: boolean
  /** Key prefix of `location`. */
  prefix?: string
  /** Run etcd inside this network namespace (`ip netns exec`), serving clients on `host`. */
  netns?: string
  /** Client address (default 127.0.0.1). */
  host?: string
}

/** One etcd on loopback; start() again reuses the same ports and data dir (a restart). */
export class TestEtcd {
  child?: ChildProcess
  clientPort = 0
  peerPort = 0
  readonly dataDir: string

  constructor(
    readonly dir: string,
    readonly opts: TestEtcdOptions = {},
  ) {
    this.dataDir = path.join(dir, 'data')
  }

  get location(): string {
    return `${this.opts.tls ? 'etcds' : 'etcd'}://${this.opts.host ?? '127.0.0.1'}:${this.clientPort}${this.opts.prefix ?? '/pn-test'}`
  }

  async start(): Promise<void> {
    if (!this.clientPort) {
      this.clientPort = await freePort()
      this.peerPort = await freePort()
    }
    const tls = this.opts.tls
    const client = `${tls ? 'https' : 'http'}://${this.opts.host ?? '127.0.0.1'}:${this.clientPort}`
    const peer = `http://127.0.0.1:${this.peerPort}`
    const ns = this.opts.netns
    // `ip netns exec` execs etcd: the child's pid is etcd's.
    this.child = spawn(ns ? 'ip' : 'etcd', [...(ns ? ['netns', 'exec', ns, 'etcd'] : []),
      '--name', 'pn-test', '--data-dir', this.dataDir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `pn-test=${peer}`,
      ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca] : []),
      ...(tls && this.opts.clientCertAuth ? ['--client-cert-auth'] : []),
    ], {stdio: 'ignore'})
    const end = Date.now() + 30_000
    const up = ns
      ? async () => spawnSync('ip', ['netns', 'exec', ns, 'bash', '-c', `exec 3<>/dev/tcp/${this.opts.host ?? '127.0.0.1'}/${this.clientPort}`]).status === 0
      : () => canConnect(this.clientPort)
    while (!(await up())) {
      if (this.child.exitCode !== null) throw new Error(`etcd exited with ${this.child.exitCode}`)
      if (Date.now() > end) throw new Error('etcd did not start within 30 s')
      await new Promise((r) => setTimeout(r, 100))
    }
  }

  /** Stop by pid (SIGTERM, or SIGKILL to simulate a crash) and wait for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    process.kill(child.pid!, signal)
    await exited
  }
}
