/*
 * pn-netlink's parsers without a kernel: the request framing (header, argv, netns, input), the
 * request classification and the ip/tc/bpftool line grammar. Cases first (the 513-line batch
 * that overflowed a static array, the batch and header limits), then fuzzing. Nothing here
 * executes a line: plan_request only parses.
 */
#define PN_FUZZ_HARNESS
#include "../../native/pn-netlink.c"
#include "fuzz.h"

static void reset_io(int fd) {
  in_fd = fd;
  ipos = ilen = 0;
  out.n = err.n = 0;
}

/* The invariants of a parsed plan (rc 0): every field within its limit. */
static void check_plan(const struct plan *p, int rc) {
  if (rc != 0) return;
  fz_check(p->lines.n <= MAX_LINES, "%zu lines parsed, over the limit", p->lines.n);
  for (size_t i = 0; i < p->lines.n; i++) {
    const struct line *l = &p->lines.l[i];
    fz_check(l->nwords >= 1 && l->nwords <= MAXW, "line %zu has %d words", i, l->nwords);
    fz_check(l->keylen >= 0 && l->keylen <= MAX_KEY && l->valuelen >= 0 && l->valuelen <= MAX_VALUE, "line %zu key %d value %d bytes", i, l->keylen, l->valuelen);
    fz_check(!l->dev || strlen(l->dev) < IFNAMSIZ, "line %zu device name too long", i);
    fz_check(!l->name || strlen(l->name) < IFNAMSIZ, "line %zu link name too long", i);
    fz_check(!l->peer || strlen(l->peer) < IFNAMSIZ, "line %zu peer name too long", i);
    fz_check(l->plen >= 0 && l->plen <= 128, "line %zu prefix length %d", i, l->plen);
    fz_check(l->lineno >= 1, "line %zu has line number %d", i, l->lineno);
  }
  if (p->show) fz_check(strlen(p->show) < IFNAMSIZ, "link show of a name too long");
}

static int plan_text(const char *prog, const char *text, struct plan *p) {
  char *copy = strdup(text);
  char *argv[] = {(char *)prog, "-batch", "-", NULL};
  char *bargv[] = {"bpftool", "batch", "file", "-", NULL};
  err.n = 0;
  int rc = strcmp(prog, "bpftool") ? plan_request(3, argv, copy, p) : plan_request(4, bargv, copy, p);
  check_plan(p, rc);
  free(copy);
  return rc;
}

static char *repeat(const char *line, size_t times, const char *extra) {
  struct fz_buf b = {0};
  for (size_t i = 0; i < times; i++) fz_puts(&b, line);
  if (extra) fz_puts(&b, extra);
  return (char *)b.p;
}

/* A framed request, as src/exec/netlink-worker.ts writes it. */
static void frame(struct fz_buf *b, unsigned long id, const char *const *argv, int argc, const char *ns, const char *input) {
  size_t alen = 0;
  for (int i = 0; i < argc; i++) alen += strlen(argv[i]) + 1;
  fz_printf(b, "%lu %d %zu %zu %zu\n", id, argc, alen, strlen(ns), strlen(input));
  fz_puts(b, ns);
  for (int i = 0; i < argc; i++) fz_put(b, argv[i], strlen(argv[i]) + 1);
  fz_puts(b, input);
}

static const char *const batch_lines[] = {
  "link add name lxc1 address 02:00:00:00:00:01 mtu 1500 type veth peer name eth0 address 02:00:00:00:00:02 mtu 1500 netns /run/netns/pn-a\n",
  "link set dev lxc1 up\nlink set eth0 down\nlink del dev lxc1\nlink delete lxc1\n",
  "addr add 10.0.0.5/32 dev eth0 nodad\naddr add fd00::5/128 dev eth0\n",
  "route add 10.0.0.1 dev eth0 scope link\nroute replace default via 10.0.0.1 dev eth0 mtu 1450\nroute add fd00::/64 via fd00::1 dev eth0\n",
  "neigh add proxy 10.0.0.1 dev lxc1\nneigh replace 10.0.0.1 lladdr 02:00:00:00:00:03 dev eth0 nud permanent\n",
  "# a comment\n\n   \nlink set dev lo up\n",
};
static const char *const tc_lines[] = {
  "qdisc add dev lxc1 clsact\nfilter replace dev lxc1 ingress pref 1 handle 1 bpf da object-pinned /sys/fs/bpf/pn/from_container\n",
  "filter del dev lxc1 egress pref 1 handle 1 bpf\nqdisc del dev lxc1 clsact\n",
};
static const char *const bpftool_lines[] = {
  "map update pinned /sys/fs/bpf/pn/pn_lxc key hex 0a 00 00 05 value hex 01 00 00 00 02 00 00 00\n",
  "map delete pinned /sys/fs/bpf/pn/pn_lxc key hex 0a 00 00 05\nmap delete pinned /x key hex ff\n",
};

static void cases(void) {
  struct plan p;
  FZ_CASE("a batch of 513 lines is parsed whole (it overflowed a static array of 512)", {
    char *t = repeat("link set dev pnx0 up\n", 513, NULL);
    fz_check(plan_text("ip", t, &p) == 0, "not parsed");
    fz_check(p.lines.n == 513 && p.lines.l[512].lineno == 513, "%zu lines", p.lines.n);
    plan_free(&p);
    free(t);
  });
  FZ_CASE("a batch of 65536 lines (the limit) is parsed; blank and comment lines do not count", {
    char *t = repeat("link set dev pnx0 up\n", MAX_LINES, "# end\n\n");
    fz_check(plan_text("ip", t, &p) == 0 && p.lines.n == MAX_LINES, "%zu lines", p.lines.n);
    plan_free(&p);
    free(t);
  });
  FZ_CASE("a batch of 65537 lines is refused with a reason on stderr, not cut short", {
    char *t = repeat("map delete pinned /x key hex 01\n", MAX_LINES + 1, NULL);
    fz_check(plan_text("bpftool", t, &p) == ANSWER_REFUSED, "not refused");
    fz_check(err.n > 0 && strstr(err.p, "over the limit") != NULL, "no reason: %s", err.p ? err.p : "");
    plan_free(&p);
    free(t);
  });
  FZ_CASE("every line of the grammar parses", {
    for (size_t i = 0; i < sizeof batch_lines / sizeof *batch_lines; i++) {
      fz_check(plan_text("ip", batch_lines[i], &p) == 0, "ip seed %zu", i);
      plan_free(&p);
    }
    for (size_t i = 0; i < sizeof tc_lines / sizeof *tc_lines; i++) {
      fz_check(plan_text("tc", tc_lines[i], &p) == 0, "tc seed %zu", i);
      plan_free(&p);
    }
    for (size_t i = 0; i < sizeof bpftool_lines / sizeof *bpftool_lines; i++) {
      fz_check(plan_text("bpftool", bpftool_lines[i], &p) == 0, "bpftool seed %zu", i);
      plan_free(&p);
    }
  });
  FZ_CASE("a line outside the grammar, a control character, an over-long address or a key over 512 bytes is unsupported", {
    fz_check(plan_text("ip", "link set dev x up\nlink set dev x sideways\n", &p) == ANSWER_UNSUPPORTED, "bad word");
    plan_free(&p);
    fz_check(plan_text("ip", "link set dev x\x01y up\n", &p) == ANSWER_UNSUPPORTED, "control character");
    plan_free(&p);
    fz_check(plan_text("ip", "link set dev abcdefghijklmnop up\n", &p) == ANSWER_UNSUPPORTED, "16-byte name");
    plan_free(&p);
    /* An address word over 63 bytes was cut short: "/000…032" cut read as "/0". */
    fz_check(plan_text("ip", "addr add 10.0.0.5/0000000000000000000000000000000000000000000000000000000032 dev eth0\n", &p) == ANSWER_UNSUPPORTED, "long address word");
    plan_free(&p);
    char *key = repeat(" ff", MAX_KEY + 1, NULL);
    struct fz_buf l = {0};
    fz_printf(&l, "map delete pinned /x key hex%s\n", key);
    fz_check(plan_text("bpftool", (char *)l.p, &p) == ANSWER_UNSUPPORTED, "513-byte key");
    plan_free(&p);
    fz_free(&l);
    free(key);
  });
  FZ_CASE("one command as argv: the words joined, the same grammar", {
    char *argv[] = {"/usr/sbin/ip", "route", "add", "10.1.0.0/16", "via", "10.0.0.1", "dev", "eth0", NULL};
    fz_check(plan_request(8, argv, "", &p) == 0 && p.lines.n == 1 && p.lines.l[0].op == ROUTE && p.lines.l[0].plen == 16, "not a route");
    plan_free(&p);
    char *bad[] = {"ip", "link", "set", "dev x", "up", NULL};
    fz_check(plan_request(5, bad, "", &p) == ANSWER_UNSUPPORTED, "a word with a space");
    plan_free(&p);
    char *show[] = {"ip", "-j", "-d", "link", "show", "dev", "eth0", NULL};
    fz_check(plan_request(7, show, "", &p) == 0 && p.show && !strcmp(p.show, "eth0"), "link show");
    plan_free(&p);
  });
  FZ_CASE("header: five plain decimal numbers within the limits", {
    struct request r;
    const char *why;
    fz_check(parse_header("7 3 12 0 5", &r, &why) == 0 && r.id == 7 && r.argc == 3 && r.arglen == 12 && r.inlen == 5, "valid header");
    const char *bad[] = {"7 3 12 0", "7 3 12 0 5 6", "7 -3 12 0 5", "7 +3 12 0 5", "7  3 12 0 5", " 7 3 12 0 5", "7 0 0 0 0",
                         "7 257 600 0 0", "7 1 1048577 0 0", "7 1 2 4096 0", "7 1 2 0 16777217", "7 3 2 0 0",
                         "18446744073709551616 1 2 0 0", "7 1 2 0 99999999999999999999999", "7 1 2 0 5x", "", "a b c d e"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) fz_check(parse_header(bad[i], &r, &why) < 0, "accepted \"%s\"", bad[i]);
  });
  FZ_CASE("framing: requests back to back, then EOF; a header over 127 bytes or a bad argv is malformed", {
    struct fz_buf b = {0};
    const char *a1[] = {"ip", "-batch", "-"}, *a2[] = {"tc", "qdisc", "add", "dev", "x", "clsact"};
    frame(&b, 1, a1, 3, "/run/netns/pn-a", "link set dev x up\n");
    frame(&b, 2, a2, 6, "", "");
    reset_io(fz_fd(b.p, b.n));
    struct request r;
    const char *why = NULL;
    fz_check(read_request(&r, &why) == 1 && r.id == 1 && !strcmp(r.ns, "/run/netns/pn-a") && !strcmp(r.argv[2], "-") && !strcmp(r.input, "link set dev x up\n"), "first");
    request_free(&r);
    fz_check(read_request(&r, &why) == 1 && r.id == 2 && r.argc == 6 && !strcmp(r.argv[5], "clsact"), "second");
    request_free(&r);
    fz_check(read_request(&r, &why) == 0, "EOF");
    close(in_fd);
    b.n = 0;
    for (int i = 0; i < 200; i++) fz_puts(&b, "1");
    reset_io(fz_fd(b.p, b.n));
    fz_check(read_request(&r, &why) == -1, "long header");
    close(in_fd);
    b.n = 0;
    fz_put(&b, "1 2 6 0 0\nip\0abc", 16);
    reset_io(fz_fd(b.p, b.n));
    fz_check(read_request(&r, &why) == -1, "argv without its last NUL");
    close(in_fd);
    fz_free(&b);
  });
}

/* ── fuzz targets ── */
static void fuzz_framing(const unsigned char *p, size_t n) {
  int fd = fz_fd(p, n);
  reset_io(fd);
  for (int k = 0; k < 64; k++) {
    struct request r;
    const char *why = NULL;
    int got = read_request(&r, &why);
    if (got <= 0) {
      fz_check(got == 0 || why != NULL, "malformed without a reason");
      break;
    }
    fz_check(r.argc >= 1 && r.argc <= MAX_ARGC && r.arglen <= MAX_ARGV_BYTES && r.nslen <= MAX_NETNS_BYTES && r.inlen <= MAX_INPUT_BYTES, "request over a limit");
    fz_check(r.argv[r.argc] == NULL && strlen(r.ns) == r.nslen, "argv or netns not terminated");
    struct plan plan;
    err.n = 0;
    int rc = plan_request((int)r.argc, r.argv, r.input, &plan);
    fz_check(rc == 0 || rc == ANSWER_UNSUPPORTED || rc == ANSWER_REFUSED, "plan returned %d", rc);
    check_plan(&plan, rc);
    plan_free(&plan);
    request_free(&r);
  }
  close(fd);
}

static void fuzz_lines(const unsigned char *p, size_t n) {
  static const char *const progs[] = {"ip", "tc", "bpftool"};
  const char *prog = progs[fz_below(3)];
  char *text = malloc(n + 1);
  memcpy(text, p, n);
  text[n] = 0; /* the framing ends the input with a NUL too; an inner NUL ends it early */
  struct plan plan;
  int rc = plan_text(prog, text, &plan);
  fz_check(rc == 0 || rc == ANSWER_UNSUPPORTED || rc == ANSWER_REFUSED, "plan returned %d", rc);
  plan_free(&plan);
  free(text);
}

static void fuzz_header(const unsigned char *p, size_t n) {
  char hdr[MAX_HEADER];
  size_t k = n < sizeof hdr - 1 ? n : sizeof hdr - 1;
  memcpy(hdr, p, k);
  hdr[k] = 0;
  struct request r;
  const char *why = NULL;
  if (parse_header(hdr, &r, &why) == 0)
    fz_check(r.argc >= 1 && r.argc <= MAX_ARGC && r.arglen >= r.argc && r.arglen <= MAX_ARGV_BYTES && r.nslen <= MAX_NETNS_BYTES && r.inlen <= MAX_INPUT_BYTES, "header \"%s\" over a limit", hdr);
  else fz_check(why != NULL, "refused without a reason");
}

/* A one-command request: the input's NUL-separated words as argv. */
static void fuzz_argv(const unsigned char *p, size_t n) {
  char *copy = malloc(n + 1);
  memcpy(copy, p, n);
  copy[n] = 0;
  char *argv[MAX_ARGC + 1];
  int argc = 0;
  for (char *w = copy; w <= copy + n && argc < MAX_ARGC; w += strlen(w) + 1) argv[argc++] = w;
  argv[argc] = NULL;
  struct plan plan;
  err.n = 0;
  int rc = plan_request(argc, argv, "", &plan);
  fz_check(rc == 0 || rc == ANSWER_UNSUPPORTED || rc == ANSWER_REFUSED, "plan returned %d", rc);
  check_plan(&plan, rc);
  plan_free(&plan);
  free(copy);
}

static size_t fz_targets(struct fz_target *t) {
  static struct fz_buf seeds[16], framed[5], headers[3], argvs[3];
  size_t ns = 0;
  for (size_t i = 0; i < sizeof batch_lines / sizeof *batch_lines; i++) fz_puts(&seeds[ns++], batch_lines[i]);
  for (size_t i = 0; i < sizeof tc_lines / sizeof *tc_lines; i++) fz_puts(&seeds[ns++], tc_lines[i]);
  for (size_t i = 0; i < sizeof bpftool_lines / sizeof *bpftool_lines; i++) fz_puts(&seeds[ns++], bpftool_lines[i]);
  t[0] = (struct fz_target){"fuzz: batch lines (ip, tc, bpftool grammar)", fuzz_lines, seeds, ns, 1 << 16};

  const char *a1[] = {"ip", "-batch", "-"}, *a2[] = {"bpftool", "-j", "batch", "file", "-"}, *a3[] = {"ip", "-j", "-d", "link", "show", "dev", "eth0"},
             *a4[] = {"tc", "filter", "del", "dev", "lxc1", "ingress", "pref", "1", "handle", "1", "bpf"};
  frame(&framed[0], 1, a1, 3, "/run/netns/pn-a", batch_lines[0]);
  frame(&framed[1], 2, a2, 5, "", bpftool_lines[0]);
  frame(&framed[2], 3, a3, 7, "", "");
  frame(&framed[3], 4, a4, 11, "/proc/1/ns/net", "");
  frame(&framed[4], 5, a1, 3, "", batch_lines[3]);
  frame(&framed[4], 6, a1, 3, "", tc_lines[0]); /* two requests in one stream */
  t[1] = (struct fz_target){"fuzz: request framing (header, netns, argv, input)", fuzz_framing, framed, 5, 1 << 16};

  fz_puts(&headers[0], "1 3 12 0 24");
  fz_puts(&headers[1], "4294967296 256 1048576 4095 16777216");
  fz_puts(&headers[2], "12 7 30 15 0");
  t[2] = (struct fz_target){"fuzz: request header", fuzz_header, headers, 3, MAX_HEADER};

  static const char v0[] = "ip\0route\0replace\0default\0via\0fd00::1\0dev\0eth0", v1[] = "tc\0qdisc\0del\0dev\0lxc1\0clsact",
                    v2[] = "ip\0link\0add\0name\0a\0type\0veth\0peer\0name\0b\0netns\0pn-x";
  fz_put(&argvs[0], v0, sizeof v0 - 1);
  fz_put(&argvs[1], v1, sizeof v1 - 1);
  fz_put(&argvs[2], v2, sizeof v2 - 1);
  t[3] = (struct fz_target){"fuzz: one command as argv", fuzz_argv, argvs, 3, 4096};
  return 4;
}

FZ_MAIN("pn-netlink")
