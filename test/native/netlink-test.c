/*
 * pn-netlink's parsers without a kernel: the request framing (header, netns, body) and the op
 * line grammar (kinds, keys, hex strings, numbers, the checks of addresses, MACs and sysctl
 * keys). Cases first (the 65536-op limit, every kind, each way a line is refused, the answer's
 * cap and escaping), then fuzzing. Nothing here applies an op: parse_body only parses.
 */
#define PN_FUZZ_HARNESS
#include "../../native/pn-netlink.c"
#include "fuzz.h"

static void reset_io(int fd) {
  in_fd = fd;
  ipos = ilen = 0;
  out.n = 0;
  out.over = 0;
}

/* The invariants of a parsed batch (rc 0): every op complete, every value within its limit. */
static void check_batch(const struct batch *b, unsigned long nops, int rc) {
  if (rc != 0) return;
  fz_check(b->n == nops && b->n >= 1 && b->n <= MAX_OPS, "%zu ops parsed for %lu", b->n, nops);
  for (size_t i = 0; i < b->n; i++) {
    const struct op *o = &b->ops[i];
    fz_check(o->kind < NKINDS, "op %zu kind %d", i, o->kind);
    if (o->kind >= NKINDS) continue;
    fz_check((o->set & kinds[o->kind].need) == kinds[o->kind].need, "op %zu lacks a required key", i);
    fz_check(!(o->set & ~(kinds[o->kind].need | kinds[o->kind].may)), "op %zu has a key its kind does not take", i);
    for (int k = 0; k < NKEYS; k++) {
      if (!(o->set & B(k))) continue;
      if (keys[k].type == STR) fz_check(o->v[k].s && strlen(o->v[k].s) >= 1 && strlen(o->v[k].s) <= keys[k].max, "op %zu %s over its limit", i, keys[k].name);
      else fz_check(o->v[k].n <= keys[k].max, "op %zu %s = %lu over its limit", i, keys[k].name, o->v[k].n);
    }
    for (int k = 0; k < NKEYS; k++)
      if ((k == K_NAME || k == K_DEV || k == K_PEER) && (o->set & B(k))) fz_check(strlen(o->v[k].s) < IFNAMSIZ, "op %zu name too long", i);
    fz_check(o->plen >= 0 && o->plen <= 128 && (!o->ip.family || o->plen <= o->ip.len * 8), "op %zu prefix length %d", i, o->plen);
    if (o->set & B(K_VIA)) fz_check(o->via.family == o->ip.family, "op %zu via of another family", i);
    if (o->kind == TC_ATTACH || o->kind == TC_DETACH) fz_check(num(o, K_PREF) >= 1, "op %zu pref 0", i);
  }
}

/* The lines as a body (each ends in a newline), parsed. */
static int parse_text(const char *text, struct batch *b, char *why) {
  unsigned long nops = 0;
  for (const char *c = text; *c; c++) nops += *c == '\n';
  char *copy = strdup(text);
  int rc = parse_body(copy, strlen(copy), nops ? nops : 1, b, why, 256);
  check_batch(b, nops ? nops : 1, rc);
  free(copy);
  return rc;
}

static char *hexs(const char *s) {
  static char buf[16][9000]; /* a line's fields, each its own buffer */
  static int k;
  char *o = buf[k++ % 16];
  size_t n = strlen(s);
  for (size_t i = 0; i < n && i < 4400; i++) snprintf(o + 2 * i, 3, "%02x", (unsigned char)s[i]);
  o[2 * (n < 4400 ? n : 4400)] = 0;
  return o;
}

/* A framed request, as src/exec/netlink-worker.ts writes it. */
static void frame(struct fz_buf *b, unsigned long id, const char *ns, unsigned long nops, const char *body) {
  fz_printf(b, "%lu %zu %lu %zu\n", id, strlen(ns), nops, strlen(body));
  fz_puts(b, ns);
  fz_puts(b, body);
}

/* One line of each kind, as the encoder (src/kernel/native.ts) writes them. */
static struct fz_buf seed_lines[NKINDS + 2];
static size_t nseed_lines;

static void make_seeds(void) {
  if (nseed_lines) return;
  struct fz_buf *s = seed_lines;
  fz_printf(&s[0], "link.add name=%s mac=%s mtu=1450 txqlen=1000 peer=%s peer_mac=%s peer_mtu=1450 peer_netns=%s\n", hexs("lxc1"), hexs("02:00:00:00:00:01"),
            hexs("eth0"), hexs("02:00:00:00:00:02"), hexs("/run/netns/pn-a"));
  fz_printf(&s[1], "link.set name=%s up=1 mtu=1500\nlink.del name=%s missing_ok=1\nlink.get name=%s\nlink.list\n", hexs("lxc1"), hexs("lxc1"), hexs("eth0"));
  fz_printf(&s[2], "addr.add dev=%s addr=%s scope_link=1 nodad=1 replace=1\naddr.del dev=%s addr=%s\naddr.list dev=%s\naddr.list\n", hexs("eth0"), hexs("fd00::5/128"),
            hexs("eth0"), hexs("10.0.0.5/32"), hexs("eth0"));
  fz_printf(&s[3], "route.add dst=%s dev=%s via=%s src=%s mtu=1400 replace=1\nroute.add dst=%s dev=%s scope_link=1\n", hexs("0.0.0.0/0"), hexs("eth0"), hexs("10.0.0.1"),
            hexs("10.0.0.5"), hexs("fd00::1/128"), hexs("eth0"));
  fz_printf(&s[4], "route.del dst=%s dev=%s missing_ok=1\nroute.list family=4 table_all=1\nroute.list family=6 exact=%s\n", hexs("10.1.0.0/16"), hexs("pn_host"), hexs("::/0"));
  fz_printf(&s[5], "neigh.add dev=%s dst=%s proxy=1\nneigh.add dev=%s dst=%s lladdr=%s permanent=1 replace=1\n", hexs("lxc1"), hexs("fd00::1"), hexs("eth0"), hexs("10.0.0.1"),
            hexs("02:00:00:00:00:03"));
  fz_printf(&s[6], "sysctl.set key=%s value=%s\nsysctl.set key=%s value=%s\n", hexs("net.ipv4.conf.lxc1.rp_filter"), hexs("0"), hexs("net.ipv4.conf.eth0/100.forwarding"), hexs("1"));
  fz_printf(&s[7], "qdisc.add dev=%s\nqdisc.del dev=%s missing_ok=1\n", hexs("lxc1"), hexs("lxc1"));
  fz_printf(&s[8], "tc.attach dev=%s egress=1 pref=1 handle=1 pinned=%s\ntc.detach dev=%s pref=1 handle=1 missing_ok=1\ntc.list dev=%s egress=1\n", hexs("lxc1"),
            hexs("/sys/fs/bpf/pn/to_container"), hexs("lxc1"), hexs("lxc1"));
  nseed_lines = 9;
}

static char *repeat(const char *line, size_t times) {
  struct fz_buf b = {0};
  for (size_t i = 0; i < times; i++) fz_puts(&b, line);
  return (char *)b.p;
}

static void cases(void) {
  struct batch b;
  char why[256];
  make_seeds();
  FZ_CASE("every kind parses, with every key it takes", {
    for (size_t i = 0; i < nseed_lines; i++) {
      fz_check(parse_text((char *)seed_lines[i].p, &b, why) == 0, "seed %zu: %s", i, why);
      batch_free(&b);
    }
    int seen[NKINDS] = {0};
    for (size_t i = 0; i < nseed_lines; i++) {
      parse_text((char *)seed_lines[i].p, &b, why);
      for (size_t k = 0; k < b.n; k++) seen[b.ops[k].kind] = 1;
      batch_free(&b);
    }
    for (int k = 0; k < NKINDS; k++) fz_check(seen[k], "no seed of %s", kinds[k].name);
  });
  FZ_CASE("parsed values: strings decoded, numbers, addresses, MACs", {
    fz_check(parse_text((char *)seed_lines[3].p, &b, why) == 0, "%s", why);
    const struct op *o = &b.ops[0];
    fz_check(o->kind == ROUTE_ADD && !strcmp(str(o, K_DEV), "eth0") && num(o, K_MTU) == 1400 && o->plen == 0 && o->ip.family == AF_INET && o->via.a[3] == 1 && o->src.a[3] == 5, "route.add");
    fz_check(b.ops[1].plen == 128 && b.ops[1].ip.family == AF_INET6 && num(&b.ops[1], K_SCOPE_LINK) == 1, "route.add v6");
    batch_free(&b);
    fz_check(parse_text((char *)seed_lines[0].p, &b, why) == 0 && b.ops[0].mac[5] == 1 && b.ops[0].pmac[5] == 2 && !strcmp(str(&b.ops[0], K_PEER_NETNS), "/run/netns/pn-a"), "link.add");
    batch_free(&b);
  });
  FZ_CASE("a batch of 65536 ops (the limit) is parsed; 65537 is refused with a reason", {
    char line[64];
    snprintf(line, sizeof line, "link.set name=%s up=1\n", hexs("pnx0"));
    char *t = repeat(line, MAX_OPS);
    fz_check(parse_text(t, &b, why) == 0 && b.n == MAX_OPS, "%zu ops", b.n);
    batch_free(&b);
    free(t);
    t = repeat(line, MAX_OPS + 1);
    fz_check(parse_body(t, strlen(t), MAX_OPS + 1, &b, why, sizeof why) == ANSWER_REFUSED && strstr(why, "65536"), "not refused: %s", why);
    batch_free(&b);
    free(t);
  });
  FZ_CASE("each way a line is refused, with a reason naming the op", {
    struct { const char *line, *reason; } bad[] = {
      {"link.sideways\n", "an unknown kind"},
      {"link.list x=1\n", "an unknown key"},
      {"link.list name=6c6f\n", "a key this kind does not take"},
      {"link.get name=6c6f name=6c6f\n", "a key given twice"},
      {"link.get\n", "a required key is missing"},
      {"link.get name=6C6F\n", "lowercase hex"},
      {"link.get name=6c6\n", "not hex"},
      {"link.get name=6c00\n", "NUL"},
      {"link.get name=\n", "an empty string"},
      {"link.get name=6162636465666768696a6b6c6d6e6f70\n", "over its limit"},
      {"link.set name=6c6f mtu=01500\n", "malformed"},
      {"link.set name=6c6f mtu=4294967296\n", "over its limit"},
      {"link.set name=6c6f up=2\n", "over its limit"}, /* a flag's limit is 1: 1 - 2 once wrapped and let 2..9 through */
      {"tc.list dev=6c6f egress=9\n", "over its limit"},
      {"link.set name=6c6f  up=1\n", "an unknown key"},
      {"link.set name=6c6f up\n", "without '='"},
      {"link.list \n", "without '='"},
      {"tc.detach dev=6c6f pref=0 handle=1\n", "pref is 1..65535"},
      {"route.list family=5\n", "family is 4 or 6"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      int rc = parse_text(bad[i].line, &b, why);
      fz_check(rc == ANSWER_REFUSED && strstr(why, bad[i].reason) && !strncmp(why, "op 0 (", 6), "\"%s\": %d %s", bad[i].line, rc, why);
      batch_free(&b);
    }
    struct fz_buf l = {0};
    fz_printf(&l, "addr.add dev=%s addr=%s\n", hexs("eth0"), hexs("10.0.0.5"));
    fz_printf(&l, "route.add dst=%s dev=%s via=%s\n", hexs("10.0.0.0/8"), hexs("eth0"), hexs("fd00::1"));
    fz_printf(&l, "route.add dst=%s dev=%s\n", hexs("10.0.0.0/33"), hexs("eth0"));
    fz_printf(&l, "neigh.add dev=%s dst=%s\n", hexs("eth0"), hexs("10.0.0.1/32"));
    fz_printf(&l, "link.add name=%s peer=%s mac=%s\n", hexs("a"), hexs("b"), hexs("02:00:00:00:00"));
    fz_printf(&l, "sysctl.set key=%s value=%s\n", hexs("net.ipv4.//.x"), hexs("1"));
    fz_printf(&l, "sysctl.set key=%s value=%s\n", hexs("net..x"), hexs("1"));
    fz_printf(&l, "sysctl.set key=%s value=%s\n", hexs("net.ipv4 x"), hexs("1"));
    fz_printf(&l, "sysctl.set key=%s value=%s\n", hexs("net.x"), hexs("1\n2"));
    fz_printf(&l, "route.list family=4 exact=%s\n", hexs("fd00::/64"));
    for (char *p = (char *)l.p, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
      char one[512];
      snprintf(one, sizeof one, "%.*s", (int)(nl - p + 1), p);
      fz_check(parse_text(one, &b, why) == ANSWER_REFUSED, "accepted %s", one);
      batch_free(&b);
    }
    fz_free(&l);
  });
  FZ_CASE("a body with fewer or more lines than its header, without its last newline, or with a NUL is refused", {
    char t1[] = "link.list\nlink.list\n", t1b[] = "link.list\nlink.list\n", t2[] = "link.list", t3[] = "link.list\0\n";
    fz_check(parse_body(t1, strlen(t1), 3, &b, why, sizeof why) == ANSWER_REFUSED && strstr(why, "2 lines"), "fewer: %s", why);
    batch_free(&b);
    fz_check(parse_body(t1b, strlen(t1b), 1, &b, why, sizeof why) == ANSWER_REFUSED && strstr(why, "more lines"), "more: %s", why);
    batch_free(&b);
    fz_check(parse_body(t2, strlen(t2), 1, &b, why, sizeof why) == ANSWER_REFUSED, "no newline");
    batch_free(&b);
    fz_check(parse_body(t3, sizeof t3 - 1, 1, &b, why, sizeof why) == ANSWER_REFUSED, "a NUL");
    batch_free(&b);
  });
  FZ_CASE("header: four plain decimal numbers within the limits", {
    struct request r;
    const char *w;
    fz_check(parse_header("7 15 3 40", &r, &w) == 0 && r.id == 7 && r.nslen == 15 && r.nops == 3 && r.bodylen == 40, "valid header");
    const char *badh[] = {"7 0 1", "7 0 1 10 5", "7 -0 1 10", "7 +0 1 10", "7  0 1 10", " 7 0 1 10", "7 0 0 10", "7 0 65537 200000", "7 4096 1 10",
                          "7 0 1 16777217", "7 0 5 9", "18446744073709551616 0 1 10", "7 0 1 99999999999999999999999", "7 0 1 10x", "", "a b c d", "07 0 1 10"};
    for (size_t i = 0; i < sizeof badh / sizeof *badh; i++) fz_check(parse_header(badh[i], &r, &w) < 0, "accepted \"%s\"", badh[i]);
  });
  FZ_CASE("framing: requests back to back, then EOF; a header over 127 bytes or a netns with a NUL is malformed", {
    struct fz_buf f = {0};
    frame(&f, 1, "/run/netns/pn-a", 2, "link.list\nlink.list\n");
    frame(&f, 2, "", 1, (char *)seed_lines[0].p);
    reset_io(fz_fd(f.p, f.n));
    struct request r;
    const char *w = NULL;
    fz_check(read_request(&r, &w) == 1 && r.id == 1 && !strcmp(r.ns, "/run/netns/pn-a") && r.nops == 2 && !strcmp(r.body, "link.list\nlink.list\n"), "first");
    request_free(&r);
    fz_check(read_request(&r, &w) == 1 && r.id == 2 && r.nslen == 0 && r.nops == 1, "second");
    request_free(&r);
    fz_check(read_request(&r, &w) == 0, "EOF");
    close(in_fd);
    f.n = 0;
    for (int i = 0; i < 200; i++) fz_puts(&f, "1");
    reset_io(fz_fd(f.p, f.n));
    fz_check(read_request(&r, &w) == -1, "long header");
    close(in_fd);
    f.n = 0;
    fz_put(&f, "1 3 1 10\na\0blink.list\n", 22);
    reset_io(fz_fd(f.p, f.n));
    fz_check(read_request(&r, &w) == -1 && strstr(w, "NUL"), "netns with a NUL");
    close(in_fd);
    fz_free(&f);
  });
  FZ_CASE("the answer: strings escaped as JSON; past 64 MiB it stops growing and says so", {
    out.n = 0;
    out.over = 0;
    sb_json_str(&out, "a\"b\\c\n\x01\x7f");
    fz_check(!strcmp(out.p, "\"a\\\"b\\\\c\\u000a\\u0001\\u007f\""), "escaped: %s", out.p);
    static char chunk[1 << 20];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 70 && !out.over; i++) sb_add(&out, chunk, sizeof chunk);
    fz_check(out.over && out.n <= MAX_ANSWER_BYTES, "grew to %zu", out.n);
    out.n = 0;
    out.over = 0;
    free(out.p);
    out = (struct sb){0};
  });
}

/* ── fuzz targets ── */
static void fuzz_body(const unsigned char *p, size_t n) {
  char *text = malloc(n + 1);
  memcpy(text, p, n);
  text[n] = 0;
  unsigned long nops = 0;
  for (size_t i = 0; i < n; i++) nops += p[i] == '\n';
  if (fz_below(4) == 0) nops += fz_below(3); /* sometimes a count that does not match */
  struct batch b;
  char why[256] = "";
  int rc = parse_body(text, n, nops, &b, why, sizeof why);
  fz_check(rc == 0 || (rc == ANSWER_REFUSED && why[0]), "parse_body returned %d (%s)", rc, why);
  check_batch(&b, nops, rc);
  batch_free(&b);
  free(text);
}

static void fuzz_framing(const unsigned char *p, size_t n) {
  int fd = fz_fd(p, n);
  reset_io(fd);
  for (int k = 0; k < 64; k++) {
    struct request r;
    const char *w = NULL;
    int got = read_request(&r, &w);
    if (got <= 0) {
      fz_check(got == 0 || w != NULL, "malformed without a reason");
      break;
    }
    fz_check(r.nops >= 1 && r.nops <= MAX_OPS && r.nslen <= MAX_NETNS_BYTES && r.bodylen <= MAX_BODY_BYTES && strlen(r.ns) == r.nslen, "request over a limit");
    struct batch b;
    char why[256] = "";
    int rc = parse_body(r.body, r.bodylen, r.nops, &b, why, sizeof why);
    fz_check(rc == 0 || (rc == ANSWER_REFUSED && why[0]), "parse_body returned %d", rc);
    check_batch(&b, r.nops, rc);
    batch_free(&b);
    request_free(&r);
  }
  close(fd);
}

static void fuzz_header(const unsigned char *p, size_t n) {
  char hdr[MAX_HEADER];
  size_t k = n < sizeof hdr - 1 ? n : sizeof hdr - 1;
  memcpy(hdr, p, k);
  hdr[k] = 0;
  struct request r;
  const char *w = NULL;
  if (parse_header(hdr, &r, &w) == 0)
    fz_check(r.nops >= 1 && r.nops <= MAX_OPS && r.bodylen >= 2 * r.nops && r.bodylen <= MAX_BODY_BYTES && r.nslen <= MAX_NETNS_BYTES, "header \"%s\" over a limit", hdr);
  else fz_check(w != NULL, "refused without a reason");
}

static size_t fz_targets(struct fz_target *t) {
  static struct fz_buf framed[4], headers[3];
  make_seeds();
  t[0] = (struct fz_target){"fuzz: op lines (kinds, keys, hex strings, numbers, addresses)", fuzz_body, seed_lines, nseed_lines, 1 << 16};
  for (int i = 0; i < 4; i++) {
    const char *body = (char *)seed_lines[i * 2].p;
    unsigned long nops = 0;
    for (const char *c = body; *c; c++) nops += *c == '\n';
    frame(&framed[i], (unsigned long)i + 1, i % 2 ? "/run/netns/pn-a" : "", nops, body);
  }
  frame(&framed[3], 9, "", 1, "link.list\n"); /* two requests in one stream */
  t[1] = (struct fz_target){"fuzz: request framing (header, netns, body)", fuzz_framing, framed, 4, 1 << 16};
  fz_puts(&headers[0], "1 0 3 120");
  fz_puts(&headers[1], "4294967296 4095 65536 16777216");
  fz_puts(&headers[2], "12 15 1 10");
  t[2] = (struct fz_target){"fuzz: request header", fuzz_header, headers, 3, MAX_HEADER};
  return 3;
}

FZ_MAIN("pn-netlink")
