/** Shared flag builders, so the same flag means the same thing in every command (CNI words). */
import {Flags} from '@oclif/core'
import {LATEST_VERSION, SUPPORTED_VERSIONS} from '../cni/spec.js'

// oclif's flag inference types these as `string | undefined` even when required; commands that
// declare them required may rely on oclif having enforced it.
export const containerIdFlag = (required = true) =>
  Flags.string({summary: 'Container ID (CNI_CONTAINERID).', required})
export const netnsFlag = (required = true) =>
  Flags.string({summary: 'Network namespace path, e.g. /run/netns/pod1 or /proc/PID/ns/net (CNI_NETNS).', required})
export const ifnameFlag = () => Flags.string({summary: 'Interface name inside the pod (CNI_IFNAME).', default: 'eth0'})
export const podCidrFlag = () =>
  Flags.string({
    summary: 'Pod CIDR to work on instead of the node context (standalone use; repeat once per family).',
    multiple: true,
    // Greedy multiple flags would swallow a following positional argument (an IP, a node name).
    multipleNonGreedy: true,
  })
export const mtuFlag = () => Flags.integer({summary: 'MTU (default: the node uplink MTU).', min: 68, max: 65535})
export const poolFlag = () =>
  Flags.string({summary: 'Cluster pool: a file (default <state-dir>/cluster-pool.json), etcd://HOST:PORT[,HOST:PORT…][/PREFIX], or etcds://… (TLS).', env: 'PN_POOL'})

/** The pool as part of a cluster store: `--cluster LOC` names the same pool as `--pool` at its etcd URL, or `<dir>/cluster-pool.json`. */
export const poolClusterFlag = () =>
  Flags.string({summary: 'The cluster store whose pool this is (docs/CLUSTER.md): the same as --pool at its etcd URL, or DIR/cluster-pool.json for a directory store. --pool (PN_POOL) wins when both are given.', env: 'PN_CLUSTER'})
export const clusterFlag = () =>
  Flags.string({summary: 'Cluster store: etcd://HOST:PORT[,HOST:PORT…][/PREFIX], etcds://… (TLS), or a directory for one machine.', env: 'PN_CLUSTER', required: true})
/** TLS to an etcds:// pool; PN_ETCD_CA/PN_ETCD_CERT/PN_ETCD_KEY are read by the entry (src/entry/env.ts). */
export const etcdTlsFlags = () => ({
  'etcd-ca': Flags.string({summary: 'CA (PEM) that signed etcd\'s certificate, for an etcds:// pool (PN_ETCD_CA; default: the system CAs).'}),
  'etcd-cert': Flags.string({summary: 'Client certificate (PEM) for an etcds:// pool, with --etcd-key (PN_ETCD_CERT).'}),
  'etcd-key': Flags.string({summary: 'Key (PEM) of --etcd-cert (PN_ETCD_KEY).'}),
})
export const dryRunFlag = () =>
  Flags.boolean({summary: 'Print the exact ip/tc/bpftool/sysctl commands this would run (reading the kernel, changing nothing).'})
export const cniVersionFlag = (summary = 'cniVersion of the request (selects the result format).', defaultVersion: string = LATEST_VERSION) =>
  Flags.string({summary, default: defaultVersion, options: [...SUPPORTED_VERSIONS]})
export const cniArgsFlag = () =>
  Flags.string({summary: 'CNI_ARGS, e.g. "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;IP=10.0.1.9".'})
