/* The real client address behind a trusted proxy (--trusted-proxy CIDR): the
 * trusted-range list, the PROXY protocol header (HAProxy's spec, v1 text and
 * v2 binary) and X-Forwarded-For. Pure: no I/O, no allocation, no globals. */
#ifndef TINYSSE_PROXYPROTO_H
#define TINYSSE_PROXYPROTO_H

#include <stddef.h>

/* Longest address text written here, NUL included (INET6_ADDRSTRLEN). */
#define PROXY_ADDR_MAX 46
/* A v1 line is at most 107 bytes, CRLF included. */
#define PROXY_V1_MAX 107
/* Largest v2 payload (addresses + TLVs) accepted; the spec allows 65535. */
#define PROXY_V2_MAX_PAYLOAD 1024
/* No valid header is longer: a caller that has this many bytes buffered
 * always gets a definite answer from proxy_parse. */
#define PROXY_HEADER_MAX (16 + PROXY_V2_MAX_PAYLOAD)

/* An address range. family is AF_INET (addr[0..3]) or AF_INET6; an
 * IPv4-mapped range of /96 or longer ("::ffff:10.0.0.0/104") is stored as
 * the IPv4 range (10.0.0.0/8). */
struct proxy_cidr {
  int family;
  unsigned char addr[16];
  int bits;
};

/* "10.0.0.0/8", "192.168.1.7" (/32), "::1" (/128), "fd00::/8". The prefix is
 * decimal digits only and in range for the family. Host bits set beyond the
 * prefix ("10.0.0.1/8") are refused, not masked: such a range is usually a
 * typo, and the message names the masked range. 0 on success; -1 with a
 * one-line reason in err that does not repeat s (NUL-terminated, truncated
 * to errlen; err may be NULL). */
int proxy_cidr_parse(const char *s, struct proxy_cidr *out, char *err, size_t errlen);

/* 1 when the address text ip ("127.0.0.1", "::1", as libevent prints a
 * peer) is inside any of the n ranges, else 0 (also for NULL or unparsable
 * text). "::ffff:1.2.3.4" is the IPv4 address 1.2.3.4; an IPv4 address also
 * matches IPv6 ranges covering its mapped form ("::/0"). A "%zone" suffix
 * ("fe80::1%eth0", from getnameinfo) is ignored. */
int proxy_cidr_match(const struct proxy_cidr *list, size_t n, const char *ip);

/* A parsed PROXY header. local = 1: the proxy speaks for itself (v2 LOCAL,
 * v1 "PROXY UNKNOWN", v2 family UNSPEC or AF_UNIX): keep the TCP peer; addr
 * is "" and port 0. Otherwise addr is the source address (inet_ntop text)
 * and port the source port. */
struct proxy_header {
  int local;
  char addr[PROXY_ADDR_MAX];
  unsigned port;
};

/* Parses the PROXY header at the start of buf, reading no byte at or past
 * buf[len]. Returns the header's length (> 0; bytes after it belong to the
 * application) with *out filled; -2 when buf is still a possible prefix of a
 * header (feed more; never past PROXY_HEADER_MAX bytes); -1 when it is not a
 * valid PROXY header (*out is then unspecified).
 * v1 is strict: "PROXY TCP4|TCP6 src dst sport dport\r\n" with single spaces,
 * addresses of the declared family, ports 0-65535 in plain decimal without
 * sign or leading zero; "PROXY UNKNOWN" followed by anything up to CRLF. A
 * v1 line without its CRLF yet gives -2 only while its fields so far hold
 * plausible characters and it is under 107 bytes.
 * v2: version 2, command LOCAL or PROXY; for PROXY, family TCP or UDP over
 * IPv4/IPv6 (UDP is taken as an address too: the source is just as real),
 * UNSPEC or AF_UNIX (both local), and the addresses must fit in the declared
 * length; other families are refused. A LOCAL header's family is ignored, as
 * the spec says. TLVs after the addresses are consumed, not interpreted. */
int proxy_parse(const unsigned char *buf, size_t len, struct proxy_header *out);

/* The client behind the trusted proxies, from an X-Forwarded-For value xff
 * (hops separated by ',', optional spaces or tabs, empty elements skipped;
 * the caller joins several XFF headers with ","). Walking from the right,
 * the first hop not in trusted[0..n) is the client; when every hop is
 * trusted, the left-most one is. A hop may be an IPv4 or IPv6 literal,
 * "1.2.3.4:port", "[v6]" or "[v6]:port" (the port is dropped). Reaching a
 * hop that is none of these ("unknown", "_hidden") or a 65th hop gives -1:
 * nothing from there leftwards can be trusted. What lies left of the client
 * is never read, so a client's own spoofed entries change nothing. A value
 * over 8 KiB gives -1 without being read. Writes the address as inet_ntop
 * text to out (cap >= PROXY_ADDR_MAX always suffices) and returns 0; -1
 * with out untouched when the value is NULL, empty or unusable, or the
 * address does not fit in cap: the caller keeps the TCP peer. */
#define PROXY_XFF_MAX_HOPS 64
#define PROXY_XFF_MAX_LEN 8192
int proxy_xff_client(const char *xff, const struct proxy_cidr *trusted, size_t n, char *out,
                     size_t cap);
/* Joins the values of n X-Forwarded-For headers (in order) with ',' into
 * buf (cap bytes, NUL-terminated), keeping only the right end when they
 * do not fit: the hops the proxies added are there, so a client padding
 * its own part cannot push them out of reach; a hop cut in two is dropped.
 * Returns the length written. */
size_t proxy_xff_join_tail(const char *const *values, size_t n, char *buf, size_t cap);

#endif
