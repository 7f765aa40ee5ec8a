// Writes oclif.manifest.json so `pn` loads only the command it runs instead of importing every
// command module at start-up to discover flags (oclif does that when no manifest exists).
// Run after `tsc` (npm run build does both); the file is generated, not committed.
import {Plugin} from '@oclif/core'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')
const plugin = new Plugin({root, type: 'core', ignoreManifest: true, errorOnManifestCreate: true})
await plugin.load()
writeFileSync(path.join(root, 'oclif.manifest.json'), JSON.stringify(plugin.manifest, null, 2) + '\n')
console.log(`oclif.manifest.json: ${Object.keys(plugin.manifest.commands).length} commands`)
