/*
 * pn-lockd's parsers: the line framing of its stdin (feed) and the request grammar
 * (parse_request). Nothing here opens or locks a file.
 */
#define PN_FUZZ_HARNESS
#include "../../native/pn-lockd.c"
#include "fuzz.h"

static int nlines, ntoolong;
static size_t longest;

static void count_line(char *line, int too_long) {
  nlines++;
  ntoolong += too_long;
  size_t n = strlen(line);
  if (n > longest) longest = n;
  fz_check(n <= MAX_LINE, "a line of %zu bytes was delivered", n);
  fz_check(!strchr(line, '\n'), "a delivered line holds a newline");
  struct request r;
  const char *why = NULL;
  char copy[MAX_LINE + 1];
  memcpy(copy, line, n + 1);
  if (!too_long && parse_request(copy, &r, &why) == 0) {
    fz_check(r.id >= 1 && r.id <= MAX_ID, "id %lld", r.id);
    fz_check(r.op == 'U' || (r.op == 'L' && r.path && strlen(r.path) >= 1 && strlen(r.path) <= MAX_PATH_BYTES && r.timeout_ms >= 0 && r.timeout_ms <= MAX_TIMEOUT_MS), "request over a limit");
  } else if (!too_long) fz_check(why != NULL, "refused without a reason");
}

static int parses(const char *line, struct request *r) {
  static char copy[8192];
  snprintf(copy, sizeof copy, "%s", line);
  const char *why;
  return parse_request(copy, r, &why);
}

static void cases(void) {
  struct request r;
  FZ_CASE("lock and unlock requests parse", {
    fz_check(parses("L\t7\tx\t250\t/var/lib/pn/node.lock", &r) == 0 && r.op == 'L' && r.id == 7 && !r.shared && r.timeout_ms == 250 && !strcmp(r.path, "/var/lib/pn/node.lock"), "L x");
    fz_check(parses("L\t8\ts\t0\t/a\tb", &r) == 0 && r.shared && !strcmp(r.path, "/a\tb"), "L s, a tab in the path");
    fz_check(parses("U\t7", &r) == 0 && r.op == 'U' && r.id == 7, "U");
  });
  FZ_CASE("a timeout over 2^31-1 ms, an id over 2^53, a bad mode or an empty path is malformed; its id still read", {
    fz_check(parses("L\t9\tx\t2147483648\t/a", &r) < 0 && r.id == 9, "timeout over the limit (was a signed overflow of the deadline)");
    fz_check(parses("L\t9\tx\t-1\t/a", &r) < 0, "negative timeout");
    fz_check(parses("L\t9007199254740993\tx\t1\t/a", &r) < 0 && r.id == 0, "id over 2^53");
    fz_check(parses("L\t0\tx\t1\t/a", &r) < 0, "id 0");
    fz_check(parses("L\t9\txx\t1\t/a", &r) < 0 && parses("L\t9\tx\t1\t", &r) < 0 && parses("L\t9\tx\t1", &r) < 0, "mode, empty or no path");
    fz_check(parses("U\t", &r) < 0 && parses("U", &r) < 0 && parses("", &r) < 0 && parses("X\t1", &r) < 0, "U without id, empty, unknown op");
  });
  FZ_CASE("a path over 4095 bytes is malformed", {
    char line[4200];
    int n = snprintf(line, sizeof line, "L\t3\tx\t1\t/");
    memset(line + n, 'a', 4095);
    line[n + 4095] = 0;
    fz_check(parses(line, &r) < 0 && r.id == 3, "4096-byte path accepted");
    line[n + 4094] = 0;
    fz_check(parses(line, &r) == 0, "4095-byte path refused");
  });
  FZ_CASE("framing: lines in pieces; a line over 4200 bytes is dropped to its newline, not taken as EOF", {
    struct linebuf *lb = calloc(1, sizeof *lb);
    nlines = ntoolong = 0;
    feed(lb, "L\t1\tx\t0\t/a\nU\t", 12, count_line);
    feed(lb, "1\n", 2, count_line);
    fz_check(nlines == 2, "%d lines", nlines);
    char *big = malloc(70000);
    memset(big, 'a', 70000);
    feed(lb, big, 70000, count_line);
    feed(lb, "\nU\t2\n", 5, count_line);
    fz_check(nlines == 4 && ntoolong == 1, "%d lines, %d too long", nlines, ntoolong);
    free(big);
    free(lb);
  });
}

static void fuzz_request(const unsigned char *p, size_t n) {
  char line[MAX_LINE + 1];
  size_t k = n < MAX_LINE ? n : MAX_LINE;
  memcpy(line, p, k);
  line[k] = 0;
  line[strcspn(line, "\n")] = 0; /* framing delivers lines without their newline */
  count_line(line, 0);
}

/* The stream in random pieces, as read(2) may cut it. */
static void fuzz_stream(const unsigned char *p, size_t n) {
  struct linebuf *lb = calloc(1, sizeof *lb);
  for (size_t at = 0; at < n;) {
    size_t k = 1 + fz_below(n - at < 300 ? n - at : 300);
    feed(lb, (const char *)p + at, k, count_line);
    at += k;
  }
  fz_check(lb->have <= MAX_LINE, "buffer holds %zu bytes", lb->have);
  free(lb);
}

static size_t fz_targets(struct fz_target *t) {
  static struct fz_buf seeds[5], streams[3];
  fz_puts(&seeds[0], "L\t1\tx\t30000\t/var/lib/pn/ipam.json.lock");
  fz_puts(&seeds[1], "L\t4294967296\ts\t0\t/var/lib/pn/node.lock");
  fz_puts(&seeds[2], "U\t12");
  fz_puts(&seeds[3], "L\t9007199254740992\tx\t2147483647\t/a\tb\tc");
  fz_puts(&seeds[4], "L\t5\tx\t10\t");
  t[0] = (struct fz_target){"fuzz: request line", fuzz_request, seeds, 5, MAX_LINE};
  fz_puts(&streams[0], "L\t1\tx\t30000\t/var/lib/pn/a.lock\nU\t1\nL\t2\ts\t0\t/b\n");
  for (int i = 0; i < 5000; i++) fz_puts(&streams[1], "ab");
  fz_puts(&streams[1], "\nU\t3\n");
  fz_puts(&streams[2], "U\t1\nU\t2\nU\t3\nL\t4\tx\t1\t/c\n\n\n");
  t[1] = (struct fz_target){"fuzz: line framing", fuzz_stream, streams, 3, 1 << 15};
  return 2;
}

FZ_MAIN("pn-lockd")
