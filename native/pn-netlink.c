/*
 * pn-netlink: the node agent's kernel worker. It does, in one long-lived process, the few
 * `ip`, `tc` and `bpftool` command lines a CNI ADD and DEL run — with rtnetlink and the bpf(2)
 * syscall instead of a process start per command (about 10–20 ms each here, most of an agent
 * ADD). The agent's runner (src/exec/netlink-worker.ts) sends it the argv it would have spawned;
 * the answer is the exit code, stdout and stderr that tool would have printed, for the parts pn
 * reads. A command line outside the small grammar below is answered "unsupported" before
 * anything is done, and the agent spawns the real tool: nothing depends on this file knowing
 * every option of iproute2.
 *
 * Protocol on stdin/stdout, one request at a time:
 *   request: "<id> <argc> <argv length> <netns length> <input length>\n" <netns path> <argv, each ending in NUL> <input>
 *   answer:  "<id> <code> <stdout length> <stderr length>\n" <stdout> <stderr>
 * Numbers are plain decimal (no sign, no spaces but the single separators). code -1 = unsupported
 * and code -2 = refused (over a limit; stderr says which): for both, nothing was done. A request
 * with a netns path runs inside that netns (as `nsenter --net`). EOF on stdin ends the process.
 * Limits, checked on both sides (src/exec/netlink-worker.ts holds the same numbers): a header
 * line of at most 127 bytes; argc 1..256; argv at most 1 MiB; netns path at most 4095 bytes;
 * input at most 16 MiB; a batch of at most 65536 lines (more: refused). An answer's stdout and
 * stderr stay under 64 MiB each: input is at most 16 MiB and a line's JSON echo at most twice
 * its length plus a fixed part. A malformed header or argv is a broken caller: the worker says
 * why on stderr and exits 1 (the agent fails that request and starts a new worker).
 *
 * Grammar (whitespace-separated words; `ip -batch -` / `tc -batch -` / `bpftool [-j] batch file -`
 * take several such lines as input, stop at the first failing one and say which, as the tools do):
 *   ip -j -d link show dev NAME
 *   ip: link add name N [address MAC] [mtu N] [txqueuelen N] type veth [peer name N [address MAC] [mtu N] [netns PATH|NAME]]
 *       link set [dev] N up|down        link del|delete [dev] N
 *       addr add IP/LEN dev N [nodad]
 *       route add|replace DST|default [via IP] dev N [scope link] [mtu N]
 *       neigh add proxy IP dev N        neigh add|replace IP lladdr MAC dev N nud permanent
 *   tc:  qdisc add|del dev N clsact
 *       filter replace|add dev N ingress|egress pref N handle N bpf da|direct-action object-pinned PATH
 *       filter del dev N ingress|egress pref N handle N bpf
 *   bpftool: map update pinned PATH key hex B.. value hex B..     map delete pinned PATH key hex B..
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
#define MAX_ARGC 256
#define MAX_ARGV_BYTES (1ul << 20)
#define MAX_NETNS_BYTES 4095
#define MAX_INPUT_BYTES (16ul << 20)
#define MAX_LINES 65536
#define MAX_KEY 512
#define MAX_VALUE 4096
#define ANSWER_UNSUPPORTED -1
#define ANSWER_REFUSED -2

/* ── growable output buffers ─────────────────────────────────────────────────────────────── */
struct sb { char *p; size_t n, cap; };
static struct sb out, err;

static void sb_add(struct sb *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

static void sb_printf(struct sb *b, const char *fmt, ...) {
  char tmp[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_json_str(struct sb *b, const char *s) {
  sb_add(b, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { sb_add(b, "\\", 1); sb_add(b, (const char *)&c, 1); }
    else if (c < 0x20) sb_printf(b, "\\u%04x", c);
    else sb_add(b, (const char *)&c, 1);
  }
  sb_add(b, "\"", 1);
}

/* ── rtnetlink ───────────────────────────────────────────────────────────────────────────── */
struct nlreq { struct nlmsghdr n; char buf[8192]; };
static int nlfd = -1;
static uint32_t seq;
static char extack[256];

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
  if (off + RTA_SPACE(len) > sizeof *r) abort();
  struct rtattr *a = (struct rtattr *)((char *)&r->n + off);
  a->rta_type = type;
  a->rta_len = RTA_LENGTH(len);
  if (len) memcpy(RTA_DATA(a), data, len);
  r->n.nlmsg_len = off + RTA_ALIGN(a->rta_len);
  return a;
}

static void attr_u32(struct nlreq *r, uint16_t type, uint32_t v) { attr(r, type, &v, 4); }
static void attr_str(struct nlreq *r, uint16_t type, const char *s) { attr(r, type, s, strlen(s) + 1); }
static struct rtattr *nest(struct nlreq *r, uint16_t type) { return attr(r, type, NULL, 0); }
static void nest_end(struct nlreq *r, struct rtattr *a) { a->rta_len = (unsigned short)((char *)&r->n + r->n.nlmsg_len - (char *)a); }

/*
 * Send one request and wait for its ack; `reply` (if given) receives the first data message.
 * Returns 0 or -errno; the kernel's extended-ack text, if any, is left in `extack`.
 */
static int nl_talk(struct nlreq *r, char *reply, size_t replen) {
  extack[0] = 0;
  r->n.nlmsg_seq = ++seq;
  if (send(nlfd, &r->n, r->n.nlmsg_len, 0) < 0) return -errno;
  static char buf[32768];
  for (;;) {
    ssize_t len = recv(nlfd, buf, sizeof buf, 0);
    if (len < 0) { if (errno == EINTR) continue; return -errno; }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_seq != seq) continue;
      if (h->nlmsg_type == NLMSG_ERROR) {
        struct nlmsgerr *e = NLMSG_DATA(h);
        if (e->error && (h->nlmsg_flags & NLM_F_ACK_TLVS)) {
          size_t off = sizeof *e; // NETLINK_CAP_ACK: the request is not echoed back
          struct rtattr *a = (struct rtattr *)((char *)e + NLMSG_ALIGN(off));
          int alen = (int)h->nlmsg_len - NLMSG_HDRLEN - (int)NLMSG_ALIGN(off);
          for (; RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
            if (a->rta_type == NLMSGERR_ATTR_MSG) snprintf(extack, sizeof extack, "%s", (char *)RTA_DATA(a));
          }
        }
        return e->error;
      }
      if (reply && h->nlmsg_len <= replen) { memcpy(reply, h, h->nlmsg_len); reply = NULL; }
    }
  }
}

/* iproute2's way of reporting a failed request: the kernel's own message if it gave one. */
static void rtnl_error(int rc) {
  if (extack[0]) sb_printf(&err, "Error: %s%s\n", extack, extack[strlen(extack) - 1] == '.' ? "" : ".");
  else sb_printf(&err, "RTNETLINK answers: %s\n", strerror(-rc));
}

/* ── parsing helpers ─────────────────────────────────────────────────────────────────────── */
#define MAXW 96
struct words { int n; char *w[MAXW]; };

/* A line's words. A control character other than the separators makes the line unsupported:
 * no name or path pn passes has one, and it keeps the JSON echo of a line (bpftool -j) within
 * twice the line's length, which bounds an answer (see the limits above). */
static int split(char *line, struct words *ws) {
  ws->n = 0;
  for (char *t = strtok(line, " \t\r"); t; t = strtok(NULL, " \t\r")) {
    if (ws->n == MAXW) return -1;
    for (const char *c = t; *c; c++)
      if ((unsigned char)*c < 0x20 || *c == 0x7f) return -1;
    ws->w[ws->n++] = t;
  }
  return 0;
}

static int parse_mac(const char *s, unsigned char mac[6]) {
  unsigned v[6];
  char tail;
  if (sscanf(s, "%x:%x:%x:%x:%x:%x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return -1;
  for (int i = 0; i < 6; i++) { if (v[i] > 255) return -1; mac[i] = (unsigned char)v[i]; }
  return 0;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *v) {
  char *end;
  errno = 0;
  unsigned long x = strtoul(s, &end, 10);
  if (errno || end == s || *end || x > max) return -1;
  *v = x;
  return 0;
}

struct ipaddr { int family; int len; unsigned char a[16]; };

/* "1.2.3.4", "fd00::1"; with `plen` also "1.2.3.4/32" (no slash: a host prefix). */
static int parse_ip(const char *s, struct ipaddr *ip, int *plen) {
  char tmp[64];
  if (strlen(s) >= sizeof tmp) return -1; /* cut short, "…/00…032" could read as another prefix */
  memcpy(tmp, s, strlen(s) + 1);
  char *slash = strchr(tmp, '/');
  if (slash && !plen) return -1;
  if (slash) *slash = 0;
  if (inet_pton(AF_INET, tmp, ip->a) == 1) { ip->family = AF_INET; ip->len = 4; }
  else if (inet_pton(AF_INET6, tmp, ip->a) == 1) { ip->family = AF_INET6; ip->len = 16; }
  else return -1;
  if (plen) {
    unsigned long p = (unsigned long)ip->len * 8;
    if (slash && parse_uint(slash + 1, (unsigned long)ip->len * 8, &p) < 0) return -1;
    *plen = (int)p;
  }
  return 0;
}

/* ── ip ──────────────────────────────────────────────────────────────────────────────────── */
enum op {
  LINK_ADD_VETH, LINK_SET, LINK_DEL, ADDR_ADD, ROUTE, NEIGH_PROXY, NEIGH_LLADDR,
  QDISC_CLSACT, FILTER_SET, FILTER_DEL, MAP_UPDATE, MAP_DELETE,
};

struct line {
  enum op op;
  int replace, up;
  const char *dev, *name, *peer, *netns, *path;
  int has_mac, has_pmac;
  unsigned char mac[6], pmac[6];
  unsigned long mtu, pmtu, txqlen, pref, handle;
  int has_mtu, has_pmtu, has_txqlen;
  struct ipaddr ip, via;
  int plen, has_via, scope_link, nodad, egress, add;
  unsigned char *key, *value; /* malloc'd, keylen/valuelen bytes (at most MAX_KEY/MAX_VALUE) */
  int keylen, valuelen;
  char **words; /* the line's words (bpftool -j echoes them), malloc'd; they point into the request */
  int nwords, lineno;
};

static int parse_link_add(struct words *ws, struct line *l) {
  int i = 2, peer = 0;
  l->op = LINK_ADD_VETH;
  for (; i < ws->n; i++) {
    const char *k = ws->w[i], *v = i + 1 < ws->n ? ws->w[i + 1] : NULL;
    if (!strcmp(k, "type")) {
      if (!v || strcmp(v, "veth")) return -1;
      i++;
      if (i + 1 < ws->n) {
        if (strcmp(ws->w[i + 1], "peer")) return -1;
        peer = 1;
        i++;
      }
      continue;
    }
    if (!v) return -1;
    if (!strcmp(k, "name")) { if (peer) l->peer = v; else l->name = v; }
    else if (!strcmp(k, "address")) { if (parse_mac(v, peer ? l->pmac : l->mac) < 0) return -1; if (peer) l->has_pmac = 1; else l->has_mac = 1; }
    else if (!strcmp(k, "mtu")) { if (parse_uint(v, 65535, peer ? &l->pmtu : &l->mtu) < 0) return -1; if (peer) l->has_pmtu = 1; else l->has_mtu = 1; }
    else if (!strcmp(k, "txqueuelen") && !peer) { if (parse_uint(v, 0xffffffff, &l->txqlen) < 0) return -1; l->has_txqlen = 1; }
    else if (!strcmp(k, "netns") && peer) l->netns = v;
    else return -1;
    i++;
  }
  if (!l->name || strlen(l->name) >= IFNAMSIZ || (l->peer && strlen(l->peer) >= IFNAMSIZ)) return -1;
  if (l->netns && !l->peer) return -1;
  return 0;
}

/* "dev N" at words[i]: the device; returns the next index or -1. */
static int want_dev(struct words *ws, int i, struct line *l) {
  if (i + 1 >= ws->n || strcmp(ws->w[i], "dev")) return -1;
  l->dev = ws->w[i + 1];
  return strlen(l->dev) < IFNAMSIZ ? i + 2 : -1;
}

static int parse_ip_line(struct words *ws, struct line *l) {
  if (ws->n < 3) return -1;
  const char *obj = ws->w[0], *cmd = ws->w[1];
  if (!strcmp(obj, "link")) {
    if (!strcmp(cmd, "add")) return parse_link_add(ws, l);
    if (!strcmp(cmd, "set") || !strcmp(cmd, "del") || !strcmp(cmd, "delete")) {
      int i = 2;
      if (!strcmp(ws->w[i], "dev")) i++;
      if (i >= ws->n || strlen(ws->w[i]) >= IFNAMSIZ) return -1;
      l->dev = ws->w[i++];
      if (!strcmp(cmd, "set")) {
        if (i + 1 != ws->n) return -1;
        l->op = LINK_SET;
        if (!strcmp(ws->w[i], "up")) l->up = 1;
        else if (strcmp(ws->w[i], "down")) return -1;
        return 0;
      }
      l->op = LINK_DEL;
      return i == ws->n ? 0 : -1;
    }
    return -1;
  }
  if (!strcmp(obj, "addr") || !strcmp(obj, "address")) {
    if (strcmp(cmd, "add") || parse_ip(ws->w[2], &l->ip, &l->plen) < 0) return -1;
    l->op = ADDR_ADD;
    int i = want_dev(ws, 3, l);
    if (i < 0) return -1;
    if (i < ws->n && !strcmp(ws->w[i], "nodad")) { l->nodad = 1; i++; }
    return i == ws->n ? 0 : -1;
  }
  if (!strcmp(obj, "route")) {
    if (!strcmp(cmd, "replace")) l->replace = 1;
    else if (strcmp(cmd, "add")) return -1;
    l->op = ROUTE;
    const char *dst = ws->w[2];
    int i;
    for (i = 3; i < ws->n; i += 2) {
      const char *k = ws->w[i], *v = i + 1 < ws->n ? ws->w[i + 1] : NULL;
      if (!v) return -1;
      if (!strcmp(k, "via")) { if (parse_ip(v, &l->via, NULL) < 0) return -1; l->has_via = 1; }
      else if (!strcmp(k, "dev")) { l->dev = v; if (strlen(v) >= IFNAMSIZ) return -1; }
      else if (!strcmp(k, "scope")) { if (strcmp(v, "link")) return -1; l->scope_link = 1; }
      else if (!strcmp(k, "mtu")) { if (parse_uint(v, 0xffffffff, &l->mtu) < 0) return -1; l->has_mtu = 1; }
      else return -1;
    }
    if (!l->dev) return -1;
    if (!strcmp(dst, "default")) {
      memset(&l->ip, 0, sizeof l->ip);
      l->ip.family = l->has_via ? l->via.family : AF_INET;
      l->ip.len = l->ip.family == AF_INET ? 4 : 16;
      l->plen = 0;
    } else if (parse_ip(dst, &l->ip, &l->plen) < 0) return -1;
    if (l->has_via && l->via.family != l->ip.family) return -1;
    return 0;
  }
  if (!strcmp(obj, "neigh") || !strcmp(obj, "neighbor")) {
    if (!strcmp(cmd, "replace")) l->replace = 1;
    else if (strcmp(cmd, "add")) return -1;
    if (!strcmp(ws->w[2], "proxy")) {
      if (l->replace || ws->n != 6 || parse_ip(ws->w[3], &l->ip, NULL) < 0 || want_dev(ws, 4, l) != 6) return -1;
      l->op = NEIGH_PROXY;
      return 0;
    }
    if (ws->n != 9 || parse_ip(ws->w[2], &l->ip, NULL) < 0 || strcmp(ws->w[3], "lladdr") || parse_mac(ws->w[4], l->mac) < 0) return -1;
    if (want_dev(ws, 5, l) != 7 || strcmp(ws->w[7], "nud") || strcmp(ws->w[8], "permanent")) return -1;
    l->op = NEIGH_LLADDR;
    return 0;
  }
  return -1;
}

static int parse_tc_line(struct words *ws, struct line *l) {
  if (ws->n < 4) return -1;
  if (!strcmp(ws->w[0], "qdisc")) {
    if (strcmp(ws->w[1], "add") && strcmp(ws->w[1], "del")) return -1;
    l->add = !strcmp(ws->w[1], "add");
    l->op = QDISC_CLSACT;
    return want_dev(ws, 2, l) == 4 && ws->n == 5 && !strcmp(ws->w[4], "clsact") ? 0 : -1;
  }
  if (strcmp(ws->w[0], "filter")) return -1;
  const char *cmd = ws->w[1];
  int i = want_dev(ws, 2, l);
  if (i < 0 || i + 5 > ws->n) return -1;
  if (!strcmp(ws->w[i], "egress")) l->egress = 1;
  else if (strcmp(ws->w[i], "ingress")) return -1;
  i++;
  if (strcmp(ws->w[i], "pref") || parse_uint(ws->w[i + 1], 0xffff, &l->pref) < 0 || l->pref == 0) return -1;
  i += 2;
  if (i + 2 > ws->n || strcmp(ws->w[i], "handle") || parse_uint(ws->w[i + 1], 0xffffffff, &l->handle) < 0) return -1;
  i += 2;
  if (i >= ws->n || strcmp(ws->w[i++], "bpf")) return -1;
  if (!strcmp(cmd, "del") || !strcmp(cmd, "delete")) {
    l->op = FILTER_DEL;
    return i == ws->n ? 0 : -1;
  }
  if (!strcmp(cmd, "replace")) l->replace = 1;
  else if (strcmp(cmd, "add")) return -1;
  int da = 0;
  for (; i < ws->n; i++) {
    if (!strcmp(ws->w[i], "da") || !strcmp(ws->w[i], "direct-action")) da = 1;
    else if (!strcmp(ws->w[i], "object-pinned") && i + 1 < ws->n) l->path = ws->w[++i];
    else return -1;
  }
  l->op = FILTER_SET;
  return da && l->path ? 0 : -1;
}

static int is_hex_byte(const char *t) {
  return t[0] && t[1] && !t[2] && strchr("0123456789abcdefABCDEF", t[0]) && strchr("0123456789abcdefABCDEF", t[1]);
}

/* "hex B B …" at words[*i]: at most cap bytes, into a malloc'd *buf (freed with the line). */
static int parse_hex(struct words *ws, int *i, unsigned char **buf, int cap, int *len) {
  if (*i >= ws->n || strcmp(ws->w[*i], "hex")) return -1;
  (*i)++;
  int n = 0;
  while (*i + n < ws->n && is_hex_byte(ws->w[*i + n])) n++;
  if (n == 0 || n > cap) return -1;
  *buf = malloc((size_t)n);
  if (!*buf) abort();
  for (int k = 0; k < n; k++) (*buf)[k] = (unsigned char)strtoul(ws->w[*i + k], NULL, 16);
  *len = n;
  *i += n;
  return 0;
}

static int parse_bpftool_line(struct words *ws, struct line *l) {
  if (ws->n < 7 || strcmp(ws->w[0], "map") || strcmp(ws->w[2], "pinned")) return -1;
  if (!strcmp(ws->w[1], "update")) l->op = MAP_UPDATE;
  else if (!strcmp(ws->w[1], "delete")) l->op = MAP_DELETE;
  else return -1;
  l->path = ws->w[3];
  int i = 4;
  if (strcmp(ws->w[i++], "key") || parse_hex(ws, &i, &l->key, MAX_KEY, &l->keylen) < 0) return -1;
  if (l->op == MAP_UPDATE && (i >= ws->n || strcmp(ws->w[i++], "value") || parse_hex(ws, &i, &l->value, MAX_VALUE, &l->valuelen) < 0)) return -1;
  return i == ws->n ? 0 : -1;
}

/* ── execution ───────────────────────────────────────────────────────────────────────────── */
static int ifindex_of(const char *dev) {
  unsigned idx = if_nametoindex(dev);
  if (!idx) sb_printf(&err, "Cannot find device \"%s\"\n", dev);
  return (int)idx;
}

static int open_netns(const char *name) {
  char path[4096];
  if (name[0] == '/') snprintf(path, sizeof path, "%s", name);
  else snprintf(path, sizeof path, "/run/netns/%s", name);
  return open(path, O_RDONLY | O_CLOEXEC);
}

static int do_link_add(struct line *l) {
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlreq r;
  req_init(&r, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  attr_str(&r, IFLA_IFNAME, l->name);
  if (l->has_mac) attr(&r, IFLA_ADDRESS, l->mac, 6);
  if (l->has_mtu) attr_u32(&r, IFLA_MTU, (uint32_t)l->mtu);
  if (l->has_txqlen) attr_u32(&r, IFLA_TXQLEN, (uint32_t)l->txqlen);
  struct rtattr *li = nest(&r, IFLA_LINKINFO);
  attr_str(&r, IFLA_INFO_KIND, "veth");
  int nsfd = -1;
  if (l->peer) {
    struct rtattr *data = nest(&r, IFLA_INFO_DATA);
    struct rtattr *peer = nest(&r, VETH_INFO_PEER);
    struct ifinfomsg pifi = {.ifi_family = AF_UNSPEC};
    size_t off = NLMSG_ALIGN(r.n.nlmsg_len);
    memcpy((char *)&r.n + off, &pifi, sizeof pifi);
    r.n.nlmsg_len = off + NLMSG_ALIGN(sizeof pifi);
    attr_str(&r, IFLA_IFNAME, l->peer);
    if (l->has_pmac) attr(&r, IFLA_ADDRESS, l->pmac, 6);
    if (l->has_pmtu) attr_u32(&r, IFLA_MTU, (uint32_t)l->pmtu);
    if (l->netns) {
      nsfd = open_netns(l->netns);
      if (nsfd < 0) {
        sb_printf(&err, "Cannot open network namespace \"%s\": %s\n", l->netns, strerror(errno));
        return -1;
      }
      attr_u32(&r, IFLA_NET_NS_FD, (uint32_t)nsfd);
    }
    nest_end(&r, peer);
    nest_end(&r, data);
  }
  nest_end(&r, li);
  int rc = nl_talk(&r, NULL, 0);
  if (nsfd >= 0) close(nsfd);
  if (rc) { rtnl_error(rc); return -2; }
  return 0;
}

/* 0, or -2 after a netlink error (the tools exit 2 for those outside a batch, 1 for the rest). */
static int do_simple(struct nlreq *r) {
  int rc = nl_talk(r, NULL, 0);
  if (rc) { rtnl_error(rc); return -2; }
  return 0;
}

static int exec_line(struct line *l) {
  struct nlreq r;
  int idx = 0;
  if (l->op != LINK_ADD_VETH && l->op != MAP_UPDATE && l->op != MAP_DELETE) {
    idx = ifindex_of(l->dev);
    if (!idx) return -1;
  }
  switch (l->op) {
  case LINK_ADD_VETH:
    return do_link_add(l);
  case LINK_SET: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = idx, .ifi_change = IFF_UP, .ifi_flags = l->up ? IFF_UP : 0};
    req_init(&r, RTM_NEWLINK, 0, &ifi, sizeof ifi);
    return do_simple(&r);
  }
  case LINK_DEL: {
    struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = idx};
    req_init(&r, RTM_DELLINK, 0, &ifi, sizeof ifi);
    return do_simple(&r);
  }
  case ADDR_ADD: {
    struct ifaddrmsg ifa = {.ifa_family = (unsigned char)l->ip.family, .ifa_prefixlen = (unsigned char)l->plen, .ifa_index = (unsigned)idx};
    if (l->nodad) ifa.ifa_flags = IFA_F_NODAD;
    if (l->ip.family == AF_INET && l->ip.a[0] == 127) ifa.ifa_scope = RT_SCOPE_HOST;
    req_init(&r, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
    attr(&r, IFA_LOCAL, l->ip.a, (size_t)l->ip.len);
    attr(&r, IFA_ADDRESS, l->ip.a, (size_t)l->ip.len);
    return do_simple(&r);
  }
  case ROUTE: {
    struct rtmsg rt = {
      .rtm_family = (unsigned char)l->ip.family, .rtm_dst_len = (unsigned char)l->plen, .rtm_table = RT_TABLE_MAIN,
      .rtm_protocol = RTPROT_BOOT, .rtm_scope = l->scope_link ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE, .rtm_type = RTN_UNICAST,
    };
    req_init(&r, RTM_NEWROUTE, NLM_F_CREATE | (l->replace ? NLM_F_REPLACE : NLM_F_EXCL), &rt, sizeof rt);
    if (l->plen) attr(&r, RTA_DST, l->ip.a, (size_t)l->ip.len);
    if (l->has_via) attr(&r, RTA_GATEWAY, l->via.a, (size_t)l->via.len);
    attr_u32(&r, RTA_OIF, (uint32_t)idx);
    if (l->has_mtu) {
      struct rtattr *m = nest(&r, RTA_METRICS);
      attr_u32(&r, RTAX_MTU, (uint32_t)l->mtu);
      nest_end(&r, m);
    }
    return do_simple(&r);
  }
  case NEIGH_PROXY:
  case NEIGH_LLADDR: {
    struct ndmsg nd = {.ndm_family = (unsigned char)l->ip.family, .ndm_ifindex = idx, .ndm_state = NUD_PERMANENT};
    if (l->op == NEIGH_PROXY) nd.ndm_flags = NTF_PROXY;
    req_init(&r, RTM_NEWNEIGH, NLM_F_CREATE | (l->replace ? NLM_F_REPLACE : NLM_F_EXCL), &nd, sizeof nd);
    attr(&r, NDA_DST, l->ip.a, (size_t)l->ip.len);
    if (l->op == NEIGH_LLADDR) attr(&r, NDA_LLADDR, l->mac, 6);
    return do_simple(&r);
  }
  case QDISC_CLSACT: {
    struct tcmsg t = {.tcm_family = AF_UNSPEC, .tcm_ifindex = idx, .tcm_handle = TC_H_MAKE(TC_H_CLSACT, 0), .tcm_parent = TC_H_CLSACT};
    req_init(&r, l->add ? RTM_NEWQDISC : RTM_DELQDISC, l->add ? NLM_F_CREATE | NLM_F_EXCL : 0, &t, sizeof t);
    attr_str(&r, TCA_KIND, "clsact");
    return do_simple(&r);
  }
  case FILTER_SET:
  case FILTER_DEL: {
    struct tcmsg t = {
      .tcm_family = AF_UNSPEC, .tcm_ifindex = idx, .tcm_handle = (uint32_t)l->handle,
      .tcm_parent = TC_H_MAKE(TC_H_CLSACT, l->egress ? TC_H_MIN_EGRESS : TC_H_MIN_INGRESS),
      .tcm_info = TC_H_MAKE((uint32_t)l->pref << 16, htons(ETH_P_ALL)),
    };
    if (l->op == FILTER_DEL) {
      req_init(&r, RTM_DELTFILTER, 0, &t, sizeof t);
      attr_str(&r, TCA_KIND, "bpf");
      return do_simple(&r);
    }
    int fd = bpf_obj_get(l->path);
    if (fd < 0) {
      sb_printf(&err, "Error: bpf: Failed to retrieve (e)BPF data!\nPinned object %s: %s\n", l->path, strerror(errno));
      return -1;
    }
    req_init(&r, RTM_NEWTFILTER, NLM_F_CREATE | (l->replace ? 0 : NLM_F_EXCL), &t, sizeof t);
    attr_str(&r, TCA_KIND, "bpf");
    struct rtattr *o = nest(&r, TCA_OPTIONS);
    attr_u32(&r, TCA_BPF_FD, (uint32_t)fd);
    // The label tc gives a filter attached with object-pinned: "<file name>:[*fsobj]".
    const char *base = strrchr(l->path, '/');
    char label[256];
    snprintf(label, sizeof label, "%s:[*fsobj]", base ? base + 1 : l->path);
    attr_str(&r, TCA_BPF_NAME, label);
    attr_u32(&r, TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
    nest_end(&r, o);
    int rc = do_simple(&r);
    close(fd);
    return rc;
  }
  case MAP_UPDATE:
  case MAP_DELETE: {
    int fd = bpf_obj_get(l->path);
    if (fd < 0) {
      sb_printf(&err, "Error: bpf obj get (%s): %s\n", l->path, strerror(errno));
      return -1;
    }
    struct bpf_map_info info = {0};
    uint32_t ilen = sizeof info;
    int rc = bpf_obj_get_info_by_fd(fd, &info, &ilen);
    if (rc == 0 && (info.key_size != (uint32_t)l->keylen || (l->op == MAP_UPDATE && info.value_size != (uint32_t)l->valuelen))) {
      sb_printf(&err, "Error: %s expected %u bytes got %d\n", info.key_size != (uint32_t)l->keylen ? "key" : "value",
                info.key_size != (uint32_t)l->keylen ? info.key_size : info.value_size,
                info.key_size != (uint32_t)l->keylen ? l->keylen : l->valuelen);
      close(fd);
      return -1;
    }
    rc = l->op == MAP_UPDATE ? bpf_map_update_elem(fd, l->key, l->value, BPF_ANY) : bpf_map_delete_elem(fd, l->key);
    int e = errno;
    close(fd);
    if (rc) {
      sb_printf(&err, "Error: %s failed: %s\n", l->op == MAP_UPDATE ? "update" : "delete", strerror(e));
      return -1;
    }
    return 0;
  }
  }
  return -1;
}

/* `ip -j -d link show dev N`, with the fields pn reads, named and ordered as ip prints them. */
static int link_show(const char *dev) {
  struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
  struct nlreq r;
  req_init(&r, RTM_GETLINK, 0, &ifi, sizeof ifi);
  attr_str(&r, IFLA_IFNAME, dev);
  attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_VF | RTEXT_FILTER_SKIP_STATS);
  static char reply[32768];
  int rc = nl_talk(&r, reply, sizeof reply);
  if (rc == -ENODEV) { sb_printf(&err, "Device \"%s\" does not exist.\n", dev); return 1; }
  if (rc) { rtnl_error(rc); return 2; }
  struct nlmsghdr *h = (struct nlmsghdr *)reply;
  if (h->nlmsg_type != RTM_NEWLINK) { sb_printf(&err, "Device \"%s\" does not exist.\n", dev); return 1; }
  struct ifinfomsg *m = NLMSG_DATA(h);
  struct rtattr *tb[IFLA_MAX + 1] = {0};
  int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *m);
  for (struct rtattr *a = IFLA_RTA(m); RTA_OK(a, len); a = RTA_NEXT(a, len)) if (a->rta_type <= IFLA_MAX) tb[a->rta_type] = a;
  char kind[32] = "";
  if (tb[IFLA_LINKINFO]) {
    int l2 = RTA_PAYLOAD(tb[IFLA_LINKINFO]);
    for (struct rtattr *a = RTA_DATA(tb[IFLA_LINKINFO]); RTA_OK(a, l2); a = RTA_NEXT(a, l2))
      if (a->rta_type == IFLA_INFO_KIND) snprintf(kind, sizeof kind, "%s", (char *)RTA_DATA(a));
  }
  sb_printf(&out, "[{\"ifindex\":%d", m->ifi_index);
  if (tb[IFLA_LINK]) {
    uint32_t iflink = *(uint32_t *)RTA_DATA(tb[IFLA_LINK]);
    char peer[IF_NAMESIZE];
    if (tb[IFLA_LINK_NETNSID] || !iflink || !if_indextoname(iflink, peer)) { if (iflink) sb_printf(&out, ",\"link_index\":%u", iflink); }
    else if ((int)iflink != m->ifi_index) { sb_add(&out, ",\"link\":", 8); sb_json_str(&out, peer); }
  }
  sb_add(&out, ",\"ifname\":", 10);
  sb_json_str(&out, tb[IFLA_IFNAME] ? (char *)RTA_DATA(tb[IFLA_IFNAME]) : dev);
  static const struct { unsigned flag; const char *name; } flags[] = {
    {IFF_LOOPBACK, "LOOPBACK"}, {IFF_BROADCAST, "BROADCAST"}, {IFF_POINTOPOINT, "POINTOPOINT"}, {IFF_MULTICAST, "MULTICAST"},
    {IFF_NOARP, "NOARP"}, {IFF_ALLMULTI, "ALLMULTI"}, {IFF_PROMISC, "PROMISC"}, {IFF_MASTER, "MASTER"}, {IFF_SLAVE, "SLAVE"},
    {IFF_UP, "UP"}, {IFF_LOWER_UP, "LOWER_UP"}, {IFF_DORMANT, "DORMANT"},
  };
  sb_add(&out, ",\"flags\":[", 10);
  int first = 1;
  if ((m->ifi_flags & IFF_UP) && !(m->ifi_flags & IFF_RUNNING)) { sb_add(&out, "\"NO-CARRIER\"", 12); first = 0; }
  for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
    if (!(m->ifi_flags & flags[i].flag)) continue;
    if (!first) sb_add(&out, ",", 1);
    sb_printf(&out, "\"%s\"", flags[i].name);
    first = 0;
  }
  // ip's M-DOWN: the lower device (a veth's peer in this netns) is down.
  if (tb[IFLA_LINK] && !tb[IFLA_LINK_NETNSID]) {
    uint32_t iflink = *(uint32_t *)RTA_DATA(tb[IFLA_LINK]);
    struct ifreq ifr = {0};
    int s = (int)iflink != m->ifi_index && iflink && if_indextoname(iflink, ifr.ifr_name) ? socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) : -1;
    if (s >= 0) {
      if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0 && !(ifr.ifr_flags & IFF_UP)) { sb_add(&out, first ? "\"M-DOWN\"" : ",\"M-DOWN\"", first ? 8 : 9); first = 0; }
      close(s);
    }
  }
  sb_add(&out, "]", 1);
  if (tb[IFLA_MTU]) sb_printf(&out, ",\"mtu\":%u", *(uint32_t *)RTA_DATA(tb[IFLA_MTU]));
  static const char *oper[] = {"UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"};
  if (tb[IFLA_OPERSTATE]) {
    unsigned char s = *(unsigned char *)RTA_DATA(tb[IFLA_OPERSTATE]);
    sb_printf(&out, ",\"operstate\":\"%s\"", s < 7 ? oper[s] : "UNKNOWN");
  }
  if (tb[IFLA_TXQLEN]) sb_printf(&out, ",\"txqlen\":%u", *(uint32_t *)RTA_DATA(tb[IFLA_TXQLEN]));
  if (m->ifi_type == ARPHRD_ETHER) sb_add(&out, ",\"link_type\":\"ether\"", 20);
  else if (m->ifi_type == ARPHRD_LOOPBACK) sb_add(&out, ",\"link_type\":\"loopback\"", 23);
  if (tb[IFLA_ADDRESS] && RTA_PAYLOAD(tb[IFLA_ADDRESS]) == 6) {
    unsigned char *a = RTA_DATA(tb[IFLA_ADDRESS]);
    sb_printf(&out, ",\"address\":\"%02x:%02x:%02x:%02x:%02x:%02x\"", a[0], a[1], a[2], a[3], a[4], a[5]);
  }
  if (tb[IFLA_LINK_NETNSID]) sb_printf(&out, ",\"link_netnsid\":%d", *(int32_t *)RTA_DATA(tb[IFLA_LINK_NETNSID]));
  if (kind[0]) { sb_add(&out, ",\"linkinfo\":{\"info_kind\":", 25); sb_json_str(&out, kind); sb_add(&out, "}", 1); }
  sb_add(&out, "}]\n", 3);
  return 0;
}

/* ── requests ────────────────────────────────────────────────────────────────────────────── */
enum tool { IP, TC, BPFTOOL };

/* The parsed lines of one request, grown as needed (a batch may have MAX_LINES). */
struct batch { struct line *l; size_t n, cap; };

static void batch_free(struct batch *b) {
  for (size_t i = 0; i < b->n; i++) { free(b->l[i].key); free(b->l[i].value); free(b->l[i].words); }
  free(b->l);
  *b = (struct batch){0};
}

/*
 * Parse every line of a batch (or of one command given as argv) before anything is done, so an
 * unsupported one is known first. Returns 0, ANSWER_UNSUPPORTED, or ANSWER_REFUSED (with the
 * reason on err) for a batch over MAX_LINES. `text` is cut into words in place.
 */
static int parse_lines(enum tool tool, char *text, struct batch *b) {
  int lineno = 0;
  for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
    lineno++;
    struct words ws;
    if (split(ln, &ws) < 0) return ANSWER_UNSUPPORTED;
    if (ws.n == 0 || ws.w[0][0] == '#') continue;
    if (b->n == MAX_LINES) {
      sb_printf(&err, "pn-netlink: a batch of more than %d lines is over the limit\n", MAX_LINES);
      return ANSWER_REFUSED;
    }
    if (b->n == b->cap) {
      b->cap = b->cap ? b->cap * 2 : 16;
      b->l = realloc(b->l, b->cap * sizeof *b->l);
      if (!b->l) abort();
    }
    struct line *l = &b->l[b->n++];
    memset(l, 0, sizeof *l);
    l->lineno = lineno;
    int rc = tool == IP ? parse_ip_line(&ws, l) : tool == TC ? parse_tc_line(&ws, l) : parse_bpftool_line(&ws, l);
    if (rc < 0) return ANSWER_UNSUPPORTED;
    l->words = malloc((size_t)ws.n * sizeof *l->words);
    if (!l->words) abort();
    memcpy(l->words, ws.w, (size_t)ws.n * sizeof *l->words);
    l->nwords = ws.n;
  }
  return 0;
}

/* Run parsed lines in order and stop at the first failure, answering as the tool would. */
static int run_lines(enum tool tool, struct batch *b, int batch, int json) {
  if (json) sb_add(&out, "[", 1);
  for (size_t i = 0; i < b->n; i++) {
    size_t errmark = err.n;
    struct line *l = &b->l[i];
    int rc = exec_line(l);
    if (json) {
      if (i) sb_add(&out, ",", 1);
      sb_add(&out, "{\"command\":[", 12);
      for (int w = 0; w < l->nwords; w++) { if (w) sb_add(&out, ",", 1); sb_json_str(&out, l->words[w]); }
      sb_add(&out, "],\"output\":", 11);
      if (rc == 0) sb_add(&out, "null}", 5);
      else {
        // bpftool -j puts the error in the output and nothing on stderr.
        char msg[512];
        const char *e = err.p && err.n > errmark ? err.p + errmark : "";
        snprintf(msg, sizeof msg, "%s", e + (strncmp(e, "Error: ", 7) ? 0 : 7));
        msg[strcspn(msg, "\n")] = 0;
        err.n = errmark;
        if (err.p) err.p[err.n] = 0;
        sb_add(&out, "{\"error\":", 9);
        sb_json_str(&out, msg);
        sb_add(&out, "}}", 2);
      }
    }
    if (rc) {
      if (json) { sb_add(&out, "]\n", 2); return 255; }
      if (tool == BPFTOOL) { sb_printf(&err, "processed %zu commands\n", i); return 255; }
      if (batch) sb_printf(&err, "Command failed -:%d\n", l->lineno);
      return !batch && rc == -2 ? 2 : 1;
    }
  }
  if (json) sb_add(&out, "]\n", 2);
  else if (tool == BPFTOOL) sb_printf(&out, "processed %zu commands\n", b->n);
  return 0;
}

/* What a request asks for, once parsed: `ip -j -d link show dev N`, or lines to run. */
struct plan {
  enum tool tool;
  int batch, json;
  const char *show; /* link show of this device */
  char *text;       /* a one-command request's words joined (owned) */
  struct batch lines;
};

static void plan_free(struct plan *p) {
  batch_free(&p->lines);
  free(p->text);
  *p = (struct plan){0};
}

/*
 * Classify a request and parse its lines; nothing is done yet. Returns 0 (the plan is ready),
 * ANSWER_UNSUPPORTED or ANSWER_REFUSED. `input` is cut up in place. Free the plan either way.
 */
static int plan_request(int argc, char **argv, char *input, struct plan *p) {
  *p = (struct plan){0};
  if (argc < 2) return ANSWER_UNSUPPORTED;
  const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  if (!strcmp(prog, "ip")) p->tool = IP;
  else if (!strcmp(prog, "tc")) p->tool = TC;
  else if (!strcmp(prog, "bpftool")) p->tool = BPFTOOL;
  else return ANSWER_UNSUPPORTED;
  if (p->tool == IP && argc == 7 && !strcmp(argv[1], "-j") && !strcmp(argv[2], "-d") && !strcmp(argv[3], "link") &&
      !strcmp(argv[4], "show") && !strcmp(argv[5], "dev") && strlen(argv[6]) < IFNAMSIZ) {
    p->show = argv[6];
    return 0;
  }
  if (p->tool == BPFTOOL) {
    int j = argc == 5 && !strcmp(argv[1], "-j");
    if (argc != 4 + j || strcmp(argv[1 + j], "batch") || strcmp(argv[2 + j], "file") || strcmp(argv[3 + j], "-")) return ANSWER_UNSUPPORTED;
    p->batch = 1;
    p->json = j;
    return parse_lines(p->tool, input, &p->lines);
  }
  if (argc == 3 && !strcmp(argv[1], "-batch") && !strcmp(argv[2], "-")) {
    p->batch = 1;
    return parse_lines(p->tool, input, &p->lines);
  }
  if (argv[1][0] == '-') return ANSWER_UNSUPPORTED;
  // One command as argv: the same grammar as one batch line.
  size_t total = 0;
  for (int i = 1; i < argc; i++) total += strlen(argv[i]) + 1;
  p->text = malloc(total + 1);
  if (!p->text) abort();
  char *t = p->text;
  for (int i = 1; i < argc; i++) {
    if (strchr(argv[i], ' ') || strchr(argv[i], '\n') || !argv[i][0]) return ANSWER_UNSUPPORTED;
    size_t n = strlen(argv[i]);
    memcpy(t, argv[i], n);
    t += n;
    if (i + 1 < argc) *t++ = ' ';
  }
  *t = 0;
  return parse_lines(p->tool, p->text, &p->lines);
}

static int run_plan(struct plan *p) {
  if (p->show) return link_show(p->show);
  return run_lines(p->tool, &p->lines, p->batch, p->json);
}

/* ── framing ─────────────────────────────────────────────────────────────────────────────── */
struct request {
  unsigned long id, argc, arglen, nslen, inlen;
  char ns[MAX_NETNS_BYTES + 1];
  char *args, *input;
  char *argv[MAX_ARGC + 1];
};

/* One decimal number of at most `max` at *s (no sign, no leading space); advances *s. */
static int parse_dec(const char **s, unsigned long max, unsigned long *v) {
  const char *p = *s;
  unsigned long x = 0;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; p++) {
    if (x > (max - (unsigned long)(*p - '0')) / 10) return -1;
    x = x * 10 + (unsigned long)(*p - '0');
  }
  *s = p;
  *v = x;
  return 0;
}

/* "<id> <argc> <argv length> <netns length> <input length>" (without its newline), checked against the limits. */
static int parse_header(const char *hdr, struct request *r, const char **why) {
  unsigned long *f[5] = {&r->id, &r->argc, &r->arglen, &r->nslen, &r->inlen};
  const unsigned long max[5] = {ULONG_MAX / 2, MAX_ARGC, MAX_ARGV_BYTES, MAX_NETNS_BYTES, MAX_INPUT_BYTES};
  const char *p = hdr;
  for (int i = 0; i < 5; i++) {
    if (i && *p++ != ' ') { *why = "bad request header"; return -1; }
    if (parse_dec(&p, max[i], f[i]) < 0) { *why = "bad request header (a number is missing or over its limit)"; return -1; }
  }
  if (*p) { *why = "bad request header (trailing bytes)"; return -1; }
  if (r->argc == 0 || r->arglen < r->argc) { *why = "bad request header (argc)"; return -1; }
  return 0;
}

/* The argv block: exactly argc words, each ending in NUL. */
static int split_argv(struct request *r, const char **why) {
  char *p = r->args, *end = r->args + r->arglen;
  for (unsigned long i = 0; i < r->argc; i++) {
    char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) { *why = "bad argv"; return -1; }
    r->argv[i] = p;
    p = z + 1;
  }
  if (p != end) { *why = "bad argv"; return -1; }
  r->argv[r->argc] = NULL;
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
  free(r->args);
  free(r->input);
  r->args = r->input = NULL;
}

/* One request: 1 = read (free it with request_free), 0 = EOF, -1 = malformed (*why says how). */
static int read_request(struct request *r, const char **why) {
  char hdr[MAX_HEADER];
  size_t n = 0;
  r->args = r->input = NULL;
  for (;; n++) {
    if (n == sizeof hdr - 1) { *why = "bad request header (too long)"; return -1; }
    if (!read_full(hdr + n, 1)) return 0;
    if (hdr[n] == '\n') break;
  }
  hdr[n] = 0;
  if (parse_header(hdr, r, why) < 0) return -1;
  r->args = malloc(r->arglen + 1);
  r->input = malloc(r->inlen + 1);
  if (!r->args || !r->input) abort();
  if (!read_full(r->ns, r->nslen) || !read_full(r->args, r->arglen) || !read_full(r->input, r->inlen)) { request_free(r); return 0; }
  r->ns[r->nslen] = 0;
  r->args[r->arglen] = 0;
  r->input[r->inlen] = 0;
  if (memchr(r->ns, 0, r->nslen)) { *why = "bad netns path"; request_free(r); return -1; }
  if (split_argv(r, why) < 0) { request_free(r); return -1; }
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

/* Answer one request: parse, then (in its netns) run. `self`: this process's own netns. */
static int serve(struct request *r, int self) {
  out.n = err.n = 0;
  if (out.p) out.p[0] = 0;
  if (err.p) err.p[0] = 0;
  struct plan plan;
  int code = plan_request((int)r->argc, r->argv, r->input, &plan), entered = 0;
  if (code == 0 && r->nslen) {
    int nsfd = open(r->ns, O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) < 0) {
      sb_printf(&err, "nsenter: cannot open %s: %s\n", r->ns, strerror(errno));
      code = 1;
    } else entered = 1;
    if (nsfd >= 0) close(nsfd);
  }
  if (code == 0) {
    nlfd = nl_open();
    if (nlfd < 0) {
      sb_printf(&err, "Cannot open netlink socket: %s\n", strerror(-nlfd));
      code = 1;
    } else {
      code = run_plan(&plan);
      close(nlfd);
      nlfd = -1;
    }
  }
  if (entered && setns(self, CLONE_NEWNET) < 0) { perror("pn-netlink: setns back"); exit(1); }
  plan_free(&plan);
  if (code == ANSWER_UNSUPPORTED) out.n = err.n = 0;
  if (code == ANSWER_REFUSED) out.n = 0;
  char head[128];
  int hl = snprintf(head, sizeof head, "%lu %d %zu %zu\n", r->id, code, out.n, err.n);
  write_full(head, (size_t)hl);
  if (out.n) write_full(out.p, out.n);
  if (err.n) write_full(err.p, err.n);
  return 0;
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
