/* libFuzzer target: the PROXY protocol header, CIDR ranges and
 * X-Forwarded-For. proxy_parse never reads past len, never claims more than
 * len, and gives the same answer for a longer buffer with the same prefix
 * unless it asked for more; what the string parsers accept is well formed. */
#include <arpa/inet.h>
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxyproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int parse_copy(const uint8_t *data, size_t len, struct proxy_header *out)
{
  /* An exact-size block, so ASan catches a read at buf[len]. */
  uint8_t *p = malloc(len ? len : 1);
  memcpy(p, data, len);
  memset(out, 0, sizeof(*out));
  int r = proxy_parse(p, len, out);
  free(p);
  assert(r == -1 || r == -2 || (r > 0 && (size_t)r <= len));
  assert(r != -2 || len < PROXY_HEADER_MAX);
  if (r > 0) {
    assert(out->local == 0 || out->local == 1);
    assert(memchr(out->addr, '\0', sizeof(out->addr)));
    if (out->local) {
      assert(out->addr[0] == '\0' && out->port == 0);
    } else {
      unsigned char b[16];
      assert(inet_pton(AF_INET, out->addr, b) == 1 || inet_pton(AF_INET6, out->addr, b) == 1);
      assert(out->port <= 65535);
    }
  }
  return r;
}

/* A shorter buffer that got an answer gets the same one when longer. */
static void same(int r1, const struct proxy_header *h1, int r2, const struct proxy_header *h2)
{
  if (r1 == -2)
    return;
  assert(r1 == r2);
  if (r1 > 0)
    assert(h1->local == h2->local && strcmp(h1->addr, h2->addr) == 0 && h1->port == h2->port);
}

static void fuzz_parse(const uint8_t *data, size_t size)
{
  struct proxy_header whole, part, longer;
  int r = parse_copy(data, size, &whole);
  int rp = parse_copy(data, size / 2, &part);
  same(rp, &part, r, &whole);
  if (size > 0) {
    rp = parse_copy(data, size - 1, &part);
    same(rp, &part, r, &whole);
  }
  if (r > 0) { /* the header alone is the same header */
    rp = parse_copy(data, (size_t)r, &part);
    same(rp, &part, r, &whole);
    assert(rp == r);
  }
  static const char tail[] = "GET / HTTP/1.1\r\n\r\n\r\n\x00\x01";
  uint8_t *p = malloc(size + sizeof(tail));
  memcpy(p, data, size);
  memcpy(p + size, tail, sizeof(tail));
  int rl = parse_copy(p, size + sizeof(tail), &longer);
  same(r, &whole, rl, &longer);
  free(p);
}

static void fuzz_strings(const uint8_t *data, size_t size)
{
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';

  struct proxy_cidr list[3];
  char err[128] = "";
  int have = proxy_cidr_parse(s, &list[0], err, sizeof(err)) == 0;
  if (have) {
    int max = list[0].family == AF_INET ? 32 : 128;
    assert(list[0].family == AF_INET || list[0].family == AF_INET6);
    assert(list[0].bits >= 0 && list[0].bits <= max);
    /* The range's own first address is inside it. */
    char text[PROXY_ADDR_MAX];
    assert(inet_ntop(list[0].family, list[0].addr, text, sizeof(text)));
    assert(proxy_cidr_match(list, 1, text) == 1);
  } else {
    assert(err[0] != '\0');
  }
  assert(proxy_cidr_parse("10.0.0.0/8", &list[have], NULL, 0) == 0);
  assert(proxy_cidr_parse("fd00::/8", &list[have + 1], NULL, 0) == 0);
  size_t n = (size_t)have + 2;
  int m = proxy_cidr_match(list, n, s);
  assert(m == 0 || m == 1);

  char out[PROXY_ADDR_MAX];
  if (proxy_xff_client(s, list, n, out, sizeof(out)) == 0) {
    unsigned char b[16];
    assert(memchr(out, '\0', sizeof(out)));
    assert(inet_pton(AF_INET, out, b) == 1 || inet_pton(AF_INET6, out, b) == 1);
    /* With nothing trusted, the right-most hop is the client: it exists. */
    assert(proxy_xff_client(s, NULL, 0, out, sizeof(out)) == 0);
  }
  free(s);
}

/* Several X-Forwarded-For values (the input split at NUL bytes) joined
 * into a buffer whose size the first byte picks: the result is the right
 * end of the joined list, never longer than the buffer. */
static void fuzz_join(const uint8_t *data, size_t size)
{
  if (size < 2)
    return;
  size_t cap = 2 + data[0] % 64;
  char *copy = malloc(size), *buf = malloc(cap);
  memcpy(copy, data + 1, size - 1);
  copy[size - 1] = '\0';
  const char *values[16];
  size_t n = 0;
  for (char *p = copy; n < 16 && p < copy + size - 1; p += strlen(p) + 1)
    values[n++] = p;
  size_t len = proxy_xff_join_tail(values, n, buf, cap);
  assert(len < cap && strlen(buf) == len);
  free(copy);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  fuzz_join(data, size);
  fuzz_parse(data, size);
  fuzz_strings(data, size);
  return 0;
}
