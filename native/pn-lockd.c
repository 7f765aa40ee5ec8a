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
  long id;
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

static void answer(long id, const char *what, const char *msg) {
  if (msg) printf("%ld %s %s\n", id, what, msg);
  else printf("%ld %s\n", id, what);
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

static void handle(char *line) {
  char *save = NULL;
  char *op = strtok_r(line, "\t", &save);
  char *id = op ? strtok_r(NULL, "\t", &save) : NULL;
  if (!op || !id) return;
  long lid = strtol(id, NULL, 10);
  if (op[0] == 'U') {
    for (size_t i = 0; i < nslots; i++) {
      if (slots[i].id == lid) {
        drop(i);
        break;
      }
    }
    return;
  }
  char *mode = strtok_r(NULL, "\t", &save);
  char *timeout = mode ? strtok_r(NULL, "\t", &save) : NULL;
  char *path = timeout ? strtok_r(NULL, "\n", &save) : NULL;
  if (!path) {
    answer(lid, "err", "malformed request");
    return;
  }
  int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0) {
    answer(lid, "err", strerror(errno));
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
  slots[nslots] = (struct slot){.id = lid, .fd = fd, .mode = mode[0] == 's' ? LOCK_SH : LOCK_EX, .pending = 1, .deadline = now_ms() + strtoll(timeout, NULL, 10)};
  attempt(nslots++);
}

int main(void) {
  char buf[65536];
  size_t have = 0;
  for (;;) {
    int waiting = 0;
    for (size_t i = 0; i < nslots; i++) waiting |= slots[i].pending;
    struct pollfd p = {.fd = 0, .events = POLLIN};
    int r = poll(&p, 1, waiting ? 1 : -1);
    if (r < 0 && errno != EINTR) return 1;
    if (r > 0) {
      ssize_t n = read(0, buf + have, sizeof buf - have - 1);
      if (n <= 0) return 0; /* the agent is gone: exiting releases every lock */
      have += (size_t)n;
      char *start = buf, *nl;
      while ((nl = memchr(start, '\n', have - (size_t)(start - buf)))) {
        *nl = 0;
        handle(start);
        start = nl + 1;
      }
      have -= (size_t)(start - buf);
      memmove(buf, start, have);
    }
    /* A slot settled by drop() is replaced by the last one, which then waits one more tick. */
    for (size_t i = 0; i < nslots; i++)
      if (slots[i].pending) attempt(i);
  }
}
