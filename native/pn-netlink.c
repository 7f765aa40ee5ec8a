/*
 * pn-netlink: the node agent's kernel worker. One long-lived process that applies pn's kernel
 * ops (src/kernel/ops.ts) with rtnetlink, a /proc/sys write and the bpf(2) syscall, instead of
 * an `ip`/`tc` process per command (10–20 ms each here). It speaks a structured protocol: a
 * request is a netns path and a list of typed ops; the answer is one structured result per op
 * or the failing op's index, errno and the kernel's extended ack. It never prints or parses a
 * tool's text. The TypeScript side is src/kernel/native.ts (encoding, results) over
 * src/exec/netlink-worker.ts (the process, the framing).
 *
 * Protocol on stdin/stdout, requests answered in order:
 *   request: "<id> <netns length> <op count> <body length>\n" <netns path> <body>
 *     body: exactly <op count> lines, each "<kind>( <key>=<value>)*\n". A kind is an op kind
 *     (`link.add`, `tc.attach` …); a key is a lowercase word (the table `keys` below); a value
 *     is a decimal number, or for a string key the string's bytes in lowercase hex (so no value
 *     holds a space, a newline or a NUL). Flags are `key=1`.
 *   answer: "<id> <code> <length>\n" <body>
 *     code 0: body is JSON {"results":[…],"error":{…}?}: one result per applied op in order
 *     (`{}` for a change; `{"deleted":bool}`, `{"link":{…}}`, `{"links":[…]}`, `{"routes":[…]}`,
 *     `{"filters":[…]}` for the others); when an op failed, the results stop before it and
 *     "error" is {"index":N,"errno":E?,"extack":"…"?,"reason":"…"?}: errno a positive number
 *     from the kernel or a syscall, extack the kernel's extended ack, reason this worker's own
 *     words (a netns or pin path it could not open). Ops before the index took effect, none after.
 *     code -2: refused (an op line that is not the grammar, or a value over its limit); the body
 *     is the reason, nothing was done.
 * Every op of a request runs inside the request's netns (an empty path: the worker's own);
 * `link.add`'s peer may go to another (peer_netns). A `link.add` makes a veth pair (`peer`) or,
 * with `vxlan_port`, a VXLAN device in collect-metadata mode on that UDP port, learning off. EOF on stdin ends the process. A malformed
 * header or framing is a broken caller: the reason goes to stderr and the worker exits 1 (the
 * agent fails that request, never replays it, and starts a new worker on the next one).
 *
 * Limits, checked on both sides (src/exec/netlink-worker.ts holds the same numbers): a header of
 * at most 127 bytes; a netns path of at most 4095 bytes; 1..65536 ops; a body of at most 16 MiB;
 * names under 16 bytes; paths at most 4095 bytes; sysctl keys 255 bytes and values 4095. An
 * answer stays under 64 MiB (an op whose result would pass it fails with E2BIG).
 */
// ldflags: -lbpf
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/if_link.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/pkt_cls.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000
#endif
#ifndef IFF_DORMANT
#define IFF_DORMANT 0x20000
#endif
#ifndef ETH_P_ALL
#define ETH_P_ALL 0x0003
#endif

/* ── limits (the protocol comment above) ──────────────────────────────────────────────────── */
#define MAX_HEADER 128
#define MAX_NETNS_BYTES 4095
#define MAX_OPS 65536
#define MAX_BODY_BYTES (16ul << 20)
#define MAX_PATH_BYTES 4095
#define MAX_ANSWER_BYTES (64ul << 20)
#define ANSWER_REFUSED -2

/* ── the answer buffer ───────────────────────────────────────────────────────────────────── */
/* Growable, and capped: past MAX_ANSWER_BYTES it stops growing and says so (`over`). */
struct sb { char *p; size_t n, cap; int over; };
static struct sb out;

static void sb_add(struct sb *b, const char *s, size_t n) {
  if (b->over || b->n + n > MAX_ANSWER_BYTES) { b->over = 1; return; }
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_puts(struct sb *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(struct sb *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string of the bytes (control characters escaped; other bytes as they are). */
static void sb_json_str(struct sb *b, const char *s) {
  sb_puts(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { sb_puts(b, "\\"); sb_add(b, (const char *)&c, 1); }
    else if (c < 0x20 || c == 0x7f) sb_printf(b, "\\u%04x", c);
    else sb_add(b, (const char *)&c, 1);
  }
  sb_puts(b, "\"");
}

/* ── the request grammar ─────────────────────────────────────────────────────────────────── */
enum kind {
  LINK_ADD, LINK_SET, LINK_DEL, LINK_GET, LINK_LIST, ADDR_ADD, ADDR_DEL, ADDR_LIST, ROUTE_ADD, ROUTE_DEL, ROUTE_LIST,
  NEIGH_ADD, SYSCTL_SET, QDISC_ADD, QDISC_DEL, TC_ATTACH, TC_DETACH, TC_LIST, NKINDS,
};
enum key {
  K_NAME, K_DEV, K_MAC, K_MTU, K_TXQLEN, K_PEER, K_PEER_MAC, K_PEER_MTU, K_PEER_NETNS, K_UP, K_MISSING_OK, K_ADDR, K_SCOPE_LINK,
  K_NODAD, K_REPLACE, K_DST, K_VIA, K_SRC, K_FAMILY, K_TABLE_ALL, K_EXACT, K_PROXY, K_LLADDR, K_PERMANENT, K_KEY, K_VALUE,
  K_EGRESS, K_PREF, K_HANDLE, K_PINNED, K_PROTO, K_VXLAN_PORT, NKEYS,
};
enum vtype { NUM, STR };
/* A key's name, type and limit (a number's largest value, a string's most bytes). */
static const struct { const char *name; enum vtype type; unsigned long max; } keys[NKEYS] = {
  [K_NAME] = {"name", STR, IFNAMSIZ - 1}, [K_DEV] = {"dev", STR, IFNAMSIZ - 1}, [K_MAC] = {"mac", STR, 17},
  [K_MTU] = {"mtu", NUM, 0xffffffff}, [K_TXQLEN] = {"txqlen", NUM, 0xffffffff}, [K_PEER] = {"peer", STR, IFNAMSIZ - 1},
  [K_PEER_MAC] = {"peer_mac", STR, 17}, [K_PEER_MTU] = {"peer_mtu", NUM, 0xffffffff}, [K_PEER_NETNS] = {"peer_netns", STR, MAX_PATH_BYTES},
  [K_UP] = {"up", NUM, 1}, [K_MISSING_OK] = {"missing_ok", NUM, 1}, [K_ADDR] = {"addr", STR, 63}, [K_SCOPE_LINK] = {"scope_link", NUM, 1},
  [K_NODAD] = {"nodad", NUM, 1}, [K_REPLACE] = {"replace", NUM, 1}, [K_DST] = {"dst", STR, 63}, [K_VIA] = {"via", STR, 63},
  [K_SRC] = {"src", STR, 63}, [K_FAMILY] = {"family", NUM, 6}, [K_TABLE_ALL] = {"table_all", NUM, 1}, [K_EXACT] = {"exact", STR, 63},
  [K_PROXY] = {"proxy", NUM, 1}, [K_LLADDR] = {"lladdr", STR, 17}, [K_PERMANENT] = {"permanent", NUM, 1}, [K_KEY] = {"key", STR, 255},
  [K_VALUE] = {"value", STR, 4095}, [K_EGRESS] = {"egress", NUM, 1}, [K_PREF] = {"pref", NUM, 0xffff},
  [K_HANDLE] = {"handle", NUM, 0xffffffff}, [K_PINNED] = {"pinned", STR, MAX_PATH_BYTES}, [K_PROTO] = {"proto", NUM, 255},
  [K_VXLAN_PORT] = {"vxlan_port", NUM, 0xffff},
};
#define B(k) (1ull << (k))
/* Each kind's name, the keys it must have and the keys it may have. */
static const struct { const char *name; uint64_t need, may; } kinds[NKINDS] = {
  /* A veth (peer) or a VXLAN device (vxlan_port): exactly one of the two, checked in check_op. */
  [LINK_ADD] = {"link.add", B(K_NAME), B(K_PEER) | B(K_MAC) | B(K_MTU) | B(K_TXQLEN) | B(K_PEER_MAC) | B(K_PEER_MTU) | B(K_PEER_NETNS) | B(K_VXLAN_PORT)},
  [LINK_SET] = {"link.set", B(K_NAME), B(K_UP) | B(K_MTU)},
  [LINK_DEL] = {"link.del", B(K_NAME), B(K_MISSING_OK)},
  [LINK_GET] = {"link.get", B(K_NAME), 0},
  [LINK_LIST] = {"link.list", 0, 0},
  [ADDR_ADD] = {"addr.add", B(K_DEV) | B(K_ADDR), B(K_SCOPE_LINK) | B(K_NODAD) | B(K_REPLACE)},
  [ADDR_DEL] = {"addr.del", B(K_DEV) | B(K_ADDR), 0},
  [ADDR_LIST] = {"addr.list", 0, B(K_DEV)},
  [ROUTE_ADD] = {"route.add", B(K_DST) | B(K_DEV), B(K_VIA) | B(K_SCOPE_LINK) | B(K_SRC) | B(K_MTU) | B(K_REPLACE) | B(K_PROTO)},
  [ROUTE_DEL] = {"route.del", B(K_DST) | B(K_DEV), B(K_MISSING_OK)},
  [ROUTE_LIST] = {"route.list", B(K_FAMILY), B(K_TABLE_ALL) | B(K_EXACT)},
  [NEIGH_ADD] = {"neigh.add", B(K_DEV) | B(K_DST), B(K_PROXY) | B(K_LLADDR) | B(K_PERMANENT) | B(K_REPLACE)},
  [SYSCTL_SET] = {"sysctl.set", B(K_KEY) | B(K_VALUE), 0},
  [QDISC_ADD] = {"qdisc.add", B(K_DEV), 0},
  [QDISC_DEL] = {"qdisc.del", B(K_DEV), B(K_MISSING_OK)},
  [TC_ATTACH] = {"tc.attach", B(K_DEV) | B(K_PREF) | B(K_HANDLE) | B(K_PINNED), B(K_EGRESS)},
  [TC_DETACH] = {"tc.detach", B(K_DEV) | B(K_PREF) | B(K_HANDLE), B(K_EGRESS) | B(K_MISSING_OK)},
  [TC_LIST] = {"tc.list", B(K_DEV), B(K_EGRESS)},
};

struct ipaddr { int family; int len; unsigned char a[16]; };

/* One parsed op: its values by key (strings malloc'd and NUL-terminated), and the parsed forms. */
struct op {
  enum kind kind;
  uint64_t set;
  union { unsigned long n; char *s; } v[NKEYS];
  struct ipaddr ip, via, src, exact; /* ip: addr or dst */
  int plen, exact_plen;
  unsigned char mac[6], pmac[6];
};

static unsigned long num(const struct op *o, enum key k) { return o->set & B(k) ? o->v[k].n : 0; }
static const char *str(const struct op *o, enum key k) { return o->set & B(k) ? o->v[k].s : NULL; }

/* The parsed ops of one request (at most MAX_OPS). */
struct batch { struct op *ops; size_t n; };

static void batch_free(struct batch *b) {
  for (size_t i = 0; i < b->n; i++)
    for (int k = 0; k < NKEYS; k++)
      if (keys[k].type == STR && (b->ops[i].set & B(k))) free(b->ops[i].v[k].s);
  free(b->ops);
  *b = (struct batch){0};
}

static int parse_mac(const char *s, unsigned char mac[6]) {
  unsigned v[6];
  char tail;
  if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return -1;
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)v[i];
  return 0;
}

/* One decimal number of at most `max` at *s (no sign, no leading zeros but "0"); advances *s. */
static int parse_dec(const char **s, unsigned long max, unsigned long *v) {
  const char *p = *s;
  unsigned long x = 0;
  if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9')) return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    unsigned long d = (unsigned long)(*p - '0');
    if (d > max || x > (max - d) / 10) return -1; /* d > max first: max - d must not wrap (a flag's max is 1) */
    x = x * 10 + (unsigned long)(*p - '0');
  }
  *s = p;
  *v = x;
  return 0;
}

/* "1.2.3.4", "fd00::1"; with `plen` "1.2.3.4/32" (the prefix length is then required). */
static int parse_ip(const char *s, struct ipaddr *ip, int *plen) {
  char tmp[64];
  size_t n = strlen(s);
  if (n >= sizeof tmp) return -1;
  memcpy(tmp, s, n + 1);
  char *slash = strchr(tmp, '/');
  if (!!slash != !!plen) return -1;
  if (slash) *slash = 0;
  memset(ip, 0, sizeof *ip);
  if (inet_pton(AF_INET, tmp, ip->a) == 1) { ip->family = AF_INET; ip->len = 4; }
  else if (inet_pton(AF_INET6, tmp, ip->a) == 1) { ip->family = AF_INET6; ip->len = 16; }
  else return -1;
  if (plen) {
    const char *p = slash + 1;
    unsigned long v;
    if (parse_dec(&p, (unsigned long)ip->len * 8, &v) < 0 || *p) return -1;
    *plen = (int)v;
  }
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* The checks of one op's values that the key table cannot express, and their parsed forms. */
static const char *check_op(struct op *o) {
  for (int k = 0; k < NKEYS; k++)
    if (keys[k].type == STR && (o->set & B(k)) && !o->v[k].s[0]) return "an empty string";
  if (str(o, K_MAC) && parse_mac(str(o, K_MAC), o->mac) < 0) return "mac is not a MAC address";
  if (str(o, K_PEER_MAC) && parse_mac(str(o, K_PEER_MAC), o->pmac) < 0) return "peer_mac is not a MAC address";
  if (str(o, K_LLADDR) && parse_mac(str(o, K_LLADDR), o->mac) < 0) return "lladdr is not a MAC address";
  if (str(o, K_ADDR) && parse_ip(str(o, K_ADDR), &o->ip, &o->plen) < 0) return "addr is not an address with its prefix length";
  if (str(o, K_DST) && parse_ip(str(o, K_DST), &o->ip, o->kind == NEIGH_ADD ? NULL : &o->plen) < 0) return "dst is not an address (with its prefix length for a route)";
  if (str(o, K_VIA) && (parse_ip(str(o, K_VIA), &o->via, NULL) < 0 || o->via.family != o->ip.family)) return "via is not an address of dst's family";
  if (str(o, K_SRC) && (parse_ip(str(o, K_SRC), &o->src, NULL) < 0 || o->src.family != o->ip.family)) return "src is not an address of dst's family";
  if (str(o, K_EXACT) && parse_ip(str(o, K_EXACT), &o->exact, &o->exact_plen) < 0) return "exact is not a prefix";
  if (o->set & B(K_FAMILY)) {
    int fam = num(o, K_FAMILY) == 4 ? AF_INET : num(o, K_FAMILY) == 6 ? AF_INET6 : 0;
    if (!fam) return "family is 4 or 6";
    if (str(o, K_EXACT) && o->exact.family != fam) return "exact is not of the family";
  }
  if ((o->kind == TC_ATTACH || o->kind == TC_DETACH) && num(o, K_PREF) == 0) return "pref is 1..65535";
  if (o->kind == LINK_ADD) {
    const uint64_t veth_only = B(K_PEER) | B(K_PEER_MAC) | B(K_PEER_MTU) | B(K_PEER_NETNS) | B(K_TXQLEN);
    if (o->set & B(K_VXLAN_PORT)) {
      if (o->set & veth_only) return "a vxlan link.add takes no peer or txqlen";
      if (num(o, K_VXLAN_PORT) == 0) return "vxlan_port is 1..65535";
    } else if (!(o->set & B(K_PEER))) return "link.add needs peer (veth) or vxlan_port (vxlan)";
  }
  if (o->kind == SYSCTL_SET) {
    const char *key = str(o, K_KEY);
    for (const char *c = key; *c; c++)
      if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr("._-/", *c))) return "key has a character a sysctl name has not";
    /* Components between dots: none empty, none "." or ".." once '/' reads as '.'. */
    for (const char *c = key; *c;) {
      size_t n = strcspn(c, ".");
      if (n == 0 || (n == 1 && c[0] == '/') || (n == 2 && c[0] == '/' && c[1] == '/')) return "key has an empty, \".\" or \"..\" component";
      c += n;
      if (*c == '.' && !*++c) return "key ends with a dot";
    }
    for (const char *c = str(o, K_VALUE); *c; c++)
      if ((unsigned char)*c < 0x20 && *c != '\t') return "value has a control character";
  }
  return NULL;
}

/* One op line (without its newline, NUL-terminated) into *o. NULL, or why it is refused. */
static const char *parse_op(const char *line, struct op *o) {
  memset(o, 0, sizeof *o);
  size_t kl = strcspn(line, " ");
  int kind = -1;
  for (int k = 0; k < NKINDS; k++)
    if (strlen(kinds[k].name) == kl && !memcmp(kinds[k].name, line, kl)) kind = k;
  if (kind < 0) return "an unknown kind";
  o->kind = (enum kind)kind;
  const char *p = line + kl;
  while (*p) {
    if (*p++ != ' ') return "fields are separated by one space";
    size_t nl = strcspn(p, "=");
    if (!p[nl]) return "a field without '='";
    int key = -1;
    for (int k = 0; k < NKEYS; k++)
      if (strlen(keys[k].name) == nl && !memcmp(keys[k].name, p, nl)) key = k;
    if (key < 0) return "an unknown key";
    if (!((kinds[kind].need | kinds[kind].may) & B(key))) return "a key this kind does not take";
    if (o->set & B(key)) return "a key given twice";
    p += nl + 1;
    size_t vl = strcspn(p, " ");
    if (keys[key].type == NUM) {
      const char *q = p;
      if (parse_dec(&q, keys[key].max, &o->v[key].n) < 0 || q != p + vl) return "a number that is malformed or over its limit";
    } else {
      if (vl % 2 || vl / 2 > keys[key].max) return "a string that is not hex or over its limit";
      char *s = malloc(vl / 2 + 1);
      if (!s) abort();
      for (size_t i = 0; i < vl / 2; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) { free(s); return "a string that is not lowercase hex (or holds a NUL)"; }
        s[i] = (char)(hi << 4 | lo);
      }
      s[vl / 2] = 0;
      o->v[key].s = s;
    }
    o->set |= B(key);
    p += vl;
  }
  if ((o->set & kinds[kind].need) != kinds[kind].need) return "a required key is missing";
  return check_op(o);
}

/*
 * The body of a request: exactly `nops` lines, each one op. Nothing is done here. 0, or
 * ANSWER_REFUSED with the reason in `why` (op index included). Free the batch either way.
 */
static int parse_body(char *body, size_t len, unsigned long nops, struct batch *b, char *why, size_t whylen) {
  *b = (struct batch){0};
  if (nops == 0 || nops > MAX_OPS) { snprintf(why, whylen, "%lu ops: a request has 1..%d", nops, MAX_OPS); return ANSWER_REFUSED; }
  if (len == 0 || body[len - 1] != '\n' || memchr(body, 0, len)) { snprintf(why, whylen, "the body does not end with a newline, or holds a NUL"); return ANSWER_REFUSED; }
  b->ops = calloc(nops, sizeof *b->ops);
  if (!b->ops) abort();
  char *p = body, *end = body + len;
  while (p < end) {
    char *nl = memchr(p, '\n', (size_t)(end - p));
    if (b->n == nops) { snprintf(why, whylen, "more lines than the %lu ops of the header", nops); return ANSWER_REFUSED; }
    *nl = 0;
    const char *bad = parse_op(p, &b->ops[b->n]);
    b->n++; /* counted even when refused: batch_free frees what it holds */
    if (bad) { snprintf(why, whylen, "op %zu (%.20s): %s", b->n - 1, p, bad); return ANSWER_REFUSED; }
    p = nl + 1;
  }
  if (b->n != nops) { snprintf(why, whylen, "%zu lines for the %lu ops of the header", b->n, nops); return ANSWER_REFUSED; }
  return 0;
}

/* ── rtnetlink ───────────────────────────────────────────────────────────────────────────── */
struct nlreq { struct nlmsghdr n; char buf[8192]; };
static int nlfd = -1;
static uint32_t seq;
static char extack[512];
static char reason[600]; /* this worker's words for a failure that is not the kernel's answer */

static int nl_open(void) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { int e = errno; close(fd); return -e; }
  return fd;
}

static void req_init(struct nlreq *r, uint16_t type, uint16_t flags, const void *hdr, size_t hlen) {
  memset(r, 0, sizeof *r);
  r->n.nlmsg_len = NLMSG_LENGTH(hlen);
  r->n.nlmsg_type = type;
  r->n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
  memcpy(NLMSG_DATA(&r->n), hdr, hlen);
}

static struct rtattr *attr(struct nlreq *r, uint16_t type, const void *data, size_t len) {
  size_t off = NLMSG_ALIGN(r->n.nlmsg_len);
  if (off + RTA_SPACE(len) > sizeof *r) abort(); /* every value is capped far below 8 KiB */
  struct rtattr *a = (struct rtattr *)((char *)&r->n + off);
  a->rta_type = type;
  a->rta_len = (unsigned short)RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  r->n.nlmsg_len = (uint32_t)(off + RTA_ALIGN(a->rta_len));
  return a;
}

static void attr_u32(struct nlreq *r, uint16_t type, uint32_t v) { attr(r, type, &v, 4); }
static void attr_str(struct nlreq *r, uint16_t type, const char *s) { attr(r, type, s, strlen(s) + 1); }
static struct rtattr *nest(struct nlreq *r, uint16_t type) { return attr(r, type, NULL, 0); }
static void nest_end(struct nlreq *r, struct rtattr *a) { a->rta_len = (unsigned short)((char *)&r->n + r->n.nlmsg_len - (char *)a); }

/* The extended ack of an error or done message, into `extack`. */
static void read_extack(struct nlmsghdr *h, size_t off) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS) || h->nlmsg_len < NLMSG_HDRLEN + NLMSG_ALIGN(off)) return;
  struct rtattr *a = (struct rtattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(off));
  int alen = (int)h->nlmsg_len - NLMSG_HDRLEN - (int)NLMSG_ALIGN(off);
  for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen))
    if (a->rta_type == NLMSGERR_ATTR_MSG && RTA_PAYLOAD(a) > 0) snprintf(extack, sizeof extack, "%.*s", (int)RTA_PAYLOAD(a), (char *)RTA_DATA(a));
}

static char rbuf[65536];

/*
 * Send one request and read until its ack (or, with NLM_F_DUMP, its done), giving each data
 * message to `each`. 0 or -errno; the kernel's extended ack, if any, is left in `extack`.
 */
static int nl_call(struct nlreq *r, void (*each)(struct nlmsghdr *, void *), void *ctx) {
  r->n.nlmsg_seq = ++seq;
  if (send(nlfd, &r->n, r->n.nlmsg_len, 0) < 0) return -errno;
  /* NLM_F_DUMP is two bits that a change's NLM_F_CREATE/EXCL/REPLACE flags share one of. */
  int dump = (r->n.nlmsg_flags & NLM_F_DUMP) == NLM_F_DUMP && !(r->n.nlmsg_flags & NLM_F_CREATE), rc = 0;
  for (;;) {
    ssize_t len = recv(nlfd, rbuf, sizeof rbuf, 0);
    if (len < 0) { if (errno == EINTR) continue; return -errno; }
    for (struct nlmsghdr *h = (struct nlmsghdr *)rbuf; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EPROTO;
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error) read_extack(h, sizeof *e); /* NETLINK_CAP_ACK: the request is not echoed */
        if (!dump || e->error) return e->error ? e->error : rc;
        continue;
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int)) && *(int *)NLMSG_DATA(h) < 0) {
          read_extack(h, sizeof(int));
          rc = *(int *)NLMSG_DATA(h);
        }
        if (dump) return rc;
        continue;
      }
      if (each) each(h, ctx);
    }
  }
}

/* A change: its ack. */
static int nl_do(struct nlreq *r) { return nl_call(r, NULL, NULL); }

/* A dump of `type` with header `hdr`: each message to `each`. */
static int nl_dump(uint16_t type, const void *hdr, size_t hlen, void (*each)(struct nlmsghdr *, void *), void *ctx) {
  struct nlreq r;
  req_init(&r, type, NLM_F_DUMP, hdr, hlen);
  if (type == RTM_GETLINK) attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  return nl_call(&r, each, ctx);
}

/* A message's attributes by type (at most `max`). */
static void attrs(struct rtattr *a, int len, struct rtattr **tb, int max) {
  memset(tb, 0, sizeof *tb * (size_t)(max + 1));
  for (; RTA_OK(a, len); a = RTA_NEXT(a, len))
    if (a->rta_type <= max) tb[a->rta_type] = a;
}

static uint32_t rta_u32(struct rtattr *a) { uint32_t v = 0; memcpy(&v, RTA_DATA(a), RTA_PAYLOAD(a) < 4 ? RTA_PAYLOAD(a) : 4); return v; }

/* A NUL-terminated string attribute, or "" when it is not one. */
static const char *rta_str(struct rtattr *a) {
  return a && RTA_PAYLOAD(a) > 0 && memchr(RTA_DATA(a), 0, RTA_PAYLOAD(a)) ? (const char *)RTA_DATA(a) : "";
}

/* ── results ─────────────────────────────────────────────────────────────────────────────── */
static void json_ip(int family, const void *a) {
  char s[INET6_ADDRSTRLEN];
  inet_ntop(family, a, s, sizeof s);
  sb_json_str(&out, s);
}

/* One link as pn's LinkInfo (src/kernel/ops.ts): the names `ip -j -d link show` uses. */
static void json_link(struct nlmsghdr *h) {
  struct ifinfomsg *m = NLMSG_DATA(h);
  struct rtattr *tb[IFLA_MAX + 1];
  attrs(IFLA_RTA(m), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m), tb, IFLA_MAX);
  sb_printf(&out, "{\"ifindex\":%d,\"ifname\":", m->ifi_index);
  sb_json_str(&out, rta_str(tb[IFLA_IFNAME]));
  if (tb[IFLA_MTU]) sb_printf(&out, ",\"mtu\":%u", rta_u32(tb[IFLA_MTU]));
  if (tb[IFLA_ADDRESS] && RTA_PAYLOAD(tb[IFLA_ADDRESS]) == 6) {
    unsigned char *a = RTA_DATA(tb[IFLA_ADDRESS]);
    sb_printf(&out, ",\"address\":\"%02x:%02x:%02x:%02x:%02x:%02x\"", a[0], a[1], a[2], a[3], a[4], a[5]);
  }
  static const char *const oper[] = {"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"};
  if (tb[IFLA_OPERSTATE] && RTA_PAYLOAD(tb[IFLA_OPERSTATE]) >= 1) {
    unsigned char s = *(unsigned char *)RTA_DATA(tb[IFLA_OPERSTATE]);
    sb_printf(&out, ",\"operstate\":\"%s\"", s < 7 ? oper[s] : "UNKNOWN");
  }
  static const struct { unsigned flag; const char *name; } flags[] = {
    {IFF_LOOPBACK, "LOOPBACK"}, {IFF_BROADCAST, "BROADCAST"}, {IFF_POINTOPOINT, "POINTOPOINT"}, {IFF_MULTICAST, "MULTICAST"},
    {IFF_NOARP, "NOARP"}, {IFF_ALLMULTI, "ALLMULTI"}, {IFF_PROMISC, "PROMISC"}, {IFF_MASTER, "MASTER"}, {IFF_SLAVE, "SLAVE"},
    {IFF_UP, "UP"}, {IFF_LOWER_UP, "LOWER_UP"}, {IFF_DORMANT, "DORMANT"},
  };
  int first = 1;
  sb_puts(&out, ",\"flags\":[");
  if ((m->ifi_flags & IFF_UP) && !(m->ifi_flags & IFF_RUNNING)) { sb_puts(&out, "\"NO-CARRIER\""); first = 0; }
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    if (!(m->ifi_flags & flags[i].flag)) continue;
    sb_printf(&out, "%s\"%s\"", first ? "" : ",", flags[i].name);
    first = 0;
  }
  /* ip's M-DOWN: the peer (the lower device, in this netns) is down. */
  if (tb[IFLA_LINK] && !tb[IFLA_LINK_NETNSID]) {
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    uint32_t iflink = rta_u32(tb[IFLA_LINK]);
    int s = iflink && (int)iflink != m->ifi_index && if_indextoname(iflink, ifr.ifr_name) ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
    if (s >= 0) {
      if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) sb_puts(&out, first ? "\"M-DOWN\"" : ",\"M-DOWN\"");
      close(s);
    }
  }
  sb_puts(&out, "]");
  /* A veth's peer: its name when it is in this netns, its ifindex (in its own netns) otherwise. */
  if (tb[IFLA_LINK]) {
    uint32_t iflink = rta_u32(tb[IFLA_LINK]);
    char peer[IF_NAMESIZE];
    if (tb[IFLA_LINK_NETNSID] || !if_indextoname(iflink, peer)) { if (iflink) sb_printf(&out, ",\"link_index\":%u", iflink); }
    else if ((int)iflink != m->ifi_index) { sb_puts(&out, ",\"link\":"); sb_json_str(&out, peer); }
  }
  if (tb[IFLA_LINKINFO]) {
    struct rtattr *li[IFLA_INFO_MAX + 1];
    attrs(RTA_DATA(tb[IFLA_LINKINFO]), (int)RTA_PAYLOAD(tb[IFLA_LINKINFO]), li, IFLA_INFO_MAX);
    if (li[IFLA_INFO_KIND]) { sb_puts(&out, ",\"linkinfo\":{\"info_kind\":"); sb_json_str(&out, rta_str(li[IFLA_INFO_KIND])); sb_puts(&out, "}"); }
  }
  sb_puts(&out, "}");
}

struct listing { int count; };

static void each_link(struct nlmsghdr *h, void *ctx) {
  struct listing *l = ctx;
  if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return;
  if (l->count++) sb_puts(&out, ",");
  json_link(h);
}

/* Addresses as pn's AddrLink list: one entry per link (in ifindex order), its addresses in it. */
struct addr { int ifindex, family, plen, scope, has_peer; unsigned char local[16], peer[16]; };
struct addrs { struct addr *a; size_t n, cap; int only; };
struct names { int *idx; char (*name)[IF_NAMESIZE]; size_t n, cap; int only; };

static void each_addr(struct nlmsghdr *h, void *ctx) {
  struct addrs *s = ctx;
  if (h->nlmsg_type != RTM_NEWADDR || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifaddrmsg))) return;
  struct ifaddrmsg *m = NLMSG_DATA(h);
  if (s->only && (int)m->ifa_index != s->only) return;
  if (m->ifa_family != AF_INET && m->ifa_family != AF_INET6) return;
  struct rtattr *tb[IFA_MAX + 1];
  attrs(IFA_RTA(m), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m), tb, IFA_MAX);
  size_t len = m->ifa_family == AF_INET ? 4 : 16;
  struct rtattr *local = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
  if (!local || RTA_PAYLOAD(local) != len) return;
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->a = realloc(s->a, s->cap * sizeof *s->a);
    if (!s->a) abort();
  }
  struct addr *a = &s->a[s->n++];
  memset(a, 0, sizeof *a);
  *a = (struct addr){.ifindex = (int)m->ifa_index, .family = m->ifa_family, .plen = m->ifa_prefixlen, .scope = m->ifa_scope};
  memcpy(a->local, RTA_DATA(local), len);
  /* A point-to-point address: its peer differs from the local side. */
  if (tb[IFA_LOCAL] && tb[IFA_ADDRESS] && RTA_PAYLOAD(tb[IFA_ADDRESS]) == len && memcmp(RTA_DATA(tb[IFA_ADDRESS]), a->local, len)) {
    a->has_peer = 1;
    memcpy(a->peer, RTA_DATA(tb[IFA_ADDRESS]), len);
  }
}

static void each_name(struct nlmsghdr *h, void *ctx) {
  struct names *s = ctx;
  if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return;
  struct ifinfomsg *m = NLMSG_DATA(h);
  if (s->only && m->ifi_index != s->only) return;
  struct rtattr *tb[IFLA_MAX + 1];
  attrs(IFLA_RTA(m), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m), tb, IFLA_MAX);
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 16;
    s->idx = realloc(s->idx, s->cap * sizeof *s->idx);
    s->name = realloc(s->name, s->cap * sizeof *s->name);
    if (!s->idx || !s->name) abort();
  }
  s->idx[s->n] = m->ifi_index;
  snprintf(s->name[s->n++], IF_NAMESIZE, "%s", rta_str(tb[IFLA_IFNAME]));
}

static const char *scope_name(int scope) {
  switch (scope) {
  case RT_SCOPE_UNIVERSE: return "global";
  case RT_SCOPE_SITE: return "site";
  case RT_SCOPE_LINK: return "link";
  case RT_SCOPE_HOST: return "host";
  case RT_SCOPE_NOWHERE: return "nowhere";
  default: return NULL;
  }
}

static int addr_list(int only) {
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct ifaddrmsg ifa = {.ifa_family = AF_UNSPEC};
  struct names names = {.only = only};
  struct addrs addrs = {.only = only};
  int rc = nl_dump(RTM_GETLINK, &ifi, sizeof ifi, each_name, &names);
  if (!rc) rc = nl_dump(RTM_GETADDR, &ifa, sizeof ifa, each_addr, &addrs);
  if (!rc) {
    sb_puts(&out, "{\"links\":[");
    for (size_t i = 0; i < names.n; i++) {
      sb_puts(&out, i ? ",{\"ifname\":" : "{\"ifname\":");
      sb_json_str(&out, names.name[i]);
      sb_puts(&out, ",\"addr_info\":[");
      int first = 1;
      for (size_t k = 0; k < addrs.n; k++) {
        struct addr *a = &addrs.a[k];
        if (a->ifindex != names.idx[i]) continue;
        sb_printf(&out, "%s{\"family\":\"%s\",\"local\":", first ? "" : ",", a->family == AF_INET ? "inet" : "inet6");
        json_ip(a->family, a->local);
        sb_printf(&out, ",\"prefixlen\":%d", a->plen);
        if (a->has_peer) { sb_puts(&out, ",\"address\":"); json_ip(a->family, a->peer); }
        const char *sc = scope_name(a->scope);
        if (sc) sb_printf(&out, ",\"scope\":\"%s\"}", sc);
        else sb_printf(&out, ",\"scope\":\"%d\"}", a->scope);
        first = 0;
      }
      sb_puts(&out, "]}");
    }
    sb_puts(&out, "]}");
  }
  free(names.idx);
  free(names.name);
  free(addrs.a);
  return rc;
}

/* Routes as pn's RouteEntry list: destinations, devices and tables as `ip -j route show` names them. */
struct rfilter { int family, all, count, exact, plen; unsigned char dst[16]; };

static void json_dev(const char *key, uint32_t ifindex) {
  char name[IF_NAMESIZE];
  if (!if_indextoname(ifindex, name)) snprintf(name, sizeof name, "if%u", ifindex);
  sb_printf(&out, ",\"%s\":", key);
  sb_json_str(&out, name);
}

static void each_route(struct nlmsghdr *h, void *ctx) {
  struct rfilter *f = ctx;
  if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg))) return;
  struct rtmsg *m = NLMSG_DATA(h);
  if (m->rtm_family != f->family || (m->rtm_flags & RTM_F_CLONED)) return;
  struct rtattr *tb[RTA_MAX + 1];
  attrs(RTM_RTA(m), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m), tb, RTA_MAX);
  uint32_t table = tb[RTA_TABLE] ? rta_u32(tb[RTA_TABLE]) : m->rtm_table;
  if (!f->all && table != RT_TABLE_MAIN) return;
  size_t len = f->family == AF_INET ? 4 : 16;
  unsigned char dst[16] = {0};
  if (tb[RTA_DST] && RTA_PAYLOAD(tb[RTA_DST]) == len) memcpy(dst, RTA_DATA(tb[RTA_DST]), len);
  if (f->exact && (m->rtm_dst_len != f->plen || memcmp(dst, f->dst, len))) return;
  static const char *const types[] = {"unspec", "unicast", "local", "broadcast", "anycast", "multicast", "blackhole", "unreachable", "prohibit", "throw", "nat", "xresolve"};
  int lead = f->count++ == 0;
  sb_puts(&out, lead ? "{" : ",{");
  if (m->rtm_type != RTN_UNICAST) {
    if (m->rtm_type < sizeof types / sizeof *types) sb_printf(&out, "\"type\":\"%s\",", types[m->rtm_type]);
    else sb_printf(&out, "\"type\":\"%u\",", m->rtm_type);
  }
  sb_puts(&out, "\"dst\":");
  if (m->rtm_dst_len == 0) sb_puts(&out, "\"default\"");
  else {
    char s[INET6_ADDRSTRLEN + 4];
    inet_ntop(f->family, dst, s, INET6_ADDRSTRLEN);
    if (m->rtm_dst_len != len * 8) sb_printf(&out, "\"%s/%u\"", s, m->rtm_dst_len);
    else sb_printf(&out, "\"%s\"", s);
  }
  if (tb[RTA_GATEWAY] && RTA_PAYLOAD(tb[RTA_GATEWAY]) == len) { sb_puts(&out, ",\"gateway\":"); json_ip(f->family, RTA_DATA(tb[RTA_GATEWAY])); }
  if (tb[RTA_OIF]) json_dev("dev", rta_u32(tb[RTA_OIF]));
  /* Who made the route, as ip names it (it leaves out boot, the default of `ip route add`). */
  if (m->rtm_protocol != RTPROT_BOOT) {
    static const struct { unsigned char n; const char *s; } protos[] = {
      {RTPROT_UNSPEC, "unspec"}, {RTPROT_REDIRECT, "redirect"}, {RTPROT_KERNEL, "kernel"}, {RTPROT_STATIC, "static"},
      {RTPROT_RA, "ra"}, {RTPROT_ZEBRA, "zebra"}, {RTPROT_BIRD, "bird"}, {RTPROT_DHCP, "dhcp"}, {RTPROT_BGP, "bgp"}};
    const char *ps = NULL;
    for (size_t i = 0; i < sizeof protos / sizeof *protos; i++) if (protos[i].n == m->rtm_protocol) ps = protos[i].s;
    if (ps) sb_printf(&out, ",\"protocol\":\"%s\"", ps);
    else sb_printf(&out, ",\"protocol\":\"%u\"", m->rtm_protocol);
  }
  if (tb[RTA_PREFSRC] && RTA_PAYLOAD(tb[RTA_PREFSRC]) == len) { sb_puts(&out, ",\"prefsrc\":"); json_ip(f->family, RTA_DATA(tb[RTA_PREFSRC])); }
  if (table != RT_TABLE_MAIN) {
    if (table == RT_TABLE_LOCAL) sb_puts(&out, ",\"table\":\"local\"");
    else if (table == RT_TABLE_DEFAULT) sb_puts(&out, ",\"table\":\"default\"");
    else sb_printf(&out, ",\"table\":\"%u\"", table);
  }
  if (m->rtm_scope != RT_SCOPE_UNIVERSE) {
    const char *sc = scope_name(m->rtm_scope);
    if (sc) sb_printf(&out, ",\"scope\":\"%s\"", sc);
    else sb_printf(&out, ",\"scope\":\"%u\"", m->rtm_scope);
  }
  if (tb[RTA_MULTIPATH]) {
    sb_puts(&out, ",\"nexthops\":[");
    struct rtnexthop *nh = RTA_DATA(tb[RTA_MULTIPATH]);
    int left = (int)RTA_PAYLOAD(tb[RTA_MULTIPATH]), first = 1;
    while (left >= (int)sizeof *nh && nh->rtnh_len >= sizeof *nh && nh->rtnh_len <= left) {
      sb_puts(&out, first ? "{" : ",{");
      struct rtattr *nt[RTA_MAX + 1];
      attrs(RTNH_DATA(nh), nh->rtnh_len - (int)sizeof *nh, nt, RTA_MAX);
      int sep = 0;
      if (nt[RTA_GATEWAY] && RTA_PAYLOAD(nt[RTA_GATEWAY]) == len) { sb_puts(&out, "\"gateway\":"); json_ip(f->family, RTA_DATA(nt[RTA_GATEWAY])); sep = 1; }
      if (nh->rtnh_ifindex > 0) {
        char name[IF_NAMESIZE];
        if (!if_indextoname((unsigned)nh->rtnh_ifindex, name)) snprintf(name, sizeof name, "if%d", nh->rtnh_ifindex);
        sb_puts(&out, sep ? ",\"dev\":" : "\"dev\":");
        sb_json_str(&out, name);
      }
      sb_puts(&out, "}");
      first = 0;
      left -= RTNH_ALIGN(nh->rtnh_len);
      nh = RTNH_NEXT(nh);
    }
    sb_puts(&out, "]");
  }
  sb_puts(&out, "}");
}

/* tc filters of one hook, as pn's TcFilter list. */
struct tcf { unsigned pref, handle, id; int has_id, has_tag; char kind[16], name[17]; unsigned char tag[8]; };
struct tcfs { struct tcf *f; size_t n, cap; };

static void each_filter(struct nlmsghdr *h, void *ctx) {
  struct tcfs *s = ctx;
  if (h->nlmsg_type != RTM_NEWTFILTER || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct tcmsg))) return;
  struct tcmsg *t = NLMSG_DATA(h);
  struct rtattr *tb[TCA_MAX + 1];
  attrs(TCA_RTA(t), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *t), tb, TCA_MAX);
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 8;
    s->f = realloc(s->f, s->cap * sizeof *s->f);
    if (!s->f) abort();
  }
  struct tcf *f = &s->f[s->n++];
  memset(f, 0, sizeof *f);
  f->pref = TC_H_MAJ(t->tcm_info) >> 16;
  f->handle = t->tcm_handle;
  snprintf(f->kind, sizeof f->kind, "%s", rta_str(tb[TCA_KIND]));
  if (!strcmp(f->kind, "bpf") && tb[TCA_OPTIONS]) {
    struct rtattr *ob[TCA_BPF_MAX + 1];
    attrs(RTA_DATA(tb[TCA_OPTIONS]), (int)RTA_PAYLOAD(tb[TCA_OPTIONS]), ob, TCA_BPF_MAX);
    if (ob[TCA_BPF_ID]) { f->id = rta_u32(ob[TCA_BPF_ID]); f->has_id = 1; }
    if (ob[TCA_BPF_TAG] && RTA_PAYLOAD(ob[TCA_BPF_TAG]) == 8) { memcpy(f->tag, RTA_DATA(ob[TCA_BPF_TAG]), 8); f->has_tag = 1; }
  }
}

static uint32_t hook_parent(const struct op *o) { return TC_H_MAKE(TC_H_CLSACT, num(o, K_EGRESS) ? TC_H_MIN_EGRESS : TC_H_MIN_INGRESS); }

static void each_qdisc(struct nlmsghdr *h, void *ctx) {
  int *found = ctx;
  if (h->nlmsg_type != RTM_NEWQDISC || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct tcmsg))) return;
  struct tcmsg *t = NLMSG_DATA(h);
  struct rtattr *tb[TCA_MAX + 1];
  attrs(TCA_RTA(t), (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *t), tb, TCA_MAX);
  if (t->tcm_ifindex == found[0] && !strcmp(rta_str(tb[TCA_KIND]), "clsact")) found[1] = 1;
}

/* Whether the device has a clsact qdisc (1), has none (0), or the dump failed (-errno). */
static int has_clsact(int ifindex) {
  struct tcmsg t = {.tcm_family = AF_UNSPEC};
  int found[2] = {ifindex, 0};
  char keep[sizeof extack];
  memcpy(keep, extack, sizeof keep);
  int rc = nl_dump(RTM_GETQDISC, &t, sizeof t, each_qdisc, found);
  memcpy(extack, keep, sizeof keep);
  return rc < 0 ? rc : found[1];
}

static int tc_list(const struct op *o, int ifindex) {
  struct tcmsg t = {.tcm_family = AF_UNSPEC, .tcm_ifindex = ifindex, .tcm_parent = hook_parent(o)};
  struct tcfs s = {0};
  int rc = nl_dump(RTM_GETTFILTER, &t, sizeof t, each_filter, &s);
  /* No clsact qdisc: the hook has no filters (the kernel answers EINVAL or ENOENT). */
  if ((rc == -EINVAL || rc == -ENOENT) && has_clsact(ifindex) == 0) rc = 0, s.n = 0;
  if (!rc) {
    sb_puts(&out, "{\"filters\":[");
    int first = 1;
    for (size_t i = 0; i < s.n; i++) {
      struct tcf *f = &s.f[i];
      /* The kernel lists a filter chain's head (handle 0, no options) before its filters: it is
       * left out when the pref has a filter, kept when not (so a hook is never taken for empty). */
      if (f->handle == 0) {
        int shadowed = 0;
        for (size_t k = 0; k < s.n; k++) shadowed |= s.f[k].pref == f->pref && s.f[k].handle != 0;
        if (shadowed) continue;
      }
      sb_printf(&out, "%s{\"pref\":%u,\"kind\":", first ? "" : ",", f->pref);
      sb_json_str(&out, f->kind);
      if (f->handle) sb_printf(&out, ",\"handle\":%u", f->handle);
      if (f->has_id) {
        sb_printf(&out, ",\"prog\":{\"id\":%u", f->id);
        int fd = bpf_prog_get_fd_by_id(f->id);
        struct bpf_prog_info info;
        memset(&info, 0, sizeof info);
        uint32_t ilen = sizeof info;
        if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &ilen) == 0) {
          char name[sizeof info.name + 1];
          snprintf(name, sizeof name, "%.*s", (int)sizeof info.name, info.name);
          sb_puts(&out, ",\"name\":");
          sb_json_str(&out, name);
        }
        if (fd >= 0) close(fd);
        if (f->has_tag) sb_printf(&out, ",\"tag\":\"%02x%02x%02x%02x%02x%02x%02x%02x\"", f->tag[0], f->tag[1], f->tag[2], f->tag[3], f->tag[4], f->tag[5], f->tag[6], f->tag[7]);
        sb_puts(&out, "}");
      }
      sb_puts(&out, "}");
      first = 0;
    }
    sb_puts(&out, "]}");
  }
  free(s.f);
  return rc;
}

/* ── ops ─────────────────────────────────────────────────────────────────────────────────── */
/* A device by name in the current netns: its ifindex, or 0 (then the op fails with ENODEV). */
static int ifindex_of(const char *dev) { return (int)if_nametoindex(dev); }

static int do_link_add(const struct op *o) {
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlreq r;
  req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr_str(&r, IFLA_IFNAME, str(o, K_NAME));
  if (str(o, K_MAC)) attr(&r, IFLA_ADDRESS, o->mac, 6);
  if (o->set & B(K_MTU)) attr_u32(&r, IFLA_MTU, (uint32_t)num(o, K_MTU));
  if (o->set & B(K_TXQLEN)) attr_u32(&r, IFLA_TXQLEN, (uint32_t)num(o, K_TXQLEN));
  struct rtattr *li = nest(&r, IFLA_LINKINFO);
  if (o->set & B(K_VXLAN_PORT)) {
    /* What `ip link add … type vxlan external dstport N nolearning` sends: collect metadata (the
     * tunnel key comes per packet from BPF), the UDP port in network order, no FDB learning. */
    attr_str(&r, IFLA_INFO_KIND, "vxlan");
    struct rtattr *vx = nest(&r, IFLA_INFO_DATA);
    uint8_t on = 1, off = 0;
    uint16_t port = htons((uint16_t)num(o, K_VXLAN_PORT));
    attr(&r, IFLA_VXLAN_COLLECT_METADATA, &on, 1);
    attr(&r, IFLA_VXLAN_PORT, &port, 2);
    attr(&r, IFLA_VXLAN_LEARNING, &off, 1);
    nest_end(&r, vx);
    nest_end(&r, li);
    return -nl_do(&r);
  }
  attr_str(&r, IFLA_INFO_KIND, "veth");
  struct rtattr *data = nest(&r, IFLA_INFO_DATA);
  struct rtattr *peer = nest(&r, VETH_INFO_PEER);
  struct ifinfomsg pifi = {.ifi_family = AF_UNSPEC};
  size_t off = NLMSG_ALIGN(r.n.nlmsg_len);
  memcpy((char *)&r.n + off, &pifi, sizeof pifi);
  r.n.nlmsg_len = (uint32_t)(off + NLMSG_ALIGN(sizeof pifi));
  attr_str(&r, IFLA_IFNAME, str(o, K_PEER));
  if (str(o, K_PEER_MAC)) attr(&r, IFLA_ADDRESS, o->pmac, 6);
  if (o->set & B(K_PEER_MTU)) attr_u32(&r, IFLA_MTU, (uint32_t)num(o, K_PEER_MTU));
  int nsfd = -1;
  if (str(o, K_PEER_NETNS)) {
    nsfd = open(str(o, K_PEER_NETNS), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      snprintf(reason, sizeof reason, "cannot open the peer's netns %.500s: %s", str(o, K_PEER_NETNS), strerror(errno));
      return -1;
    }
    attr_u32(&r, IFLA_NET_NS_FD, (uint32_t)nsfd);
  }
  nest_end(&r, peer);
  nest_end(&r, data);
  nest_end(&r, li);
  int rc = nl_do(&r);
  if (nsfd >= 0) close(nsfd);
  return -rc;
}

/* /proc/sys path of a sysctl key (checked in check_op): '.' separates levels, '/' is a '.' in a name. */
static int do_sysctl(const struct op *o) {
  char path[300] = "/proc/sys/";
  size_t n = strlen(path);
  for (const char *c = str(o, K_KEY); *c && n + 1 < sizeof path; c++) path[n++] = *c == '.' ? '/' : *c == '/' ? '.' : *c;
  path[n] = 0;
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4097];
  int len = snprintf(buf, sizeof buf, "%s\n", str(o, K_VALUE));
  ssize_t w = write(fd, buf, (size_t)len);
  int e = w < 0 ? errno : w != len ? EIO : 0;
  close(fd);
  return e;
}

/* The filter header of a tc.attach / tc.detach. */
static void filter_msg(struct nlreq *r, const struct op *o, int idx, uint16_t type, uint16_t flags) {
  struct tcmsg t = {
    .tcm_family = AF_UNSPEC, .tcm_ifindex = idx, .tcm_handle = (uint32_t)num(o, K_HANDLE), .tcm_parent = hook_parent(o),
    .tcm_info = TC_H_MAKE((uint32_t)num(o, K_PREF) << 16, htons(ETH_P_ALL)),
  };
  req_init(r, type, flags, &t, sizeof t);
  attr_str(r, TCA_KIND, "bpf");
}

/*
 * Apply one op and write its result. 0; a positive errno (the kernel's or a syscall's, with the
 * kernel's extended ack in `extack`); or -1 with `reason` set.
 */
static int apply_op(const struct op *o) {
  struct nlreq r;
  int idx = 0, rc;
  const char *dev = str(o, K_DEV) ? str(o, K_DEV) : o->kind == LINK_SET || o->kind == LINK_DEL || o->kind == LINK_GET ? str(o, K_NAME) : NULL;
  if (dev && o->kind != LINK_DEL && o->kind != LINK_GET) {
    idx = ifindex_of(dev);
    if (!idx) {
      /* Absent device: an empty answer for the queries, deleted:false for a delete that allows it. */
      if (o->kind == ADDR_LIST) { sb_puts(&out, "{\"links\":[]}"); return 0; }
      if (o->kind == TC_LIST) { sb_puts(&out, "{\"filters\":[]}"); return 0; }
      if ((o->kind == QDISC_DEL || o->kind == TC_DETACH) && num(o, K_MISSING_OK)) { sb_puts(&out, "{\"deleted\":false}"); return 0; }
      return ENODEV;
    }
  }
  switch (o->kind) {
  case LINK_ADD:
    rc = do_link_add(o);
    break;
  case LINK_SET: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = idx};
    if (o->set & B(K_UP)) { ifi.ifi_change = IFF_UP; ifi.ifi_flags = num(o, K_UP) ? IFF_UP : 0; }
    req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    if (o->set & B(K_MTU)) attr_u32(&r, IFLA_MTU, (uint32_t)num(o, K_MTU));
    rc = -nl_do(&r);
    break;
  }
  case LINK_DEL: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_DELLINK, 0, &ifi, sizeof ifi);
    attr_str(&r, IFLA_IFNAME, dev);
    rc = -nl_do(&r);
    if (rc == ENODEV && num(o, K_MISSING_OK)) { sb_puts(&out, "{\"deleted\":false}"); return 0; }
    if (!rc) { sb_puts(&out, "{\"deleted\":true}"); return 0; }
    return rc;
  }
  case LINK_GET: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    req_init(&r, RTM_GETLINK, 0, &ifi, sizeof ifi);
    attr_str(&r, IFLA_IFNAME, dev);
    attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
    size_t mark = out.n;
    struct listing l = {0};
    sb_puts(&out, "{\"link\":");
    rc = -nl_call(&r, each_link, &l);
    if (rc == ENODEV || (!rc && !l.count)) { out.n = mark; sb_puts(&out, "{}"); return 0; }
    if (rc) return rc;
    sb_puts(&out, "}");
    return 0;
  }
  case LINK_LIST: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
    struct listing l = {0};
    sb_puts(&out, "{\"links\":[");
    rc = -nl_dump(RTM_GETLINK, &ifi, sizeof ifi, each_link, &l);
    if (!rc) sb_puts(&out, "]}");
    return rc;
  }
  case ADDR_ADD:
  case ADDR_DEL: {
    struct ifaddrmsg ifa = {.ifa_family = (unsigned char)o->ip.family, .ifa_prefixlen = (unsigned char)o->plen, .ifa_index = (unsigned)idx};
    if (num(o, K_NODAD)) ifa.ifa_flags = IFA_F_NODAD;
    /* ip's default scope: host for 127.0.0.0/8, global otherwise. */
    if (num(o, K_SCOPE_LINK)) ifa.ifa_scope = RT_SCOPE_LINK;
    else if (o->ip.family == AF_INET && o->ip.a[0] == 127) ifa.ifa_scope = RT_SCOPE_HOST;
    uint16_t flags = o->kind == ADDR_DEL ? 0 : NLM_F_CREATE | (num(o, K_REPLACE) ? NLM_F_REPLACE : NLM_F_EXCL);
    req_init(&r, o->kind == ADDR_DEL ? RTM_DELADDR : RTM_NEWADDR, flags, &ifa, sizeof ifa);
    attr(&r, IFA_LOCAL, o->ip.a, (size_t)o->ip.len);
    attr(&r, IFA_ADDRESS, o->ip.a, (size_t)o->ip.len);
    rc = -nl_do(&r);
    break;
  }
  case ADDR_LIST:
    return -addr_list(idx);
  case ROUTE_ADD:
  case ROUTE_DEL: {
    struct rtmsg rt = {.rtm_family = (unsigned char)o->ip.family, .rtm_dst_len = (unsigned char)o->plen, .rtm_table = RT_TABLE_MAIN, .rtm_scope = RT_SCOPE_NOWHERE};
    if (o->kind == ROUTE_ADD) {
      /* As ip does: a route without a gateway reaches its destination on the link (scope link).
       * Its protocol: boot (ip's default) unless the op names one (pn's cluster routes). */
      rt.rtm_protocol = o->set & B(K_PROTO) ? (unsigned char)num(o, K_PROTO) : RTPROT_BOOT;
      rt.rtm_type = RTN_UNICAST;
      rt.rtm_scope = num(o, K_SCOPE_LINK) || !str(o, K_VIA) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    }
    uint16_t flags = o->kind == ROUTE_DEL ? 0 : NLM_F_CREATE | (num(o, K_REPLACE) ? NLM_F_REPLACE : NLM_F_EXCL);
    req_init(&r, o->kind == ROUTE_DEL ? RTM_DELROUTE : RTM_NEWROUTE, flags, &rt, sizeof rt);
    if (o->plen) attr(&r, RTA_DST, o->ip.a, (size_t)o->ip.len);
    if (str(o, K_VIA)) attr(&r, RTA_GATEWAY, o->via.a, (size_t)o->via.len);
    if (str(o, K_SRC)) attr(&r, RTA_PREFSRC, o->src.a, (size_t)o->src.len);
    attr_u32(&r, RTA_OIF, (uint32_t)idx);
    if (o->set & B(K_MTU)) {
      struct rtattr *m = nest(&r, RTA_METRICS);
      attr_u32(&r, RTAX_MTU, (uint32_t)num(o, K_MTU));
      nest_end(&r, m);
    }
    rc = -nl_do(&r);
    if (rc == ESRCH && o->kind == ROUTE_DEL && num(o, K_MISSING_OK)) rc = 0;
    break;
  }
  case ROUTE_LIST: {
    struct rtmsg rt = {.rtm_family = num(o, K_FAMILY) == 4 ? AF_INET : AF_INET6};
    struct rfilter f = {.family = rt.rtm_family, .all = (int)num(o, K_TABLE_ALL), .exact = !!str(o, K_EXACT), .plen = o->exact_plen};
    memcpy(f.dst, o->exact.a, 16);
    sb_puts(&out, "{\"routes\":[");
    rc = -nl_dump(RTM_GETROUTE, &rt, sizeof rt, each_route, &f);
    if (!rc) sb_puts(&out, "]}");
    return rc;
  }
  case NEIGH_ADD: {
    /* ip's default state for an added entry: permanent. */
    struct ndmsg nd = {.ndm_family = (unsigned char)o->ip.family, .ndm_ifindex = idx, .ndm_state = NUD_PERMANENT};
    if (num(o, K_PROXY)) nd.ndm_flags = NTF_PROXY;
    req_init(&r, RTM_NEWNEIGH, NLM_F_CREATE | (num(o, K_REPLACE) ? NLM_F_REPLACE : NLM_F_EXCL), &nd, sizeof nd);
    attr(&r, NDA_DST, o->ip.a, (size_t)o->ip.len);
    if (str(o, K_LLADDR)) attr(&r, NDA_LLADDR, o->mac, 6);
    rc = -nl_do(&r);
    break;
  }
  case SYSCTL_SET:
    rc = do_sysctl(o);
    break;
  case QDISC_ADD:
  case QDISC_DEL: {
    struct tcmsg t = {.tcm_family = AF_UNSPEC, .tcm_ifindex = idx, .tcm_handle = TC_H_MAKE(TC_H_CLSACT, 0), .tcm_parent = TC_H_CLSACT};
    req_init(&r, o->kind == QDISC_ADD ? RTM_NEWQDISC : RTM_DELQDISC, o->kind == QDISC_ADD ? NLM_F_CREATE | NLM_F_EXCL : 0, &t, sizeof t);
    attr_str(&r, TCA_KIND, "clsact");
    rc = -nl_do(&r);
    if (o->kind == QDISC_ADD) break;
    /* No clsact to delete: the kernel answers ENOENT or EINVAL (the device's default qdisc has another handle). */
    if ((rc == ENOENT || rc == EINVAL) && num(o, K_MISSING_OK) && has_clsact(idx) == 0) { sb_puts(&out, "{\"deleted\":false}"); return 0; }
    if (!rc) sb_puts(&out, "{\"deleted\":true}");
    return rc;
  }
  case TC_ATTACH: {
    int fd = bpf_obj_get(str(o, K_PINNED));
    if (fd < 0) {
      snprintf(reason, sizeof reason, "cannot open the pinned program %.500s: %s", str(o, K_PINNED), strerror(errno));
      return -1;
    }
    filter_msg(&r, o, idx, RTM_NEWTFILTER, NLM_F_CREATE | NLM_F_REPLACE);
    struct rtattr *opts = nest(&r, TCA_OPTIONS);
    attr_u32(&r, TCA_BPF_FD, (uint32_t)fd);
    /* The label tc gives a filter attached from a pin: "<file name>:[*fsobj]". */
    const char *base = strrchr(str(o, K_PINNED), '/');
    char label[300];
    snprintf(label, sizeof label, "%.255s:[*fsobj]", base ? base + 1 : str(o, K_PINNED));
    attr_str(&r, TCA_BPF_NAME, label);
    attr_u32(&r, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
    nest_end(&r, opts);
    rc = -nl_do(&r);
    close(fd);
    break;
  }
  case TC_DETACH:
    filter_msg(&r, o, idx, RTM_DELTFILTER, 0);
    rc = -nl_do(&r);
    /* Absent filter (ENOENT), or no clsact qdisc to hold it (EINVAL: "Parent Qdisc doesn't exists"). */
    if (num(o, K_MISSING_OK) && (rc == ENOENT || (rc == EINVAL && has_clsact(idx) == 0))) { sb_puts(&out, "{\"deleted\":false}"); return 0; }
    if (!rc) sb_puts(&out, "{\"deleted\":true}");
    return rc;
  case TC_LIST:
    return -tc_list(o, idx);
  default:
    return EINVAL;
  }
  if (!rc) sb_puts(&out, "{}");
  return rc;
}

/* Apply a batch in order, stopping at the first failure; the answer body goes to `out`. */
static void apply_batch(const struct batch *b) {
  sb_puts(&out, "{\"results\":[");
  for (size_t i = 0; i < b->n; i++) {
    size_t mark = out.n;
    if (i) sb_puts(&out, ",");
    extack[0] = reason[0] = 0;
    int rc = apply_op(&b->ops[i]);
    if (!rc && out.over) rc = E2BIG, snprintf(reason, sizeof reason, "the answer would pass its limit of %lu bytes", MAX_ANSWER_BYTES);
    if (!rc) continue;
    out.n = mark;
    out.over = 0;
    sb_printf(&out, "],\"error\":{\"index\":%zu", i);
    if (rc > 0) sb_printf(&out, ",\"errno\":%d", rc);
    if (extack[0]) { sb_puts(&out, ",\"extack\":"); sb_json_str(&out, extack); }
    if (reason[0]) { sb_puts(&out, ",\"reason\":"); sb_json_str(&out, reason); }
    sb_puts(&out, "}}");
    return;
  }
  sb_puts(&out, "]}");
}

/* ── framing ─────────────────────────────────────────────────────────────────────────────── */
struct request {
  unsigned long id, nslen, nops, bodylen;
  char ns[MAX_NETNS_BYTES + 1];
  char *body;
};

/* "<id> <netns length> <op count> <body length>" (without its newline), checked against the limits. */
static int parse_header(const char *hdr, struct request *r, const char **why) {
  unsigned long *f[4] = {&r->id, &r->nslen, &r->nops, &r->bodylen};
  const unsigned long max[4] = {ULONG_MAX / 2, MAX_NETNS_BYTES, MAX_OPS, MAX_BODY_BYTES};
  const char *p = hdr;
  for (int i = 0; i < 4; i++) {
    if (i && *p++ != ' ') { *why = "bad request header"; return -1; }
    if (parse_dec(&p, max[i], f[i]) < 0) { *why = "bad request header (a number is missing, malformed or over its limit)"; return -1; }
  }
  if (*p) { *why = "bad request header (trailing bytes)"; return -1; }
  if (r->nops == 0 || r->bodylen < r->nops * 2) { *why = "bad request header (op count)"; return -1; }
  return 0;
}

/* Buffered input (stdin; the fuzz harness points in_fd elsewhere): requests arrive in pieces or several at once. */
static int in_fd = 0;
static char ibuf[65536];
static size_t ipos, ilen;

/* 1: all n bytes read; 0: EOF (or a read error) first. */
static int read_full(void *buf, size_t n) {
  char *dst = buf;
  while (n > 0) {
    if (ipos == ilen) {
      ssize_t r = read(in_fd, ibuf, sizeof ibuf);
      if (r == 0) return 0;
      if (r < 0) { if (errno == EINTR) continue; return 0; }
      ipos = 0;
      ilen = (size_t)r;
    }
    size_t take = ilen - ipos < n ? ilen - ipos : n;
    memcpy(dst, ibuf + ipos, take);
    ipos += take;
    dst += take;
    n -= take;
  }
  return 1;
}

static void request_free(struct request *r) {
  free(r->body);
  r->body = NULL;
}

/* One request: 1 = read (free it with request_free), 0 = EOF, -1 = malformed (*why says how). */
static int read_request(struct request *r, const char **why) {
  char hdr[MAX_HEADER];
  size_t n = 0;
  r->body = NULL;
  for (;; n++) {
    if (n == sizeof hdr - 1) { *why = "bad request header (too long)"; return -1; }
    if (!read_full(hdr + n, 1)) return 0;
    if (hdr[n] == '\n') break;
  }
  hdr[n] = 0;
  if (parse_header(hdr, r, why) < 0) return -1;
  r->body = malloc(r->bodylen + 1);
  if (!r->body) abort();
  if (!read_full(r->ns, r->nslen) || !read_full(r->body, r->bodylen)) { request_free(r); return 0; }
  r->ns[r->nslen] = 0;
  r->body[r->bodylen] = 0;
  if (memchr(r->ns, 0, r->nslen)) { *why = "bad netns path (a NUL)"; request_free(r); return -1; }
  return 1;
}

static void write_full(const void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(1, (const char *)buf + done, n - done);
    if (w < 0) { if (errno == EINTR) continue; exit(0); }
    done += (size_t)w;
  }
}

/* Answer one request: parse every op, then (in its netns) apply them. `self`: this process's own netns. */
static void serve(struct request *r, int self) {
  out.n = 0;
  out.over = 0;
  struct batch b;
  char why[256];
  int code = parse_body(r->body, r->bodylen, r->nops, &b, why, sizeof why), entered = 0;
  if (code == ANSWER_REFUSED) sb_add(&out, why, strlen(why));
  else {
    int nsfd = r->nslen ? open(r->ns, O_RDONLY | O_CLOEXEC) : -1;
    if (r->nslen && (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0)) {
      snprintf(reason, sizeof reason, "cannot enter the netns %.500s: %s", r->ns, strerror(errno));
      sb_puts(&out, "{\"results\":[],\"error\":{\"index\":0,\"reason\":");
      sb_json_str(&out, reason);
      sb_puts(&out, "}}");
    } else {
      entered = r->nslen > 0;
      nlfd = nl_open();
      if (nlfd < 0) {
        snprintf(reason, sizeof reason, "cannot open a netlink socket: %s", strerror(-nlfd));
        sb_printf(&out, "{\"results\":[],\"error\":{\"index\":0,\"errno\":%d,\"reason\":", -nlfd);
        sb_json_str(&out, reason);
        sb_puts(&out, "}}");
      } else {
        apply_batch(&b);
        close(nlfd);
        nlfd = -1;
      }
    }
    if (nsfd >= 0) close(nsfd);
  }
  if (entered && setns(self, CLONE_NEWNET) < 0) { perror("pn-netlink: setns back"); exit(1); }
  batch_free(&b);
  char head[128];
  int hl = snprintf(head, sizeof head, "%lu %d %zu\n", r->id, code, out.n);
  write_full(head, (size_t)hl);
  if (out.n) write_full(out.p, out.n);
}

#ifndef PN_FUZZ_HARNESS
int main(void) {
  signal(SIGPIPE, SIG_IGN);
  int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (self < 0) { perror("pn-netlink: open /proc/self/ns/net"); return 1; }
  for (;;) {
    struct request r;
    const char *why = NULL;
    int got = read_request(&r, &why);
    if (got == 0) return 0;
    if (got < 0) { fprintf(stderr, "pn-netlink: %s\n", why); return 1; }
    serve(&r, self);
    request_free(&r);
  }
}
#endif
