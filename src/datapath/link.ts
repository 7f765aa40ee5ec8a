/**
 * Link-level helpers over the kernel ops (src/kernel). The kernel is the truth for links, so
 * every read goes back to it instead of trusting a state file.
 */
import type {Runner} from '../exec/runner.js'
import {applyOne} from '../kernel/backend.js'
import type {LinkInfo} from '../kernel/ops.js'
import {kernelFor} from '../kernel/tools.js'
import {randomBytesWeak} from '../state/digest.js'

/** The subset of a link's state pn reads. */
export type {LinkInfo} from '../kernel/ops.js'
export {parseJson} from '../kernel/tools.js'

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
  return (await applyOne(kernelFor(runner), {kind: 'link.get', name}, {netns})).link
}

/** Every link of the netns in one query (ifindex → name for monitor and status). */
export async function listLinks(runner: Runner, netns?: string): Promise<LinkInfo[]> {
  return (await applyOne(kernelFor(runner), {kind: 'link.list'}, {netns})).links
}

/** Delete a link; true if it existed. Deleting one end of a veth deletes the pair. */
export async function deleteLinkByName(runner: Runner, name: string, netns?: string): Promise<boolean> {
  return (await applyOne(kernelFor(runner), {kind: 'link.del', name, missingOk: true}, {netns})).deleted
}

/** True when `a` is a veth whose peer is `b` (both in this netns). */
export function isVethPairOf(a: LinkInfo | undefined, b: LinkInfo | undefined): boolean {
  return !!a && !!b && a.linkinfo?.info_kind === 'veth' && (a.link === b.ifname || a.link_index === b.ifindex)
}
