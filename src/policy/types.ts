/**
 * The contract between policy resolution (labels, identities, NetworkPolicy semantics: what is
 * allowed) and policy enforcement (the BPF maps that say it to the datapath). Resolution turns
 * the cluster's endpoints, namespaces and NetworkPolicies into one `EndpointPolicy` per local
 * endpoint plus the CIDR identities policies name; enforcement writes exactly that, and `pn
 * policy trace` reads the same resolved data, so the two can never disagree.
 */

/** Reserved identities, Cilium's numbers (pkg/identity/numericidentity.go). */
export const IDENTITY_UNKNOWN = 0
export const IDENTITY_HOST = 1
export const IDENTITY_WORLD = 2
export const IDENTITY_REMOTE_NODE = 6
/** Identities allocated for label sets in the cluster store start here (Cilium: 256). */
export const IDENTITY_FIRST_CLUSTER = 256
/** Identities for CIDR selectors (ipBlock) are node-local, from this base (Cilium: 1 << 24). */
export const IDENTITY_FIRST_CIDR = 1 << 24

export type PolicyDirection = 'ingress' | 'egress'

/** IP protocol numbers a policy port may name; 0 = any protocol (a peer with no `ports`). */
export type PolicyProtocol = 0 | 6 | 17 | 132

/**
 * One allow rule as the datapath sees it: packets of `protocol` to a destination port in
 * [port, endPort], from (ingress) or to (egress) a peer of security identity `identity`, are
 * allowed. `identity` 0 means any peer (a rule with no `from`/`to`); `port` 0 means every port
 * (then endPort is 0 too). A port range is inclusive at both ends; a single port has endPort ===
 * port. Entries are deny-nothing: everything not allowed in an enforced direction is dropped.
 */
export interface PolicyMapEntry {
  direction: PolicyDirection
  identity: number
  protocol: PolicyProtocol
  port: number
  endPort: number
}

/**
 * What one local endpoint enforces. A direction is enforced when at least one policy selects
 * the endpoint for it (Kubernetes: selected pods are default-deny in that direction); an
 * endpoint selected by none is open both ways and has no entries. Replies of an allowed flow
 * always pass (conntrack), in both directions.
 */
export interface EndpointPolicy {
  /** The endpoint id the datapath knows the pod by (pn_lxc / pn_endpoints `endpoint_id`). */
  endpointId: number
  ingressEnforced: boolean
  egressEnforced: boolean
  /** Sorted by (direction, identity, protocol, port, endPort), without duplicates. */
  entries: PolicyMapEntry[]
}

/** A CIDR a policy's ipBlock names (or excepts), and the identity the ipcache gives it. */
export interface CidrIdentity {
  cidr: string
  identity: number
}

/** Everything the datapath of one node needs for policy: per-endpoint maps and ipcache CIDRs. */
export interface NodePolicy {
  endpoints: EndpointPolicy[]
  cidrIdentities: CidrIdentity[]
}
