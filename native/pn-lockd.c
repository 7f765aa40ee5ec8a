/*
 * pn-lockd: flock(2) for a long-running Node process, which has no flock of its own.
 *
 * The standalone pn takes a kernel flock through one `flock … cat` helper process per lock
 * (src/exec/flock.ts): fine for one command, a process start per lock for an agent serving
 * many pods. The agent starts this helper once and asks it over a pipe; it holds one open file
 * description per granted lock, so the locks are the very same kernel flocks a standalone pn
 * takes on the same files and the two exclude each other. If the agent dies (even by SIGKILL)
 * the pipe closes, this process exits and the kernel drops every lock it held.
 *
 * Protocol, one line each way, tab-separated:
 *   L <id> <x|s> <timeout ms> <path>   take a lock (timeout 0: only if free now)
 *   U <id>                             release it (no answer)
 * answers: `<id> ok`, `<id> busy` (timed out), `<id> err <message>`.
 * Limits, checked on both sides (src/exec/lockd.ts): id 1..2^53 (a JavaScript safe integer),
 * timeout 0..2147483647 ms, path 1..4095 bytes without NUL or newline (the rest of the line), a line at most 4200
 * bytes. A malformed request is answered `<id> err malformed request: …` when its id can be
 * read and dropped (with a line on stderr) when not; a longer line is dropped up to its newline.
 * Waiting locks are retried with LOCK_NB every millisecond: flock has no timed wait, and one
 * blocking call would stall every other request of the agent.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

struct slot {
  long long id;
  int fd;
  int mode;
  int pending;
  long long deadline;
};

static struct slot *slots;
static size_t nslots, capslots;

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void answer(long long id, const char *what, const char *msg) {
  if (msg) printf("%lld %s %s\n", id, what, msg);
  else printf("%lld %s\n", id, what);
  fflush(stdout);
}

static void drop(size_t i) {
  close(slots[i].fd);
  slots[i] = slots[--nslots];
}

/* One non-blocking attempt on a waiting slot; true when the slot is settled (and answered). */
static int attempt(size_t i) {
  struct slot *s = &slots[i];
  if (flock(s->fd, s->mode | LOCK_NB) == 0) {
    s->pending = 0;
    answer(s->id, "ok", NULL);
    return 1;
  }
  if (errno != EWOULDBLOCK && errno != EINTR) {
    answer(s->id, "err", strerror(errno));
    drop(i);
    return 1;
  }
  if (now_ms() >= s->deadline) {
    answer(s->id, "busy", NULL);
    drop(i);
    return 1;
  }
  return 0;
}

#define MAX_ID 9007199254740992LL /* 2^53 */
#define MAX_TIMEOUT_MS 2147483647LL
#define MAX_PATH_BYTES 4095
#define MAX_LINE 4200

struct request {
  char op; /* 'L' or 'U' */
  long long id, timeout_ms;
  int shared;
  const char *path;
};

/* A decimal number 0..max, the whole of s. */
static int parse_num(const char *s, long long max, long long *v) {
  long long x = 0;
  if (!*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9' || x > (max - (*s - '0')) / 10) return -1;
    x = x * 10 + (*s - '0');
  }
  *v = x;
  return 0;
}

/*
 * One request line (without its newline), cut up in place. 0, or -1 with *why; r->id is set
 * (else 0) as soon as it could be read, so a malformed request can still be answered.
 */
static int parse_request(char *line, struct request *r, const char **why) {
  *r = (struct request){0};
  char *f[5];
  int n = 0;
  for (char *p = line;;) {
    f[n++] = p;
    char *tab = n < 5 ? strchr(p, '\t') : NULL; /* the path is the rest of the line */
    if (!tab) break;
    *tab = 0;
    p = tab + 1;
  }
  if (n >= 2 && (parse_num(f[1], MAX_ID, &r->id) < 0 || r->id == 0)) { r->id = 0; *why = "bad id"; return -1; }
  if (n == 2 && !strcmp(f[0], "U")) { r->op = 'U'; return 0; }
  if (n != 5 || strcmp(f[0], "L")) { *why = "not L<tab>id<tab>x|s<tab>timeout<tab>path or U<tab>id"; return -1; }
  if (strcmp(f[2], "x") && strcmp(f[2], "s")) { *why = "mode is not x or s"; return -1; }
  if (parse_num(f[3], MAX_TIMEOUT_MS, &r->timeout_ms) < 0) { *why = "bad timeout"; return -1; }
  size_t plen = strlen(f[4]);
  if (plen == 0 || plen > MAX_PATH_BYTES) { *why = "path empty or over 4095 bytes"; return -1; }
  r->op = 'L';
  r->shared = f[2][0] == 's';
  r->path = f[4];
  return 0;
}

/*
 * Lines from a byte stream: feed() appends what read(2) gave and calls on_line for each whole
 * line (NUL-terminated, without its newline). A line over MAX_LINE bytes is dropped up to its
 * newline, and on_line gets it once, cut at MAX_LINE, with too_long set.
 */
struct linebuf { char buf[MAX_LINE + 1]; size_t have; int skipping; };

static void feed(struct linebuf *lb, const char *data, size_t n, void (*on_line)(char *line, int too_long)) {
  for (size_t i = 0; i < n; i++) {
    char c = data[i];
    if (c == '\n') {
      lb->buf[lb->have] = 0;
      if (!lb->skipping) on_line(lb->buf, 0);
      lb->have = 0;
      lb->skipping = 0;
      continue;
    }
    if (lb->skipping) continue;
    if (lb->have == MAX_LINE) {
      lb->buf[lb->have] = 0;
      on_line(lb->buf, 1);
      lb->skipping = 1;
      lb->have = 0;
      continue;
    }
    lb->buf[lb->have++] = c;
  }
}

static void handle(char *line, int too_long) {
  struct request r;
  const char *why = "line over 4200 bytes";
  char *id_end = strchr(line, '\t') ? strchr(line, '\t') + 1 : NULL;
  if (too_long || parse_request(line, &r, &why) < 0) {
    long long id = 0;
    if (too_long && id_end) {
      char *t = strchr(id_end, '\t');
      if (t) *t = 0;
      if (parse_num(id_end, MAX_ID, &id) < 0) id = 0;
    } else if (!too_long) id = r.id;
    if (id > 0) {
      char msg[128];
      snprintf(msg, sizeof msg, "malformed request: %s", why);
      answer(id, "err", msg);
    } else fprintf(stderr, "pn-lockd: dropped a malformed request (%s)\n", why);
    return;
  }
  if (r.op == 'U') {
    for (size_t i = 0; i < nslots; i++) {
      if (slots[i].id == r.id) {
        drop(i);
        break;
      }
    }
    return;
  }
  int fd = open(r.path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0) {
    answer(r.id, "err", strerror(errno));
    return;
  }
  if (nslots == capslots) {
    capslots = capslots ? capslots * 2 : 64;
    slots = realloc(slots, capslots * sizeof *slots);
    if (!slots) {
      perror("pn-lockd: realloc");
      exit(1);
    }
  }
  slots[nslots] = (struct slot){.id = r.id, .fd = fd, .mode = r.shared ? LOCK_SH : LOCK_EX, .pending = 1, .deadline = now_ms() + r.timeout_ms};
  attempt(nslots++);
}

#ifndef PN_FUZZ_HARNESS
int main(void) {
  static struct linebuf lb;
  char buf[65536];
  for (;;) {
    int waiting = 0;
    for (size_t i = 0; i < nslots; i++) waiting |= slots[i].pending;
    struct pollfd p = {.fd = 0, .events = POLLIN};
    int r = poll(&p, 1, waiting ? 1 : -1);
    if (r < 0 && errno != EINTR) return 1;
    if (r > 0) {
      ssize_t n = read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 0; /* the agent is gone: exiting releases every lock */
      feed(&lb, buf, (size_t)n, handle);
    }
    /* A slot settled by drop() is replaced by the last one, which then waits one more tick. */
    for (size_t i = 0; i < nslots; i++)
      if (slots[i].pending) attempt(i);
  }
}
#endif
