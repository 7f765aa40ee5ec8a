// Injected into pn-cni's CommonJS bundle by scripts/bundle-cni.mjs: `import.meta.url` of every
// bundled module becomes the bundle's own file URL (they all sat in dist/src/…/ two levels under
// dist/, as the bundle in dist/src/entry/ does, so their ../../native/… paths stay right).
export var __pnImportMetaUrl = require('node:url').pathToFileURL(__filename).href
