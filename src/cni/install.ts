/**
 * Install pn for a runtime: an executable wrapper `<bin-dir>/<type>` that execs node on this
 * repository's bin/pn-cni (a runtime runs `<CNI_PATH>/<type>`), and a conflist naming it.
 * Idempotent: unchanged files are not rewritten (`changed: false`).
 */
import {promises as fs} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import {PnError} from '../errors.js'
import {writeFileAtomic} from '../state/files.js'
import {validateNetworkName} from './env.js'
import {DEFAULT_INSTALL_VERSION, isSupportedVersion, SUPPORTED_VERSIONS} from './spec.js'

/** bin/pn-cni of the repository this module was compiled in (dist/src/cni → repo root). */
export const PN_CNI_ENTRY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/pn-cni')

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
}

export interface InstallResult {
  changed: boolean
  plugin: string
  conflist: string
  entry: string
  config: Record<string, unknown>
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`
}

async function writeIfChanged(file: string, text: string, mode: number): Promise<boolean> {
  const old = await fs.readFile(file, 'utf8').catch(() => undefined)
  const st = await fs.stat(file).catch(() => undefined)
  if (old === text && st && (st.mode & 0o777) === mode) return false
  await writeFileAtomic(file, text, mode)
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
  const wrapper = [
    '#!/bin/sh',
    '# Installed by `pn cni install`: the CNI plugin entry of pn (CNI protocol on stdin/stdout).',
    `exec ${shellQuote(opts.nodePath ?? process.execPath)} ${shellQuote(entry)} "$@"`,
    '',
  ].join('\n')
  const pluginConf: Record<string, unknown> = {
    type,
    ...(opts.stateDir ? {stateDir: opts.stateDir} : {}),
    ...(opts.logFile ? {logFile: opts.logFile} : {}),
  }
  const config = {cniVersion: version, name, plugins: [pluginConf]}
  const conflist = path.join(opts.confDir, opts.confFile ?? `10-${name}.conflist`)
  const a = await writeIfChanged(plugin, wrapper, 0o755)
  const b = await writeIfChanged(conflist, JSON.stringify(config, null, 2) + '\n', 0o644)
  return {changed: a || b, plugin, conflist, entry, config}
}
