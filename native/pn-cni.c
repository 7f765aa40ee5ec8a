/*
 * pn-cni client: what a container runtime execs when pn's node agent may be running.
 *
 * A runtime execs the CNI plugin once per call, on the pod start-up critical path. Booting Node
 * costs ~100 ms before pn does anything, so this executable never does when an agent answers:
 * it reads the netconf from stdin, finds the node's state dir the way pn-cni does (the netconf's
 * top-level "stateDir", else PN_STATE_DIR, else /var/lib/pn), connects to
 * <state dir>/agent.sock and forwards the call unchanged (the CNI_* and PN_* environment, stdin,
 * and its own network namespace, which the agent must share). It writes the agent's stdout and
 * stderr and exits with the agent's exit code.
 *
 * When no agent answers (no socket, connection refused, or an agent serving another network
 * namespace), it execs the standalone Node path with the same environment and the same stdin
 * (replayed from a memfd), so pn works without a daemon. Once a request was handed over it never
 * falls back: the agent may already have changed the node, and a second ADD would race it.
 *
 * Wire format (docs/AGENT.md): "PNCNI/1\n", then netstrings (`<len>:<bytes>,`): the client's
 * netns inode, the number of environment entries, each `KEY=VALUE`, and stdin. The answer:
 * netstrings exit code, stdout, stderr. Exit code 254 from the agent means "not mine, fall back".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_STATE_DIR "/var/lib/pn"
#define FALLBACK_CODE 254

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

static void read_all(int fd, struct buf *b) {
  char chunk[65536];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    put(b, chunk, (size_t)n);
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
 * writes beside it), else `<dir>/../../bin/pn-cni` (this file built in a checkout's dist/native). */
static void fallback(char **argv, struct buf *in) {
  char self[PATH_MAX], target[PATH_MAX + 32];
  const char *env = getenv("PN_CNI_FALLBACK");
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (env && *env) {
    snprintf(target, sizeof target, "%s", env);
  } else {
    if (n <= 0) die("find the standalone pn-cni (readlink /proc/self/exe)");
    self[n] = 0;
    snprintf(target, sizeof target, "%s.node", self);
    if (access(target, X_OK) != 0) {
      char *slash = strrchr(self, '/');
      if (slash) *slash = 0;
      snprintf(target, sizeof target, "%s/../../bin/pn-cni", self);
    }
  }
  /* Replay stdin: the standalone plugin reads the same netconf we already consumed. */
  int fd = memfd_create("pn-cni-stdin", 0);
  if (fd < 0) die("memfd_create");
  write_all(fd, in->p ? in->p : "", in->len);
  if (lseek(fd, 0, SEEK_SET) < 0) die("lseek");
  if (dup2(fd, 0) < 0) die("dup2");
  close(fd);
  argv[0] = target;
  execv(target, argv);
  die("exec the standalone pn-cni");
}

/* Parse one netstring at *pos of b; returns its start and length, or -1 when malformed. */
static int take(struct buf *b, size_t *pos, const char **p, size_t *n) {
  size_t i = *pos, len = 0;
  if (i >= b->len) return -1;
  while (i < b->len && b->p[i] >= '0' && b->p[i] <= '9') len = len * 10 + (size_t)(b->p[i++] - '0');
  if (i >= b->len || b->p[i] != ':' || i + 1 + len + 1 > b->len || b->p[i + 1 + len] != ',') return -1;
  *p = b->p + i + 1;
  *n = len;
  *pos = i + 1 + len + 1;
  return 0;
}

int main(int argc, char **argv) {
  (void)argc;
  struct buf in = {0}, req = {0}, resp = {0};
  read_all(0, &in);

  const char *dir = NULL;
  char *conf_dir = top_level_state_dir(in.p ? in.p : "", in.len);
  if (conf_dir && *conf_dir) dir = conf_dir;
  else if (getenv("PN_STATE_DIR") && *getenv("PN_STATE_DIR")) dir = getenv("PN_STATE_DIR");
  else dir = DEFAULT_STATE_DIR;

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if ((size_t)snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", dir) >= sizeof addr.sun_path) fallback(argv, &in);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) die("socket");
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
    /* No agent (ENOENT, ECONNREFUSED, EACCES …): the standalone path does the work. */
    close(s);
    fallback(argv, &in);
  }

  struct stat ns;
  char num[32];
  put(&req, "PNCNI/1\n", 8);
  snprintf(num, sizeof num, "%lu", stat("/proc/self/ns/net", &ns) == 0 ? (unsigned long)ns.st_ino : 0UL);
  netstring(&req, num, strlen(num));
  size_t count = 0;
  for (char **e = environ; *e; e++) if (strncmp(*e, "CNI_", 4) == 0 || strncmp(*e, "PN_", 3) == 0) count++;
  snprintf(num, sizeof num, "%zu", count);
  netstring(&req, num, strlen(num));
  for (char **e = environ; *e; e++) if (strncmp(*e, "CNI_", 4) == 0 || strncmp(*e, "PN_", 3) == 0) netstring(&req, *e, strlen(*e));
  netstring(&req, in.p ? in.p : "", in.len);
  write_all(s, req.p, req.len);
  shutdown(s, SHUT_WR);
  read_all(s, &resp);
  close(s);

  const char *p;
  size_t n, pos = 0;
  if (take(&resp, &pos, &p, &n) != 0) {
    /* The agent closed without an answer (it died mid-request): never retry an ADD behind its back. */
    printf("{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"pn agent at %s closed the connection without an answer\",\"details\":\"PN_AGENT_UNAVAILABLE\"}\n", addr.sun_path);
    return 1;
  }
  int code = atoi(p);
  if (code == FALLBACK_CODE) fallback(argv, &in);
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
