/* A tiny assertion kit for the C unit tests: CHECK counts and reports, never
 * aborts, so one run shows every failure. main ends with check_done(). */
#ifndef TINYSSE_CHECK_H
#define TINYSSE_CHECK_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long check_count, check_failures;

#define CHECK(cond)                                                           \
  do {                                                                        \
    check_count++;                                                            \
    if (!(cond)) {                                                            \
      check_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                         \
  } while (0)

/* Like CHECK(a == b) for integers, printing both values on failure. */
#define CHECK_EQ(a, b)                                                        \
  do {                                                                        \
    uint64_t check_a_ = (uint64_t)(a), check_b_ = (uint64_t)(b);              \
    check_count++;                                                            \
    if (check_a_ != check_b_) {                                               \
      check_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%" PRIu64 " vs %" PRIu64 ")\n", \
              __FILE__, __LINE__, #a, #b, check_a_, check_b_);                \
    }                                                                         \
  } while (0)

/* Compares len bytes with a NUL-terminated expectation, printing both. */
#define CHECK_MEM(got, len, want)                                             \
  do {                                                                        \
    const char *check_g_ = (got), *check_w_ = (want);                         \
    size_t check_n_ = (len);                                                  \
    check_count++;                                                            \
    if (check_n_ != strlen(check_w_) || memcmp(check_g_, check_w_, check_n_) != 0) { \
      check_failures++;                                                       \
      fprintf(stderr, "%s:%d: CHECK failed: %s equals %s\n  got:  ", __FILE__, __LINE__, \
              #got, #want);                                                   \
      check_dump(check_g_, check_n_);                                         \
      fprintf(stderr, "\n  want: ");                                          \
      check_dump(check_w_, strlen(check_w_));                                 \
      fprintf(stderr, "\n");                                                  \
    }                                                                         \
  } while (0)

#define CHECK_STR(got, want) CHECK_MEM((got), strlen(got), (want))

static inline void check_dump(const char *s, size_t n)
{
  fputc('"', stderr);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n')
      fputs("\\n", stderr);
    else if (c == '\r')
      fputs("\\r", stderr);
    else if (c == '"' || c == '\\')
      fprintf(stderr, "\\%c", c);
    else if (c < 0x20 || c >= 0x7f)
      fprintf(stderr, "\\x%02x", c);
    else
      fputc(c, stderr);
  }
  fputc('"', stderr);
}

/* Prints the tally; the return value is main's exit status. */
static inline int check_done(void)
{
  printf("%lu checks, %lu failures\n", check_count, check_failures);
  return check_failures ? 1 : 0;
}

/* Seeded PRNG (xorshift64*) so a failing property run can be replayed with
 * TEST_SEED=<n>; libc rand() differs between platforms. */
static uint64_t check_rng_state;

static inline uint64_t check_seed(uint64_t fallback)
{
  const char *env = getenv("TEST_SEED");
  uint64_t seed = env && *env ? strtoull(env, NULL, 0) : fallback;
  printf("seed %" PRIu64 " (set TEST_SEED to override)\n", seed);
  check_rng_state = seed ? seed : 0x9e3779b97f4a7c15ULL;
  return seed;
}

static inline uint64_t rnd(void)
{
  uint64_t x = check_rng_state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  check_rng_state = x;
  return x * 0x2545f4914f6cdd1dULL;
}

/* A value of random magnitude: small and huge numbers both show up. */
static inline uint64_t rnd_u64(void)
{
  uint64_t shift = rnd() % 64;
  return rnd() >> shift;
}

/* Uniform-enough integer in [lo, hi]. Call rnd* once per statement or in
 * separate declarators: argument order is unspecified, and a replayed
 * TEST_SEED must give the same run with any compiler. */
static inline uint64_t rnd_range(uint64_t lo, uint64_t hi)
{
  return lo + rnd() % (hi - lo + 1);
}

#endif
