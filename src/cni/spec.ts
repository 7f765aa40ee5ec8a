/**
 * CNI spec vocabulary: commands, versions, result and error shapes. pn speaks 0.3.0 … 1.1.0;
 * older formats (0.1.0/0.2.0, with ip4/ip6 objects) are refused with code 1.
 */

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number]
export const LATEST_VERSION: CniVersion = '1.1.0'
/**
 * What `pn cni install` writes unless told otherwise: the newest version the runtimes people run
 * take. libcni 1.1 (containerd 1.6/1.7, CRI-O before 1.30) knows results only up to 1.0.0 and
 * fails a 1.1.0 conflist with `unsupported CNI result version "1.1.0"`; 1.1.0 (GC, STATUS) needs
 * libcni 1.2+ (containerd 2.0, CRI-O 1.30+, podman 5). Ask for it with `--cni-version 1.1.0`.
 */
export const DEFAULT_INSTALL_VERSION: CniVersion = '1.0.0'

export const CNI_COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const
export type CniCommand = (typeof CNI_COMMANDS)[number]

export interface CniInterface {
  name: string
  mac?: string
  sandbox?: string
  mtu?: number
}

export interface CniIpConfig {
  /** "4" | "6", only in 0.3.x/0.4.0 results. */
  version?: '4' | '6'
  interface?: number
  address: string
  gateway?: string
}

export interface CniRoute {
  dst: string
  gw?: string
}

export interface CniDns {
  nameservers?: string[]
  domain?: string
  search?: string[]
  options?: string[]
}

export interface CniResult {
  cniVersion: string
  interfaces?: CniInterface[]
  ips?: CniIpConfig[]
  routes?: CniRoute[]
  dns: CniDns
}

export interface CniErrorBody {
  cniVersion?: string
  code: number
  msg: string
  details?: string
}

export interface CniVersionResult {
  cniVersion: string
  supportedVersions: string[]
}

/** Numeric comparison of dotted versions ("0.10.0" > "0.9.0"). */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((x) => Number.parseInt(x, 10) || 0)
  const pb = b.split('.').map((x) => Number.parseInt(x, 10) || 0)
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return 0
}

export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v)
}

/** 0.3.x/0.4.0 results carry `version` on each ip; 1.x dropped it. */
export function hasIpVersionField(v: string): boolean {
  return compareVersions(v, '1.0.0') < 0
}

/** CHECK exists from 0.4.0 on. */
export function allowsCheck(v: string): boolean {
  return compareVersions(v, '0.4.0') >= 0
}

/** GC and STATUS exist from 1.1.0 on. */
export function allowsGcStatus(v: string): boolean {
  return compareVersions(v, '1.1.0') >= 0
}
