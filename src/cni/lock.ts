/**
 * The CNI flows' locks: the node's shared lock plus one lock per attachment. They live in the
 * node layer (src/node/lock.ts) because `pn node reset` and `pn veth` take the same ones.
 */
export {attachmentLockFile, removeAttachmentLock, withAttachmentFileLock, withAttachmentLock} from '../node/lock.js'
