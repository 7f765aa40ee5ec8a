/**
 * Is an attachment's record a live pod in another netns? A (container id, ifname) names one
 * attachment, and the spec forbids a runtime to ADD it twice without a DEL. When a record's netns
 * still exists and still holds pn's veth, a request naming a different netns is about another
 * sandbox: ADD refuses it (PN_ENDPOINT_EXISTS) and DEL leaves the live pod alone. A record whose
 * netns or pod interface is gone is an interrupted ADD's leftover, removed as before.
 */
import type {Runner} from '../exec/runner.js'
import {fsp} from '../exec/fs.js'
import {getLink} from '../datapath/link.js'
import {netnsAlive} from '../datapath/netns.js'
import {hostIfnameFor} from '../datapath/veth.js'
import type {EndpointRecord} from '../endpoint/store.js'

/** Two netns paths name one namespace when they are the same nsfs inode (/run/netns/x and /proc/PID/ns/net may). */
export async function sameNetns(a: string, b: string): Promise<boolean> {
  if (a === b) return true
  const [x, y] = await Promise.all([fsp.stat(a).catch(() => undefined), fsp.stat(b).catch(() => undefined)])
  return !!x && !!y && x.dev === y.dev && x.ino === y.ino
}

/** The record when its pod is alive in a netns other than `netns`, else undefined. */
export async function liveElsewhere(runner: Runner, rec: EndpointRecord, netns: string): Promise<EndpointRecord | undefined> {
  if (!rec.netns || (await sameNetns(rec.netns, netns))) return undefined
  if (!(await netnsAlive(rec.netns))) return undefined
  const pod = await getLink(runner, rec.podIfname || rec.ifname, rec.netns).catch(() => undefined)
  if (!pod) return undefined
  const host = await getLink(runner, rec.hostIfname || hostIfnameFor(rec.containerId, rec.ifname)).catch(() => undefined)
  return host && pod.link_index === host.ifindex ? rec : undefined
}
