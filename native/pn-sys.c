/*
 * pn-sys: the syscalls pn needs and Node has no API for, as one Node-API addon
 * (dist/native/pn-sys.node, built by scripts/build-native.sh with -shared, loaded by
 * src/exec/sys.ts). No library beyond libc: loading it is one small dlopen, cheap enough for
 * every pn-cni call.
 *
 * Sockets (the agent):
 *   peercred(fd)  → {pid, uid, gid, groups}  the peer of an accepted UNIX socket as the kernel saw
 *                   it at connect(2) (SO_PEERCRED; groups: SO_PEERGROUPS, the supplementary groups)
 *   readable(fd, ms) → boolean               something to read (or the peer closed) within `ms`
 *                   milliseconds (poll(2) for POLLIN): a synchronous wait with a deadline
 *   peerClosed(fd) → boolean                 the peer has closed its end (poll(2) reports POLLHUP;
 *                   a peer that only shut down its writing side is not closed)
 *   tryLock(fd)   → boolean                  flock(LOCK_EX | LOCK_NB) on an open fd
 *
 * Locks: flock(2) held by this process, so they die with it (the kernel releases an open file's
 * lock when its last fd closes, SIGKILL included) and a waiter blocked in flock(2) is granted the
 * moment the holder is gone, by the kernel, with nobody polling.
 *   lockTry(path, shared)      → fd | -1     open (O_CREAT, 0600) and flock(LOCK_NB): the fd that
 *                   holds the lock, or -1 when another open file holds a conflicting one
 *   lockWait(path, shared, cb) → handle      a thread of its own blocks in flock(2) (not the libuv
 *                   pool: pn-cni runs with 2 pool threads); cb(r) runs on the JS thread once with
 *                   the fd that holds the lock, or -errno, or -ECANCELED when the wait had been
 *                   abandoned and the thread already let the lock go
 *   lockAbandon(handle)                      the waiter gave up (timeout, abort): the thread
 *                   releases the lock as soon as it gets it, and no longer keeps the loop alive.
 *                   Call it only before cb has run.
 *   unlock(fd)                               flock(LOCK_UN), then close: LOCK_UN drops the lock
 *                   even while a child forked in between still has a copy of the fd
 *
 * BPF maps, opened by pin path (BPF_OBJ_GET) and cached by path with the pin's device and inode:
 * every call stat()s the pin and re-opens it when the inode changed, so a map that was re-created
 * and re-pinned is never written through the old map's fd.
 *   mapInfo(path)   → {type, keySize, valueSize, maxEntries, flags, id, name, valueBytes,
 *                   batchUpdate, batchDelete} (valueBytes: what a lookup returns: value size
 *                   rounded up to 8 × possible CPUs for a per-CPU map; batch*: the map type has
 *                   that batch op, else writes go one element a syscall)
 *   mapWrite(path, op, keys, values, count, missingOk) → {done, skipped, errno}
 *                   op 1 update (BPF_ANY) / 2 delete, `count` keys packed in `keys`; a value is
 *                   valueSize bytes (a per-CPU map's value is copied to every CPU) or valueBytes.
 *                   BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH, one element a syscall where the
 *                   map type has no batch op. `done` entries from the start were processed
 *                   (skipped: deletes of absent keys when missingOk) before entry `done` failed
 *                   with `errno` (0: all done)
 *   mapWriteFrame(paths, frame, layout) → {done, skipped, failed?: {index, errno, error}}
 *                   the records of src/datapath/bpf/op-list.ts, whose layout is defined there and
 *                   passed in ([record size, key offset, value offset]): runs of one op on one map
 *                   are one batch; absent keys of deletes are skipped. A bad frame (length, op, map
 *                   index, a map whose keys or values do not fit a record) throws before any record
 *                   of it is applied
 *   mapLookup(path, key) → Buffer | null     valueBytes bytes; null when the key is absent
 *   mapDump(path) → {keys, values, errs, count}  every entry: keys and values packed, errs[i] the
 *                   errno when the kernel would not read entry i's value out (0: read)
 *   progGet(path) → {id, name, tag} | null   the program pinned at path (null: nothing pinned)
 *
 * A failed call throws an Error whose `code` is the errno name ("EBADF") and whose message names
 * the call; a bad argument throws a TypeError.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <node_api.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* the kernel's "no such operation" (a map type without batch ops); not in libc */
#endif

static napi_value throw_code(napi_env env, const char *call, int e) {
  char msg[256];
  const char *code = e == ENOTSUPP ? "ENOTSUPP" : strerrorname_np(e);
  snprintf(msg, sizeof msg, "%s: %s", call, e == ENOTSUPP ? "Operation not supported" : strerror(e));
  napi_throw_error(env, code ? code : "EIO", msg);
  return NULL;
}

static napi_value throw_errno(napi_env env, const char *call) {
  char msg[160];
  int e = errno;
  const char *code = strerrorname_np(e);
  snprintf(msg, sizeof msg, "%s: %s", call, strerror(e));
  napi_throw_error(env, code ? code : "EIO", msg);
  return NULL;
}

/* The one int32 argument (an fd); NULL (with a TypeError thrown) when it is missing or not a number. */
static int fd_arg(napi_env env, napi_callback_info info, int *fd) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_typeof(env, argv[0], &t) != napi_ok || t != napi_number ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) {
    napi_throw_type_error(env, NULL, "expected a file descriptor (a non-negative integer)");
    return 0;
  }
  return 1;
}

static napi_value set_number(napi_env env, napi_value obj, const char *name, double v) {
  napi_value n;
  if (napi_create_double(env, v, &n) != napi_ok || napi_set_named_property(env, obj, name, n) != napi_ok) return NULL;
  return obj;
}

static napi_value peercred(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return throw_errno(env, "getsockopt(SO_PEERCRED)");

  /* SO_PEERGROUPS (Linux 4.13): ask for the size first, ERANGE says how much is needed. */
  gid_t *groups = NULL;
  socklen_t glen = 0;
  int ngroups = 0;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, NULL, &glen) != 0 && errno == ERANGE && glen > 0) {
    groups = malloc(glen);
    if (!groups) {
      errno = ENOMEM;
      return throw_errno(env, "getsockopt(SO_PEERGROUPS)");
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) != 0) {
      free(groups);
      return throw_errno(env, "getsockopt(SO_PEERGROUPS)");
    }
    ngroups = (int)(glen / sizeof(gid_t));
  }

  napi_value obj, arr;
  int ok = napi_create_object(env, &obj) == napi_ok && napi_create_array_with_length(env, (size_t)ngroups, &arr) == napi_ok &&
           set_number(env, obj, "pid", cred.pid) && set_number(env, obj, "uid", cred.uid) && set_number(env, obj, "gid", cred.gid);
  for (int i = 0; ok && i < ngroups; i++) {
    napi_value g;
    ok = napi_create_double(env, groups[i], &g) == napi_ok && napi_set_element(env, arr, (uint32_t)i, g) == napi_ok;
  }
  free(groups);
  if (!ok || napi_set_named_property(env, obj, "groups", arr) != napi_ok) return NULL;
  return obj;
}

static napi_value peer_closed(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  struct pollfd p = {.fd = fd, .events = POLLRDHUP};
  int n;
  do n = poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "poll");
  napi_value out;
  if (napi_get_boolean(env, n > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value readable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd, ms;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &ms) != napi_ok || fd < 0 || ms < 0)
    return napi_throw_type_error(env, NULL, "readable(fd, ms)"), NULL;
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int n;
  do n = poll(&p, 1, ms);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "poll");
  napi_value out;
  if (napi_get_boolean(env, n > 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value try_lock(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  int r;
  do r = flock(fd, LOCK_EX | LOCK_NB);
  while (r != 0 && errno == EINTR);
  if (r != 0 && errno != EWOULDBLOCK) return throw_errno(env, "flock");
  napi_value out;
  if (napi_get_boolean(env, r == 0, &out) != napi_ok) return NULL;
  return out;
}

/* ── arguments ──────────────────────────────────────────────────────────────────────────── */

/* A string argument as a malloc'd C string; NULL (TypeError thrown) when it is not a string or
 * holds a NUL (which would silently cut the path short). */
static char *string_arg(napi_env env, napi_value v, const char *what) {
  size_t len;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (!s) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  size_t got;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &got) != napi_ok || got != len || strlen(s) != len || len == 0) {
    free(s);
    napi_throw_type_error(env, NULL, what);
    return NULL;
  }
  return s;
}

static int buffer_arg(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is;
  void *p;
  if (napi_is_buffer(env, v, &is) != napi_ok || !is || napi_get_buffer_info(env, v, &p, len) != napi_ok) {
    napi_throw_type_error(env, NULL, "expected a Buffer");
    return 0;
  }
  *data = p;
  return 1;
}

static int bool_arg(napi_env env, napi_value v) {
  bool b = false;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_boolean) napi_get_value_bool(env, v, &b);
  return b;
}

static napi_value int_value(napi_env env, int64_t v) {
  napi_value n;
  return napi_create_int64(env, v, &n) == napi_ok ? n : NULL;
}

/* ── locks ──────────────────────────────────────────────────────────────────────────────── */

static int open_lock_file(const char *path) {
  /* 0600 like every state file, inside pn's 0700 state dirs. CLOEXEC: a spawned program must
   * never inherit (and so keep) a lock. */
  return open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
}

static napi_value lock_try(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return napi_throw_type_error(env, NULL, "lockTry(path, shared)"), NULL;
  char *path = string_arg(env, argv[0], "expected a lock file path");
  if (!path) return NULL;
  int fd = open_lock_file(path);
  if (fd < 0) {
    int e = errno;
    free(path);
    return throw_code(env, "open", e);
  }
  free(path);
  int r;
  do r = flock(fd, (bool_arg(env, argv[1]) ? LOCK_SH : LOCK_EX) | LOCK_NB);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return int_value(env, -1);
    return throw_code(env, "flock", e);
  }
  return int_value(env, fd);
}

/* One waiting lock: its own thread blocks in flock(2). */
struct waiter {
  int fd, op;
  atomic_int abandoned;
  int result; /* the fd holding the lock, or -errno */
  napi_threadsafe_function tsfn;
};

static void waiter_done(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  struct waiter *w = data;
  if (env == NULL) { /* the environment is going away: nobody to tell */
    if (w->result >= 0) close(w->result);
    free(w);
    return;
  }
  napi_value undefined, arg = int_value(env, w->result);
  free(w);
  if (napi_get_undefined(env, &undefined) == napi_ok && arg) napi_call_function(env, undefined, cb, 1, &arg, NULL);
}

static void *wait_thread(void *arg) {
  struct waiter *w = arg;
  int r;
  do r = flock(w->fd, w->op); /* every signal is blocked in this thread: no EINTR expected */
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    w->result = -errno;
    close(w->fd);
  } else if (atomic_load(&w->abandoned)) {
    /* Nobody waits any more: let it go at once, without waiting for the JS thread. */
    flock(w->fd, LOCK_UN);
    close(w->fd);
    w->result = -ECANCELED;
  } else {
    w->result = w->fd;
  }
  napi_threadsafe_function tsfn = w->tsfn;
  if (napi_call_threadsafe_function(tsfn, w, napi_tsfn_blocking) != napi_ok) {
    if (w->result >= 0) close(w->result);
    free(w);
  }
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
  return NULL;
}

static napi_value lock_wait(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_valuetype t;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_typeof(env, argv[2], &t) != napi_ok || t != napi_function) {
    return napi_throw_type_error(env, NULL, "lockWait(path, shared, callback)"), NULL;
  }
  char *path = string_arg(env, argv[0], "expected a lock file path");
  if (!path) return NULL;
  int fd = open_lock_file(path);
  int e = errno;
  free(path);
  if (fd < 0) return throw_code(env, "open", e);
  struct waiter *w = calloc(1, sizeof *w);
  napi_value name, handle;
  if (!w) {
    close(fd);
    return throw_code(env, "lockWait", ENOMEM);
  }
  w->fd = fd;
  w->op = bool_arg(env, argv[1]) ? LOCK_SH : LOCK_EX;
  if (napi_create_string_utf8(env, "pn-lock-wait", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, NULL, waiter_done, &w->tsfn) != napi_ok) {
    close(fd);
    free(w);
    return NULL;
  }
  if (napi_create_external(env, w, NULL, NULL, &handle) != napi_ok) {
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    close(fd);
    free(w);
    return NULL;
  }
  /* The thread gets no signal (they are Node's to handle), and a small stack: it only waits. */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 64 * 1024);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t tid;
  int err = pthread_create(&tid, &attr, wait_thread, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  if (err != 0) {
    napi_release_threadsafe_function(w->tsfn, napi_tsfn_abort);
    close(fd);
    free(w);
    return throw_code(env, "pthread_create", err);
  }
  return handle;
}

static napi_value lock_abandon(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *p;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_external(env, argv[0], &p) != napi_ok) {
    return napi_throw_type_error(env, NULL, "lockAbandon(handle)"), NULL;
  }
  struct waiter *w = p;
  atomic_store(&w->abandoned, 1);
  napi_unref_threadsafe_function(env, w->tsfn); /* an abandoned wait does not keep the process alive */
  return NULL;
}

static napi_value unlock_fd(napi_env env, napi_callback_info info) {
  int fd;
  if (!fd_arg(env, info, &fd)) return NULL;
  if (flock(fd, LOCK_UN) != 0) return throw_errno(env, "flock(LOCK_UN)");
  close(fd);
  return NULL;
}

/* ── bpf(2) ─────────────────────────────────────────────────────────────────────────────── */

static int sys_bpf(int cmd, union bpf_attr *a) {
  return (int)syscall(__NR_bpf, cmd, a, sizeof *a);
}

static uint64_t ptr(const void *p) {
  return (uint64_t)(uintptr_t)p;
}

/* The kernel sizes a per-CPU map's values by its possible CPUs (a count of the ranges in
 * /sys/devices/system/cpu/possible, "0-3,6"). */
static int possible_cpus(void) {
  static int n;
  if (n > 0) return n;
  char buf[256];
  int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
  ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
  if (fd >= 0) close(fd);
  int count = 0;
  if (len > 0) {
    buf[len] = 0;
    for (char *s = buf; *s && *s != '\n';) {
      char *end;
      long a = strtol(s, &end, 10), b = a;
      if (end == s) break;
      if (*end == '-') {
        s = end + 1;
        b = strtol(s, &end, 10);
      }
      if (b >= a) count += (int)(b - a + 1);
      s = *end == ',' ? end + 1 : end;
    }
  }
  n = count > 0 ? count : 1;
  return n;
}

/* What kind of bpf object an fd is: its anon inode's name ("anon_inode:bpf-map"). */
static int fd_is(int fd, const char *kind) {
  char link[64], target[64];
  snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) return 0;
  target[n] = 0;
  return strcmp(target, kind) == 0;
}

static int percpu_type(uint32_t t) {
  return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

struct map {
  struct map *next;
  char *path;
  dev_t dev;
  ino_t ino;
  int fd;
  struct bpf_map_info info;
  uint32_t value_bytes;
  int batch_update, batch_delete; /* the map type has the batch op (probed at open) */
};
static struct map *maps;

static void drop_map(const char *path) {
  for (struct map **pp = &maps; *pp; pp = &(*pp)->next) {
    if (strcmp((*pp)->path, path) != 0) continue;
    struct map *m = *pp;
    *pp = m->next;
    close(m->fd);
    free(m->path);
    free(m);
    return;
  }
}

/* Does the map have this batch op? A zero-count call answers: 0 yes, ENOTSUPP (map type) or
 * EINVAL (a kernel before 5.6) no. */
static int probe_batch(int fd, int cmd) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.batch.map_fd = (uint32_t)fd;
  a.batch.count = 0;
  return sys_bpf(cmd, &a) == 0;
}

/* The map pinned at `path` now: 0 and *out, or an errno (*why: a cause that no errno names). */
static int map_at(const char *path, struct map **out, const char **why) {
  struct stat st, again;
  *why = NULL;
  if (stat(path, &st) != 0) {
    int e = errno;
    drop_map(path);
    return e;
  }
  for (struct map *m = maps; m; m = m->next) {
    if (strcmp(m->path, path) != 0) continue;
    if (m->dev == st.st_dev && m->ino == st.st_ino) {
      *out = m;
      return 0;
    }
    drop_map(path); /* re-pinned: the fd is the old map's */
    break;
  }
  for (int tries = 0;; tries++) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.pathname = ptr(path);
    int fd = sys_bpf(BPF_OBJ_GET, &a);
    if (fd < 0) return errno;
    /* The pin must be the same inode after the open as before it: else it was replaced in
     * between and the fd may be either map. */
    if (stat(path, &again) != 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino) {
      close(fd);
      if (tries >= 3) return EAGAIN;
      if (stat(path, &st) != 0) return errno;
      continue;
    }
    if (!fd_is(fd, "anon_inode:bpf-map")) {
      close(fd);
      *why = "not a map";
      return EINVAL;
    }
    struct map *m = calloc(1, sizeof *m);
    char *p = strdup(path);
    if (!m || !p) {
      free(m);
      free(p);
      close(fd);
      return ENOMEM;
    }
    memset(&a, 0, sizeof a);
    a.info.bpf_fd = (uint32_t)fd;
    a.info.info_len = sizeof m->info;
    a.info.info = ptr(&m->info);
    if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) != 0) {
      int e = errno;
      free(m);
      free(p);
      close(fd);
      return e;
    }
    m->path = p;
    m->dev = st.st_dev;
    m->ino = st.st_ino;
    m->fd = fd;
    m->value_bytes = percpu_type(m->info.type) ? ((m->info.value_size + 7) & ~7u) * (uint32_t)possible_cpus() : m->info.value_size;
    m->batch_update = probe_batch(fd, BPF_MAP_UPDATE_BATCH);
    m->batch_delete = probe_batch(fd, BPF_MAP_DELETE_BATCH);
    m->next = maps;
    maps = m;
    *out = m;
    return 0;
  }
}

/* Indexes of deletes skipped (absent keys). */
struct idx {
  uint32_t *v;
  size_t n, cap;
};

static int idx_push(struct idx *x, uint32_t i) {
  if (x->n == x->cap) {
    size_t cap = x->cap ? x->cap * 2 : 64;
    uint32_t *v = realloc(x->v, cap * sizeof *v);
    if (!v) return ENOMEM;
    x->v = v;
    x->cap = cap;
  }
  x->v[x->n++] = i;
  return 0;
}

/*
 * n updates (op 1, values of m->value_bytes each) or deletes (op 2) of packed keys: one batch
 * syscall while they succeed. *done: entries processed (taken, or skipped: an absent key of a
 * delete when skip_missing, its index + base pushed to sk) before the one that failed. Returns 0
 * or the failure's errno.
 */
static int map_write(struct map *m, int op, const uint8_t *keys, const uint8_t *vals, uint32_t n, int skip_missing, struct idx *sk, uint32_t base, uint32_t *done) {
  size_t ks = m->info.key_size, vs = m->value_bytes;
  int batch = op == 1 ? m->batch_update : m->batch_delete;
  uint32_t at = 0;
  int err = 0;
  while (at < n) {
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    uint32_t count;
    if (batch) {
      a.batch.map_fd = (uint32_t)m->fd;
      a.batch.keys = ptr(keys + at * ks);
      if (op == 1) a.batch.values = ptr(vals + at * vs);
      a.batch.count = n - at;
      a.batch.elem_flags = BPF_ANY;
      err = sys_bpf(op == 1 ? BPF_MAP_UPDATE_BATCH : BPF_MAP_DELETE_BATCH, &a) != 0 ? errno : 0;
      count = err ? a.batch.count : n - at; /* the kernel writes back how many it processed */
      if (count > n - at) count = 0;
    } else {
      a.map_fd = (uint32_t)m->fd;
      a.key = ptr(keys + at * ks);
      if (op == 1) {
        a.value = ptr(vals + at * vs);
        a.flags = BPF_ANY;
      }
      err = sys_bpf(op == 1 ? BPF_MAP_UPDATE_ELEM : BPF_MAP_DELETE_ELEM, &a) != 0 ? errno : 0;
      count = err ? 0 : 1;
    }
    at += count;
    if (!err) continue;
    if (op == 2 && err == ENOENT && skip_missing) {
      if ((err = idx_push(sk, base + at)) != 0) break;
      at++;
      continue;
    }
    break;
  }
  *done = at;
  return err;
}

static napi_value map_error(napi_env env, const char *path, int e, const char *why) {
  char call[320];
  if (why) {
    snprintf(call, sizeof call, "open map %s: %s", path, why);
    napi_throw_error(env, "EINVAL", call);
    return NULL;
  }
  snprintf(call, sizeof call, "open map %s", path);
  return throw_code(env, call, e);
}

static napi_value bool_value(napi_env env, int b) {
  napi_value v;
  return napi_get_boolean(env, b != 0, &v) == napi_ok ? v : NULL;
}

static int set_prop(napi_env env, napi_value obj, const char *name, napi_value v) {
  return v && napi_set_named_property(env, obj, name, v) == napi_ok;
}

static napi_value idx_array(napi_env env, const struct idx *x) {
  napi_value arr;
  if (napi_create_array_with_length(env, x->n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < x->n; i++)
    if (napi_set_element(env, arr, (uint32_t)i, int_value(env, x->v[i])) != napi_ok) return NULL;
  return arr;
}

/* The map pinned at the path in `v`: the path (the caller frees it), or NULL with an exception pending. */
static char *map_arg(napi_env env, napi_value v, struct map **m) {
  char *path = string_arg(env, v, "expected a map pin path");
  if (!path) return NULL;
  const char *why;
  int e = map_at(path, m, &why);
  if (e) {
    map_error(env, path, e, why);
    free(path);
    return NULL;
  }
  return path;
}

static napi_value map_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], obj, name;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return napi_throw_type_error(env, NULL, "mapInfo(path)"), NULL;
  struct map *m;
  char *path = map_arg(env, argv[0], &m);
  if (!path) return NULL;
  free(path);
  if (napi_create_object(env, &obj) != napi_ok || napi_create_string_utf8(env, m->info.name, strnlen(m->info.name, sizeof m->info.name), &name) != napi_ok) return NULL;
  if (!set_prop(env, obj, "type", int_value(env, m->info.type)) || !set_prop(env, obj, "keySize", int_value(env, m->info.key_size)) ||
      !set_prop(env, obj, "valueSize", int_value(env, m->info.value_size)) || !set_prop(env, obj, "maxEntries", int_value(env, m->info.max_entries)) ||
      !set_prop(env, obj, "flags", int_value(env, m->info.map_flags)) || !set_prop(env, obj, "id", int_value(env, m->info.id)) ||
      !set_prop(env, obj, "name", name) || !set_prop(env, obj, "valueBytes", int_value(env, m->value_bytes)) || !set_prop(env, obj, "batchUpdate", bool_value(env, m->batch_update)) ||
      !set_prop(env, obj, "batchDelete", bool_value(env, m->batch_delete)))
    return NULL;
  return obj;
}

static napi_value map_write_js(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) {
    return napi_throw_type_error(env, NULL, "mapWrite(path, op, keys, values, count, missingOk)"), NULL;
  }
  int op;
  uint32_t n;
  uint8_t *keys, *vals = NULL;
  size_t klen, vlen = 0;
  napi_valuetype vt = napi_undefined;
  if (napi_get_value_int32(env, argv[1], &op) != napi_ok || (op != 1 && op != 2) || napi_get_value_uint32(env, argv[4], &n) != napi_ok) {
    return napi_throw_type_error(env, NULL, "mapWrite: op is 1 (update) or 2 (delete), count a number"), NULL;
  }
  if (!buffer_arg(env, argv[2], &keys, &klen)) return NULL;
  if (op == 1 && (napi_typeof(env, argv[3], &vt) != napi_ok || vt == napi_null || vt == napi_undefined || !buffer_arg(env, argv[3], &vals, &vlen))) {
    if (vt == napi_null || vt == napi_undefined) napi_throw_type_error(env, NULL, "mapWrite: an update needs values");
    return NULL;
  }
  struct map *m;
  char *path = map_arg(env, argv[0], &m);
  if (!path) return NULL;
  char msg[400];
  if ((uint64_t)n * m->info.key_size != klen) {
    snprintf(msg, sizeof msg, "write map %s: %zu key bytes for %u keys of %u bytes", path, klen, n, m->info.key_size);
    free(path);
    napi_throw_type_error(env, "EINVAL", msg);
    return NULL;
  }
  uint8_t *expanded = NULL;
  if (op == 1 && (uint64_t)n * m->value_bytes != vlen) {
    if ((uint64_t)n * m->info.value_size != vlen || m->value_bytes == m->info.value_size) {
      snprintf(msg, sizeof msg, "write map %s: %zu value bytes for %u values of %u bytes", path, vlen, n, m->info.value_size);
      free(path);
      napi_throw_type_error(env, "EINVAL", msg);
      return NULL;
    }
    /* A per-CPU map given one value: the same on every CPU. */
    uint32_t slot = (m->info.value_size + 7) & ~7u, cpus = m->value_bytes / slot;
    expanded = calloc((size_t)n * m->value_bytes + 1, 1);
    if (!expanded) {
      free(path);
      return throw_code(env, "mapWrite", ENOMEM);
    }
    for (uint32_t i = 0; i < n; i++)
      for (uint32_t c = 0; c < cpus; c++) memcpy(expanded + (size_t)i * m->value_bytes + (size_t)c * slot, vals + (size_t)i * m->info.value_size, m->info.value_size);
    vals = expanded;
  }
  free(path);
  struct idx sk = {0};
  uint32_t done = 0;
  int err = map_write(m, op, keys, vals, n, bool_arg(env, argc > 5 ? argv[5] : NULL), &sk, 0, &done);
  free(expanded);
  napi_value obj;
  napi_value skipped = idx_array(env, &sk);
  free(sk.v);
  if (napi_create_object(env, &obj) != napi_ok || !set_prop(env, obj, "done", int_value(env, done)) || !set_prop(env, obj, "skipped", skipped) ||
      !set_prop(env, obj, "errno", int_value(env, err)))
    return NULL;
  return obj;
}

/* The record frames of src/datapath/bpf/op-list.ts. Their layout is defined there only and comes
 * with every call: [record size, key offset, value offset]; byte 0 is the op, byte 1 the map. */
#define MAX_RECORDS (1u << 20)
#define MAX_FRAME_MAPS 255
#define MAX_RECORD 4096

static napi_value map_write_frame(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  bool is_array;
  uint32_t nmaps, layout[3], nlayout = 0;
  uint8_t *frame;
  size_t flen;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[0], &nmaps) != napi_ok || nmaps > MAX_FRAME_MAPS || napi_get_array_length(env, argv[2], &nlayout) != napi_ok || nlayout != 3) {
    return napi_throw_type_error(env, NULL, "mapWriteFrame(paths (at most 255), frame, [recordSize, keyOffset, valueOffset])"), NULL;
  }
  for (uint32_t i = 0; i < 3; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_uint32(env, v, &layout[i]) != napi_ok) return napi_throw_type_error(env, NULL, "mapWriteFrame: a layout of 3 numbers"), NULL;
  }
  const size_t REC = layout[0], KEY_OFF = layout[1], VAL_OFF = layout[2];
  if (KEY_OFF < 2 || VAL_OFF <= KEY_OFF || REC <= VAL_OFF || REC > MAX_RECORD) return napi_throw_type_error(env, NULL, "mapWriteFrame: a layout needs 2 <= keyOffset < valueOffset < recordSize <= 4096"), NULL;
  const size_t KEY_FIELD = VAL_OFF - KEY_OFF, VAL_FIELD = REC - VAL_OFF;
  if (!buffer_arg(env, argv[1], &frame, &flen)) return NULL;
  char msg[400];
  uint32_t n = flen >= 4 ? (uint32_t)frame[0] | (uint32_t)frame[1] << 8 | (uint32_t)frame[2] << 16 | (uint32_t)frame[3] << 24 : 0;
  if (flen < 4 || n > MAX_RECORDS || flen != 4 + (size_t)n * REC) {
    snprintf(msg, sizeof msg, "write maps: a frame of %zu bytes is not a u32 count (at most %u) and that many %zu-byte records", flen, MAX_RECORDS, REC);
    return napi_throw_type_error(env, "EINVAL", msg), NULL;
  }
  const uint8_t *recs = frame + 4;
  for (uint32_t s = 0; s < n; s++) {
    uint8_t op = recs[(size_t)s * REC], mi = recs[(size_t)s * REC + 1];
    if ((op != 1 && op != 2) || mi >= nmaps) {
      snprintf(msg, sizeof msg, "write maps: record %u has op %u and map %u (ops 1 and 2, %u maps)", s, op, mi, nmaps);
      return napi_throw_type_error(env, "EINVAL", msg), NULL;
    }
  }
  struct map *open_maps[MAX_FRAME_MAPS];
  for (uint32_t i = 0; i < nmaps; i++) {
    napi_value v;
    if (napi_get_element(env, argv[0], i, &v) != napi_ok) return NULL;
    char *path = map_arg(env, v, &open_maps[i]);
    if (!path) return NULL;
    if (open_maps[i]->info.key_size > KEY_FIELD || open_maps[i]->value_bytes > VAL_FIELD) {
      snprintf(msg, sizeof msg, "write maps: map %s has keys or values over the %zu and %zu bytes of a record", path, KEY_FIELD, VAL_FIELD);
      free(path);
      return napi_throw_type_error(env, "EINVAL", msg), NULL;
    }
    free(path);
  }
  /* The maps of one frame are open now; a map re-pinned while the frame runs keeps its old fd
   * to the end of the frame (the caller holds the lock that orders such changes). */
  struct idx sk = {0};
  uint32_t done = 0;
  int err = 0;
  uint8_t *keys = malloc((size_t)n * KEY_FIELD + 1), *vals = malloc((size_t)n * VAL_FIELD + 1);
  if (!keys || !vals) err = ENOMEM;
  for (uint32_t s = 0; s < n && !err;) {
    uint8_t op = recs[(size_t)s * REC], mi = recs[(size_t)s * REC + 1];
    uint32_t e = s + 1;
    while (e < n && recs[(size_t)e * REC] == op && recs[(size_t)e * REC + 1] == mi) e++;
    struct map *m = open_maps[mi];
    size_t ks = m->info.key_size, vs = m->value_bytes;
    for (uint32_t i = s; i < e; i++) {
      memcpy(keys + (size_t)(i - s) * ks, recs + (size_t)i * REC + KEY_OFF, ks);
      if (op == 1) memcpy(vals + (size_t)(i - s) * vs, recs + (size_t)i * REC + VAL_OFF, vs);
    }
    uint32_t ran = 0;
    err = map_write(m, op, keys, vals, e - s, 1, &sk, s, &ran);
    done = s + ran;
    s = e;
  }
  free(keys);
  free(vals);
  napi_value obj, failed, text;
  napi_value skipped = idx_array(env, &sk);
  free(sk.v);
  if (napi_create_object(env, &obj) != napi_ok || !set_prop(env, obj, "done", int_value(env, done)) || !set_prop(env, obj, "skipped", skipped)) return NULL;
  if (err) {
    const char *s = err == ENOTSUPP ? "Operation not supported" : strerror(err);
    if (napi_create_object(env, &failed) != napi_ok || napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &text) != napi_ok ||
        !set_prop(env, failed, "index", int_value(env, done)) || !set_prop(env, failed, "errno", int_value(env, err)) || !set_prop(env, failed, "error", text) ||
        !set_prop(env, obj, "failed", failed))
      return NULL;
  }
  return obj;
}

/* (path, key) of mapLookup: the map (0), else an exception is pending (-1). */
static int path_key_args(napi_env env, napi_callback_info info, struct map **m, uint8_t **key, size_t *klen, int want_key) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < (size_t)(want_key ? 2 : 1)) {
    napi_throw_type_error(env, NULL, want_key ? "expected (path, key)" : "expected (path)");
    return -1;
  }
  if (want_key && !buffer_arg(env, argv[1], key, klen)) return -1;
  char *path = map_arg(env, argv[0], m);
  if (!path) return -1;
  int e = 0;
  if (want_key && *klen != (*m)->info.key_size) {
    char msg[400];
    snprintf(msg, sizeof msg, "look up map %s: a key of %zu bytes, the map's are %u", path, *klen, (*m)->info.key_size);
    napi_throw_type_error(env, "EINVAL", msg);
    e = EINVAL;
  }
  free(path);
  return e ? -1 : 0;
}

static napi_value map_lookup(napi_env env, napi_callback_info info) {
  struct map *m;
  uint8_t *key;
  size_t klen;
  if (path_key_args(env, info, &m, &key, &klen, 1) < 0) return NULL;
  void *data;
  napi_value buf, out;
  if (napi_create_buffer(env, m->value_bytes, &data, &buf) != napi_ok) return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_fd = (uint32_t)m->fd;
  a.key = ptr(key);
  a.value = ptr(data);
  if (sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) != 0) {
    if (errno == ENOENT) return napi_get_null(env, &out) == napi_ok ? out : NULL;
    return throw_errno(env, "lookup map element");
  }
  return buf;
}

static napi_value map_dump(napi_env env, napi_callback_info info) {
  struct map *m;
  if (path_key_args(env, info, &m, NULL, NULL, 0) < 0) return NULL;
  size_t ks = m->info.key_size, vs = m->value_bytes;
  /* A map holds at most max_entries; a hash iteration that restarts (its key was deleted under
   * it) is cut there rather than running on. */
  size_t cap = 16, n = 0, limit = (size_t)m->info.max_entries + 1;
  uint8_t *keys = malloc(cap * ks + 1), *vals = malloc(cap * vs + 1);
  /* The key to continue from: an offset into keys, which realloc may move (-1: from the start). */
  ptrdiff_t cur = -1;
  int32_t *errs = malloc(cap * sizeof *errs);
  int err = keys && vals && errs ? 0 : ENOMEM;
  while (!err && n < limit) {
    if (n == cap) {
      cap *= 2;
      uint8_t *k = realloc(keys, cap * ks + 1), *v = realloc(vals, cap * vs + 1);
      int32_t *e = realloc(errs, cap * sizeof *errs);
      if (k) keys = k;
      if (v) vals = v;
      if (e) errs = e;
      if (!k || !v || !e) {
        err = ENOMEM;
        break;
      }
    }
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_fd = (uint32_t)m->fd;
    a.key = cur < 0 ? 0 : ptr(keys + cur);
    a.next_key = ptr(keys + n * ks);
    if (sys_bpf(BPF_MAP_GET_NEXT_KEY, &a) != 0) {
      if (errno != ENOENT) err = errno;
      break;
    }
    cur = (ptrdiff_t)(n * ks);
    memset(&a, 0, sizeof a);
    a.map_fd = (uint32_t)m->fd;
    a.key = ptr(keys + cur);
    a.value = ptr(vals + n * vs);
    errs[n] = sys_bpf(BPF_MAP_LOOKUP_ELEM, &a) != 0 ? errno : 0;
    if (errs[n] == ENOENT && m->info.type != BPF_MAP_TYPE_PERF_EVENT_ARRAY && m->info.type != BPF_MAP_TYPE_PROG_ARRAY) continue; /* deleted meanwhile (the next key is found from it all the same) */
    if (errs[n]) memset(vals + n * vs, 0, vs);
    n++;
  }
  napi_value obj, kb, vb, eb;
  void *p;
  int ok = !err && napi_create_object(env, &obj) == napi_ok;
  if (ok && napi_create_buffer_copy(env, n * ks, keys, &p, &kb) == napi_ok && napi_create_buffer_copy(env, n * vs, vals, &p, &vb) == napi_ok &&
      napi_create_array_with_length(env, n, &eb) == napi_ok) {
    for (size_t i = 0; ok && i < n; i++) ok = napi_set_element(env, eb, (uint32_t)i, int_value(env, errs[i])) == napi_ok;
    ok = ok && set_prop(env, obj, "keys", kb) && set_prop(env, obj, "values", vb) && set_prop(env, obj, "errs", eb) && set_prop(env, obj, "count", int_value(env, (int64_t)n));
  } else {
    ok = 0;
  }
  free(keys);
  free(vals);
  free(errs);
  if (err) return throw_code(env, "dump map", err);
  return ok ? obj : NULL;
}

static napi_value prog_get(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], obj, out, name, tag;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return napi_throw_type_error(env, NULL, "progGet(path)"), NULL;
  char *path = string_arg(env, argv[0], "expected a program pin path");
  if (!path) return NULL;
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.pathname = ptr(path);
  int fd = sys_bpf(BPF_OBJ_GET, &a);
  int e = errno;
  free(path);
  if (fd < 0) {
    if (e == ENOENT) return napi_get_null(env, &out) == napi_ok ? out : NULL;
    return throw_code(env, "open pinned program", e);
  }
  if (!fd_is(fd, "anon_inode:bpf-prog")) {
    close(fd);
    napi_throw_error(env, "EINVAL", "open pinned program: not a program");
    return NULL;
  }
  struct bpf_prog_info pi;
  memset(&pi, 0, sizeof pi);
  memset(&a, 0, sizeof a);
  a.info.bpf_fd = (uint32_t)fd;
  a.info.info_len = sizeof pi;
  a.info.info = ptr(&pi);
  int r = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a);
  e = errno;
  close(fd);
  if (r != 0) return throw_code(env, "program info", e);
  char hex[2 * sizeof pi.tag + 1];
  for (size_t i = 0; i < sizeof pi.tag; i++) snprintf(hex + 2 * i, 3, "%02x", pi.tag[i]);
  if (napi_create_object(env, &obj) != napi_ok || napi_create_string_utf8(env, pi.name, strnlen(pi.name, sizeof pi.name), &name) != napi_ok ||
      napi_create_string_utf8(env, hex, NAPI_AUTO_LENGTH, &tag) != napi_ok || !set_prop(env, obj, "id", int_value(env, pi.id)) || !set_prop(env, obj, "name", name) ||
      !set_prop(env, obj, "tag", tag))
    return NULL;
  return obj;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peercred", NULL, peercred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerClosed", NULL, peer_closed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readable", NULL, readable, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryLock", NULL, try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockTry", NULL, lock_try, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockWait", NULL, lock_wait, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lockAbandon", NULL, lock_abandon, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlock", NULL, unlock_fd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapInfo", NULL, map_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapWrite", NULL, map_write_js, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapWriteFrame", NULL, map_write_frame, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapLookup", NULL, map_lookup, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mapDump", NULL, map_dump, NULL, NULL, NULL, napi_enumerable, NULL},
      {"progGet", NULL, prog_get, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(pn_sys, init)
