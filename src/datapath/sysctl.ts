/**
 * Network sysctls: read through `sysctl -e` in one process, written as kernel ops (src/kernel).
 * `net.*` sysctls are per network namespace, so running pn inside a node netns only ever changes
 * that node.
 */
import type {Runner} from '../exec/runner.js'
import {sysctlPath} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'

/** /proc/sys path of a key: one definition, with the kernel ops (src/kernel). */
export {sysctlPath}

/** sysctl writes `.` inside a device name as `/` (eth0.100 → net.ipv4.conf.eth0/100.rp_filter). */
export function devSysctl(family: 'ipv4' | 'ipv6', dev: string, key: string): string {
  return `net.${family}.conf.${dev.replaceAll('.', '/')}.${key}`
}

/** Current values by key; keys that do not exist are absent from the result. */
export async function readSysctls(runner: Runner, keys: string[], netns?: string): Promise<Record<string, string>> {
  if (keys.length === 0) return {}
  const r = await runner.run('sysctl', ['-e', ...keys], {netns, allowFailure: true, readOnly: true})
  const out: Record<string, string> = {}
  for (const line of r.stdout.split('\n')) {
    const m = /^(\S+)\s*=\s*(.*)$/.exec(line.trim())
    if (m) out[m[1]] = m[2].trim()
  }
  return out
}

/**
 * Write the entries that differ from `current` (all of them when current is not given) as
 * sysctl.set ops (in this netns: through /proc/sys, no process); returns the keys written.
 */
export async function writeSysctls(
  runner: Runner,
  wanted: Record<string, string>,
  opts: {netns?: string; current?: Record<string, string>} = {},
): Promise<string[]> {
  const keys = Object.keys(wanted).filter((k) => opts.current === undefined || opts.current[k] !== wanted[k])
  if (keys.length === 0) return []
  await kernelFor(runner).apply(keys.map((key) => ({kind: 'sysctl.set', key, value: wanted[key]})), opts.netns ? {netns: opts.netns} : {})
  return keys
}
