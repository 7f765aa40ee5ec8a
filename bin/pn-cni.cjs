#!/usr/bin/env node
'use strict'
// What a container runtime executes (CNI protocol: CNI_* env + netconf on stdin → result on
// stdout). Loads only pn-cni's entry and src/cni, never oclif, to keep exec latency low: the entry
// (dist/src/entry/cni-main.js) bundled into one CommonJS module by scripts/bundle-cni.mjs, compiled
// by vm.Script from the V8 code cache the build wrote beside it (no parsing, no function compiled
// again while the call runs). A cache of another node or another build is not used: the script is
// then compiled from source. Without a bundle (tsc only) the unbundled entry runs.
// NODE_DEBUG=pn-cni says on stderr which of these happened.
//
// A CommonJS file (.cjs): Node reaches its first line ~8 ms sooner than an ES-module entry's.
// `bin/pn-cni` is the same program for PATH and npm (it imports this file).
// Two libuv threads, not four: pn-cni has few file operations in flight at once, and each thread
// started is set-up and page faults on the call's path.
process.env.UV_THREADPOOL_SIZE ??= '2'
const fs = require('node:fs')
const path = require('node:path')

const debug = /\bpn-cni\b/i.test(process.env.NODE_DEBUG ?? '') ? (msg) => process.stderr.write(`PN-CNI ${process.pid}: ${msg}\n`) : undefined

async function load() {
  const dir = path.join(__dirname, '../dist/src/entry/')
  const file = dir + 'cni-bundle.vm.js'
  let source
  try {
    // Plain ASCII (scripts/bundle-cni.mjs checks), so latin1 is exact and the cheapest decoding.
    source = fs.readFileSync(file, 'latin1')
  } catch (err) {
    if (err.code !== 'ENOENT') throw err
  }
  if (source === undefined) {
    debug?.(`no ${file}: the unbundled entry`)
    return (await import('../dist/src/entry/cni-main.js')).main
  }
  // The bundle's first line (/*pn-cni build <uuid>*/) heads the cache file too: V8 itself only
  // checks the source's length, so a cache of another build must never reach it.
  const head = source.slice(0, source.indexOf('\n') + 1)
  let cachedData
  let why = 'missing'
  try {
    const cache = fs.readFileSync(dir + 'cni-bundle.cache')
    if (head.startsWith('/*pn-cni build ') && cache.toString('latin1', 0, head.length) === head) cachedData = cache.subarray(head.length)
    else why = 'of another build'
  } catch (err) {
    if (err.code !== 'ENOENT') throw err
  }
  // The file is the bundle inside Node's CommonJS wrapper: one function expression.
  const vm = require('node:vm')
  const script = new vm.Script(source, {filename: file, cachedData})
  debug?.(`code cache ${cachedData === undefined ? why : script.cachedDataRejected ? 'rejected by this node' : 'accepted'}`)
  const module = {exports: {}}
  script.runInThisContext()(module.exports, require('node:module').createRequire(file), module, file, dir.slice(0, -1))
  return module.exports.main
}

// PN_CNI_STATUS_FD: a pipe to native/pn-cni.c, which started this process. "start" tells it to
// start pn-cni's helpers now (they boot while the bundle loads); the exit code tells it the answer
// is written, and it hands both to the runtime without waiting for this process to tear its heap
// down.
const statusFd = /^[0-9]{1,4}$/.test(process.env.PN_CNI_STATUS_FD ?? '') && Number(process.env.PN_CNI_STATUS_FD) > 2 ? Number(process.env.PN_CNI_STATUS_FD) : undefined
function status(line) {
  if (statusFd === undefined) return
  debug?.(`${line} to the parent (fd ${statusFd})`)
  try {
    fs.writeSync(statusFd, `${line}\n`)
  } catch {
    // the parent is gone: nobody waits for it
  }
}

debug?.(`helpers ${process.env.PN_CNI_NETLINK_FD ? `from the parent (netlink fd ${process.env.PN_CNI_NETLINK_FD})` : 'started by pn-cni'}`)
if (process.env.CNI_COMMAND !== 'VERSION') status('start')
load()
  .then((main) => main())
  .then((code) => {
    // Exit once main() has answered (stdout and stderr are synchronous for pipes and files) rather
    // than tear the heap down and wait for the helpers' exits.
    status(code)
    process.exit(code)
  })
