/**
 * Link-level helpers around `ip -j` (read) and `ip -batch -` (write). The kernel is the truth
 * for links, so every read goes back to it instead of trusting a state file.
 */
import {PnError} from '../errors.js'
import type {Runner} from '../exec/runner.js'
import {randomBytesWeak} from '../state/digest.js'

/** The subset of `ip -j -d link show` pn reads. */
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

/**
 * A random locally administered unicast MAC. Set explicitly on every device pn makes, as
 * Cilium does: with systemd's MACAddressPolicy=persistent udev would otherwise rewrite it
 * after creation, behind the back of maps that already hold the old one.
 */
export function randomMac(): string {
  const b = randomBytesWeak(6)
  b[0] = (b[0] & 0xfe) | 0x02
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

/** One link by name, or undefined when it does not exist. */
export async function getLink(runner: Runner, name: string, netns?: string): Promise<LinkInfo | undefined> {
  const r = await runner.run('ip', ['-j', '-d', 'link', 'show', 'dev', name], {netns, allowFailure: true, readOnly: true})
  if (r.exitCode !== 0) {
    if (/does not exist|Cannot find device/i.test(r.stderr)) return undefined
    throw new PnError('PN_COMMAND_FAILED', `show link ${name}: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, {
      details: {argv: r.argv},
    })
  }
  const links = parseJson<LinkInfo[]>(r.stdout, `show link ${name}`)
  return links[0]
}

/** Every link of the netns in one `ip -j -d link show` (ifindex → name for monitor and status). */
export async function listLinks(runner: Runner, netns?: string): Promise<LinkInfo[]> {
  const r = await runner.run('ip', ['-j', '-d', 'link', 'show'], {netns, readOnly: true})
  return parseJson<LinkInfo[]>(r.stdout || '[]', 'list links')
}

/** Delete a link; true if it existed. Deleting one end of a veth deletes the pair. */
export async function deleteLinkByName(runner: Runner, name: string, netns?: string): Promise<boolean> {
  const r = await runner.run('ip', ['link', 'del', 'dev', name], {netns, allowFailure: true})
  if (r.exitCode === 0) return true
  if (/does not exist|Cannot find device/i.test(r.stderr)) return false
  throw new PnError('PN_COMMAND_FAILED', `delete link ${name}: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, {
    details: {argv: r.argv},
  })
}

/** Run `ip -batch -` (one process for many changes); stops at the first failing line. */
export async function ipBatch(runner: Runner, lines: string[], netns?: string): Promise<void> {
  if (lines.length === 0) return
  await runner.run('ip', ['-batch', '-'], {netns, input: lines.join('\n') + '\n'})
}

/** The 1-based batch line `ip -batch` reports as failed ("Command failed -:N"), if any. */
export function failedBatchLine(err: unknown): number | undefined {
  const stderr = err instanceof PnError ? String((err.details as {stderr?: string} | undefined)?.stderr ?? err.message) : ''
  const m = /Command failed -:(\d+)/.exec(stderr)
  return m ? Number(m[1]) : undefined
}

export function parseJson<T>(text: string, action: string): T {
  try {
    return JSON.parse(text || 'null') as T
  } catch (err) {
    throw new PnError('PN_COMMAND_FAILED', `${action}: unexpected output (${(err as Error).message})`)
  }
}

/** True when `a` is a veth whose peer is `b` (both in this netns). */
export function isVethPairOf(a: LinkInfo | undefined, b: LinkInfo | undefined): boolean {
  return !!a && !!b && a.linkinfo?.info_kind === 'veth' && (a.link === b.ifname || a.link_index === b.ifindex)
}
