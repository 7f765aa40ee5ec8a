/*
 * The native client's parsers: the agent's answer (netstrings, exit code), the netconf's
 * top-level "stateDir", the standalone path's status pipe, a wrapper's `# pn-cni` header lines,
 * and which variables a request carries to the agent. Nothing here connects or execs.
 */
#define PN_FUZZ_HARNESS
#include "../../native/pn-cni.c"
#include "fuzz.h"

static struct buf as_buf(const void *p, size_t n) {
  struct buf b = {0};
  put(&b, p, n);
  return b;
}

static void cases(void) {
  FZ_CASE("request variables: CNI_* and pn's settings, not the test hooks or other PN_* variables", {
    const char *yes[] = {"CNI_COMMAND=ADD", "CNI_ARGS=K8S_POD_NAME=a", "PN_STATE_DIR=/var/lib/pn", "PN_POOL=etcd://a:2379", "PN_LOCK_TIMEOUT_MS=5",
                         "PN_BPF_DIR=/b", "PN_TRACE_EXEC=1", "PN_AGENT_OP=service"};
    const char *no[] = {"PN_TEST_HOLD_LOCK_MS=1000", "PN_TEST_CHECKPOINT_DELAY_MS=400", "PN_CNI_FAIL_AFTER=veth", "PN_CNI_FALLBACK=/x",
                        "PN_CNI_STATUS_FD=3", "PN_STATE_DIRX=/y", "PN_STATE_DI=/y", "PN_STATE_DIR", "PATH=/bin", "HOME=/root", "CNIX=1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) fz_check(forwarded(yes[i]), "%s not forwarded", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) fz_check(!forwarded(no[i]), "%s forwarded", no[i]);
  });
  FZ_CASE("answer netstrings: a length of at most 8 digits and 16 MiB; the exit code 0..255", {
    struct buf b = as_buf("1:0,5:hello,0:,", 15);
    size_t pos = 0, n;
    const char *p;
    fz_check(take(&b, &pos, &p, &n) == 0 && exit_code(p, n) == 0, "code");
    fz_check(take(&b, &pos, &p, &n) == 0 && n == 5 && !memcmp(p, "hello", 5), "stdout");
    fz_check(take(&b, &pos, &p, &n) == 0 && n == 0 && pos == b.len, "stderr");
    fz_check(take(&b, &pos, &p, &n) < 0, "past the end");
    free(b.p);
    const char *bad[] = {"18446744073709551617:x,", "99999999999:x,", "16777217:", ":,", "3:ab,", "2:abc", "1:a;"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
      b = as_buf(bad[i], strlen(bad[i]));
      pos = 0;
      fz_check(take(&b, &pos, &p, &n) < 0, "accepted %s", bad[i]);
      free(b.p);
    }
    fz_check(exit_code("254", 3) == 254 && exit_code("256", 3) < 0 && exit_code("99999999999", 11) < 0 && exit_code("-1", 2) < 0 && exit_code("", 0) < 0, "exit codes");
  });
  FZ_CASE("status pipe: start, then the code; several lines at once; garbage is not a success", {
    struct status st = {.have = 0};
    size_t room;
    char *at = status_room(&st, &room);
    memcpy(at, "start\n0", 7);
    fz_check(status_next(&st, 7) == STATUS_START && status_next(&st, 0) == STATUS_NONE, "start");
    at = status_room(&st, &room);
    memcpy(at, "\n", 1);
    fz_check(status_next(&st, 1) == 0, "code 0 in two reads");
    st.have = 0;
    at = status_room(&st, &room);
    memcpy(at, "garbage\n", 8);
    fz_check(status_next(&st, 8) == STATUS_GARBLED, "garbage (was atoi: exit 0)");
    st.have = 0;
    at = status_room(&st, &room);
    memset(at, '1', room);
    fz_check(status_next(&st, room) == STATUS_GARBLED, "a full line without a newline");
  });
  FZ_CASE("stateDir: only the top level, escapes given up on", {
    const char *c1 = "{\"cniVersion\":\"1.0.0\",\"ipam\":{\"stateDir\":\"/no\"},\"stateDir\":\"/var/lib/pn-a\"}";
    char *d = top_level_state_dir(c1, strlen(c1));
    fz_check(d && !strcmp(d, "/var/lib/pn-a"), "top level");
    free(d);
    const char *c2 = "{\"name\":\"\\\"stateDir\\\":\\\"/x\\\"\",\"stateDir\":\"/a\\u0041\"}";
    fz_check(top_level_state_dir(c2, strlen(c2)) == NULL, "an escape it does not decode");
    const char *c3 = "{\"stateDir\":\"/unterminated";
    fz_check(top_level_state_dir(c3, strlen(c3)) == NULL, "unterminated");
  });
}

static void fuzz_answer(const unsigned char *p, size_t n) {
  struct buf b = as_buf(p, n);
  size_t pos = 0, len;
  const char *s;
  for (int k = 0; k < 8; k++) {
    size_t before = pos;
    if (take(&b, &pos, &s, &len) < 0) {
      fz_check(pos == before, "a failed take moved on");
      break;
    }
    fz_check(len <= MAX_FIELD && s >= b.p && s + len <= b.p + b.len && pos > before && pos <= b.len, "netstring outside the buffer");
    int code = exit_code(s, len);
    fz_check(code >= -1 && code <= 255, "exit code %d", code);
  }
  free(b.p);
}

static void fuzz_state_dir(const unsigned char *p, size_t n) {
  char *copy = malloc(n + 1); /* exact size: a read past n is an ASan error */
  memcpy(copy, p, n);
  char *d = top_level_state_dir(copy, n);
  if (d) fz_check(strlen(d) <= n, "stateDir longer than the netconf");
  free(d);
  free(copy);
}

static void fuzz_status(const unsigned char *p, size_t n) {
  struct status st = {.have = 0};
  for (size_t at = 0; at < n;) {
    size_t room;
    char *dst = status_room(&st, &room);
    fz_check(room >= 1 && room < STATUS_LINE, "room %zu", room);
    size_t k = 1 + fz_below(room);
    if (k > n - at) k = n - at;
    memcpy(dst, p + at, k);
    at += k;
    int ev = status_next(&st, k), guard = 0;
    for (; ev != STATUS_NONE && guard < 64; ev = status_next(&st, 0), guard++) {
      fz_check(ev == STATUS_START || ev == STATUS_GARBLED || (ev >= 0 && ev <= 255), "event %d", ev);
      if (ev == STATUS_GARBLED) break;
    }
    if (ev == STATUS_GARBLED) break;
    fz_check(st.have < STATUS_LINE - 1 || ev == STATUS_GARBLED, "buffer full");
  }
}

static void fuzz_header(const unsigned char *p, size_t n) {
  char head[4096];
  size_t k = n < sizeof head - 1 ? n : sizeof head - 1;
  memcpy(head, p, k);
  head[k] = 0;
  static const char *const keys[] = {"node", "entry", "helpers"};
  char out[64];
  if (header_value(head, keys[fz_below(3)], out, sizeof out)) fz_check(strlen(out) < sizeof out && !strchr(out, '\n') && out[0], "value \"%s\"", out);
}

static size_t fz_targets(struct fz_target *t) {
  static struct fz_buf answers[3], confs[3], statuses[3], heads[2];
  fz_puts(&answers[0], "1:0,75:{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\"}],\"ips\":[{\"address\":\"10.0.0.5/32\"}]},0:,");
  fz_puts(&answers[1], "3:254,0:,0:,");
  fz_puts(&answers[2], "1:1,10:{\"code\":11,9:busy\nnow\n,");
  t[0] = (struct fz_target){"fuzz: agent answer (netstrings, exit code)", fuzz_answer, answers, 3, 4096};
  fz_puts(&confs[0], "{\"cniVersion\":\"1.0.0\",\"name\":\"pn\",\"type\":\"pn\",\"stateDir\":\"/var/lib/pn-node-a\",\"ipam\":{\"type\":\"pn\"}}");
  fz_puts(&confs[1], "{\"a\":[{\"stateDir\":\"/x\"},\"stateDir\"],\"stateDir\" : \"/p\\/q\\\\r\"}");
  fz_puts(&confs[2], "{\"runtimeConfig\":{\"stateDir\":\"x\"},\"prevResult\":{\"ips\":[]},\"stateDir\":\"\"}");
  t[1] = (struct fz_target){"fuzz: netconf top-level stateDir", fuzz_state_dir, confs, 3, 8192};
  fz_puts(&statuses[0], "start\n0\n");
  fz_puts(&statuses[1], "start\nstart\n1\n");
  fz_puts(&statuses[2], "255\n");
  t[2] = (struct fz_target){"fuzz: status pipe", fuzz_status, statuses, 3, 256};
  fz_puts(&heads[0], "#!/bin/sh\n# pn-cni node: /usr/bin/node\n# pn-cni entry: /opt/pn/bin/pn-cni.cjs\n# pn-cni helpers: /opt/pn/dist/native\nexec node\n");
  fz_puts(&heads[1], "#!/bin/sh\n# pn-cni node: \n# pn-cni entry: x");
  t[3] = (struct fz_target){"fuzz: wrapper header lines", fuzz_header, heads, 2, 4095};
  return 4;
}

FZ_MAIN("pn-cni client")
