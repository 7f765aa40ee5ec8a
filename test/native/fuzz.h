/*
 * The native helpers' test harnesses share this: a seeded PRNG, mutations of valid inputs, a
 * memfd to feed a parser that reads a file descriptor, and the check/report functions.
 *
 * Each harness #includes its helper's .c with PN_FUZZ_HARNESS defined (the helper's main is
 * left out), runs named cases (regressions, limits), then FUZZ_ITERATIONS inputs per parser:
 * random bytes and mutations of valid seeds (truncation, bit flips, inserted and deleted bytes,
 * huge length fields, lost terminators, splices). A crash is caught by the sanitizers
 * (scripts/test-native.sh builds with -fsanitize=address,undefined); an invariant a parser
 * broke is a failed check. Deterministic: the same seed gives the same inputs, so a failure
 * names its seed and iteration and replays with `HARNESS --seed S --only I`.
 *
 * Output ends with "<name>: N passed, N failed"; the exit code is non-zero on any failure.
 *
 * A harness defines cases() and fz_targets() (its parsers, each with seeds) and ends with
 * FZ_MAIN(name). Built with -fsanitize=fuzzer -DPN_LIBFUZZER the same targets run under
 * libFuzzer instead, coverage-guided and unbounded (scripts/test-native.sh --explore): the
 * target is FUZZ_TARGET (its index), and FUZZ_SEEDS_DIR receives its seeds as a start corpus.
 */
#ifndef PN_FUZZ_H
#define PN_FUZZ_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t fz_state = 0x9e3779b97f4a7c15ull;
static long fz_iterations = 10000, fz_only = -1;
static int fz_passed, fz_failed;
static const char *fz_name = "harness", *fz_case = "";
static long fz_iter = -1;

/* splitmix64: small, fast, and the same sequence everywhere. */
static uint64_t fz_next(void) {
  uint64_t z = (fz_state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static size_t fz_below(size_t n) { return n ? (size_t)(fz_next() % n) : 0; }

/* A check: counted; a failure prints where (case, fuzz iteration) and what. */
static int fz_check(int ok, const char *fmt, ...) {
  if (ok) return 1;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "FAIL %s: %s", fz_name, fz_case);
  if (fz_iter >= 0) fprintf(stderr, " (iteration %ld)", fz_iter);
  fprintf(stderr, ": ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fz_failed++;
#ifdef PN_LIBFUZZER
  abort(); /* libFuzzer keeps the input that got here */
#endif
  return 0;
}

/* A named case passes when none of its checks failed. */
#define FZ_CASE(title, ...)                    \
  do {                                         \
    int before_ = fz_failed;                   \
    fz_case = title;                           \
    fz_iter = -1;                              \
    __VA_ARGS__;                               \
    if (fz_failed == before_) {                \
      fz_passed++;                             \
      printf("  ok  %s\n", title);             \
    } else printf("  FAIL %s\n", title);       \
  } while (0)

/* A growable byte string. */
struct fz_buf { unsigned char *p; size_t n, cap; };
static void fz_put(struct fz_buf *b, const void *p, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) abort();
  }
  if (n) memcpy(b->p + b->n, p, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void fz_puts(struct fz_buf *b, const char *s) { fz_put(b, s, strlen(s)); }
static void fz_printf(struct fz_buf *b, const char *fmt, ...) {
  char tmp[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) fz_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}
static void fz_free(struct fz_buf *b) { free(b->p); *b = (struct fz_buf){0}; }

/* Numbers a length field is replaced with: edges, and far over every limit. */
static const char *const fz_huge[] = {"0", "1", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
                                      "99999999999999999999999", "-1", "+5", " 5", "0x10", "65536", "65537", "16777216", "16777217"};

/*
 * One input for a parser: random bytes, or a seed changed by 1–4 mutations. A mutation never
 * grows an input past `max` bytes.
 */
static void fz_input(struct fz_buf *o, const struct fz_buf *seeds, size_t nseeds, size_t max) {
  o->n = 0;
  if (!nseeds || fz_below(8) == 0) {
    size_t n = fz_below(fz_below(4) ? 64 : 2048);
    static const char alphabet[] = "0123456789 :,\n\t\0-abcxLUs/";
    for (size_t i = 0; i < n; i++) {
      unsigned char c = fz_below(2) ? (unsigned char)fz_next() : (unsigned char)alphabet[fz_below(sizeof alphabet - 1)];
      fz_put(o, &c, 1);
    }
    return;
  }
  const struct fz_buf *s = &seeds[fz_below(nseeds)];
  fz_put(o, s->p, s->n);
  int rounds = 1 + (int)fz_below(4);
  for (int r = 0; r < rounds; r++) {
    size_t at = fz_below(o->n + 1);
    switch (fz_below(9)) {
    case 0: /* truncate */
      o->n = at;
      break;
    case 1: /* flip a bit */
      if (o->n) o->p[fz_below(o->n)] ^= (unsigned char)(1u << fz_below(8));
      break;
    case 2: /* replace a byte */
      if (o->n) o->p[fz_below(o->n)] = (unsigned char)fz_next();
      break;
    case 3: { /* insert a few random bytes */
      size_t k = 1 + fz_below(8);
      if (o->n + k > max) break;
      fz_put(o, "        ", k);
      memmove(o->p + at + k, o->p + at, o->n - k - at);
      for (size_t i = 0; i < k; i++) o->p[at + i] = (unsigned char)fz_next();
      break;
    }
    case 4: { /* delete a run */
      size_t k = fz_below(o->n - (at < o->n ? at : o->n) + 1);
      memmove(o->p + at, o->p + at + k, o->n - at - k);
      o->n -= k;
      break;
    }
    case 5: { /* a number becomes huge (or an edge, or not a number) */
      size_t i = 0;
      for (size_t tries = 0; tries < 8; tries++) {
        i = fz_below(o->n + 1);
        if (i < o->n && o->p[i] >= '0' && o->p[i] <= '9') break;
      }
      if (i >= o->n || o->p[i] < '0' || o->p[i] > '9') break;
      while (i > 0 && o->p[i - 1] >= '0' && o->p[i - 1] <= '9') i--;
      size_t j = i;
      while (j < o->n && o->p[j] >= '0' && o->p[j] <= '9') j++;
      const char *h = fz_huge[fz_below(sizeof fz_huge / sizeof fz_huge[0])];
      size_t hl = strlen(h);
      if (o->n - (j - i) + hl > max) break;
      struct fz_buf t = {0};
      fz_put(&t, o->p, i);
      fz_put(&t, h, hl);
      fz_put(&t, o->p + j, o->n - j);
      o->n = 0;
      fz_put(o, t.p, t.n);
      fz_free(&t);
      break;
    }
    case 6: /* lose a terminator: a newline, NUL or comma goes */
      for (size_t i = 0; i < o->n; i++) {
        size_t k = (at + i) % o->n;
        if (o->p[k] == '\n' || o->p[k] == 0 || o->p[k] == ',') {
          memmove(o->p + k, o->p + k + 1, o->n - k - 1);
          o->n--;
          break;
        }
      }
      break;
    case 7: { /* duplicate a chunk */
      size_t k = fz_below(o->n - (at < o->n ? at : o->n) + 1);
      if (k > 256) k = 256;
      if (o->n + k > max) break;
      unsigned char *copy = malloc(k + 1);
      if (!copy) abort();
      memcpy(copy, o->p + at, k);
      size_t old = o->n;
      fz_put(o, copy, k);
      memmove(o->p + at + k, o->p + at, old - at);
      memcpy(o->p + at, copy, k);
      free(copy);
      break;
    }
    default: { /* splice the tail of another seed */
      const struct fz_buf *t = &seeds[fz_below(nseeds)];
      size_t from = fz_below(t->n + 1);
      o->n = at;
      if (o->n + (t->n - from) <= max) fz_put(o, t->p + from, t->n - from);
      break;
    }
    }
  }
  if (o->p) o->p[o->n] = 0;
}

/* A file descriptor that reads back `n` bytes of p (for parsers that read(2)). */
static int fz_fd(const void *p, size_t n) {
  int fd = memfd_create("pn-fuzz", MFD_CLOEXEC);
  if (fd < 0) { perror("memfd_create"); exit(2); }
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, (const char *)p + done, n - done);
    if (w <= 0) { perror("write memfd"); exit(2); }
    done += (size_t)w;
  }
  lseek(fd, 0, SEEK_SET);
  return fd;
}

/* --seed S, --iterations N, --only I (replay one fuzz iteration). */
static void fz_args(int argc, char **argv, const char *name) {
  fz_name = name;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--seed")) fz_state = strtoull(argv[i + 1], NULL, 0);
    else if (!strcmp(argv[i], "--iterations")) fz_iterations = strtol(argv[i + 1], NULL, 10);
    else if (!strcmp(argv[i], "--only")) fz_only = strtol(argv[i + 1], NULL, 10);
  }
  printf("%s (seed 0x%llx)\n", name, (unsigned long long)fz_state);
}

/*
 * Run `one` on `fz_iterations` inputs; it returns 0 or calls fz_check. Counted as one case.
 * Every iteration draws from the PRNG in order, so --only I replays iteration I exactly.
 */
static void fz_run(const char *title, const struct fz_buf *seeds, size_t nseeds, size_t max, void (*one)(const unsigned char *p, size_t n)) {
  int before = fz_failed;
  fz_case = title;
  struct fz_buf in = {0};
  for (long i = 0; i < fz_iterations; i++) {
    fz_iter = i;
    fz_input(&in, seeds, nseeds, max);
    if (fz_only >= 0 && i != fz_only) continue;
    one(in.p ? in.p : (const unsigned char *)"", in.n);
  }
  fz_iter = -1;
  fz_free(&in);
  if (fz_failed == before) {
    fz_passed++;
    printf("  ok  %s: %ld inputs\n", title, fz_iterations);
  } else printf("  FAIL %s\n", title);
}

static int fz_report(void) {
  printf("%s: %d passed, %d failed\n", fz_name, fz_passed, fz_failed);
  return fz_failed ? 1 : 0;
}

/* One parser to fuzz: its entry, its seeds (static storage), the largest input a mutation makes. */
struct fz_target {
  const char *title;
  void (*one)(const unsigned char *p, size_t n);
  const struct fz_buf *seeds;
  size_t nseeds, max;
};
#define FZ_MAX_TARGETS 8

#ifndef PN_LIBFUZZER
#define FZ_MAIN(name)                                                            \
  int main(int argc, char **argv) {                                              \
    fz_args(argc, argv, name);                                                   \
    cases();                                                                     \
    static struct fz_target t[FZ_MAX_TARGETS];                                   \
    size_t n = fz_targets(t);                                                    \
    for (size_t i = 0; i < n; i++) fz_run(t[i].title, t[i].seeds, t[i].nseeds, t[i].max, t[i].one); \
    return fz_report();                                                          \
  }
#else
#include <sys/stat.h>
static struct fz_target fz_sel;
#define FZ_MAIN(name)                                                            \
  int LLVMFuzzerInitialize(int *argc, char ***argv) {                            \
    (void)argc;                                                                  \
    (void)argv;                                                                  \
    static struct fz_target t[FZ_MAX_TARGETS];                                   \
    size_t n = fz_targets(t), k = getenv("FUZZ_TARGET") ? strtoul(getenv("FUZZ_TARGET"), NULL, 10) : 0; \
    if (k >= n) { fprintf(stderr, "%s: FUZZ_TARGET is 0..%zu\n", name, n - 1); exit(2); } \
    fz_sel = t[k];                                                               \
    fprintf(stderr, "%s: %s\n", name, fz_sel.title);                             \
    const char *dir = getenv("FUZZ_SEEDS_DIR");                                 \
    for (size_t i = 0; dir && i < fz_sel.nseeds; i++) {                          \
      char path[4096];                                                           \
      snprintf(path, sizeof path, "%s/seed-%zu", dir, i);                        \
      FILE *f = fopen(path, "wb");                                               \
      if (f) { fwrite(fz_sel.seeds[i].p, 1, fz_sel.seeds[i].n, f); fclose(f); }  \
    }                                                                            \
    return 0;                                                                    \
  }                                                                              \
  int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n) {                      \
    fz_sel.one(p, n);                                                            \
    return 0;                                                                    \
  }
#endif

#endif
