import {Flags} from '@oclif/core'
import {BaseCommand} from '../../src/cli/base.js'
import {cniVersionFlag} from '../../src/cli/flags.js'
import {DEFAULT_INSTALL_VERSION} from '../../src/cni/spec.js'
import {installCni, type InstallResult} from '../../src/cni/install.js'

export type CniInstallResult = InstallResult

export default class CniInstall extends BaseCommand<typeof CniInstall, CniInstallResult> {
  static summary = 'Install pn as a CNI plugin: the client in the CNI bin dir and a conflist.'
  static description = `Writes <bin-dir>/<type> (the native client dist/native/pn-cni: it forwards each call to the node's \`pn agent\` when one answers, without booting Node), <bin-dir>/<type>.node (the standalone fallback, a shell wrapper exec'ing node on this repository's bin/pn-cni) and <conf-dir>/10-<name>.conflist with {"type": <type>} and, when given, "stateDir" and "logFile", so several nodes on one machine can each use their own state. Files that are already up to date are left alone.`

  static examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --bin-dir /tmp/cni/bin --conf-dir /tmp/cni/net.d --state-dir /tmp/node1 --cni-version 1.0.0 --json',
  ]

  static flags = {
    'bin-dir': Flags.string({summary: 'Directory of CNI plugin binaries (CNI_PATH).', default: '/opt/cni/bin'}),
    'conf-dir': Flags.string({summary: 'Directory of CNI network configurations.', default: '/etc/cni/net.d'}),
    'cni-version': cniVersionFlag('cniVersion written into the conflist (default 1.0.0: containerd 1.6/1.7 reject 1.1.0 results).', DEFAULT_INSTALL_VERSION),
    name: Flags.string({summary: 'Network name.', default: 'pn'}),
    type: Flags.string({summary: 'Plugin binary name (the conflist "type").', default: 'pn', options: ['pn', 'pn-cni']}),
    'log-file': Flags.string({summary: 'Log file the plugin appends to (default: stderr, which the runtime captures).'}),
  }

  async execute(): Promise<CniInstallResult> {
    const f = this.flags
    return installCni({
      binDir: f['bin-dir'],
      confDir: f['conf-dir'],
      cniVersion: f['cni-version'],
      name: f.name,
      type: f.type,
      logFile: f['log-file'],
      // Only pin a state dir when one was chosen, so the default stays PN_STATE_DIR-driven.
      ...(f['state-dir'] ? {stateDir: this.stateDir} : {}),
    })
  }

  protected render(r: CniInstallResult): string {
    return `${r.changed ? 'installed' : 'already installed'}: ${r.plugin}${r.client ? ` (client; standalone fallback ${r.fallback})` : ''} -> ${r.entry}\nconflist: ${r.conflist}`
  }
}
