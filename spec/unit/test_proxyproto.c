/* Unit tests for core/proxyproto.c: CIDR ranges, the PROXY protocol header
 * (v1 and v2, fed whole, byte by byte and followed by HTTP bytes, plus
 * malformed ones and random addresses checked against inet_ntop) and
 * X-Forwarded-For. */
#include "check.h"
#include "proxyproto.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#define HTTP_TAIL "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"

/* One valid header h of n bytes, expected to give addr:port (addr NULL for
 * local): whole, every shorter prefix (-2), with application bytes after
 * it (exactly n consumed), and in a buffer cut at each length from n on. */
static void check_header(const char *what, const void *h, size_t n, const char *addr,
                         unsigned port)
{
  const unsigned char *b = h;
  struct proxy_header out;
  unsigned char buf[PROXY_HEADER_MAX + sizeof(HTTP_TAIL)];
  memset(&out, 0x55, sizeof(out));
  int r = proxy_parse(b, n, &out);
  if (r != (int)n)
    fprintf(stderr, "  in %s\n", what);
  CHECK_EQ(r, n);
  if (addr) {
    CHECK_EQ(out.local, 0);
    CHECK_STR(out.addr, addr);
    CHECK_EQ(out.port, port);
  } else {
    CHECK_EQ(out.local, 1);
    CHECK_STR(out.addr, "");
    CHECK_EQ(out.port, 0);
  }
  /* Byte by byte, each prefix in its own exact-size heap block so ASan
   * sees any read past len. */
  int prefix_failures = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char *p = malloc(i ? i : 1);
    memcpy(p, b, i);
    if (proxy_parse(p, i, &out) != -2)
      prefix_failures++;
    free(p);
  }
  if (prefix_failures)
    fprintf(stderr, "  %s: %d prefixes did not give -2\n", what, prefix_failures);
  CHECK_EQ(prefix_failures, 0);
  memcpy(buf, b, n);
  memcpy(buf + n, HTTP_TAIL, sizeof(HTTP_TAIL) - 1);
  for (size_t extra = 0; extra < sizeof(HTTP_TAIL); extra++)
    CHECK_EQ(proxy_parse(buf, n + extra, &out), n);
}

static int parse_str(const char *s)
{
  struct proxy_header out;
  return proxy_parse((const unsigned char *)s, strlen(s), &out);
}

/* A malformed header: -1 whole, and -1 or -2 (never a count) for every
 * prefix; once a prefix gives -1, so does every longer one. */
static void check_bad(const char *what, const void *h, size_t n)
{
  struct proxy_header out;
  int r = proxy_parse(h, n, &out);
  if (r != -1)
    fprintf(stderr, "  %s gave %d\n", what, r);
  CHECK_EQ(r, -1);
  int refused = 0, bad = 0;
  for (size_t i = 0; i <= n; i++) {
    int ri = proxy_parse(h, i, &out);
    if (ri >= 0 || (refused && ri != -1))
      bad++;
    if (ri == -1)
      refused = 1;
  }
  if (bad)
    fprintf(stderr, "  %s: %d inconsistent prefixes\n", what, bad);
  CHECK_EQ(bad, 0);
}

#define BAD(s) check_bad(s, s, strlen(s))

static void test_v1(void)
{
  const char *s = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
  check_header("v1 tcp4", s, strlen(s), "192.0.2.7", 56324);
  s = "PROXY TCP6 2001:DB8:0:0::1 2001:db8::2 65535 80\r\n";
  check_header("v1 tcp6", s, strlen(s), "2001:db8::1", 65535);
  s = "PROXY TCP6 ::ffff:192.0.2.1 ::1 0 80\r\n";
  check_header("v1 tcp6 mapped", s, strlen(s), "::ffff:192.0.2.1", 0);
  s = "PROXY UNKNOWN\r\n";
  check_header("v1 unknown", s, strlen(s), NULL, 0);
  s = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  check_header("v1 unknown with fields", s, strlen(s), NULL, 0);

  /* The longest line: 107 bytes, CRLF included. */
  char line[200];
  memset(line, 'x', sizeof(line));
  memcpy(line, "PROXY UNKNOWN ", 14);
  memcpy(line + 105, "\r\n", 2);
  check_header("v1 107 bytes", line, 107, NULL, 0);
  memset(line, 'x', sizeof(line));
  memcpy(line, "PROXY UNKNOWN ", 14);
  memcpy(line + 106, "\r\n", 2);
  check_bad("v1 108 bytes", line, 108);
  CHECK_EQ(proxy_parse((unsigned char *)line, 106, &(struct proxy_header){0}), -2);
  CHECK_EQ(proxy_parse((unsigned char *)line, 107, &(struct proxy_header){0}), -1);

  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\n");   /* LF alone */
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\rX");  /* CR alone */
  BAD("PROXY TCP4  192.0.2.7 198.51.100.1 56324 443\r\n"); /* two spaces */
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 \r\n"); /* space before CR */
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 56324\r\n");     /* a field short */
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443 1\r\n"); /* one too many */
  BAD("PROXY TCP4 ::1 ::1 1 2\r\n");                      /* wrong family */
  BAD("PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n");
  BAD("PROXY TCP4 192.0.2.256 198.51.100.1 1 2\r\n");
  BAD("PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n");     /* octal-looking */
  BAD("PROXY TCP4 192.0.2 198.51.100.1 1 2\r\n");
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n");
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 +1 443\r\n");
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 -1 443\r\n");
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 080 443\r\n");
  BAD("PROXY TCP4 192.0.2.7 198.51.100.1 1 4430000\r\n");
  BAD("PROXY TCP6 1::2::3 ::1 1 2\r\n");
  BAD("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n");
  BAD("PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n");
  BAD("PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n");
  BAD("PROXY TCP 192.0.2.7 198.51.100.1 1 2\r\n");
  BAD("PROXY UNKNOWNX\r\n");
  BAD("PROXY UNKNOWN junk\nmore\r\n");
  BAD("PROXY\r\n");
  BAD("PROXY \r\n");
  BAD("PROXY  UNKNOWN\r\n");
  BAD("proxy UNKNOWN\r\n");
  BAD("GET / HTTP/1.1\r\n\r\n");
  BAD("PRI * HTTP/2.0\r\n\r\n");
  check_bad("v1 NUL in address", "PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n", 33);
  /* Refused as soon as a field cannot become valid, not at CRLF. */
  CHECK_EQ(parse_str("PROXY TCP4 1.2.3.4x"), -1);
  CHECK_EQ(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1a"), -1);
  CHECK_EQ(parse_str("PROXY TCP4 1234567890123456"), -1);
  CHECK_EQ(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "), -1);
  CHECK_EQ(parse_str("PROXY TCP4 1.2.3.4 5.6.7.8 1 2"), -2);
  CHECK_EQ(parse_str(""), -2);
}

/* A v2 header: signature, ver_cmd, family, then payload (addresses + TLVs). */
static size_t v2(unsigned char *out, unsigned char ver_cmd, unsigned char fam,
                 const void *payload, size_t plen, size_t declared)
{
  static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                        0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  memcpy(out, sig, 12);
  out[12] = ver_cmd;
  out[13] = fam;
  out[14] = (unsigned char)(declared >> 8);
  out[15] = (unsigned char)declared;
  if (plen)
    memcpy(out + 16, payload, plen);
  return 16 + plen;
}

static void test_v2(void)
{
  unsigned char h[16 + 2048], pl[2048];
  size_t n;
  /* TCP4 192.0.2.7:56324 -> 198.51.100.1:443, then a PP2_TYPE_AUTHORITY
   * TLV and a PP2_TYPE_NOOP one, skipped. */
  static const unsigned char tcp4[] = {192, 0, 2, 7, 198, 51, 100, 1, 0xdc, 0x04, 0x01, 0xbb,
                                       0x02, 0x00, 0x05, 'a', '.', 'c', 'o', 'm',
                                       0x04, 0x00, 0x02, 0, 0};
  n = v2(h, 0x21, 0x11, tcp4, sizeof(tcp4), sizeof(tcp4));
  check_header("v2 tcp4 + TLVs", h, n, "192.0.2.7", 56324);
  n = v2(h, 0x21, 0x11, tcp4, 12, 12);
  check_header("v2 tcp4", h, n, "192.0.2.7", 56324);
  n = v2(h, 0x21, 0x12, tcp4, 12, 12);
  check_header("v2 udp4", h, n, "192.0.2.7", 56324);

  memset(pl, 0, 36);
  inet_pton(AF_INET6, "2001:db8::1", pl);
  inet_pton(AF_INET6, "2001:db8::2", pl + 16);
  pl[32] = 0x30, pl[33] = 0x39, pl[34] = 0, pl[35] = 80; /* 12345, 80 */
  memcpy(pl + 36, "\x01\x00\x02h2", 5);                   /* PP2_TYPE_ALPN */
  n = v2(h, 0x21, 0x21, pl, 41, 41);
  check_header("v2 tcp6 + TLV", h, n, "2001:db8::1", 12345);
  n = v2(h, 0x21, 0x22, pl, 36, 36);
  check_header("v2 udp6", h, n, "2001:db8::1", 12345);

  n = v2(h, 0x20, 0x00, NULL, 0, 0);
  check_header("v2 local", h, n, NULL, 0);
  n = v2(h, 0x20, 0x11, tcp4, sizeof(tcp4), sizeof(tcp4));
  check_header("v2 local with addresses", h, n, NULL, 0);
  n = v2(h, 0x20, 0x77, NULL, 0, 0);
  check_header("v2 local, family ignored", h, n, NULL, 0);
  n = v2(h, 0x21, 0x00, "\x04\x00\x01x", 4, 4);
  check_header("v2 unspec + TLV", h, n, NULL, 0);
  memset(pl, 'p', 216);
  n = v2(h, 0x21, 0x31, pl, 216, 216);
  check_header("v2 unix stream", h, n, NULL, 0);
  n = v2(h, 0x21, 0x32, pl, 216, 216);
  check_header("v2 unix dgram", h, n, NULL, 0);
  memset(pl, 0, sizeof(pl));
  memcpy(pl, tcp4, 12);
  n = v2(h, 0x21, 0x11, pl, PROXY_V2_MAX_PAYLOAD, PROXY_V2_MAX_PAYLOAD);
  check_header("v2 largest payload", h, n, "192.0.2.7", 56324);
  CHECK_EQ(n, PROXY_HEADER_MAX);

  /* Refused on the byte that makes it invalid, without waiting for the
   * payload its length announces. */
  n = v2(h, 0x21, 0x11, NULL, 0, PROXY_V2_MAX_PAYLOAD + 1);
  check_bad("v2 payload over the cap", h, n);
  n = v2(h, 0x21, 0x11, NULL, 0, 0xffff);
  check_bad("v2 payload 65535", h, n);
  n = v2(h, 0x11, 0x11, tcp4, 12, 12);
  check_bad("v2 version 1", h, n);
  n = v2(h, 0x31, 0x11, tcp4, 12, 12);
  check_bad("v2 version 3", h, n);
  n = v2(h, 0x22, 0x11, tcp4, 12, 12);
  check_bad("v2 command 2", h, n);
  n = v2(h, 0x2f, 0x11, tcp4, 12, 12);
  check_bad("v2 command 15", h, n);
  static const unsigned char bad_families[] = {0x01, 0x10, 0x13, 0x20, 0x23, 0x30, 0x41, 0xff};
  for (size_t i = 0; i < sizeof(bad_families); i++) {
    n = v2(h, 0x21, bad_families[i], tcp4, 12, 12);
    check_bad("v2 undefined family", h, n);
  }
  n = v2(h, 0x21, 0x11, tcp4, 11, 11);
  check_bad("v2 tcp4 short of its addresses", h, n);
  n = v2(h, 0x21, 0x21, pl, 35, 35);
  check_bad("v2 tcp6 short of its addresses", h, n);
  n = v2(h, 0x21, 0x31, pl, 215, 215);
  check_bad("v2 unix short of its addresses", h, n);
  n = v2(h, 0x21, 0x11, tcp4, 12, 12);
  for (size_t i = 0; i < 12; i++) {
    unsigned char c[28];
    memcpy(c, h, n);
    c[i] ^= 0x20;
    check_bad("v2 signature byte", c, n);
  }
}

/* Random addresses and ports, v1 and v2, against inet_ntop. */
static void test_random_headers(void)
{
  check_seed(0x70726f7879);
  for (int iter = 0; iter < 2000; iter++) {
    int six = (int)(rnd() & 1);
    unsigned char src[16], dst[16], h[128];
    for (int i = 0; i < 16; i++) {
      src[i] = (unsigned char)rnd();
      dst[i] = (unsigned char)rnd();
    }
    if (six && rnd() % 4 == 0) /* runs of zeros, so "::" shows up */
      memset(src + rnd_range(0, 8), 0, 8);
    unsigned sport = (unsigned)rnd_range(0, 65535);
    unsigned dport = (unsigned)rnd_range(0, 65535);
    int family = six ? AF_INET6 : AF_INET;
    char s[PROXY_ADDR_MAX], d[PROXY_ADDR_MAX], line[160];
    inet_ntop(family, src, s, sizeof(s));
    inet_ntop(family, dst, d, sizeof(d));
    int len = snprintf(line, sizeof(line), "PROXY TCP%c %s %s %u %u\r\n", six ? '6' : '4', s, d,
                       sport, dport);
    struct proxy_header out;
    int want = len <= PROXY_V1_MAX ? len : -1;
    int r = proxy_parse((unsigned char *)line, (size_t)len, &out);
    CHECK_EQ(r, want);
    if (r > 0) {
      CHECK_STR(out.addr, s);
      CHECK_EQ(out.port, sport);
    }
    size_t alen = six ? 16 : 4;
    unsigned char pl[36];
    memcpy(pl, src, alen);
    memcpy(pl + alen, dst, alen);
    pl[2 * alen] = (unsigned char)(sport >> 8), pl[2 * alen + 1] = (unsigned char)sport;
    pl[2 * alen + 2] = (unsigned char)(dport >> 8), pl[2 * alen + 3] = (unsigned char)dport;
    size_t n = v2(h, 0x21, six ? 0x21 : 0x11, pl, 2 * alen + 4, 2 * alen + 4);
    CHECK_EQ(proxy_parse(h, n, &out), n);
    CHECK_STR(out.addr, s);
    CHECK_EQ(out.port, sport);
  }
}

static struct proxy_cidr cidr(const char *s)
{
  struct proxy_cidr c;
  char err[128];
  memset(&c, 0, sizeof(c));
  if (proxy_cidr_parse(s, &c, err, sizeof(err)) != 0) {
    fprintf(stderr, "  cidr %s: %s\n", s, err);
    CHECK(0);
  }
  return c;
}

static void cidr_bad(const char *s, const char *why)
{
  struct proxy_cidr c;
  char err[128] = "";
  CHECK_EQ(proxy_cidr_parse(s, &c, err, sizeof(err)), -1);
  if (!strstr(err, why))
    fprintf(stderr, "  cidr %s: %s\n", s ? s : "(null)", err);
  CHECK(strstr(err, why) != NULL);
}

static int in(const char *range, const char *ip)
{
  struct proxy_cidr c = cidr(range);
  return proxy_cidr_match(&c, 1, ip);
}

static void test_cidr(void)
{
  struct proxy_cidr c = cidr("10.0.0.0/8");
  CHECK_EQ(c.family, AF_INET);
  CHECK_EQ(c.bits, 8);
  CHECK_EQ(c.addr[0], 10);
  c = cidr("192.168.1.7");
  CHECK_EQ(c.family, AF_INET);
  CHECK_EQ(c.bits, 32);
  c = cidr("::1");
  CHECK_EQ(c.family, AF_INET6);
  CHECK_EQ(c.bits, 128);
  c = cidr("fd00::/8");
  CHECK_EQ(c.family, AF_INET6);
  CHECK_EQ(c.bits, 8);
  c = cidr("::ffff:10.0.0.0/104"); /* stored as the IPv4 range */
  CHECK_EQ(c.family, AF_INET);
  CHECK_EQ(c.bits, 8);
  CHECK_EQ(c.addr[0], 10);
  c = cidr("0.0.0.0/0");
  CHECK_EQ(c.bits, 0);
  c = cidr("::/0");
  CHECK_EQ(c.family, AF_INET6);
  CHECK_EQ(c.bits, 0);

  cidr_bad("10.0.0.1/8", "did you mean 10.0.0.0/8?");
  cidr_bad("1.2.3.4/0", "did you mean 0.0.0.0/0?");
  cidr_bad("fd00::1/8", "did you mean fd00::/8?");
  cidr_bad("192.168.1.128/24", "address bits set");
  cidr_bad("::ffff:10.0.0.1/104", "address bits set");
  cidr_bad("10.0.0.0/33", "0-32");
  cidr_bad("::/129", "0-128");
  cidr_bad("10.0.0.0/", "0-32");
  cidr_bad("10.0.0.0/-1", "0-32");
  cidr_bad("10.0.0.0/+8", "0-32");
  cidr_bad("10.0.0.0/8 ", "0-32");
  cidr_bad("10.0.0.0/1000", "0-32");
  cidr_bad("10.0.0.0/8/8", "0-32");
  cidr_bad("10.0.0", "not an IPv4 or IPv6");
  cidr_bad("10.0.0.0.0/8", "not an IPv4 or IPv6");
  cidr_bad(" 10.0.0.0/8", "not an IPv4 or IPv6");
  cidr_bad("example.com/8", "not an IPv4 or IPv6");
  cidr_bad("fe80::1%eth0", "not an IPv4 or IPv6");
  cidr_bad("/8", "not an IPv4 or IPv6");
  cidr_bad("", "empty");
  cidr_bad(NULL, "empty");
  CHECK_EQ(proxy_cidr_parse("nope", &c, NULL, 0), -1);
  char tiny[8];
  CHECK_EQ(proxy_cidr_parse("10.0.0.1/8", &c, tiny, sizeof(tiny)), -1);
  CHECK_EQ(strlen(tiny), sizeof(tiny) - 1);

  CHECK(in("10.0.0.0/8", "10.1.2.3"));
  CHECK(!in("10.0.0.0/8", "11.0.0.1"));
  CHECK(in("10.0.0.0/8", "::ffff:10.1.2.3"));
  CHECK(!in("10.0.0.0/8", "::10.1.2.3")); /* IPv4-compatible is not mapped */
  CHECK(in("192.168.0.0/23", "192.168.1.255"));
  CHECK(!in("192.168.0.0/23", "192.168.2.0"));
  CHECK(in("127.0.0.1", "127.0.0.1"));
  CHECK(!in("127.0.0.1", "127.0.0.2"));
  CHECK(in("::1", "::1"));
  CHECK(in("::1", "0:0:0:0:0:0:0:1"));
  CHECK(!in("::1", "::2"));
  CHECK(!in("::1", "127.0.0.1"));
  CHECK(in("fd00::/8", "fd12:3456::1"));
  CHECK(!in("fd00::/8", "fe00::1"));
  CHECK(in("2001:db8::/33", "2001:db8:7fff::1"));
  CHECK(!in("2001:db8::/33", "2001:db8:8000::1"));
  CHECK(in("fe80::/10", "fe80::1%eth0"));
  CHECK(!in("fe80::/10", "fe80::1%"));
  CHECK(!in("10.0.0.0/8", "10.0.0.1%eth0"));
  CHECK(in("::ffff:10.0.0.0/104", "10.9.9.9"));
  CHECK(in("::ffff:10.0.0.0/104", "::ffff:10.9.9.9"));
  CHECK(in("::ffff:0:0/96", "203.0.113.5"));
  CHECK(!in("::ffff:0:0/96", "::1"));
  CHECK(in("::/0", "203.0.113.5")); /* an IPv6 range covering the mapped form */
  CHECK(in("::/0", "2001:db8::1"));
  CHECK(in("0.0.0.0/0", "203.0.113.5"));
  CHECK(!in("0.0.0.0/0", "::1"));
  CHECK(!in("10.0.0.0/8", "10.0.0.1 "));
  CHECK(!in("10.0.0.0/8", "unknown"));
  CHECK(!in("10.0.0.0/8", ""));
  CHECK(!in("10.0.0.0/8", NULL));
  struct proxy_cidr list[3] = {cidr("10.0.0.0/8"), cidr("::1"), cidr("192.168.0.0/16")};
  CHECK(proxy_cidr_match(list, 3, "192.168.4.4"));
  CHECK(proxy_cidr_match(list, 3, "::1"));
  CHECK(!proxy_cidr_match(list, 3, "172.16.0.1"));
  CHECK(!proxy_cidr_match(list, 0, "10.0.0.1"));
}

static struct proxy_cidr trusted[3];

/* The client X-Forwarded-For names, or "-" for -1. */
static const char *xff(const char *value)
{
  static char out[PROXY_ADDR_MAX];
  memset(out, 'z', sizeof(out));
  if (proxy_xff_client(value, trusted, 3, out, sizeof(out)) != 0)
    return "-";
  return out;
}

static void test_xff(void)
{
  trusted[0] = cidr("10.0.0.0/8");
  trusted[1] = cidr("127.0.0.1");
  trusted[2] = cidr("fd00::/8");

  CHECK_STR(xff("203.0.113.5"), "203.0.113.5");
  CHECK_STR(xff("203.0.113.5, 10.0.0.2"), "203.0.113.5");
  /* The client may send its own X-Forwarded-For: what lies left of the
   * first untrusted hop, spoofed or garbage, is never looked at. */
  CHECK_STR(xff("6.6.6.6, 203.0.113.5, 10.0.0.2"), "203.0.113.5");
  CHECK_STR(xff("10.0.0.9, 203.0.113.5, 10.0.0.2"), "203.0.113.5");
  CHECK_STR(xff("unknown, _hidden, 203.0.113.5, 10.0.0.2"), "203.0.113.5");
  /* All trusted: the left-most. */
  CHECK_STR(xff("10.0.0.3, 10.0.0.2"), "10.0.0.3");
  CHECK_STR(xff("127.0.0.1"), "127.0.0.1");
  CHECK_STR(xff("::ffff:10.0.0.5, 10.0.0.2"), "::ffff:10.0.0.5");
  CHECK_STR(xff("198.51.100.4, ::ffff:10.0.0.5, fd00::1"), "198.51.100.4");
  /* Garbage before any untrusted hop: unusable. */
  CHECK_STR(xff("203.0.113.5, unknown, 10.0.0.2"), "-");
  CHECK_STR(xff("203.0.113.5, _hidden"), "-");
  CHECK_STR(xff("unknown"), "-");
  CHECK_STR(xff("203.0.113.5, 10.0.0.2 10.0.0.3"), "-");
  CHECK_STR(xff("203.0.113.5;10.0.0.2"), "-");
  /* Spaces, tabs and empty elements. */
  CHECK_STR(xff("  203.0.113.5 ,\t10.0.0.1 "), "203.0.113.5");
  CHECK_STR(xff("203.0.113.5,10.0.0.1"), "203.0.113.5");
  CHECK_STR(xff("203.0.113.5,,10.0.0.1,"), "203.0.113.5");
  CHECK_STR(xff(",10.0.0.1"), "10.0.0.1");
  CHECK_STR(xff(""), "-");
  CHECK_STR(xff("   "), "-");
  CHECK_STR(xff(" , ,,"), "-");
  CHECK_STR(xff(NULL), "-");
  /* Ports and brackets; canonical output. */
  CHECK_STR(xff("203.0.113.5:5678, 10.0.0.1"), "203.0.113.5");
  CHECK_STR(xff("[2001:db8::1]:80, 10.0.0.1"), "2001:db8::1");
  CHECK_STR(xff("[2001:DB8:0::1]"), "2001:db8::1");
  CHECK_STR(xff("2001:DB8:0:0:0:0:0:1"), "2001:db8::1");
  CHECK_STR(xff("[fd00::1]:443, 10.0.0.1"), "fd00::1");
  CHECK_STR(xff("10.0.0.1:80"), "10.0.0.1");
  CHECK_STR(xff("[1.2.3.4]"), "-");
  CHECK_STR(xff("[::1]:99999"), "-");
  CHECK_STR(xff("[::1]80"), "-");
  CHECK_STR(xff("[::1"), "-");
  CHECK_STR(xff("1.2.3.4:"), "-");
  CHECK_STR(xff("1.2.3.4:+80"), "-");
  CHECK_STR(xff("1.2.3.4:80:90"), "-");
  CHECK_STR(xff("fe80::1%eth0"), "-");
  CHECK_STR(xff("\"[2001:db8::1]\""), "-");

  /* At most 64 hops are looked at. */
  char buf[PROXY_XFF_MAX_LEN + 64];
  size_t len = 0;
  for (int i = 0; i < PROXY_XFF_MAX_HOPS; i++)
    len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s10.0.0.%d", i ? "," : "", i + 1);
  CHECK_STR(xff(buf), "10.0.0.1");
  char more[sizeof(buf) + 16];
  snprintf(more, sizeof(more), "203.0.113.5,%s", buf);
  CHECK_STR(xff(more), "-"); /* the 65th hop from the right */
  snprintf(more, sizeof(more), "%s,203.0.113.5", buf);
  CHECK_STR(xff(more), "203.0.113.5"); /* found first: the rest is not read */
  /* And at most 8 KiB. */
  memset(buf, ' ', PROXY_XFF_MAX_LEN);
  memcpy(buf + PROXY_XFF_MAX_LEN - 11, "203.0.113.5", 11);
  buf[PROXY_XFF_MAX_LEN] = '\0';
  CHECK_STR(xff(buf), "203.0.113.5");
  buf[0] = 'x';
  buf[PROXY_XFF_MAX_LEN] = ' ';
  buf[PROXY_XFF_MAX_LEN + 1] = '\0';
  CHECK_STR(xff(buf), "-");

  /* Too small an out: -1, out untouched. */
  char small[8] = "keep";
  CHECK_EQ(proxy_xff_client("203.0.113.55", trusted, 3, small, sizeof(small)), -1);
  CHECK_STR(small, "keep");
  CHECK_EQ(proxy_xff_client("1.2.3.4", trusted, 3, small, sizeof(small)), 0);
  CHECK_STR(small, "1.2.3.4");
  /* No trusted ranges: the right-most hop. */
  char out[PROXY_ADDR_MAX];
  CHECK_EQ(proxy_xff_client("1.2.3.4, 5.6.7.8", NULL, 0, out, sizeof(out)), 0);
  CHECK_STR(out, "5.6.7.8");
}

/* Several X-Forwarded-For headers: joined in order; past the buffer only
 * the right end is kept, and a hop cut in two is dropped. */
static void test_xff_join(void)
{
  char buf[16];
  const char *one[] = {"1.1.1.1"};
  CHECK_EQ(proxy_xff_join_tail(one, 1, buf, sizeof(buf)), 7);
  CHECK_STR(buf, "1.1.1.1");
  const char *two[] = {"1.1.1.1", "2.2.2.2"};
  CHECK_EQ(proxy_xff_join_tail(two, 2, buf, sizeof(buf)), 15);
  CHECK_STR(buf, "1.1.1.1,2.2.2.2");
  const char *three[] = {"1.1.1.1", "2.2.2.2", "3.3.3.3"};
  proxy_xff_join_tail(three, 3, buf, sizeof(buf)); /* 23 bytes: the first is cut */
  CHECK_STR(buf, "2.2.2.2,3.3.3.3");
  const char *padded[] = {"9.9.9.9, 8.8.8.8, 7.7.7.7", "5.5.5.5"};
  proxy_xff_join_tail(padded, 2, buf, sizeof(buf)); /* 7.7.7.7 fits whole */
  CHECK_STR(buf, "7.7.7.7,5.5.5.5");
  const char *cut[] = {"9.9.9.9, 17.7.7.7", "5.5.5.5"};
  proxy_xff_join_tail(cut, 2, buf, sizeof(buf)); /* only "7.7.7.7" of 17.7.7.7 fits */
  CHECK_STR(buf, "5.5.5.5");
  const char *huge[] = {"123456789012345678901234567890"};
  CHECK_EQ(proxy_xff_join_tail(huge, 1, buf, sizeof(buf)), 0);
  CHECK_STR(buf, "");
  CHECK_EQ(proxy_xff_join_tail(NULL, 0, buf, sizeof(buf)), 0);
}

int main(void)
{
  test_xff_join();
  test_v1();
  test_v2();
  test_random_headers();
  test_cidr();
  test_xff();
  return check_done();
}
