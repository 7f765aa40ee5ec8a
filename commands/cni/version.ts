import {BaseCommand} from '../../src/cli/base.js'
import {LATEST_VERSION, SUPPORTED_VERSIONS, type CniVersionResult} from '../../src/cni/spec.js'

export type CniVersionInfo = CniVersionResult

export default class CniVersion extends BaseCommand<typeof CniVersion, CniVersionInfo> {
  static summary = 'The CNI spec versions pn supports (what CNI_COMMAND=VERSION prints).'
  static examples = ['<%= config.bin %> <%= command.id %>', '<%= config.bin %> <%= command.id %> --json']

  async execute(): Promise<CniVersionInfo> {
    return {cniVersion: LATEST_VERSION, supportedVersions: [...SUPPORTED_VERSIONS]}
  }

  protected render(r: CniVersionInfo): string {
    return `CNI versions: ${r.supportedVersions.join(', ')}`
  }
}
