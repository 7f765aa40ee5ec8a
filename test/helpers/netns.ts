/**
 * Throwaway network namespaces for root tests: every name starts with `pn-t<pid>-` so tests
 * never touch anything they did not create, and `cleanupNamespaces()` removes them by name
 * even after a failure. Traffic only ever flows between these namespaces.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {randomBytes} from 'node:crypto'

const created = new Set<string>()

export function isRoot(): boolean {
  return process.getuid?.() === 0
}

/** A unique, short (≤ 15 chars) namespace name. */
export function uniqueName(tag = ''): string {
  return `pn-${tag}${randomBytes(3).toString('hex')}`.slice(0, 15)
}

export function createNamespace(tag = ''): {name: string; path: string} {
  const name = uniqueName(tag)
  execFileSync('ip', ['netns', 'add', name])
  created.add(name)
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  return {name, path: `/run/netns/${name}`}
}

export function deleteNamespace(name: string): void {
  spawnSync('ip', ['netns', 'del', name], {stdio: 'ignore'})
  created.delete(name)
}

export function cleanupNamespaces(): void {
  for (const name of [...created]) deleteNamespace(name)
}

/** Run a command inside a namespace; returns stdout (throws on failure). */
export function inNs(ns: string, argv: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...argv], {encoding: 'utf8'})
}

/** Like inNs but returns {status, stdout, stderr} without throwing. */
export function tryInNs(ns: string, argv: string[]): {status: number; stdout: string; stderr: string} {
  const r = spawnSync('ip', ['netns', 'exec', ns, ...argv], {encoding: 'utf8'})
  return {status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? ''}
}

export function ping(ns: string, ip: string, count = 1): boolean {
  return tryInNs(ns, ['ping', '-c', String(count), '-W', '1', '-i', '0.2', ip]).status === 0
}

process.on('exit', cleanupNamespaces)
