/**
 * Kernel operations as typed values. A flow says *what* it wants the kernel to do or tell
 * (create a veth with its peer in a netns, add an address, a route, a neighbour, write a
 * sysctl, show a link) and a backend (backend.ts) does it: the tools backend renders the ops to
 * `ip` command lines through the Runner (tools.ts); the native backend sends them to the kernel
 * worker, which speaks netlink (native.ts). Flows never build tool text and never read tool output.
 *
 * The union covers links, addresses, routes, neighbours, sysctls, tc hooks (a clsact qdisc and
 * a pinned program attached as a direct-action filter), pinned programs, and map entries (update,
 * delete, lookup, dump). Keys and values are raw bytes in the map's own layout (the codecs in
 * src/datapath/bpf/maps/ build them); a map is named by its pin path.
 */

/** The subset of a link's state pn reads (the names of `ip -j -d link show`). */
export interface LinkInfo {
  ifindex: number
  ifname: string
  mtu: number
  address: string
  operstate?: string
  flags?: string[]
  /** ifindex of a veth's peer when the peer is in another netns. */
  link_index?: number
  /** Name of a veth's peer when the peer is in the same netns. */
  link?: string
  linkinfo?: {info_kind?: string}
}

/** One link's addresses (`ip -j addr show`). */
export interface AddrLink {
  ifname?: string
  addr_info?: {family?: string; local?: string; prefixlen?: number; address?: string; scope?: string}[]
}

/** One route (`ip -j route show`). */
export interface RouteEntry {
  type?: string
  dst: string
  gateway?: string
  dev?: string
  prefsrc?: string
  table?: string
  scope?: string
  /** Who made it (`kernel` for the kernel's own, `boot` for `ip route add`). */
  protocol?: string
  nexthops?: {gateway?: string; dev?: string}[]
}

/** The far end of a veth: created directly in `netns` (a path) under its final name. */
export interface VethPeer {
  name: string
  address?: string
  mtu?: number
  netns?: string
}

/** A tc hook of clsact. */
export type TcDirection = 'ingress' | 'egress'

/** One tc filter on a hook (`tc -j filter show`), the parts pn reads. */
export interface TcFilter {
  pref: number
  /** `bpf` for pn's; other kinds are listed so pn never mistakes a hook for empty. */
  kind: string
  handle?: number
  /** The attached program, for a bpf filter. */
  prog?: {id: number; name?: string; tag?: string}
}

/** One entry of a map dump: `value` for a plain map, `values` (one per possible CPU) for a per-CPU map. */
export interface MapEntry {
  key: Buffer
  value?: Buffer
  values?: Buffer[]
  /** The kernel would not read the value out (a perf event array's fds): its errno name. */
  unreadable?: string
}

/**
 * Route protocols pn names (rtm_protocol): `pn` marks the routes the cluster agent manages to
 * other nodes' pod CIDRs (--auto-direct-routes). 112 is no protocol iproute2 names
 * (/etc/iproute2/rt_protos): `ip route` shows `proto 112`, route.list `protocol: "112"`.
 */
export const ROUTE_PROTOCOLS = {pn: 112} as const
export type RouteProtocol = keyof typeof ROUTE_PROTOCOLS

/** A map as the kernel holds it (`map.info`). */
export interface MapShape {
  id: number
  type: string
  keySize: number
  valueSize: number
  maxEntries: number
}

export type KernelOp =
  /** Create a veth pair. */
  | {kind: 'link.add'; type: 'veth'; name: string; address?: string; mtu?: number; txqueuelen?: number; peer: VethPeer}
  /**
   * Create a VXLAN device in collect-metadata mode (`external`: no VNI, no remote of its own; each
   * packet's tunnel key comes from BPF, bpf_skb_set_tunnel_key) on UDP `dstport`, learning off.
   */
  | {kind: 'link.add'; type: 'vxlan'; name: string; address?: string; mtu?: number; dstport: number}
  /** Set a link's MTU and/or bring it up or down. */
  | {kind: 'link.set'; name: string; up?: boolean; mtu?: number}
  /** Delete a link (a veth's peer goes with it); `missingOk`: an absent link is `{deleted: false}`, not an error. */
  | {kind: 'link.del'; name: string; missingOk?: boolean}
  /** One link by name; absent is `{link: undefined}`. */
  | {kind: 'link.get'; name: string}
  | {kind: 'link.list'}
  /** Addresses of one link (absent: none) or of all. */
  | {kind: 'addr.list'; dev?: string}
  /** Routes of one family: the main table, or every table (`table: 'all'`); `exact`: only this prefix. */
  | {kind: 'route.list'; family: 4 | 6; table?: 'all'; exact?: string}
  /** `address` with its prefix length (`10.0.1.5/32`); `nodad`: IPv6 without duplicate address detection; `replace`: add or update. */
  | {kind: 'addr.add'; dev: string; address: string; scope?: 'link'; nodad?: boolean; replace?: boolean}
  | {kind: 'addr.del'; dev: string; address: string}
  /**
   * `dst` with its prefix length (`0.0.0.0/0`, `::/0` for the default); `src`: preferred source; `replace`: create or overwrite;
   * `proto`: who made it (ROUTE_PROTOCOLS; default `boot`, as `ip route add`), so its maker can find its routes again.
   */
  | {kind: 'route.add'; dst: string; dev: string; via?: string; scope?: 'link'; src?: string; mtu?: number; replace?: boolean; proto?: RouteProtocol}
  /** Delete a route; `missingOk`: an absent route is not an error (then it runs as its own command). */
  | {kind: 'route.del'; dst: string; dev: string; missingOk?: boolean}
  /** A proxy entry (answer NDP for `dst` on `dev`), or a neighbour entry (`lladdr`). */
  | {kind: 'neigh.add'; dev: string; dst: string; proxy?: boolean; lladdr?: string; permanent?: boolean; replace?: boolean}
  /** A `net.*` sysctl of the netns (`.` separates levels, `/` stands for a `.` inside a device name). */
  | {kind: 'sysctl.set'; key: string; value: string}
  /** Add a clsact qdisc (EEXIST when one is there). */
  | {kind: 'qdisc.add'; dev: string}
  /** Delete the clsact qdisc (and every filter on it); `missingOk`: absent qdisc or device is `{deleted: false}`. */
  | {kind: 'qdisc.del'; dev: string; missingOk?: boolean}
  /** Attach (create or replace) the program pinned at `pinned` as a direct-action bpf filter at pref/handle. */
  | {kind: 'tc.attach'; dev: string; direction: TcDirection; pref: number; handle: number; pinned: string}
  /** Delete the filter at pref/handle; `missingOk`: an absent filter, qdisc or device is `{deleted: false}`. */
  | {kind: 'tc.detach'; dev: string; direction: TcDirection; pref: number; handle: number; missingOk?: boolean}
  /** The filters on one hook; an absent device or qdisc has none. */
  | {kind: 'tc.list'; dev: string; direction: TcDirection}
  /** The program pinned at a path; not pinned is `{prog: undefined}`. */
  | {kind: 'prog.get'; pinned: string}
  /** Create or overwrite one entry of the map pinned at `map`. */
  | {kind: 'map.update'; map: string; key: Buffer; value: Buffer}
  /** Delete one entry; `missingOk`: an absent key is `{deleted: false}`. */
  | {kind: 'map.delete'; map: string; key: Buffer; missingOk?: boolean}
  /** One entry; absent is `{value: undefined}`. */
  | {kind: 'map.lookup'; map: string; key: Buffer}
  /** Every entry of a map. */
  | {kind: 'map.dump'; map: string}
  /** What the map pinned at `map` is (type as bpftool names it: hash, lru_hash, percpu_array …); not pinned is `{info: undefined}`. */
  | {kind: 'map.info'; map: string}
  /** Create a map and pin it at `map`. */
  | {kind: 'map.create'; map: string; name: string; type: string; keySize: number; valueSize: number; maxEntries: number; flags?: number}
  /**
   * Load every program of an object file and pin each under `pinDir`, as `progType`; its maps
   * either reuse the pinned ones (`maps`: name → pin path) or are pinned anew under `pinMaps`.
   * A failure's `detail.log` holds the loader's output (the verifier log).
   */
  | {kind: 'obj.load'; object: string; pinDir: string; progType: 'classifier'; maps?: {name: string; pinned: string}[]; pinMaps?: string}

export type OpKind = KernelOp['kind']
export type OpOf<K extends OpKind> = Extract<KernelOp, {kind: K}>

/** What an op returns; changes return nothing but their kind. */
interface Answers {
  'link.get': {link?: LinkInfo}
  'link.list': {links: LinkInfo[]}
  'link.del': {deleted: boolean}
  'addr.list': {links: AddrLink[]}
  'route.list': {routes: RouteEntry[]}
  'qdisc.del': {deleted: boolean}
  'tc.detach': {deleted: boolean}
  'tc.list': {filters: TcFilter[]}
  'prog.get': {prog?: {id: number; name?: string; tag?: string}}
  'map.delete': {deleted: boolean}
  'map.lookup': {value?: Buffer; values?: Buffer[]}
  'map.dump': {entries: MapEntry[]}
  'map.info': {info?: MapShape}
}

export type ResultOf<K extends OpKind> = {kind: K} & (K extends keyof Answers ? Answers[K] : unknown)
export type KernelResult = {[K in OpKind]: ResultOf<K>}[OpKind]

/** The device an op is about (for errors: an absent device is PN_LINK_NOT_FOUND). */
export function deviceOf(op: KernelOp): string | undefined {
  if ('dev' in op) return op.dev
  if ('name' in op) return op.name
  return undefined
}

/** `<action> <object>` of an op, for messages (`create veth lxc… (peer eth0)`). */
export function describeOp(op: KernelOp): string {
  switch (op.kind) {
    case 'link.add':
      if (op.type === 'vxlan') return `create vxlan ${op.name} (external, dstport ${op.dstport})`
      return `create veth ${op.name} (peer ${op.peer.name}${op.peer.netns ? ` in ${op.peer.netns}` : ''})`
    case 'link.set':
      return `set link ${op.name}${op.mtu === undefined ? '' : ` mtu ${op.mtu}`}${op.up === undefined ? '' : op.up ? ' up' : ' down'}`
    case 'link.del':
      return `delete link ${op.name}`
    case 'link.get':
      return `show link ${op.name}`
    case 'link.list':
      return 'list links'
    case 'addr.list':
      return op.dev ? `list addresses of ${op.dev}` : 'list addresses'
    case 'route.list':
      return `list IPv${op.family} routes${op.exact ? ` to ${op.exact}` : ''}${op.table === 'all' ? ' of every table' : ''}`
    case 'addr.add':
      return `${op.replace ? 'replace' : 'add'} address ${op.address} on ${op.dev}`
    case 'addr.del':
      return `delete address ${op.address} from ${op.dev}`
    case 'route.add':
      return `${op.replace ? 'replace' : 'add'} route ${op.dst}${op.via ? ` via ${op.via}` : ''} dev ${op.dev}`
    case 'route.del':
      return `delete route ${op.dst} dev ${op.dev}`
    case 'neigh.add':
      return op.proxy ? `add proxy neighbour ${op.dst} on ${op.dev}` : `${op.replace ? 'replace' : 'add'} neighbour ${op.dst} on ${op.dev}`
    case 'sysctl.set':
      return `set ${op.key}=${op.value}`
    case 'qdisc.add':
      return `add clsact qdisc on ${op.dev}`
    case 'qdisc.del':
      return `delete clsact qdisc on ${op.dev}`
    case 'tc.attach':
      return `attach ${op.pinned} to ${op.dev} ${op.direction}`
    case 'tc.detach':
      return `detach bpf from ${op.dev} ${op.direction}`
    case 'tc.list':
      return `list tc filters of ${op.dev} ${op.direction}`
    case 'prog.get':
      return `show program ${op.pinned}`
    case 'map.update':
      return `update ${mapName(op.map)} entry ${op.key.toString('hex')}`
    case 'map.delete':
      return `delete ${mapName(op.map)} entry ${op.key.toString('hex')}`
    case 'map.lookup':
      return `look up ${mapName(op.map)} entry ${op.key.toString('hex')}`
    case 'map.dump':
      return `dump map ${mapName(op.map)}`
    case 'map.info':
      return `show map ${mapName(op.map)}`
    case 'map.create':
      return `create map ${op.name} at ${op.map}`
    case 'obj.load':
      return `load ${op.object.slice(op.object.lastIndexOf('/') + 1)} into ${op.pinDir}`
  }
}

/** A pinned map's name (the last part of its pin path). */
function mapName(pinned: string): string {
  return pinned.slice(pinned.lastIndexOf('/') + 1)
}

/** /proc/sys path of a sysctl key: `.` separates levels, `/` stands for a `.` inside a name. */
export function sysctlPath(key: string): string {
  return '/proc/sys/' + key.split('.').map((c) => c.replaceAll('/', '.')).join('/')
}
