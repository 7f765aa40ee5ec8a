/**
 * Network sysctls, read and written through `sysctl` in one process each. `net.*` sysctls are
 * per network namespace, so running pn inside a node netns only ever changes that node.
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {sysctlPath} from '../kernel/ops.js'

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

/** Write the entries that differ from `current` (all of them when current is not given); returns the keys written. */
export async function writeSysctls(
  runner: Runner,
  wanted: Record<string, string>,
  opts: {netns?: string; current?: Record<string, string>; inProcess?: boolean} = {},
): Promise<string[]> {
  const keys = Object.keys(wanted).filter((k) => opts.current === undefined || opts.current[k] !== wanted[k])
  if (keys.length === 0) return []
  if (opts.inProcess && !opts.netns) {
    // Through /proc/sys of this process's netns (the node's): no `sysctl` process per pod.
    for (const k of keys) {
      await runner.writeFile(sysctlPath(k), wanted[k] + '\n').catch((err: NodeJS.ErrnoException) => {
        throw new PnError('PN_COMMAND_FAILED', `set ${k}=${wanted[k]}: ${err.code === 'ENOENT' ? 'no such key (is the device gone?)' : err.message}`)
      })
    }
    return keys
  }
  await runner.run('sysctl', ['-q', '-w', ...keys.map((k) => `${k}=${wanted[k]}`)], {netns: opts.netns})
  return keys
}
