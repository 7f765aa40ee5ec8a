/*
 * pn-mapbatch's parsers: the frames on its stdin (read_frame, check_frame, run_end) and its
 * command line (parse_args). Nothing here opens a map or takes a lock.
 */
#define PN_FUZZ_HARNESS
#define _GNU_SOURCE /* memfd_create (test/native/fuzz.h) */
#include "../../native/pn-mapbatch.c"
#include "fuzz.h"

static void le32(struct fz_buf *b, uint32_t v) {
  unsigned char h[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
  fz_put(b, h, 4);
}

static void record(struct fz_buf *b, uint8_t op, uint8_t map, uint8_t key) {
  unsigned char r[REC] = {op, map, 0, 0};
  r[KEY_OFF] = key;
  r[VAL_OFF] = (unsigned char)(key + 1);
  fz_put(b, r, REC);
}

/* Read every frame of a stream; the invariants of what was read. Returns frames read. */
static int read_stream(const void *p, size_t n, int maps_open) {
  in_fd = fz_fd(p, n);
  int frames = 0;
  for (;;) {
    uint8_t *recs;
    uint32_t count;
    const char *why = NULL;
    int r = read_frame(&recs, &count, &why);
    if (r <= 0) {
      fz_check(r == 0 || why != NULL, "bad frame without a reason");
      break;
    }
    frames++;
    fz_check(count <= MAX_RECORDS, "%u records read", count);
    long bad = check_frame(recs, count, maps_open);
    if (bad < 0) {
      /* Runs cover the frame exactly, each with one op and one map. */
      uint32_t covered = 0;
      for (uint32_t s = 0; s < count;) {
        uint32_t e = run_end(recs, count, s);
        fz_check(e > s && e <= count, "run [%u, %u) of %u", s, e, count);
        for (uint32_t k = s; k < e; k++)
          fz_check(recs[(size_t)k * REC] == recs[(size_t)s * REC] && recs[(size_t)k * REC + 1] == recs[(size_t)s * REC + 1], "mixed run");
        covered += e - s;
        s = e;
      }
      fz_check(covered == count, "runs cover %u of %u", covered, count);
    } else {
      fz_check(bad < (long)count, "bad index %ld of %u", bad, count);
      uint8_t op = recs[(size_t)bad * REC], mi = recs[(size_t)bad * REC + 1];
      fz_check((op != 1 && op != 2) || mi >= maps_open, "record %ld is fine", bad);
    }
    free(recs);
  }
  close(in_fd);
  return frames;
}

static void cases(void) {
  FZ_CASE("frames back to back, then EOF; runs group the same op and map", {
    struct fz_buf b = {0};
    le32(&b, 3);
    record(&b, 1, 0, 1);
    record(&b, 1, 0, 2);
    record(&b, 2, 1, 3);
    le32(&b, 0);
    fz_check(read_stream(b.p, b.n, 2) == 2, "two frames");
    fz_free(&b);
  });
  FZ_CASE("a record count over 1048576 is refused before allocating it", {
    struct fz_buf b = {0};
    le32(&b, 0xffffffffu);
    in_fd = fz_fd(b.p, b.n);
    uint8_t *recs;
    uint32_t n;
    const char *why = NULL;
    fz_check(read_frame(&recs, &n, &why) == -1 && why && strstr(why, "limit"), "4294967295 records accepted");
    close(in_fd);
    fz_free(&b);
  });
  FZ_CASE("a truncated frame is an error, an empty stream is EOF", {
    struct fz_buf b = {0};
    le32(&b, 2);
    record(&b, 1, 0, 1);
    in_fd = fz_fd(b.p, b.n);
    uint8_t *recs;
    uint32_t n;
    const char *why = NULL;
    fz_check(read_frame(&recs, &n, &why) == -1, "truncated frame read");
    close(in_fd);
    in_fd = fz_fd("", 0);
    fz_check(read_frame(&recs, &n, &why) == 0, "empty stream");
    close(in_fd);
    fz_free(&b);
  });
  FZ_CASE("a bad op or map index is found before any record is applied", {
    struct fz_buf b = {0};
    record(&b, 1, 0, 1);
    record(&b, 2, 3, 1);
    fz_check(check_frame(b.p, 2, 4) == -1 && check_frame(b.p, 2, 3) == 1, "map index");
    b.p[0] = 9;
    fz_check(check_frame(b.p, 2, 4) == 0, "op");
    fz_free(&b);
  });
  FZ_CASE("command line: the lock timeout is a number up to 2^31-1, at most 16 maps", {
    struct options o;
    const char *why;
    char *ok[] = {"pn-mapbatch", "--lock", "/l", "--lock-timeout", "250", "/m1", "/m2", NULL};
    fz_check(parse_args(7, ok, &o, &why) == 0 && o.timeout_ms == 250 && !strcmp(o.lock, "/l") && o.first_map == 5, "valid");
    char *neg[] = {"pn-mapbatch", "--lock-timeout", "-5", NULL}, *big[] = {"pn-mapbatch", "--lock-timeout", "99999999999999999999", NULL},
         *word[] = {"pn-mapbatch", "--lock-timeout", "soon", NULL};
    fz_check(parse_args(3, neg, &o, &why) < 0 && parse_args(3, big, &o, &why) < 0 && parse_args(3, word, &o, &why) < 0, "bad timeouts");
    char *many[20] = {"pn-mapbatch"};
    for (int i = 1; i < 18; i++) many[i] = "/m";
    fz_check(parse_args(18, many, &o, &why) < 0, "17 maps");
  });
}

static void fuzz_frames(const unsigned char *p, size_t n) { read_stream(p, n, (int)fz_below(MAX_MAPS + 1)); }

static void fuzz_args(const unsigned char *p, size_t n) {
  char *copy = malloc(n + 1);
  memcpy(copy, p, n);
  copy[n] = 0;
  char *argv[64];
  int argc = 0;
  argv[argc++] = "pn-mapbatch";
  for (char *w = copy; w <= copy + n && argc < 63; w += strlen(w) + 1) argv[argc++] = w;
  argv[argc] = NULL;
  struct options o;
  const char *why = NULL;
  if (parse_args(argc, argv, &o, &why) == 0)
    fz_check(o.timeout_ms >= 0 && o.timeout_ms <= MAX_TIMEOUT_MS && o.first_map >= 1 && o.first_map <= argc && argc - o.first_map <= MAX_MAPS, "options over a limit");
  else fz_check(why != NULL, "refused without a reason");
  free(copy);
}

static size_t fz_targets(struct fz_target *t) {
  static struct fz_buf seeds[3], args[2];
  le32(&seeds[0], 4);
  for (uint8_t k = 0; k < 4; k++) record(&seeds[0], k < 2 ? 1 : 2, k & 1, k);
  le32(&seeds[0], 1);
  record(&seeds[0], 2, 0, 9);
  le32(&seeds[1], 0);
  le32(&seeds[1], 2);
  record(&seeds[1], 1, 15, 1);
  record(&seeds[1], 1, 15, 2);
  le32(&seeds[2], 3);
  record(&seeds[2], 1, 0, 1);
  t[0] = (struct fz_target){"fuzz: frames (count, records, runs)", fuzz_frames, seeds, 3, 1 << 14};
  static const char a0[] = "--lock\0/run/pn/services.lock\0--lock-timeout\0000030000\0/sys/fs/bpf/pn/a\0/sys/fs/bpf/pn/b";
  static const char a1[] = "--lock-timeout\0000\0/m";
  fz_put(&args[0], a0, sizeof a0 - 1);
  fz_put(&args[1], a1, sizeof a1 - 1);
  t[1] = (struct fz_target){"fuzz: command line", fuzz_args, args, 2, 1024};
  return 2;
}

FZ_MAIN("pn-mapbatch")
