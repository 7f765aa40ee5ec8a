/*
 * pn-peercred: the few socket and file syscalls the node agent needs and Node has no API for.
 * A Node-API addon (dist/native/pn-peercred.node, built by scripts/build-native.sh with -shared),
 * loaded by the agent only (src/agent/syscalls.ts), never by pn-cni or the other commands.
 *
 *   peercred(fd)  → {pid, uid, gid, groups}  the peer of an accepted UNIX socket as the kernel saw
 *                   it at connect(2) (SO_PEERCRED; groups: SO_PEERGROUPS, the supplementary groups)
 *   peerClosed(fd) → boolean                 the peer has closed its end (poll(2) reports POLLHUP;
 *                   a peer that only shut down its writing side is not closed)
 *   tryLock(fd)   → boolean                  flock(LOCK_EX | LOCK_NB): true when taken, false when
 *                   another open file description holds it
 *
 * A failed call throws an Error whose `code` is the errno name ("EBADF") and whose message names
 * the call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/types.h>

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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"peercred", NULL, peercred, NULL, NULL, NULL, napi_enumerable, NULL},
      {"peerClosed", NULL, peer_closed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"tryLock", NULL, try_lock, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(pn_peercred, init)
