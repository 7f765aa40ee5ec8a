/**
 * Install pn for a runtime (a runtime runs `<CNI_PATH>/<type>`):
 *  - `<bin-dir>/<type>`: a copy of the native client (dist/native/pn-cni), which forwards the
 *    call to the node's agent without booting Node, or execs its fallback when none answers;
 *  - `<bin-dir>/<type>.node`: that fallback, a wrapper exec'ing node on this repository's
 *    bin/pn-cni (the standalone path);
 *  - a conflist naming the type.
 * Without a built client (no clang), the wrapper itself becomes `<type>` (standalone only).
 * Idempotent: unchanged files are not rewritten (`changed: false`).
 */
import {POD_ANNOTATIONS_CAPABILITY} from './labels.js'
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PnError} from '../errors.js'
import {writeFileAtomic} from '../state/files.js'
import {validateNetworkName} from './env.js'
import {DEFAULT_INSTALL_VERSION, isSupportedVersion, SUPPORTED_VERSIONS} from './spec.js'

/** bin/pn-cni of the repository this module was compiled in (dist/src/cni → repo root). */
export const PN_CNI_ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/pn-cni.cjs')
/** The native programs of this build (dist/src/cni → dist/native). */
const PN_NATIVE_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../native')
/** The native client of this build. */
export const PN_CNI_CLIENT = path.join(PN_NATIVE_DIR, 'pn-cni')

export interface InstallOptions {
  binDir: string
  confDir: string
  cniVersion?: string
  name?: string
  /** Plugin binary name = conflist `type` ('pn' or 'pn-cni'). */
  type?: string
  stateDir?: string
  logFile?: string
  /** Conflist file name (default `10-<name>.conflist`). */
  confFile?: string
  /** Node binary the wrapper execs (default: the running one). */
  nodePath?: string
  /** The native client to install (default: this build's dist/native/pn-cni). */
  client?: string
}

export interface InstallResult {
  changed: boolean
  plugin: string
  conflist: string
  entry: string
  /** The standalone wrapper the client falls back to (`<plugin>.node`), or the plugin itself without a client. */
  fallback: string
  /** True when `plugin` is the native client (agent-aware), false when it is the Node wrapper. */
  client: boolean
  config: Record<string, unknown>
  warnings: string[]
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`
}

async function writeIfChanged(file: string, data: string | Buffer, mode: number): Promise<boolean> {
  const old = await fs.readFile(file).catch(() => undefined)
  const st = await fs.stat(file).catch(() => undefined)
  if (old && old.equals(Buffer.from(data)) && st && (st.mode & 0o777) === mode) return false
  await writeFileAtomic(file, data, mode)
  await fs.chmod(file, mode)
  return true
}

export async function installCni(opts: InstallOptions): Promise<InstallResult> {
  const version = opts.cniVersion ?? DEFAULT_INSTALL_VERSION
  if (!isSupportedVersion(version)) {
    throw new PnError('PN_INVALID_ARGUMENT', `install cni: cniVersion ${version} is not supported`, {
      hint: `use one of ${SUPPORTED_VERSIONS.join(', ')}`,
    })
  }
  const name = validateNetworkName(opts.name ?? 'pn')
  const type = opts.type ?? 'pn'
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(type)) {
    throw new PnError('PN_INVALID_ARGUMENT', `install cni: plugin name ${JSON.stringify(type)} is not a file name`, {hint: 'use pn or pn-cni'})
  }
  for (const [k, v] of Object.entries({stateDir: opts.stateDir, logFile: opts.logFile})) {
    if (v !== undefined && !path.isAbsolute(v)) {
      throw new PnError('PN_INVALID_ARGUMENT', `install cni: ${k} ${v} must be an absolute path`, {hint: 'pass an absolute path'})
    }
  }
  const entry = PN_CNI_ENTRY
  await fs.access(entry).catch(() => {
    throw new PnError('PN_INTERNAL', `install cni: ${entry} is missing`, {hint: 'build pn first (npx tsc -p .)'})
  })
  const plugin = path.join(opts.binDir, type)
  const nodePath = opts.nodePath ?? process.execPath
  const wrapper = [
    '#!/bin/sh',
    '# Installed by `pn cni install`: the CNI plugin entry of pn (CNI protocol on stdin/stdout).',
    // native/pn-cni.c reads these three lines: it execs node on the entry itself (no sh on the
    // call's path) and starts pn-cni's helpers from that folder.
    `# pn-cni node: ${nodePath}`,
    `# pn-cni entry: ${entry}`,
    `# pn-cni helpers: ${PN_NATIVE_DIR}`,
    `exec ${shellQuote(nodePath)} ${shellQuote(entry)} "$@"`,
    '',
  ].join('\n')
  const pluginConf: Record<string, unknown> = {
    type,
    ...(opts.stateDir ? {stateDir: opts.stateDir} : {}),
    ...(opts.logFile ? {logFile: opts.logFile} : {}),
    // containerd's CRI plugin then passes the pod's annotations, where pn reads its labels (labels.ts).
    capabilities: {[POD_ANNOTATIONS_CAPABILITY]: true},
  }
  const config = {cniVersion: version, name, plugins: [pluginConf]}
  const conflist = path.join(opts.confDir, opts.confFile ?? `10-${name}.conflist`)
  const client = await fs.readFile(opts.client ?? PN_CNI_CLIENT).catch(() => undefined)
  const warnings: string[] = []
  let changed: boolean
  let fallback = plugin
  if (client) {
    // The wrapper first: a runtime calling the new client mid-install must find its fallback.
    fallback = `${plugin}.node`
    changed = await writeIfChanged(fallback, wrapper, 0o755)
    changed = (await writeIfChanged(plugin, client, 0o755)) || changed
  } else {
    warnings.push(`${opts.client ?? PN_CNI_CLIENT} is not built (npm run build needs clang): installed the standalone Node entry only, which a pn agent cannot speed up`)
    changed = await writeIfChanged(plugin, wrapper, 0o755)
  }
  changed = (await writeIfChanged(conflist, JSON.stringify(config, null, 2) + '\n', 0o644)) || changed
  return {changed, plugin, conflist, entry, fallback, client: Boolean(client), config, warnings}
}
