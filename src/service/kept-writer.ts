/**
 * Map writers for a long-lived process (the node agent): the `pn-mapbatch` process that writes
 * the load-balancer maps is kept between service changes instead of started for each (its start
 * was ≈ 17 ms of a ≈ 35 ms update in the agent). The table lock it would hold is taken per change
 * through the process's locker (pn-lockd): the same kernel flock on the same file, so a `pn
 * service` command and the agent still exclude each other.
 *
 * A kept process holds map fds. When the pinned maps are re-created (node reset, bpf reload),
 * their inodes change: the next change sees a different identity and starts a new process on
 * the new maps. A write that fails drops the process too; the next change starts afresh.
 */
import {pinnedMapIdentity} from '../datapath/bpf/map-io.js'
import {openMapWriter, type MapWriter} from '../datapath/bpf/op-list.js'
import type {Locker} from '../exec/flock.js'
import type {ApplyOptions} from './apply.js'
import {LB_OP_MAPS} from './plan.js'

export interface KeptWriters {
  /** Pass as ApplyOptions.openWriter. */
  openWriter: NonNullable<ApplyOptions['openWriter']>
  /** End the kept process (the agent's stop). */
  close(): Promise<void>
}

export function keptMapWriters(locker: Locker): KeptWriters {
  let kept: {key: string; writer: MapWriter} | undefined
  const drop = async () => {
    const k = kept
    kept = undefined
    await k?.writer.close().catch(() => undefined)
  }
  return {
    async openWriter(root, lock) {
      const held = await locker.acquire([{path: lock.path, timeoutMs: lock.timeoutMs}])
      try {
        const ids = await Promise.all(LB_OP_MAPS.map((m) => pinnedMapIdentity(root, m.name)))
        const key = `${root}|${ids.join('|')}`
        if (kept?.key !== key) {
          await drop()
          kept = {key, writer: await openMapWriter(root, LB_OP_MAPS)}
        }
        const writer = kept.writer
        return {
          async write(ops) {
            try {
              return await writer.write(ops)
            } catch (err) {
              if (kept?.writer === writer) await drop()
              throw err
            }
          },
          close: () => held.release(),
        }
      } catch (err) {
        await held.release()
        throw err
      }
    },
    close: drop,
  }
}
