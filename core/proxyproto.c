/* The real client address behind trusted proxies: CIDR lists, the PROXY
 * protocol header (v1 and v2, HAProxy's proxy-protocol.txt) and
 * X-Forwarded-For. No I/O: the connection code feeds bytes and strings. */
#include "proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* An address as written: family AF_INET (b[0..3]) or AF_INET6. Mapped
 * IPv6 addresses stay IPv6 here, so they print back as they came; only
 * matching treats them as IPv4. */
struct addr {
  int family;
  unsigned char b[16];
};

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static int is_mapped(const unsigned char b[16])
{
  return memcmp(b, mapped_prefix, sizeof(mapped_prefix)) == 0;
}

/* An IPv4 or IPv6 literal of exactly n bytes (no port, brackets or zone). */
static int addr_parse(const char *s, size_t n, struct addr *a)
{
  char tmp[PROXY_ADDR_MAX];
  if (n == 0 || n >= sizeof(tmp))
    return -1;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  if (inet_pton(AF_INET, tmp, a->b) == 1)
    a->family = AF_INET;
  else if (inet_pton(AF_INET6, tmp, a->b) == 1)
    a->family = AF_INET6;
  else
    return -1;
  return 0;
}

static int addr_format(const struct addr *a, char *out, size_t cap)
{
  char tmp[PROXY_ADDR_MAX];
  if (!inet_ntop(a->family, a->b, tmp, sizeof(tmp)) || strlen(tmp) >= cap)
    return -1;
  memcpy(out, tmp, strlen(tmp) + 1);
  return 0;
}

static int prefix_equal(const unsigned char *x, const unsigned char *y, int bits)
{
  int whole = bits / 8, rest = bits % 8;
  if (memcmp(x, y, (size_t)whole) != 0)
    return 0;
  if (rest == 0)
    return 1;
  unsigned char mask = (unsigned char)(0xff << (8 - rest));
  return (x[whole] & mask) == (y[whole] & mask);
}

static int addr_in_list(const struct proxy_cidr *list, size_t n, const struct addr *a)
{
  /* v4: the IPv4 form, if any; v6: the IPv6 form (mapped for IPv4). */
  unsigned char v6[16];
  const unsigned char *v4 = NULL;
  if (a->family == AF_INET) {
    memcpy(v6, mapped_prefix, 12);
    memcpy(v6 + 12, a->b, 4);
    v4 = a->b;
  } else {
    memcpy(v6, a->b, 16);
    if (is_mapped(a->b))
      v4 = a->b + 12;
  }
  for (size_t i = 0; i < n; i++) {
    if (list[i].family == AF_INET && v4 && prefix_equal(v4, list[i].addr, list[i].bits))
      return 1;
    if (list[i].family == AF_INET6 && prefix_equal(v6, list[i].addr, list[i].bits))
      return 1;
  }
  return 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
  if (!err || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

int proxy_cidr_parse(const char *s, struct proxy_cidr *out, char *err, size_t errlen)
{
  if (!s || !*s) {
    set_err(err, errlen, "empty address range");
    return -1;
  }
  const char *slash = strchr(s, '/');
  size_t alen = slash ? (size_t)(slash - s) : strlen(s);
  struct addr a;
  if (addr_parse(s, alen, &a) != 0) {
    set_err(err, errlen, "not an IPv4 or IPv6 address, with or without /prefix");
    return -1;
  }
  int max = a.family == AF_INET ? 32 : 128, bits = max;
  if (slash) {
    const char *p = slash + 1;
    size_t nd = strspn(p, "0123456789");
    bits = 0;
    for (size_t i = 0; i < nd && i < 4; i++)
      bits = bits * 10 + (p[i] - '0');
    if (nd == 0 || nd > 3 || p[nd] != '\0' || bits > max) {
      set_err(err, errlen, "the prefix length must be 0-%d", max);
      return -1;
    }
  }
  struct proxy_cidr c = {a.family, {0}, bits};
  memcpy(c.addr, a.b, a.family == AF_INET ? 4 : 16);
  unsigned char masked[16] = {0};
  for (int i = 0; i < bits; i++)
    masked[i / 8] |= (unsigned char)(c.addr[i / 8] & (0x80 >> (i % 8)));
  if (memcmp(masked, c.addr, sizeof(masked)) != 0) {
    char text[PROXY_ADDR_MAX] = "";
    inet_ntop(c.family, masked, text, sizeof(text));
    set_err(err, errlen, "address bits set past the /%d prefix (did you mean %s/%d?)", bits,
            text, bits);
    return -1;
  }
  /* ::ffff:a.b.c.d/96 and longer is an IPv4 range: stored as one, it
   * matches a peer however the peer's address is written. */
  if (c.family == AF_INET6 && bits >= 96 && is_mapped(c.addr)) {
    c.family = AF_INET;
    c.bits = bits - 96;
    memmove(c.addr, c.addr + 12, 4);
    memset(c.addr + 4, 0, 12);
  }
  *out = c;
  return 0;
}

int proxy_cidr_match(const struct proxy_cidr *list, size_t n, const char *ip)
{
  if (!ip)
    return 0;
  /* getnameinfo writes link-local peers as "fe80::1%eth0"; the zone does
   * not change which range the address is in. */
  size_t len = strcspn(ip, "%");
  int zone = ip[len] == '%';
  struct addr a;
  if (addr_parse(ip, len, &a) != 0 || (zone && (a.family != AF_INET6 || ip[len + 1] == '\0')))
    return 0;
  return addr_in_list(list, n, &a);
}

/* A port: plain decimal 0-65535, no sign, no leading zero. */
static int port_parse(const char *s, size_t n, unsigned *port)
{
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
    return -1;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 65535)
    return -1;
  *port = v;
  return 0;
}

static void header_local(struct proxy_header *out)
{
  out->local = 1;
  out->addr[0] = '\0';
  out->port = 0;
}

/* v1 reads the line as a sequence of fields scanned up to the next ' ' or
 * CR. Running out of bytes gives -2 while the line may still end within
 * PROXY_V1_MAX bytes, and -1 after; every check made on a partial field is
 * one the whole field must pass too, so a prefix never gives -1 for a
 * buffer that would parse. */
#define V1_MORE(len) ((len) < PROXY_V1_MAX ? -2 : -1)

/* Scans a field of at most max bytes from `allowed` at *p (a byte of
 * buf[0..avail), the line clipped to PROXY_V1_MAX). 0 when the field ends at
 * a delimiter (*p on it, the field copied NUL-terminated to tok), -2 when
 * buf runs out first, -1 on a bad byte or an overlong field. */
static int v1_field(const unsigned char *buf, size_t avail, size_t *p, const char *allowed,
                    size_t max, char *tok)
{
  size_t start = *p, i = *p;
  for (; i < avail && buf[i] != ' ' && buf[i] != '\r'; i++)
    if (i - start >= max || buf[i] == '\0' || !strchr(allowed, buf[i]))
      return -1;
  if (i == avail)
    return -2;
  if (i == start)
    return -1; /* empty: two spaces in a row, or a space before CR */
  memcpy(tok, buf + start, i - start);
  tok[i - start] = '\0';
  *p = i;
  return 0;
}

/* The byte `want` at *p, consumed: 0, -2 (none yet) or -1 (another byte). */
static int v1_byte(const unsigned char *buf, size_t avail, size_t *p, unsigned char want)
{
  if (*p == avail)
    return -2;
  if (buf[*p] != want)
    return -1;
  (*p)++;
  return 0;
}

static int v1_parse(const unsigned char *buf, size_t len, struct proxy_header *out)
{
  static const char *const protos[] = {"TCP4", "TCP6", "UNKNOWN"};
  size_t avail = len < PROXY_V1_MAX ? len : PROXY_V1_MAX, p = 0;
  int r;
  for (; p < 6; p++) {
    if (p == avail)
      return V1_MORE(len);
    if (buf[p] != (unsigned char)"PROXY "[p])
      return -1;
  }
  /* The protocol, checked byte by byte against the three it may be. */
  char proto[8];
  size_t plen = 0;
  for (;; p++, plen++) {
    if (p == avail)
      return V1_MORE(len);
    if (buf[p] == ' ' || buf[p] == '\r')
      break;
    int prefix_of_one = 0;
    for (size_t k = 0; k < 3; k++)
      if (plen < strlen(protos[k]) && memcmp(protos[k], proto, plen) == 0 &&
          protos[k][plen] == buf[p])
        prefix_of_one = 1;
    if (!prefix_of_one)
      return -1;
    proto[plen] = (char)buf[p];
  }
  proto[plen] = '\0';

  if (strcmp(proto, "UNKNOWN") == 0) {
    /* Anything may follow up to CRLF; the receiver ignores it. */
    if (buf[p] == ' ')
      for (p++; p < avail && buf[p] != '\r'; p++)
        if (buf[p] == '\n')
          return -1;
    if (p == avail)
      return V1_MORE(len);
    p++;
    if ((r = v1_byte(buf, avail, &p, '\n')) != 0)
      return r == -2 ? V1_MORE(len) : -1;
    header_local(out);
    return (int)p;
  }
  if (strcmp(proto, "TCP4") != 0 && strcmp(proto, "TCP6") != 0)
    return -1; /* "TCP" or a prefix of one, cut short */

  int family = proto[3] == '4' ? AF_INET : AF_INET6;
  const char *addr_chars = family == AF_INET ? "0123456789." : "0123456789abcdefABCDEF:.";
  size_t addr_max = family == AF_INET ? 15 : PROXY_ADDR_MAX - 1;
  char src[PROXY_ADDR_MAX], dst[PROXY_ADDR_MAX], sport[6], dport[6];
  struct {
    char *tok;
    const char *allowed;
    size_t max;
  } fields[4] = {
      {src, addr_chars, addr_max},
      {dst, addr_chars, addr_max},
      {sport, "0123456789", 5},
      {dport, "0123456789", 5},
  };
  for (size_t f = 0; f < 4; f++) {
    if ((r = v1_byte(buf, avail, &p, ' ')) != 0 ||
        (r = v1_field(buf, avail, &p, fields[f].allowed, fields[f].max, fields[f].tok)) != 0)
      return r == -2 ? V1_MORE(len) : -1;
  }
  if ((r = v1_byte(buf, avail, &p, '\r')) != 0 || (r = v1_byte(buf, avail, &p, '\n')) != 0)
    return r == -2 ? V1_MORE(len) : -1;

  unsigned char sbin[16], dbin[16];
  unsigned sp, dp;
  if (inet_pton(family, src, sbin) != 1 || inet_pton(family, dst, dbin) != 1 ||
      port_parse(sport, strlen(sport), &sp) != 0 || port_parse(dport, strlen(dport), &dp) != 0)
    return -1;
  out->local = 0;
  inet_ntop(family, sbin, out->addr, sizeof(out->addr));
  out->port = sp;
  return (int)p;
}

static const unsigned char v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                         0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* The address block's size for a v2 PROXY family byte, or -1 when the spec
 * defines no such family. */
static int v2_addr_size(unsigned fam)
{
  switch (fam) {
  case 0x00: /* UNSPEC */
    return 0;
  case 0x11: /* TCP over IPv4: src, dst, sport, dport */
  case 0x12: /* UDP over IPv4 */
    return 12;
  case 0x21:
  case 0x22:
    return 36;
  case 0x31: /* AF_UNIX stream or datagram: two 108-byte paths */
  case 0x32:
    return 216;
  default:
    return -1;
  }
}

/* Each field is checked as soon as it is there, so a bad header is refused
 * without waiting for the bytes its length announces. */
static int v2_parse(const unsigned char *buf, size_t len, struct proxy_header *out)
{
  for (size_t i = 0; i < sizeof(v2_sig); i++) {
    if (i == len)
      return -2;
    if (buf[i] != v2_sig[i])
      return -1;
  }
  if (len < 13)
    return -2;
  unsigned version = buf[12] >> 4, command = buf[12] & 0x0f;
  if (version != 2 || command > 1)
    return -1;
  if (len < 14)
    return -2;
  unsigned fam = buf[13];
  /* LOCAL: "the family ... is ignored", and so are the addresses. */
  int need = command == 0 ? 0 : v2_addr_size(fam);
  if (need < 0)
    return -1;
  if (len < 16)
    return -2;
  size_t plen = (size_t)buf[14] << 8 | buf[15];
  if (plen > PROXY_V2_MAX_PAYLOAD || plen < (size_t)need)
    return -1;
  if (len < 16 + plen)
    return -2;

  const unsigned char *a = buf + 16;
  if (command == 0 || fam == 0x00 || fam >> 4 == 3) {
    header_local(out);
  } else {
    int family = fam >> 4 == 1 ? AF_INET : AF_INET6;
    size_t alen = family == AF_INET ? 4 : 16;
    const unsigned char *port = a + 2 * alen; /* after src and dst */
    out->local = 0;
    inet_ntop(family, a, out->addr, sizeof(out->addr));
    out->port = (unsigned)port[0] << 8 | port[1];
  }
  return (int)(16 + plen);
}

int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out)
{
  if (len == 0)
    return -2;
  if (buf[0] == 'P')
    return v1_parse(buf, len, out);
  if (buf[0] == v2_sig[0])
    return v2_parse(buf, len, out);
  return -1;
}

/* One X-Forwarded-For element: a literal, "1.2.3.4:port", "[v6]" or
 * "[v6]:port". */
static int xff_hop_parse(const char *s, size_t n, struct addr *a)
{
  unsigned port;
  if (n > 0 && s[0] == '[') {
    const char *close = memchr(s, ']', n);
    if (!close)
      return -1;
    size_t in = (size_t)(close - s) - 1, after = n - in - 2;
    if (addr_parse(s + 1, in, a) != 0 || a->family != AF_INET6)
      return -1;
    if (after == 0)
      return 0;
    return close[1] == ':' ? port_parse(close + 2, after - 1, &port) : -1;
  }
  if (addr_parse(s, n, a) == 0)
    return 0;
  const char *colon = memchr(s, ':', n);
  if (!colon || memchr(colon + 1, ':', n - (size_t)(colon - s) - 1))
    return -1; /* no port, or bare IPv6 that did not parse */
  size_t alen = (size_t)(colon - s);
  if (addr_parse(s, alen, a) != 0 || a->family != AF_INET)
    return -1;
  return port_parse(colon + 1, n - alen - 1, &port);
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

int proxy_xff_client(const char *xff, const struct proxy_cidr *trusted, size_t n, char *out,
                     size_t cap)
{
  if (!xff)
    return -1;
  size_t len = strnlen(xff, PROXY_XFF_MAX_LEN + 1);
  if (len > PROXY_XFF_MAX_LEN)
    return -1;
  struct addr hop, client;
  int found = 0, hops = 0;
  /* [start, end) is the element being read, right to left. */
  size_t end = len;
  for (;;) {
    size_t start = end;
    while (start > 0 && xff[start - 1] != ',')
      start--;
    size_t b = start, e = end;
    while (b < e && is_ows(xff[b]))
      b++;
    while (e > b && is_ows(xff[e - 1]))
      e--;
    if (b < e) {
      if (++hops > PROXY_XFF_MAX_HOPS || xff_hop_parse(xff + b, e - b, &hop) != 0)
        return -1; /* nothing left of here can be trusted */
      client = hop;
      found = 1;
      if (!addr_in_list(trusted, n, &hop))
        break;
    }
    if (start == 0)
      break;
    end = start - 1;
  }
  if (!found)
    return -1;
  return addr_format(&client, out, cap);
}

size_t proxy_xff_join_tail(const char *const *values, size_t n, char *buf, size_t cap)
{
  /* Filled from the end of buf backwards, last header first. */
  size_t pos = cap - 1;
  buf[pos] = '\0';
  for (size_t i = n; i-- > 0;) {
    size_t len = strlen(values[i]);
    size_t sep = pos < cap - 1 ? 1 : 0;
    if (len + sep > pos) { /* only part of it fits: keep its right end */
      if (pos <= sep)
        break;
      size_t keep = pos - sep;
      char before = values[i][len - keep - 1];
      if (sep)
        buf[--pos] = ',';
      memcpy(buf + pos - keep, values[i] + len - keep, keep);
      pos -= keep;
      if (before != ',' && before != ' ' && before != '\t') { /* a hop cut in two: dropped */
        char *comma = memchr(buf + pos, ',', cap - 1 - pos);
        pos = comma ? (size_t)(comma - buf) + 1 : cap - 1;
      }
      break;
    }
    if (sep)
      buf[--pos] = ',';
    pos -= len;
    memcpy(buf + pos, values[i], len);
  }
  memmove(buf, buf + pos, cap - pos);
  return cap - 1 - pos;
}
