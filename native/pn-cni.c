/*
 * pn-cni client: what a container runtime execs when pn's node agent may be running.
 *
 * A runtime execs the CNI plugin once per call, on the pod start-up critical path. Booting Node
 * costs ~100 ms before pn does anything, so this executable never does when an agent answers:
 * it reads the netconf from stdin, finds the node's state dir the way pn-cni does (the netconf's
 * top-level "stateDir", else PN_STATE_DIR, else /var/lib/pn), connects to
 * <state dir>/agent.sock and forwards the call (stdin, the CNI_* variables and pn's documented
 * settings — forwarded() below —, and its own network namespace, which the agent must share). It
 * writes the agent's stdout and stderr and exits with the agent's exit code. Test hooks
 * (PN_TEST_*, PN_CNI_FAIL_AFTER) and any other PN_* variable are not forwarded: a request never
 * carries fault injection to a production agent. The standalone path gets the whole environment.
 *
 * When no agent answers (no socket, connection refused, or an agent serving another network
 * namespace), it runs the standalone Node path with the same environment and the same stdin, so
 * pn works without a daemon (standalone() below: it also starts pn-cni's two helpers and returns
 * as soon as pn-cni has answered). Once a request was handed over it never falls back: the agent
 * may already have changed the node, and a second ADD would race it.
 *
 * Wire format (docs/AGENT.md): "PNCNI/1\n", then netstrings (`<len>:<bytes>,`): the client's
 * netns inode, the number of environment entries, each `KEY=VALUE`, and stdin. The answer:
 * netstrings exit code, stdout, stderr. Exit code 254 from the agent means "not mine, fall back".
 * Limits, checked on both sides (src/agent/wire.ts): a netstring holds at most 16 MiB (its length
 * at most 8 digits), at most 4096 environment entries, a request of at most 32 MiB in all. A
 * netconf over its limit is refused here with CNI code 6, the variables or the whole request with
 * code 4; an answer over its limit is a broken agent (code 11, as a truncated one).
 *
 * The standalone path's status pipe (PN_CNI_STATUS_FD): pn-cni writes "start\n" once it has
 * booted, then "<exit code 0..255>\n" once its answer is written; lines are at most 31 bytes.
 * Anything else there is ignored and the client waits for pn-cni's own exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_STATE_DIR "/var/lib/pn"
#define FALLBACK_CODE 254
#define MAX_FIELD (16ul << 20)
#define MAX_FIELD_DIGITS 8
#define MAX_ENV 4096
#define MAX_REQUEST (32ul << 20)
/* An answer: three netstrings of at most MAX_FIELD bytes each. */
#define MAX_ANSWER (3 * (MAX_FIELD + MAX_FIELD_DIGITS + 2))

extern char **environ;

struct buf {
  char *p;
  size_t len, cap;
};

static void die(const char *what) {
  /* A CNI error document, so the runtime shows something useful (code 999: plugin failure). */
  printf("{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"pn-cni client: %s: %s\"}\n", what, strerror(errno));
  exit(1);
}

static void put(struct buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("allocate");
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
  b->p[b->len] = 0;
}

static void netstring(struct buf *b, const char *p, size_t n) {
  char head[32];
  int h = snprintf(head, sizeof head, "%zu:", n);
  put(b, head, (size_t)h);
  put(b, p, n);
  put(b, ",", 1);
}

/* Everything fd gives until EOF; -1 (stopped there) once it is over max bytes. */
static int read_all(int fd, struct buf *b, size_t max) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    put(b, chunk, (size_t)n);
    if (b->len > max) return -1;
  }
}

static void write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      die("write");
    }
    p += w;
    n -= (size_t)w;
  }
}

/*
 * The top-level "stateDir" string of a JSON object, or NULL. A small scanner that tracks depth
 * and strings, so a "stateDir" nested in another object (or inside a string) is not taken.
 * Escapes other than \" \\ \/ make it give up (NULL): the agent is then looked up where pn-cni
 * itself would not look, so the client falls back to the standalone path, which is always right.
 */
static char *top_level_state_dir(const char *s, size_t n) {
  int depth = 0;
  int expect_key = 0;
  size_t i = 0;
  while (i < n) {
    char c = s[i];
    if (c == '"') {
      size_t start = ++i;
      int escaped = 0;
      while (i < n && s[i] != '"') {
        if (s[i] == '\\') {
          escaped = 1;
          i++;
        }
        i++;
      }
      if (i >= n) return NULL;
      size_t end = i++;
      if (depth == 1 && expect_key && end - start == 8 && memcmp(s + start, "stateDir", 8) == 0 && !escaped) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        if (i >= n || s[i] != ':') return NULL;
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
        if (i >= n || s[i] != '"') return NULL;
        size_t vs = ++i;
        char *out = malloc(n - vs + 1);
        size_t o = 0;
        if (!out) return NULL;
        while (i < n && s[i] != '"') {
          if (s[i] == '\\') {
            if (i + 1 >= n || (s[i + 1] != '"' && s[i + 1] != '\\' && s[i + 1] != '/')) {
              free(out);
              return NULL;
            }
            i++;
          }
          out[o++] = s[i++];
        }
        if (i >= n) {
          free(out);
          return NULL;
        }
        out[o] = 0;
        return out;
      }
      expect_key = 0;
      continue;
    }
    if (c == '{') {
      depth++;
      expect_key = 1;
    } else if (c == '}' || c == ']') {
      depth--;
    } else if (c == '[') {
      depth++;
      expect_key = 0;
    } else if (c == ',') {
      expect_key = depth == 1;
    }
    i++;
  }
  return NULL;
}

/* The standalone Node path: PN_CNI_FALLBACK, else `<this executable>.node` (what `pn cni install`
 * writes beside it), else `<dir>/../../bin/pn-cni.cjs` (this file built in a checkout's dist/native). */
static void standalone_target(char *target, size_t size) {
  char self[PATH_MAX];
  const char *env = getenv("PN_CNI_FALLBACK");
  if (env && *env) {
    snprintf(target, size, "%s", env);
    return;
  }
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) die("find the standalone pn-cni (readlink /proc/self/exe)");
  self[n] = 0;
  snprintf(target, size, "%s.node", self);
  if (access(target, X_OK) == 0) return;
  char *slash = strrchr(self, '/');
  if (slash) *slash = 0;
  snprintf(target, size, "%s/../../bin/pn-cni.cjs", self);
}

/* The value of a `# pn-cni KEY: VALUE` line in head, copied to out; false when absent. */
static int header_value(const char *head, const char *key, char *out, size_t size) {
  char tag[64];
  snprintf(tag, sizeof tag, "\n# pn-cni %s: ", key);
  const char *line = strstr(head, tag);
  if (!line) return 0;
  line += strlen(tag);
  size_t len = strcspn(line, "\n");
  if (len == 0 || len >= size) return 0;
  memcpy(out, line, len);
  out[len] = 0;
  return 1;
}

/* `name` found in PATH, copied to out; false when not found. */
static int in_path(const char *name, char *out, size_t size) {
  const char *p = getenv("PATH");
  while (p && *p) {
    size_t len = strcspn(p, ":");
    if (len > 0 && (size_t)snprintf(out, size, "%.*s/%s", (int)len, p, name) < size && access(out, X_OK) == 0) return 1;
    p += len + (p[len] == ':');
  }
  return 0;
}

/*
 * How to run the target, from its first 4 KiB. A wrapper `pn cni install` wrote names node, the
 * entry and the helpers' folder in `# pn-cni node|entry|helpers:` lines, so node is exec'd
 * directly rather than through sh. A checkout's bin/pn-cni.cjs is run by the node in PATH (not
 * through /usr/bin/env), with the helpers of <its dir>/../dist/native. Anything else is exec'd as
 * it is. `node` is empty when the target is exec'd itself; `dir` is empty when pn-netlink is not
 * there (pn-cni then starts its own, as it does when run directly).
 */
static void launch_spec(const char *target, char *node, char *entry, char *dir, size_t size) {
  char head[4096], path[PATH_MAX + 32];
  node[0] = entry[0] = dir[0] = 0;
  head[0] = 0;
  int fd = open(target, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, head, sizeof head - 1);
    close(fd);
    head[n > 0 ? n : 0] = 0;
  }
  if (header_value(head, "node", node, size) && header_value(head, "entry", entry, size) && access(node, X_OK) == 0) {
    /* exec node entry */
  } else {
    node[0] = entry[0] = 0;
    size_t len = strlen(target);
    if (len > 4 && strcmp(target + len - 4, ".cjs") == 0 && in_path("node", node, size)) snprintf(entry, size, "%s", target);
    else node[0] = 0;
  }
  if (!header_value(head, "helpers", dir, size)) {
    snprintf(path, sizeof path, "%s", target);
    char *slash = strrchr(path, '/');
    if (slash) *slash = 0;
    else snprintf(path, sizeof path, ".");
    if ((size_t)snprintf(dir, size, "%s/../dist/native", path) >= size) dir[0] = 0;
  }
  snprintf(path, sizeof path, "%s/pn-netlink", dir);
  if (!dir[0] || access(path, X_OK) != 0) dir[0] = 0;
}

/* Start the helper `name` of `dir` on `end` (one end of a socket pair) as its stdin and stdout.
 * Its stderr is /dev/null: it outlives this process by a few ms, and a runtime reading our stderr
 * would wait for it. A helper that fails to start is a closed socket to pn-cni: the request it
 * was sent fails, and pn-cni spawns the helper itself for the next. */
static void start_helper(const char *dir, const char *name, int end) {
  char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  if (vfork() == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (dup2(end, 0) < 0 || dup2(end, 1) < 0 || null < 0 || dup2(null, 2) < 0) _exit(127);
    execl(path, path, (char *)NULL);
    _exit(127);
  }
}

/* An exit code: 1 to 3 decimal digits, 0..255; else -1. */
static int exit_code(const char *p, size_t n) {
  int v = 0;
  if (n == 0 || n > 3) return -1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (p[i] - '0');
  }
  return v <= 255 ? v : -1;
}

/* The status pipe's lines (see the top of this file), as read(2) delivers them. */
#define STATUS_LINE 32
struct status { char line[STATUS_LINE]; size_t have; };
enum { STATUS_NONE = -1, STATUS_START = -2, STATUS_GARBLED = -3 };

/* Room for the next read: at least one byte, since a full buffer without a newline is garbled. */
static char *status_room(struct status *st, size_t *room) {
  *room = sizeof st->line - 1 - st->have;
  return st->line + st->have;
}

/* After n bytes were read into status_room: the next event — STATUS_START, an exit code 0..255,
 * STATUS_GARBLED (a line that is neither, or one too long), or STATUS_NONE (no whole line yet).
 * Call again (with n = 0) until STATUS_NONE: several lines may have arrived at once. */
static int status_next(struct status *st, size_t n) {
  st->have += n;
  st->line[st->have] = 0;
  char *nl = memchr(st->line, '\n', st->have);
  if (!nl) return st->have == sizeof st->line - 1 ? STATUS_GARBLED : STATUS_NONE;
  *nl = 0;
  size_t len = (size_t)(nl - st->line);
  int ev = strcmp(st->line, "start") == 0 ? STATUS_START : exit_code(st->line, len);
  if (ev == -1) ev = STATUS_GARBLED;
  st->have -= len + 1;
  memmove(st->line, nl + 1, st->have);
  st->line[st->have] = 0;
  return ev;
}

static volatile pid_t child_pid;

/* A runtime that gives up sends us the signal: pn-cni must get it to unwind its ADD. */
static void forward(int sig) {
  if (child_pid > 0) kill(child_pid, sig);
}

/* Copy what is readable on fd to out; returns 0 at EOF, 1 otherwise. */
static int relay(int fd, int out) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n > 0) {
      write_all(out, chunk, (size_t)n);
      continue;
    }
    if (n == 0) return 0;
    if (errno == EINTR) continue;
    return 1; /* EAGAIN: nothing more for now */
  }
}

/*
 * The standalone path, when no agent answers: run pn-cni (Node) with the same environment and
 * stdin (replayed from a memfd), and return its answer. Two things make it cheaper than exec'ing
 * Node outright, each measured (docs/AGENT.md):
 *  - this process starts pn-netlink while Node boots and hands pn-cni its socket
 *    (PN_CNI_NETLINK_FD): Node's own fork() of its grown heap, and the wait for the helper, are
 *    gone (pn-cni holds its locks itself, with flock(2) through its addon);
 *  - pn-cni writes its exit code to PN_CNI_STATUS_FD once its answer is written; this process
 *    then relays the rest of stdout and stderr and exits, while Node tears its heap down.
 * pn-cni's stdout and stderr come through pipes, so nothing of a runtime's is held by a process
 * that outlives this one. SIGTERM, SIGINT and SIGHUP are forwarded, and pn-cni gets SIGTERM if
 * this process dies first (a runtime's SIGKILL): either way it unwinds a half-made ADD.
 */
static void standalone(char **argv, struct buf *in) {
  char target[PATH_MAX + 32], node[PATH_MAX], entry[PATH_MAX], dir[PATH_MAX];
  standalone_target(target, sizeof target);
  launch_spec(target, node, entry, dir, PATH_MAX);
  /* [0]: pn-cni's end, [1]: the helper's; both close-on-exec until handed over. */
  int netlink[2] = {-1, -1};
  if (dir[0] && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, netlink) != 0) {
    netlink[0] = netlink[1] = -1; /* no helper: pn-cni starts its own */
  }
  int fd = memfd_create("pn-cni-stdin", MFD_CLOEXEC);
  if (fd < 0) die("memfd_create");
  write_all(fd, in->p ? in->p : "", in->len);
  if (lseek(fd, 0, SEEK_SET) < 0) die("lseek");
  int out[2], err[2], status[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(status, O_CLOEXEC) != 0) die("pipe");
  /* The child's environment, made here: after vfork() it may only make system calls. */
  static const char *const ours[] = {"PN_CNI_STATUS_FD=", "PN_CNI_NETLINK_FD="};
  const int inherit[] = {status[1], netlink[0]};
  size_t count = 0, k = 0;
  for (char **e = environ; *e; e++) count++;
  char **envp = calloc(count + 3, sizeof *envp);
  char vars[2][40];
  if (!envp) die("allocate");
  for (char **e = environ; *e; e++) {
    int mine = 0;
    for (int i = 0; i < 2; i++) mine |= strncmp(*e, ours[i], strlen(ours[i])) == 0;
    if (!mine) envp[k++] = *e;
  }
  for (int i = 0; i < 2; i++)
    if (inherit[i] >= 0) {
      snprintf(vars[i], sizeof vars[i], "%s%d", ours[i], inherit[i]);
      envp[k++] = vars[i];
    }
  /* argv: node entry ARGS…, or target ARGS… */
  int argc = 0;
  while (argv[argc]) argc++;
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die("allocate");
  const char *program = node[0] ? node : target;
  int a = 0;
  args[a++] = node[0] ? node : target;
  if (node[0]) args[a++] = entry;
  for (int i = 1; i < argc; i++) args[a++] = argv[i];
  static const char failed[] = "{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"pn-cni client: exec the standalone pn-cni failed\"}\n";
  pid_t parent = getpid();
  /* vfork: no copy of this process's page tables, and no copy-on-write faults after it (each
   * fault is a trap to the hypervisor on a VM). */
  pid_t pid = vfork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(1);
    if (dup2(fd, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0) _exit(127);
    /* Inherited on purpose (the rest stays close-on-exec). */
    for (int i = 0; i < 2; i++)
      if (inherit[i] >= 0) fcntl(inherit[i], F_SETFD, 0);
    execve(program, args, envp);
    if (write(1, failed, sizeof failed - 1) < 0) _exit(127);
    _exit(1);
  }
  free(envp);
  free(args);
  child_pid = pid;
  struct sigaction sa = {.sa_handler = forward};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  close(fd);
  close(out[1]);
  close(err[1]);
  close(status[1]);
  if (netlink[0] >= 0) close(netlink[0]);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);

  /* The helper starts when pn-cni says it has booted ("start" on the status pipe: it then loads
   * its bundle for ~20 ms while the helper starts), or at its first request (which waits in the
   * socket meanwhile), not with Node: a process start during Node's own start slows it by more
   * than the helper's start costs later. A call that never says so (VERSION) starts none. */
  enum { NFDS = 4 };
  struct pollfd fds[NFDS] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}, {.fd = status[0], .events = POLLIN},
                             {.fd = netlink[1], .events = POLLIN}};
  static const char *const helper[NFDS] = {[3] = "pn-netlink"};
  struct status sp = {.have = 0};
  for (;;) {
    if (fds[0].fd < 0 && fds[1].fd < 0 && fds[2].fd < 0) break;
    if (poll(fds, NFDS, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (int i = 3; i < NFDS; i++)
      if (fds[i].fd >= 0 && fds[i].revents) {
        /* A request, or pn-cni closed its end (then a helper would only read EOF). */
        if (fds[i].revents & POLLIN) start_helper(dir, helper[i], fds[i].fd);
        close(fds[i].fd);
        fds[i].fd = -1;
      }
    for (int i = 0; i < 2; i++)
      if (fds[i].fd >= 0 && fds[i].revents && !relay(fds[i].fd, i == 0 ? 1 : 2)) fds[i].fd = -1;
    if (fds[2].fd >= 0 && fds[2].revents) {
      size_t room;
      char *at = status_room(&sp, &room);
      ssize_t n = read(fds[2].fd, at, room);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) { fds[2].fd = -1; continue; } /* it ended without a code */
      for (int ev = status_next(&sp, (size_t)n); ev != STATUS_NONE; ev = status_next(&sp, 0)) {
        if (ev == STATUS_START) {
          for (int i = 3; i < NFDS; i++)
            if (fds[i].fd >= 0) {
              start_helper(dir, helper[i], fds[i].fd);
              close(fds[i].fd);
              fds[i].fd = -1;
            }
        } else if (ev == STATUS_GARBLED) {
          fds[2].fd = -1; /* not pn-cni's status: wait for its own exit status */
          break;
        } else {
          /* The exit code: pn-cni has answered, and what it wrote before is in the pipes now. */
          if (fds[0].fd >= 0) relay(fds[0].fd, 1);
          if (fds[1].fd >= 0) relay(fds[1].fd, 2);
          _exit(ev);
        }
      }
    }
  }
  /* pn-cni ended without a code (it crashed, or was killed): its own exit status. */
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) die("waitpid");
  exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* Parse one netstring at *pos of b; returns its start and length, or -1 when malformed or over
 * the limit (MAX_FIELD bytes, a length of at most MAX_FIELD_DIGITS digits). */
static int take(struct buf *b, size_t *pos, const char **p, size_t *n) {
  size_t i = *pos, len = 0, digits = 0;
  if (i >= b->len) return -1;
  while (i < b->len && b->p[i] >= '0' && b->p[i] <= '9') {
    if (++digits > MAX_FIELD_DIGITS) return -1;
    len = len * 10 + (size_t)(b->p[i++] - '0');
  }
  if (digits == 0 || len > MAX_FIELD || i >= b->len || b->p[i] != ':' || len + 2 > b->len - i || b->p[i + 1 + len] != ',') return -1;
  *p = b->p + i + 1;
  *n = len;
  *pos = i + 1 + len + 1;
  return 0;
}

/*
 * The variables a request carries to the agent: CNI_* (the CNI protocol) and pn's documented
 * settings. Test hooks (PN_TEST_HOLD_LOCK_MS, PN_TEST_CHECKPOINT_DELAY_MS, PN_CNI_FAIL_AFTER) and
 * the client's own variables (PN_CNI_FALLBACK, PN_CNI_*_FD) are not.
 */
static int forwarded(const char *kv) {
  static const char *const settings[] = {"PN_STATE_DIR", "PN_POOL", "PN_LOCK_TIMEOUT_MS", "PN_BPF_DIR", "PN_TRACE_EXEC", "PN_AGENT_OP"};
  if (strncmp(kv, "CNI_", 4) == 0) return 1;
  size_t name = strcspn(kv, "=");
  if (!kv[name]) return 0;
  for (size_t i = 0; i < sizeof settings / sizeof *settings; i++)
    if (strlen(settings[i]) == name && strncmp(kv, settings[i], name) == 0) return 1;
  return 0;
}

/* A CNI error document on stdout (and exit 1): `details` names the pn error code. */
static void fail(int code, const char *msg, const char *details) {
  printf("{\"cniVersion\":\"1.0.0\",\"code\":%d,\"msg\":\"pn-cni client: %s\",\"details\":\"%s\"}\n", code, msg, details);
  exit(1);
}

#ifndef PN_FUZZ_HARNESS
int main(int argc, char **argv) {
  (void)argc;
  /* Static: they live as long as the process (and a leak checker sees them as such). */
  static struct buf in, req, resp;
  if (read_all(0, &in, MAX_FIELD) < 0) fail(6, "read the netconf: stdin is over 16 MiB", "PN_CNI_DECODE");

  const char *dir = NULL;
  char *conf_dir = top_level_state_dir(in.p ? in.p : "", in.len);
  if (conf_dir && *conf_dir) dir = conf_dir;
  else if (getenv("PN_STATE_DIR") && *getenv("PN_STATE_DIR")) dir = getenv("PN_STATE_DIR");
  else dir = DEFAULT_STATE_DIR;

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", dir) >= sizeof addr.sun_path) standalone(argv, &in);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
    /* No agent (ENOENT, ECONNREFUSED, EACCES …): the standalone path does the work. */
    close(s);
    standalone(argv, &in);
  }

  struct stat ns;
  char num[32];
  put(&req, "PNCNI/1\n", 8);
  snprintf(num, sizeof num, "%lu", stat("/proc/self/ns/net", &ns) == 0 ? (unsigned long)ns.st_ino : 0UL);
  netstring(&req, num, strlen(num));
  size_t count = 0;
  for (char **e = environ; *e; e++) {
    if (!forwarded(*e)) continue;
    if (strlen(*e) > MAX_FIELD) fail(4, "an environment variable is over 16 MiB", "PN_CNI_INVALID_ENV");
    count++;
  }
  if (count > MAX_ENV) fail(4, "more than 4096 CNI_* variables", "PN_CNI_INVALID_ENV");
  snprintf(num, sizeof num, "%zu", count);
  netstring(&req, num, strlen(num));
  for (char **e = environ; *e; e++) if (forwarded(*e)) netstring(&req, *e, strlen(*e));
  netstring(&req, in.p ? in.p : "", in.len);
  if (req.len > MAX_REQUEST) fail(4, "the request (netconf and CNI_* variables) is over 32 MiB", "PN_CNI_INVALID_ENV");
  write_all(s, req.p, req.len);
  shutdown(s, SHUT_WR);
  int over = read_all(s, &resp, MAX_ANSWER);
  close(s);
  if (over) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"pn agent at %s sent an answer over the limit\",\"details\":\"PN_AGENT_UNAVAILABLE\"}\n", addr.sun_path);
    return 1;
  }

  const char *p;
  size_t n, pos = 0;
  if (take(&resp, &pos, &p, &n) != 0) {
    /* The agent closed without an answer (it died mid-request): never retry an ADD behind its back. */
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"pn agent at %s closed the connection without an answer\",\"details\":\"PN_AGENT_UNAVAILABLE\"}\n", addr.sun_path);
    return 1;
  }
  int code = exit_code(p, n);
  if (code < 0) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"pn agent at %s sent a malformed exit code\",\"details\":\"PN_AGENT_UNAVAILABLE\"}\n", addr.sun_path);
    return 1;
  }
  if (code == FALLBACK_CODE) standalone(argv, &in);
  const char *out, *err;
  size_t outn, errn;
  if (take(&resp, &pos, &out, &outn) != 0 || take(&resp, &pos, &err, &errn) != 0) {
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"pn agent at %s sent a truncated answer\",\"details\":\"PN_AGENT_UNAVAILABLE\"}\n", addr.sun_path);
    return 1;
  }
  write_all(1, out, outn);
  write_all(2, err, errn);
  return code;
}
#endif
