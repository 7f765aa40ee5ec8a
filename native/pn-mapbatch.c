// pn-mapbatch: write many entries into pinned BPF maps with the batch syscalls
// (BPF_MAP_UPDATE_BATCH / BPF_MAP_DELETE_BATCH), optionally holding a flock(2) while it runs.
//
//   pn-mapbatch [--lock FILE] [--lock-timeout MS] MAP_PIN_PATH...
//
// It takes the lock (exit 75 when it is still held after MS; 0 = only if free now), opens the
// maps, prints "ready\n", then reads frames from stdin until EOF: a frame is a u32 record count
// (little endian) followed by that many 28-byte records
//
//   u8 op (1 update, 2 delete) | u8 map (index into MAP_PIN_PATH...) | u16 0 | key[12] | value[12]
//
// (key and value are the first key_size/value_size bytes of their fields). Consecutive records
// with the same op and map go in one batch syscall. For every frame it prints one JSON line:
//   {"done":D,"skipped":[i,...]}                      every record taken
//   {"done":D,"skipped":[...],"failed":{"index":I,"errno":E,"error":"..."}}
// D records (from the start) were applied before record I failed; a delete of a key that is not
// there is skipped (listed, not an error). Limits, checked on both sides (src/exec/mapbatch.ts):
// at most 1048576 records a frame (a larger count: "read frame: N records is over the limit",
// exit 1, nothing of that frame applied), at most 16 maps, a lock timeout of 0..2147483647 ms.
// A bad op or map index in a frame is found before any record of it is applied (exit 1). The lock is released when the process exits (EOF on
// stdin, or its parent dying: the pipe closes and the kernel drops the lock).
//
// ldflags: -lbpf
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/time.h>
#include <unistd.h>

#define REC 28
#define KEY_OFF 4
#define VAL_OFF 16
#define FIELD 12
#define MAX_MAPS 16
#define MAX_RECORDS (1u << 20)
#define MAX_TIMEOUT_MS 2147483647L
#ifndef ENOTSUPP
#define ENOTSUPP 524 // the kernel's "operation not supported" for missing batch ops
#endif

struct map { int fd; uint32_t key_size, value_size; };
static struct map maps[MAX_MAPS];
static int nmaps;

static void on_alarm(int sig) { (void)sig; }

static int in_fd = 0; /* stdin; the fuzz harness points it elsewhere */

static int read_full(void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(in_fd, (char *)buf + got, n - got);
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) { if (errno == EINTR) continue; return -1; }
    got += (size_t)r;
  }
  return 1;
}

// Skipped indexes of the current frame, printed with the result.
static uint32_t *skipped;
static size_t nskipped, capskipped;
static void skip(uint32_t i) {
  if (nskipped == capskipped) {
    capskipped = capskipped ? capskipped * 2 : 64;
    skipped = realloc(skipped, capskipped * sizeof *skipped);
    if (!skipped) { perror("realloc"); exit(1); }
  }
  skipped[nskipped++] = i;
}

// One element at a time: for kernels without batch ops on a map type.
static int one(struct map *m, int op, const uint8_t *rec) {
  int err = op == 1 ? bpf_map_update_elem(m->fd, rec + KEY_OFF, rec + VAL_OFF, BPF_ANY) : bpf_map_delete_elem(m->fd, rec + KEY_OFF);
  return err < 0 ? -errno : 0;
}

// Apply records [from, to) (same op and map). Returns 0, or -errno with *failed set.
static int run(const uint8_t *recs, uint32_t from, uint32_t to, uint32_t *failed) {
  int op = recs[(size_t)from * REC], mi = recs[(size_t)from * REC + 1];
  struct map *m = &maps[mi];
  uint32_t n = to - from;
  uint8_t *keys = malloc((size_t)n * m->key_size + 1), *vals = malloc((size_t)n * m->value_size + 1);
  if (!keys || !vals) { perror("malloc"); exit(1); }
  for (uint32_t i = 0; i < n; i++) {
    memcpy(keys + (size_t)i * m->key_size, recs + (size_t)(from + i) * REC + KEY_OFF, m->key_size);
    if (op == 1) memcpy(vals + (size_t)i * m->value_size, recs + (size_t)(from + i) * REC + VAL_OFF, m->value_size);
  }
  int ret = 0;
  uint32_t at = 0;
  static int nobatch;
  while (at < n) {
    uint32_t count = n - at;
    int err;
    if (nobatch) {
      err = one(m, op, recs + (size_t)(from + at) * REC);
      count = err ? 0 : 1;
    } else {
      LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
      err = op == 1 ? bpf_map_update_batch(m->fd, keys + (size_t)at * m->key_size, vals + (size_t)at * m->value_size, &count, &opts)
                    : bpf_map_delete_batch(m->fd, keys + (size_t)at * m->key_size, &count, &opts);
      if (err < 0) err = -errno;
      if ((err == -EINVAL || err == -ENOTSUPP || err == -EOPNOTSUPP) && count == 0 && at == 0 && !nobatch) {
        nobatch = 1; // this kernel or map type has no batch op: one syscall per entry
        continue;
      }
    }
    at += count;
    if (!err) continue;
    if (op == 2 && err == -ENOENT) { skip(from + at); at++; continue; }
    *failed = from + at;
    ret = err;
    break;
  }
  free(keys);
  free(vals);
  return ret;
}

static void print_json_string(const char *s) {
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    if ((unsigned char)*s >= 0x20) putchar(*s);
  }
  putchar('"');
}

struct options { const char *lock; long timeout_ms; int first_map; };

// The command line: [--lock FILE] [--lock-timeout MS] MAP_PIN_PATH... ; 0, or -1 with *why.
static int parse_args(int argc, char **argv, struct options *o, const char **why) {
  *o = (struct options){.timeout_ms = 30000};
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--lock") && i + 1 < argc) o->lock = argv[++i];
    else if (!strcmp(argv[i], "--lock-timeout") && i + 1 < argc) {
      const char *v = argv[++i];
      long x = 0;
      if (!*v) { *why = "--lock-timeout: not a number of milliseconds"; return -1; }
      for (; *v; v++) {
        if (*v < '0' || *v > '9' || x > (MAX_TIMEOUT_MS - (*v - '0')) / 10) { *why = "--lock-timeout: not a number of milliseconds up to 2147483647"; return -1; }
        x = x * 10 + (*v - '0');
      }
      o->timeout_ms = x;
    } else break;
  }
  if (argc - i > MAX_MAPS) { *why = "at most 16 maps"; return -1; }
  o->first_map = i;
  return 0;
}

// One frame from in_fd: 1 = read (*recs malloc'd, n records), 0 = EOF before it, -1 = bad (*why).
static int read_frame(uint8_t **recs, uint32_t *n, const char **why) {
  uint8_t hdr[4];
  *recs = NULL;
  int r = read_full(hdr, 4);
  if (r == 0) return 0;
  if (r < 0) { *why = "truncated"; return -1; }
  *n = (uint32_t)hdr[0] | (uint32_t)hdr[1] << 8 | (uint32_t)hdr[2] << 16 | (uint32_t)hdr[3] << 24;
  if (*n > MAX_RECORDS) { *why = "record count over the limit of 1048576"; return -1; }
  *recs = malloc((size_t)*n * REC + 1);
  if (!*recs) { perror("malloc"); exit(1); }
  if (*n > 0 && read_full(*recs, (size_t)*n * REC) != 1) { free(*recs); *recs = NULL; *why = "truncated"; return -1; }
  return 1;
}

// Every record's op and map index, before any is applied: the index of the first bad one, or -1.
static long check_frame(const uint8_t *recs, uint32_t n, int maps_open) {
  for (uint32_t s = 0; s < n; s++) {
    uint8_t op = recs[(size_t)s * REC], mi = recs[(size_t)s * REC + 1];
    if ((op != 1 && op != 2) || mi >= maps_open) return (long)s;
  }
  return -1;
}

// The end of the run of records from s with the same op and map (one batch syscall).
static uint32_t run_end(const uint8_t *recs, uint32_t n, uint32_t s) {
  uint8_t op = recs[(size_t)s * REC], mi = recs[(size_t)s * REC + 1];
  uint32_t e = s + 1;
  while (e < n && recs[(size_t)e * REC] == op && recs[(size_t)e * REC + 1] == mi) e++;
  return e;
}

#ifndef PN_FUZZ_HARNESS
int main(int argc, char **argv) {
  struct options o;
  const char *why;
  if (parse_args(argc, argv, &o, &why) < 0) {
    fprintf(stderr, "usage: pn-mapbatch [--lock FILE] [--lock-timeout MS] MAP_PIN_PATH... (%s)\n", why);
    return 2;
  }
  const char *lock = o.lock;
  long timeout_ms = o.timeout_ms;
  int i = o.first_map;
  if (lock) {
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) { fprintf(stderr, "open %s: %s\n", lock, strerror(errno)); return 1; }
    if (timeout_ms <= 0) {
      if (flock(lfd, LOCK_EX | LOCK_NB) < 0) { if (errno == EWOULDBLOCK) return 75; fprintf(stderr, "flock %s: %s\n", lock, strerror(errno)); return 1; }
    } else {
      struct sigaction sa = {0};
      sa.sa_handler = on_alarm; // no SA_RESTART: flock returns EINTR when the timer fires
      sigaction(SIGALRM, &sa, NULL);
      struct itimerval it = {{0, 0}, {timeout_ms / 1000, (timeout_ms % 1000) * 1000}};
      setitimer(ITIMER_REAL, &it, NULL);
      int r = flock(lfd, LOCK_EX);
      int e = errno;
      struct itimerval off = {{0, 0}, {0, 0}};
      setitimer(ITIMER_REAL, &off, NULL);
      if (r < 0) { if (e == EINTR) return 75; fprintf(stderr, "flock %s: %s\n", lock, strerror(e)); return 1; }
    }
  }
  for (; i < argc; i++) {
    struct map *m = &maps[nmaps];
    m->fd = bpf_obj_get(argv[i]);
    if (m->fd < 0) { fprintf(stderr, "open map %s: %s\n", argv[i], strerror(errno)); return errno == ENOENT ? 3 : 1; }
    struct bpf_map_info info;
    uint32_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (bpf_obj_get_info_by_fd(m->fd, &info, &len) < 0) { fprintf(stderr, "map info %s: %s\n", argv[i], strerror(errno)); return 1; }
    if (info.key_size > FIELD || info.value_size > FIELD) { fprintf(stderr, "map %s: key/value larger than %d bytes\n", argv[i], FIELD); return 1; }
    m->key_size = info.key_size;
    m->value_size = info.value_size;
    nmaps++;
  }
  fputs("ready\n", stdout);
  fflush(stdout);
  for (;;) {
    uint8_t *recs;
    uint32_t n;
    int r = read_frame(&recs, &n, &why);
    if (r == 0) return 0;
    if (r < 0) { fprintf(stderr, "read frame: %s\n", why); return 1; }
    long bad = check_frame(recs, n, nmaps);
    if (bad >= 0) { fprintf(stderr, "record %ld: bad op %u or map %u\n", bad, recs[(size_t)bad * REC], recs[(size_t)bad * REC + 1]); return 1; }
    nskipped = 0;
    uint32_t failed = 0;
    int err = 0;
    for (uint32_t s = 0; s < n && !err;) {
      uint32_t e = run_end(recs, n, s);
      err = run(recs, s, e, &failed);
      s = e;
    }
    printf("{\"done\":%u,\"skipped\":[", err ? failed : n);
    for (size_t k = 0; k < nskipped; k++) printf(k ? ",%u" : "%u", skipped[k]);
    putchar(']');
    if (err) {
      printf(",\"failed\":{\"index\":%u,\"errno\":%d,\"error\":", failed, -err);
      print_json_string(strerror(-err));
      putchar('}');
    }
    fputs("}\n", stdout);
    fflush(stdout);
    free(recs);
  }
}
#endif
