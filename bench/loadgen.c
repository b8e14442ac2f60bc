#define _GNU_SOURCE
/* loadgen: an SSE load generator for tinysse and Nchan (one process, one
 * thread, libevent).
 *
 * Phase 1 opens --clients streams (at most --window connecting at once),
 * spread over --sources local addresses 127.0.0.1..127.0.0.S, and measures
 * the connect rate: streams whose response headers arrived, per second.
 * Phase 2 publishes --messages payloads of about --payload bytes to one
 * channel that every client joined, over --publishers keep-alive
 * connections (to --pub-port when given: another node of a cluster), back
 * to back or sharing --rate publishes/s (paced exactly: message k is due at
 * start + k/rate, and a publisher still waiting for its previous answer
 * sends it as soon as that arrives). Each payload is {"t":<CLOCK_MONOTONIC us at send>,"pad":"xx.."}; every received data
 * line is parsed for "t" and its latency goes into a log-linear histogram.
 * It stops when every expected delivery arrived, after --quiet seconds
 * without deliveries once all publishes were answered, or at --timeout.
 * It prints one line: RESULT key=value ...
 *
 * tinysse: GET /events?token=<T>&k=<K>; POST /publish?targets=<ch> (raw form).
 * Nchan:   GET /sub/c0[,c1,...] (Nchan multiplexing with
 *          nchan_channel_id_split_delimiter ","); POST /pub/<ch>.
 * Tokens are <prefix><i>, or HS256 JWTs {"sub":"<prefix><i>","role":"bench",
 * "exp":now+3600} when --jwt-secret is given.
 *
 * Reading streams: the streams libevent reports readable in one loop pass
 * are read together with one io_uring submission of non-blocking receives
 * (the way tinysse writes), so the load generator spends about one kernel
 * receive per delivery and no system call of its own per stream: it must
 * stay cheaper per delivery than the server it measures, or the latency it
 * reports is its own. Readiness still comes from epoll, so the servers'
 * side of the loopback is unchanged. --no-uring (or a build without
 * liburing) reads each stream with its own read().
 *
 * --sync: print "READY ..." once streams are open and wait for SIGUSR1 before
 * publishing; print RESULT and wait for SIGUSR1 again before closing, so a
 * driver can sample the server in between (each wait ends after 120 s).
 *
 * --tls: the streams speak TLS (OpenSSL, TLS 1.2 or 1.3, ALPN "http/1.1", no
 * certificate verification: loopback with a self-signed certificate, no
 * session resumption). A connect is TCP + the full handshake + the response
 * headers, so the connect rate is new TLS connections opening a stream per
 * second. Streams are read with SSL_read (read-ahead: one read() takes all
 * the records that arrived), not with the io_uring batch. Publishers stay
 * plain HTTP/1.1 and need --pub-port (a plain listener of the same server).
 *
 * --h2 (TLS, ALPN "h2") or --h2c (plain, prior knowledge): the streams are
 * HTTP/2 streams, --streams-per-conn K of them on each connection (nghttp2's
 * client session; the DATA frames go through the same SSE parser; windows
 * like a browser's: 6 MiB per stream, 15 MiB per connection). --window then
 * counts connections in flight. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#ifdef TINYSSE_HAVE_URING
#include <liburing.h>
#endif
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

enum { T_TINYSSE, T_NCHAN };

/* ---- options ---- */
static int target = T_TINYSSE;
static const char *host = "127.0.0.1";
static int port = 8080, pub_port; /* pub_port 0: the same as port */
static int nclients = 1000, nmessages = 100, payload = 64, npublishers = 1, kchannels = 1;
static int nsources = 1, window = 512, sync_mode;
static int no_uring;
static int use_tls, h2_mode, streams_per_conn = 1, tls_version; /* h2_mode: 1 h2 over TLS, 2 h2c */
static double rate, timeout_s = 120, quiet_s = 3, connect_timeout_s = 60;
static const char *key = "", *token_prefix = "b", *jwt_secret, *channel = "c0";

/* ---- time ---- */
static uint64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- latency histogram: exact below 1024 us, then 512 sub-buckets per
 * power of two (relative error < 0.2%) ---- */
#define HSUB 512
#define HEXP 40
static uint64_t hist[1024 + HEXP * HSUB];
static uint64_t hist_n, hist_max;

static size_t hist_index(uint64_t v)
{
  if (v < 1024)
    return (size_t)v;
  int e = 63 - __builtin_clzll(v) - 9; /* v >> e is in [512, 1024) */
  if (e > HEXP)
    e = HEXP, v = (1024ull << HEXP) - 1;
  return 1024 + (size_t)(e - 1) * HSUB + (size_t)((v >> e) - 512);
}

static uint64_t hist_value(size_t i)
{
  if (i < 1024)
    return i;
  size_t e = (i - 1024) / HSUB + 1, m = (i - 1024) % HSUB + 512;
  return (uint64_t)m << e;
}

static void hist_add(uint64_t v)
{
  hist[hist_index(v)]++;
  hist_n++;
  if (v > hist_max)
    hist_max = v;
}

static double hist_pct(double p)
{
  if (!hist_n)
    return -1;
  uint64_t want = (uint64_t)(p * (double)hist_n + 0.5), acc = 0;
  if (want < 1)
    want = 1;
  for (size_t i = 0; i < sizeof(hist) / sizeof(hist[0]); i++) {
    acc += hist[i];
    if (acc >= want)
      return (double)hist_value(i);
  }
  return (double)hist_max;
}

/* ---- clients ---- */
enum { C_IDLE, C_CONNECTING, C_HEADERS, C_STREAM, C_DONE, C_TLS };
enum { S_BOL, S_SKIP, S_DATA, S_NUM };            /* SSE parser */
enum { K_SIZE, K_EXT, K_DATA, K_CRLF, K_END };    /* chunked decoder */

struct client {
  int fd;
  struct event *ev;
  uint8_t phase, chunked, st, mpos, kst;
  uint32_t krem;
  uint64_t num;
  char *hdr;
  uint32_t hlen;
  uint32_t got;
  uint8_t queued; /* waiting for the batched read (rb_*) */
  uint8_t evw;    /* events c->ev waits for (tls_step), 0: not persistent */
  uint16_t hstatus; /* HTTP/2: the response's :status */
  int32_t sid;      /* HTTP/2: the stream's id */
  SSL *ssl;       /* --tls (HTTP/1.1) */
  struct h2conn *hc; /* --h2: the connection this stream is on */
};

/* --h2/--h2c: one connection carries clients[first .. first + n) */
struct h2conn {
  int fd;
  struct event *ev;
  SSL *ssl;
  nghttp2_session *s;
  uint8_t phase, evw, closing;
  int first, n, pending; /* pending: streams not answered yet */
  char *out;             /* bytes nghttp2 produced that the socket did not take yet */
  size_t outlen, outoff;
};

static struct event_base *base;
static struct client *clients;
static int next_client, nconnecting, nopen, nfailed, nclosed;
static uint64_t t_connect0, t_connect_last;
static uint64_t received, expected, other_data, t_pub0, t_last_delivery;
static uint64_t now_cached;
static int phase_publishing, finished;
static const char *finish_reason = "";
static char rbuf[1 << 16];

static void finish(const char *why);
static double cpu_s(void);
static double cpu_pub0, cpu_connect0, connect_busy; /* connect_busy: CPU share while connecting */
static void start_publishing(void);
static void connect_more(void);

/* ---- TLS ---- */
static SSL_CTX *tls_ctx;
static char tls_seen[160]; /* protocol, cipher and ALPN of the first handshake */

static int tls_accept_any(X509_STORE_CTX *ctx, void *arg)
{
  return 1;
}

static void tls_init(void)
{
  tls_ctx = SSL_CTX_new(TLS_client_method());
  if (!tls_ctx) {
    fprintf(stderr, "loadgen: SSL_CTX_new failed\n");
    exit(1);
  }
  SSL_CTX_set_min_proto_version(tls_ctx, tls_version ? tls_version : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(tls_ctx, tls_version ? tls_version : TLS1_3_VERSION);
  SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
  /* no chain building either (SSL_VERIFY_NONE alone still runs it) */
  SSL_CTX_set_cert_verify_callback(tls_ctx, tls_accept_any, NULL);
  SSL_CTX_set_session_cache_mode(tls_ctx, SSL_SESS_CACHE_OFF);
  /* Browsers' TLS 1.3 preference (Chrome and Firefox offer AES-128-GCM
   * first), so both servers negotiate what they would with a browser. */
  SSL_CTX_set_ciphersuites(tls_ctx, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                    "TLS_AES_256_GCM_SHA384");
  /* one read() takes every record that arrived, not a header then a body */
  SSL_CTX_set_read_ahead(tls_ctx, 1);
  SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  static const unsigned char alpn_h1[] = "\x08http/1.1", alpn_h2[] = "\x02h2";
  int rc = h2_mode ? SSL_CTX_set_alpn_protos(tls_ctx, alpn_h2, sizeof(alpn_h2) - 1)
                   : SSL_CTX_set_alpn_protos(tls_ctx, alpn_h1, sizeof(alpn_h1) - 1);
  if (rc != 0) {
    fprintf(stderr, "loadgen: SSL_CTX_set_alpn_protos failed\n");
    exit(1);
  }
}

/* (Re)arms a persistent event for what (EV_READ and/or EV_WRITE). */
static void arm(struct event *ev, uint8_t *cur, int fd, short what, event_callback_fn cb, void *arg)
{
  if (*cur == (uint8_t)what)
    return;
  event_del(ev);
  event_assign(ev, base, fd, what | EV_PERSIST, cb, arg);
  event_add(ev, NULL);
  *cur = (uint8_t)what;
}

static void tls_error(const char *what, SSL *ssl, int rc)
{
  static int shown;
  if (shown++ >= 3)
    return;
  int e = SSL_get_error(ssl, rc);
  unsigned long le = ERR_peek_last_error();
  char buf[256] = "";
  if (le)
    ERR_error_string_n(le, buf, sizeof(buf));
  fprintf(stderr, "loadgen: TLS %s failed: SSL error %d%s%s%s\n", what, e, buf[0] ? " (" : "", buf,
          buf[0] ? ")" : e == SSL_ERROR_SYSCALL ? " (connection closed)" : "");
  ERR_clear_error();
}

/* One step of a client handshake: 1 done, 0 waiting (the event is armed for
 * what OpenSSL wants), -1 failed. */
static int tls_step(SSL *ssl, struct event *ev, uint8_t *evw, int fd, event_callback_fn cb, void *arg)
{
  int r = SSL_do_handshake(ssl);
  if (r == 1) {
    if (!tls_seen[0]) {
      const unsigned char *a = NULL;
      unsigned al = 0;
      SSL_get0_alpn_selected(ssl, &a, &al);
      snprintf(tls_seen, sizeof(tls_seen), "tls=%s cipher=%s alpn=%.*s", SSL_get_version(ssl),
               SSL_get_cipher_name(ssl), al ? (int)al : 1, al ? (const char *)a : "-");
    }
    return 1;
  }
  int e = SSL_get_error(ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    arm(ev, evw, fd, e == SSL_ERROR_WANT_READ ? EV_READ : EV_WRITE, cb, arg);
    return 0;
  }
  tls_error("handshake", ssl, r);
  return -1;
}

/* Reads what the socket (or OpenSSL's buffer) has: > 0 bytes, 0 nothing
 * now, -1 closed or failed. */
static ssize_t io_read(SSL *ssl, int fd, char *buf, size_t len)
{
  if (!ssl) {
    ssize_t n = read(fd, buf, len);
    if (n > 0)
      return n;
    return n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  }
  int n = SSL_read(ssl, buf, (int)len);
  if (n > 0)
    return n;
  int e = SSL_get_error(ssl, n);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  ERR_clear_error();
  return -1;
}

/* Writes: bytes taken, 0 would block (an SSL_write must then be retried with
 * the same bytes), -1 failed. */
static ssize_t io_write(SSL *ssl, int fd, const void *buf, size_t len)
{
  if (!ssl) {
    ssize_t w = write(fd, buf, len);
    if (w >= 0)
      return w;
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  }
  int w = SSL_write(ssl, buf, (int)len);
  if (w > 0)
    return w;
  int e = SSL_get_error(ssl, w);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
    return 0;
  tls_error("write", ssl, w);
  return -1;
}

static void client_close(struct client *c, int failed)
{
  if (c->ev) {
    event_free(c->ev);
    c->ev = NULL;
  }
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->hdr);
  c->hdr = NULL;
  if (c->phase == C_STREAM) {
    nopen--;
    nclosed++;
  } else if (c->phase == C_CONNECTING || c->phase == C_TLS || c->phase == C_HEADERS) {
    nconnecting--;
    if (failed)
      nfailed++;
  }
  c->phase = C_DONE;
}

static void record(uint64_t t)
{
  received++;
  if (now_cached >= t)
    hist_add(now_cached - t);
  else
    hist_add(0);
  t_last_delivery = now_cached;
}

/* Feeds SSE bytes (already de-chunked). */
static void sse_feed(struct client *c, const char *p, size_t n)
{
  static const char pfx[] = "data:";
  static const char pat[] = "\"t\":";
  const char *end = p + n;
  while (p < end) {
    switch (c->st) {
    case S_SKIP: {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl)
        return;
      p = nl + 1;
      c->st = S_BOL;
      c->mpos = 0;
      break;
    }
    case S_BOL:
      if (*p == pfx[c->mpos]) {
        if (++c->mpos == 5) {
          c->st = S_DATA;
          c->mpos = 0;
        }
      } else if (*p == '\n' && c->mpos == 0) {
        /* blank line: end of event */
      } else {
        c->st = *p == '\n' ? S_BOL : S_SKIP;
        c->mpos = 0;
      }
      p++;
      break;
    case S_DATA:
      if (*p == pat[c->mpos]) {
        if (++c->mpos == 4) {
          c->st = S_NUM;
          c->num = 0;
          c->mpos = 0;
        }
      } else if (*p == '\n') {
        other_data++;
        c->st = S_BOL;
        c->mpos = 0;
      } else {
        c->mpos = *p == '"' ? 1 : 0;
      }
      p++;
      break;
    case S_NUM:
      if (*p >= '0' && *p <= '9') {
        c->num = c->num * 10 + (uint64_t)(*p - '0');
        p++;
      } else {
        c->got++;
        record(c->num);
        c->st = S_SKIP;
      }
      break;
    }
  }
}

/* Strips chunked transfer encoding, passing the content to sse_feed. */
static void body_feed(struct client *c, const char *p, size_t n)
{
  if (!c->chunked) {
    sse_feed(c, p, n);
    return;
  }
  const char *end = p + n;
  while (p < end) {
    char ch = *p;
    switch (c->kst) {
    case K_SIZE:
      p++;
      if (ch >= '0' && ch <= '9')
        c->krem = c->krem * 16 + (uint32_t)(ch - '0');
      else if ((ch | 32) >= 'a' && (ch | 32) <= 'f')
        c->krem = c->krem * 16 + (uint32_t)((ch | 32) - 'a' + 10);
      else if (ch == ';')
        c->kst = K_EXT;
      else if (ch == '\n')
        c->kst = c->krem ? K_DATA : K_END;
      break;
    case K_EXT:
      p++;
      if (ch == '\n')
        c->kst = c->krem ? K_DATA : K_END;
      break;
    case K_DATA: {
      size_t take = (size_t)(end - p) < c->krem ? (size_t)(end - p) : c->krem;
      sse_feed(c, p, take);
      p += take;
      c->krem -= (uint32_t)take;
      if (!c->krem)
        c->kst = K_CRLF;
      break;
    }
    case K_CRLF:
      p++;
      if (ch == '\n') {
        c->kst = K_SIZE;
        c->krem = 0;
      }
      break;
    default:
      return;
    }
  }
}

static void stream_opened(struct client *c)
{
  c->phase = C_STREAM;
  nconnecting--;
  nopen++;
  t_connect_last = now_us();
}

static void on_client(evutil_socket_t fd, short what, void *arg);

static int make_token(int i, char *out, size_t outlen);

/* The stream request's path for client i. */
static int client_path(int i, char *path, size_t size)
{
  char tok[1800];
  int len;
  if (target == T_TINYSSE) {
    make_token(i, tok, sizeof(tok));
    return snprintf(path, size, "/events?token=%s&k=%d", tok, kchannels);
  }
  len = snprintf(path, size, "/sub/c0");
  for (int k = 1; k < kchannels && len < (int)size - 16; k++)
    len += snprintf(path + len, size - (size_t)len, ",c%d", k);
  return len;
}

static void client_send_request(struct client *c, int i)
{
  char req[4096], path[2048];
  int len;
  client_path(i, path, sizeof(path));
  len = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n", path,
                 host, port);
  ssize_t w = c->ssl ? io_write(c->ssl, c->fd, req, (size_t)len) : write(c->fd, req, (size_t)len);
  if (w != len) {
    client_close(c, 1);
    return;
  }
  c->phase = C_HEADERS;
  event_del(c->ev);
  event_assign(c->ev, base, c->fd, EV_READ | EV_PERSIST, on_client, c);
  event_add(c->ev, NULL);
  c->evw = EV_READ;
}

static void client_headers(struct client *c, const char *p, size_t n)
{
  if (!c->hdr)
    c->hdr = malloc(4096);
  if (!c->hdr || c->hlen + n > 4095) {
    client_close(c, 1);
    return;
  }
  memcpy(c->hdr + c->hlen, p, n);
  c->hlen += (uint32_t)n;
  c->hdr[c->hlen] = '\0';
  char *e = strstr(c->hdr, "\r\n\r\n");
  if (!e)
    return;
  int status = 0;
  if (sscanf(c->hdr, "HTTP/1.%*d %d", &status) != 1 || status != 200) {
    static int shown;
    if (shown++ < 3) {
      char *nl = strchr(c->hdr, '\r');
      if (nl)
        *nl = '\0';
      fprintf(stderr, "loadgen: stream refused: %s\n", c->hdr);
    }
    client_close(c, 1);
    return;
  }
  *e = '\0';
  for (char *q = c->hdr; (q = strcasestr(q, "transfer-encoding:")); q++)
    if (strcasestr(q, "chunked"))
      c->chunked = 1;
  size_t hl = (size_t)(e - c->hdr) + 4, rest = c->hlen - hl;
  char tail[4096];
  memcpy(tail, c->hdr + hl, rest);
  free(c->hdr);
  c->hdr = NULL;
  c->hlen = 0;
  stream_opened(c);
  if (rest)
    body_feed(c, tail, rest);
}

/* ---- batched stream reads (io_uring) ---- */
#ifdef TINYSSE_HAVE_URING
#define RB_MAX 1024    /* receives per submission */
#define RB_SLOT 4096   /* bytes per receive */
static struct io_uring rb_ring;
static int rb_on;
static char *rb_bufs;
static struct client **rb_queue;
static int rb_n;
static struct event *rb_ev;

static void rb_drain(evutil_socket_t fd, short what, void *arg)
{
  while (rb_n > 0) {
    int n = rb_n < RB_MAX ? rb_n : RB_MAX;
    struct client **batch = rb_queue + rb_n - n;
    for (int k = 0; k < n; k++) {
      struct io_uring_sqe *sqe = io_uring_get_sqe(&rb_ring);
      io_uring_prep_recv(sqe, batch[k]->fd, rb_bufs + (size_t)k * RB_SLOT, RB_SLOT, MSG_DONTWAIT);
      io_uring_sqe_set_data64(sqe, (uint64_t)k);
    }
    int rc = io_uring_submit_and_wait(&rb_ring, (unsigned)n);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&rb_ring, head, cqe)
    {
      seen++;
      struct client *c = batch[cqe->user_data];
      c->queued = 0;
      if (c->phase != C_STREAM)
        continue;
      if (cqe->res > 0) {
        now_cached = now_us();
        body_feed(c, rb_bufs + (size_t)cqe->user_data * RB_SLOT, (size_t)cqe->res);
      } else if (cqe->res == 0 || (cqe->res != -EAGAIN && cqe->res != -EINTR)) {
        client_close(c, 1);
      }
    }
    io_uring_cq_advance(&rb_ring, seen);
    if (rc < 0 || seen != (unsigned)n) {
      fprintf(stderr, "loadgen: io_uring receive batch failed (%s)\n", strerror(rc < 0 ? -rc : EIO));
      exit(1);
    }
    rb_n -= n;
  }
  if (expected && received >= expected)
    finish("complete");
}

static void rb_init(void)
{
  struct io_uring_params p;
  memset(&p, 0, sizeof(p));
  p.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
  if (io_uring_queue_init_params(RB_MAX, &rb_ring, &p) != 0) {
    memset(&p, 0, sizeof(p));
    if (io_uring_queue_init_params(RB_MAX, &rb_ring, &p) != 0) {
      fprintf(stderr, "loadgen: io_uring unavailable, reading with read()\n");
      return;
    }
  }
  rb_bufs = malloc((size_t)RB_MAX * RB_SLOT);
  rb_queue = calloc((size_t)(nclients ? nclients : 1), sizeof(*rb_queue));
  rb_ev = event_new(base, -1, 0, rb_drain, NULL);
  rb_on = rb_bufs && rb_queue && rb_ev;
}
#endif


/* Whether a non-blocking connect on fd failed (the first few are shown). */
static int connect_failed(int fd)
{
  int err = 0;
  socklen_t el = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
  static int shown;
  if (err && shown++ < 3)
    fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
  return err != 0;
}

/* One read of a stream: n bytes in rbuf, or n < 0 when it closed. */
static void stream_took(struct client *c, ssize_t n)
{
  if (n < 0) {
    int was_stream = c->phase == C_STREAM;
    client_close(c, 1);
    if (!was_stream)
      connect_more();
    return;
  }
  now_cached = now_us();
  if (c->phase == C_HEADERS) {
    client_headers(c, rbuf, (size_t)n);
    if (c->phase != C_HEADERS)
      connect_more();
  } else {
    body_feed(c, rbuf, (size_t)n);
  }
}

static void on_client(evutil_socket_t fd, short what, void *arg)
{
  struct client *c = arg;
  int i = (int)(c - clients);
#ifdef TINYSSE_HAVE_URING
  if (rb_on && c->phase == C_STREAM) {
    /* read with the others that are ready now, once the pass is over */
    if (!c->queued) {
      c->queued = 1;
      rb_queue[rb_n++] = c;
      if (rb_n == 1)
        event_active(rb_ev, EV_TIMEOUT, 0);
    }
    return;
  }
#endif
  if (c->phase == C_CONNECTING) {
    if (connect_failed(fd)) {
      client_close(c, 1);
      connect_more();
      return;
    }
    if (!tls_ctx) {
      client_send_request(c, i);
      if (c->phase == C_DONE)
        connect_more();
      return;
    }
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, fd)) {
      client_close(c, 1);
      connect_more();
      return;
    }
    SSL_set_connect_state(c->ssl);
    c->phase = C_TLS;
  }
  if (c->phase == C_TLS) {
    int r = tls_step(c->ssl, c->ev, &c->evw, fd, on_client, c);
    if (r == 0)
      return;
    if (r > 0)
      client_send_request(c, i);
    else
      client_close(c, 1);
    if (c->phase == C_DONE)
      connect_more();
    return;
  }
  if (c->ssl) {
    /* SSL_read until OpenSSL holds no more read-ahead bytes: what is still
     * in the socket makes epoll report the stream again */
    for (;;) {
      ssize_t n = io_read(c->ssl, fd, rbuf, sizeof(rbuf));
      if (n == 0)
        break;
      stream_took(c, n);
      if (n < 0 || c->phase == C_DONE || !SSL_has_pending(c->ssl))
        break;
    }
    if (expected && received >= expected)
      finish("complete");
    return;
  }
  ssize_t n = read(fd, rbuf, sizeof(rbuf));
  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  stream_took(c, n > 0 ? n : -1);
  if (expected && received >= expected)
    finish("complete");
}

static void client_start(int i)
{
  struct client *c = &clients[i];
  struct sockaddr_in src = {0}, dst = {0};
  int one = 1;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    static int shown;
    if (shown++ < 3)
      fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
    c->phase = C_DONE;
    nfailed++;
    return;
  }
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % nsources));
  setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  if (nsources > 1 && bind(c->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
    fprintf(stderr, "loadgen: bind 127.0.0.%d: %s\n", 1 + i % nsources, strerror(errno));
    close(c->fd);
    c->fd = -1;
    c->phase = C_DONE;
    nfailed++;
    return;
  }
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &dst.sin_addr);
  c->phase = C_CONNECTING;
  nconnecting++;
  c->ev = event_new(base, c->fd, EV_WRITE, on_client, c);
  int rc = connect(c->fd, (struct sockaddr *)&dst, sizeof(dst));
  if (rc == 0 && !tls_ctx) {
    client_send_request(c, i);
  } else if (rc == 0 || errno == EINPROGRESS) {
    event_add(c->ev, NULL);
  } else {
    static int shown;
    if (shown++ < 3)
      fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
    client_close(c, 1);
  }
}

/* ---- HTTP/2 (--h2, --h2c) ---- */
#define H2_STREAM_WINDOW (6 << 20) /* like a browser's */
#define H2_CONN_WINDOW (15 << 20)
#if NGHTTP2_VERSION_NUM >= 0x013c00
#define h2_mem_send nghttp2_session_mem_send2
#define h2_mem_recv nghttp2_session_mem_recv2
#define h2_ssize nghttp2_ssize
#else
#define h2_mem_send nghttp2_session_mem_send
#define h2_mem_recv nghttp2_session_mem_recv
#define h2_ssize ssize_t
#endif
static struct h2conn *h2conns;
static int h2_started, h2_connecting; /* connections started; with streams not answered yet */
static nghttp2_session_callbacks *h2_cbs;

static void on_h2(evutil_socket_t fd, short what, void *arg);

/* A stream of h got its answer (or failed): the connection leaves the
 * connecting window once all of them did. */
static void h2_answered(struct h2conn *h)
{
  if (h->pending > 0 && --h->pending == 0) {
    h2_connecting--;
    connect_more();
  }
}

static void h2_stream_failed(struct client *c, const char *why, int code)
{
  static int shown;
  if (shown++ < 3)
    fprintf(stderr, "loadgen: HTTP/2 stream refused: %s %d\n", why, code);
  nconnecting--;
  nfailed++;
  c->phase = C_DONE;
  h2_answered(c->hc);
}

static void h2_close(struct h2conn *h, int failed)
{
  if (h->phase == C_DONE)
    return;
  h->closing = 1;
  if (h->s)
    nghttp2_session_del(h->s);
  h->s = NULL;
  for (int k = 0; k < h->n; k++) {
    struct client *c = &clients[h->first + k];
    if (c->phase == C_STREAM) {
      nopen--;
      nclosed++;
    } else if (c->phase != C_DONE) {
      nconnecting--;
      if (failed)
        nfailed++;
    }
    c->phase = C_DONE;
  }
  if (h->pending > 0)
    h2_connecting--;
  h->pending = 0;
  if (h->ev)
    event_free(h->ev);
  h->ev = NULL;
  if (h->ssl)
    SSL_free(h->ssl);
  h->ssl = NULL;
  if (h->fd >= 0)
    close(h->fd);
  h->fd = -1;
  free(h->out);
  h->out = NULL;
  h->phase = C_DONE;
}

static int h2_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                        size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                        void *ud)
{
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_RESPONSE)
    return 0;
  struct client *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
  if (c && namelen == 7 && !memcmp(name, ":status", 7))
    c->hstatus = (uint16_t)atoi((const char *)value);
  return 0;
}

static int h2_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
  struct h2conn *h = ud;
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
    struct client *c = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!c || c->phase != C_HEADERS)
      return 0;
    if (c->hstatus == 200) {
      stream_opened(c);
      h2_answered(h);
    } else {
      h2_stream_failed(c, "status", c->hstatus);
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
    }
  } else if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
    static int warned;
    uint32_t m = nghttp2_session_get_remote_settings(s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (m < (uint32_t)h->n && !warned++)
      fprintf(stderr, "loadgen: the server allows %u concurrent streams per connection, fewer than %d\n",
              m, h->n);
  }
  return 0;
}

static int h2_on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
                      size_t len, void *ud)
{
  struct client *c = nghttp2_session_get_stream_user_data(s, sid);
  if (c && c->phase == C_STREAM)
    sse_feed(c, (const char *)data, len);
  return 0;
}

static int h2_on_close(nghttp2_session *s, int32_t sid, uint32_t error_code, void *ud)
{
  struct h2conn *h = ud;
  struct client *c = nghttp2_session_get_stream_user_data(s, sid);
  if (!c || h->closing)
    return 0;
  if (c->phase == C_STREAM) {
    nopen--;
    nclosed++;
    c->phase = C_DONE;
  } else if (c->phase != C_DONE) {
    h2_stream_failed(c, "stream closed before its headers, error code", (int)error_code);
  }
  return 0;
}

/* Sends what nghttp2 has to send; 0, or -1 when the connection is over. */
static int h2_flush(struct h2conn *h)
{
  for (;;) {
    if (h->outoff < h->outlen) {
      ssize_t w = io_write(h->ssl, h->fd, h->out + h->outoff, h->outlen - h->outoff);
      if (w < 0)
        return -1;
      if (w == 0) {
        arm(h->ev, &h->evw, h->fd, EV_READ | EV_WRITE, on_h2, h);
        return 0;
      }
      h->outoff += (size_t)w;
      continue;
    }
    const uint8_t *d;
    h2_ssize n = h2_mem_send(h->s, &d);
    if (n < 0)
      return -1;
    if (n == 0)
      break;
    ssize_t w = io_write(h->ssl, h->fd, d, (size_t)n);
    if (w < 0)
      return -1;
    if (w < n) { /* keep the rest (OpenSSL: the same bytes again) */
      free(h->out);
      h->outlen = (size_t)(n - w);
      h->out = malloc(h->outlen);
      if (!h->out)
        return -1;
      memcpy(h->out, d + w, h->outlen);
      h->outoff = 0;
    }
  }
  arm(h->ev, &h->evw, h->fd, EV_READ, on_h2, h);
  return nghttp2_session_want_read(h->s) || nghttp2_session_want_write(h->s) ? 0 : -1;
}

static int h2_session_start(struct h2conn *h)
{
  if (nghttp2_session_client_new(&h->s, h2_cbs, h) != 0)
    return -1;
  nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                 {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW}};
  nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, 2);
  nghttp2_session_set_local_window_size(h->s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
  char authority[300], path[2048];
  snprintf(authority, sizeof(authority), "%s:%d", host, port);
  for (int k = 0; k < h->n; k++) {
    struct client *c = &clients[h->first + k];
    client_path(h->first + k, path, sizeof(path));
#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}
    nghttp2_nv nv[] = {NV(":method", "GET"), NV(":scheme", h->ssl ? "https" : "http"),
                       NV(":authority", authority), NV(":path", path),
                       NV("accept", "text/event-stream")};
#undef NV
    int32_t sid = nghttp2_submit_request(h->s, NULL, nv, sizeof(nv) / sizeof(nv[0]), NULL, c);
    c->phase = C_HEADERS;
    c->sid = sid;
    if (sid < 0)
      h2_stream_failed(c, "nghttp2_submit_request", sid);
  }
  h->phase = C_STREAM;
  return h2_flush(h);
}

static void h2_read(struct h2conn *h)
{
  for (;;) {
    ssize_t n = io_read(h->ssl, h->fd, rbuf, sizeof(rbuf));
    if (n == 0)
      break;
    if (n < 0) {
      static int shown;
      if (h->pending > 0 && shown++ < 3)
        fprintf(stderr, "loadgen: HTTP/2: the server closed the connection with %d stream(s) not answered\n",
                h->pending);
      h2_close(h, 1);
      return;
    }
    now_cached = now_us();
    h2_ssize r = h2_mem_recv(h->s, (const uint8_t *)rbuf, (size_t)n);
    if (r < 0) {
      static int shown;
      if (shown++ < 3)
        fprintf(stderr, "loadgen: HTTP/2: %s\n", nghttp2_strerror((int)r));
      h2_close(h, 1);
      return;
    }
    if (!h->ssl || !SSL_has_pending(h->ssl))
      break;
  }
  if (h2_flush(h) < 0) {
    static int shown;
    if (h->pending > 0 && shown++ < 3)
      fprintf(stderr, "loadgen: HTTP/2 session over (GOAWAY or protocol error) with %d stream(s) not answered\n",
              h->pending);
    h2_close(h, 1);
  }
}

static void on_h2(evutil_socket_t fd, short what, void *arg)
{
  struct h2conn *h = arg;
  if (h->phase == C_CONNECTING) {
    if (connect_failed(fd)) {
      h2_close(h, 1);
      connect_more();
      return;
    }
    if (tls_ctx) {
      h->ssl = SSL_new(tls_ctx);
      if (!h->ssl || !SSL_set_fd(h->ssl, fd)) {
        h2_close(h, 1);
        connect_more();
        return;
      }
      SSL_set_connect_state(h->ssl);
      h->phase = C_TLS;
    } else if (h2_session_start(h) < 0) {
      h2_close(h, 1);
      connect_more();
      return;
    }
  }
  if (h->phase == C_TLS) {
    int r = tls_step(h->ssl, h->ev, &h->evw, fd, on_h2, h);
    if (r == 0)
      return;
    if (r > 0) {
      const unsigned char *a = NULL;
      unsigned al = 0;
      SSL_get0_alpn_selected(h->ssl, &a, &al);
      if (al != 2 || memcmp(a, "h2", 2) != 0) {
        static int shown;
        if (shown++ < 3)
          fprintf(stderr, "loadgen: the server did not select h2 (ALPN: %.*s)\n", al ? (int)al : 4,
                  al ? (const char *)a : "none");
        r = -1;
      } else {
        r = h2_session_start(h);
      }
    }
    if (r < 0) {
      h2_close(h, 1);
      connect_more();
    }
    return;
  }
  if (h->phase != C_STREAM)
    return;
  if ((what & EV_WRITE) && h2_flush(h) < 0)
    h2_close(h, 1);
  if ((what & EV_READ) && h->phase == C_STREAM)
    h2_read(h);
  if (!phase_publishing)
    connect_more(); /* h may have closed while connecting */
  if (expected && received >= expected)
    finish("complete");
}

/* Opens connection ci, for clients[ci * K ..]. */
static void h2_start(int ci)
{
  struct h2conn *h = &h2conns[ci];
  struct sockaddr_in src = {0}, dst = {0};
  int one = 1;
  h->first = ci * streams_per_conn;
  h->n = nclients - h->first < streams_per_conn ? nclients - h->first : streams_per_conn;
  h->pending = h->n;
  h->phase = C_CONNECTING;
  for (int k = 0; k < h->n; k++) {
    clients[h->first + k].phase = C_CONNECTING;
    clients[h->first + k].hc = h;
  }
  nconnecting += h->n;
  h2_connecting++;
  h->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (h->fd < 0) {
    static int shown;
    if (shown++ < 3)
      fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
    h2_close(h, 1);
    return;
  }
  src.sin_family = AF_INET;
  src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(ci % nsources));
  setsockopt(h->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  if (nsources > 1 && bind(h->fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
    fprintf(stderr, "loadgen: bind 127.0.0.%d: %s\n", 1 + ci % nsources, strerror(errno));
    h2_close(h, 1);
    return;
  }
  setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)port);
  inet_pton(AF_INET, host, &dst.sin_addr);
  h->ev = event_new(base, h->fd, EV_WRITE, on_h2, h);
  h->evw = 0;
  if (connect(h->fd, (struct sockaddr *)&dst, sizeof(dst)) == 0 || errno == EINPROGRESS) {
    event_add(h->ev, NULL);
  } else {
    static int shown;
    if (shown++ < 3)
      fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
    h2_close(h, 1);
  }
}

static void h2_init(void)
{
  int nconn = (nclients + streams_per_conn - 1) / streams_per_conn;
  h2conns = calloc((size_t)(nconn ? nconn : 1), sizeof(*h2conns));
  if (!h2conns || nghttp2_session_callbacks_new(&h2_cbs) != 0) {
    fprintf(stderr, "loadgen: out of memory\n");
    exit(1);
  }
  for (int i = 0; i < nconn; i++)
    h2conns[i].fd = -1;
  nghttp2_session_callbacks_set_on_header_callback(h2_cbs, h2_on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(h2_cbs, h2_on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2_cbs, h2_on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(h2_cbs, h2_on_close);
}

/* --connect-timeout: gives up on the streams of h not answered yet. */
static void h2_give_up(struct h2conn *h)
{
  if (h->phase == C_DONE || h->pending == 0)
    return;
  if (h->phase != C_STREAM) {
    h2_close(h, 1);
    return;
  }
  for (int k = 0; k < h->n; k++) {
    struct client *c = &clients[h->first + k];
    if (c->phase == C_HEADERS) {
      if (c->sid > 0)
        nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, c->sid, NGHTTP2_CANCEL);
      nconnecting--;
      nfailed++;
      c->phase = C_DONE;
      h2_answered(h);
    }
  }
  if (h2_flush(h) < 0)
    h2_close(h, 1);
}

static struct event *ready_ev;

static void connect_more(void)
{
  if (h2_mode) {
    while (next_client < nclients && h2_connecting < window) {
      h2_start(h2_started++);
      next_client = h2_started * streams_per_conn < nclients ? h2_started * streams_per_conn : nclients;
    }
  } else {
    while (next_client < nclients && nconnecting < window)
      client_start(next_client++);
  }
  if (!phase_publishing && next_client >= nclients && nconnecting == 0 && !finished)
    event_active(ready_ev, 0, 0);
}

/* ---- JWT (HS256) ---- */
static size_t b64url(const unsigned char *in, size_t n, char *out)
{
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t o = 0, i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    out[o++] = tbl[v >> 6 & 63];
    out[o++] = tbl[v & 63];
  }
  if (n - i == 1) {
    uint32_t v = (uint32_t)in[i] << 16;
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
    out[o++] = tbl[v >> 18 & 63];
    out[o++] = tbl[v >> 12 & 63];
    out[o++] = tbl[v >> 6 & 63];
  }
  out[o] = '\0';
  return o;
}

/* --token-file: tokens made beforehand (RS256, ES256...), one per line;
 * client i takes line i modulo their number. */
static char **file_tokens;
static size_t nfile_tokens;

static void load_tokens(const char *path)
{
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "loadgen: cannot read %s\n", path);
    exit(2);
  }
  char line[2048];
  size_t cap = 0;
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!*line)
      continue;
    if (nfile_tokens == cap) {
      cap = cap ? cap * 2 : 64;
      file_tokens = realloc(file_tokens, cap * sizeof(*file_tokens));
      if (!file_tokens)
        abort();
    }
    file_tokens[nfile_tokens++] = strdup(line);
  }
  fclose(f);
  if (!nfile_tokens) {
    fprintf(stderr, "loadgen: no token in %s\n", path);
    exit(2);
  }
}

static int make_token(int i, char *out, size_t outlen)
{
  if (nfile_tokens)
    return snprintf(out, outlen, "%s", file_tokens[(size_t)i % nfile_tokens]);
  if (!jwt_secret)
    return snprintf(out, outlen, "%s%d", token_prefix, i);
  char claims[256];
  int cl = snprintf(claims, sizeof(claims), "{\"sub\":\"%s%d\",\"role\":\"bench\",\"exp\":%ld}",
                    token_prefix, i, (long)time(NULL) + 3600);
  static const char hdr[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char buf[1024];
  size_t o = b64url((const unsigned char *)hdr, sizeof(hdr) - 1, buf);
  buf[o++] = '.';
  o += b64url((const unsigned char *)claims, (size_t)cl, buf + o);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  HMAC(EVP_sha256(), jwt_secret, (int)strlen(jwt_secret), (const unsigned char *)buf, o, mac,
       &maclen);
  buf[o++] = '.';
  b64url(mac, maclen, buf + o);
  return snprintf(out, outlen, "%s", buf);
}

/* ---- publishers ---- */
struct pub {
  int fd;
  struct event *ev;
  int busy;
  char *out;
  size_t outlen, outoff;
  char in[8192];
  size_t inlen;
};

static struct pub *pubs;
static int sent, acked, pub_errors, pub_reconnects;
static uint64_t t_last_ack;
static struct event *tick_ev;
static char *padbuf;

static void on_pub(evutil_socket_t fd, short what, void *arg);

static int pub_connect(struct pub *p)
{
  struct sockaddr_in dst = {0};
  int one = 1;
  p->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); /* blocking connect, then non-blocking */
  if (p->fd < 0)
    return -1;
  dst.sin_family = AF_INET;
  dst.sin_port = htons((uint16_t)(pub_port ? pub_port : port));
  inet_pton(AF_INET, host, &dst.sin_addr);
  if (connect(p->fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
    fprintf(stderr, "loadgen: publisher connect: %s\n", strerror(errno));
    close(p->fd);
    p->fd = -1;
    return -1;
  }
  setsockopt(p->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  evutil_make_socket_nonblocking(p->fd);
  p->ev = event_new(base, p->fd, EV_READ | EV_PERSIST, on_pub, p);
  event_add(p->ev, NULL);
  p->inlen = 0;
  return 0;
}

static void pub_flush(struct pub *p)
{
  while (p->outoff < p->outlen) {
    ssize_t w = write(p->fd, p->out + p->outoff, p->outlen - p->outoff);
    if (w < 0) {
      if (errno == EAGAIN) {
        event_del(p->ev);
        event_assign(p->ev, base, p->fd, EV_READ | EV_WRITE | EV_PERSIST, on_pub, p);
        event_add(p->ev, NULL);
        return;
      }
      return; /* the read side sees the error */
    }
    p->outoff += (size_t)w;
  }
}

static void pub_send(struct pub *p)
{
  char body[64];
  uint64_t t = now_us();
  int bl = snprintf(body, sizeof(body), "{\"t\":%llu,\"pad\":\"", (unsigned long long)t);
  int pad = payload - bl - 2;
  if (pad < 0)
    pad = 0;
  size_t clen = (size_t)bl + (size_t)pad + 2;
  char head[1024];
  int hl;
  if (target == T_TINYSSE)
    hl = snprintf(head, sizeof(head),
                  "POST /publish?targets=%s HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                  channel, host, pub_port ? pub_port : port, key, clen);
  else
    hl = snprintf(head, sizeof(head),
                  "POST /pub/%s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                  "Content-Length: %zu\r\n\r\n",
                  channel, host, pub_port ? pub_port : port, clen);
  p->outlen = (size_t)hl + clen;
  p->out = realloc(p->out, p->outlen);
  memcpy(p->out, head, (size_t)hl);
  memcpy(p->out + hl, body, (size_t)bl);
  memcpy(p->out + hl + bl, padbuf, (size_t)pad);
  memcpy(p->out + hl + bl + pad, "\"}", 2);
  p->outoff = 0;
  p->busy = 1;
  sent++;
  pub_flush(p);
}

/* --rate: message k is due at t_pub0 + k/rate exactly; a one-shot
 * (precise) timer wakes the publishers for the next one, so publishes are
 * evenly spaced rather than bunched on a coarse tick. */
static struct event *pace_ev;
static int pace_armed;

static void pub_next(struct pub *p)
{
  if (finished || p->busy || sent >= nmessages || p->fd < 0)
    return;
  if (rate <= 0) {
    pub_send(p);
    return;
  }
  uint64_t due = t_pub0 + (uint64_t)((double)sent * 1e6 / rate), now = now_us();
  if (now >= due) {
    pub_send(p);
  } else if (!pace_armed) {
    uint64_t wait = due - now;
    struct timeval tv = {(time_t)(wait / 1000000u), (suseconds_t)(wait % 1000000u)};
    pace_armed = 1;
    evtimer_add(pace_ev, &tv);
  }
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
  pace_armed = 0;
  for (int i = 0; i < npublishers; i++)
    pub_next(&pubs[i]);
}

/* Returns the length of one complete response at the start of buf, 0 if
 * incomplete; *status gets its status code. */
static size_t response_len(const char *buf, size_t n, int *status)
{
  const char *e = memmem(buf, n, "\r\n\r\n", 4);
  if (!e)
    return 0;
  size_t hl = (size_t)(e - buf) + 4;
  char h[4096];
  size_t cp = hl < sizeof(h) - 1 ? hl : sizeof(h) - 1;
  memcpy(h, buf, cp);
  h[cp] = '\0';
  *status = 0;
  sscanf(h, "HTTP/1.%*d %d", status);
  const char *cl = strcasestr(h, "\ncontent-length:");
  if (cl) {
    size_t blen = (size_t)strtoul(cl + 16, NULL, 10);
    return n >= hl + blen ? hl + blen : 0;
  }
  if (strcasestr(h, "\ntransfer-encoding:") && strcasestr(h, "chunked")) {
    const char *z = memmem(buf + hl - 2, n - hl + 2, "\r\n0\r\n\r\n", 7);
    return z ? (size_t)(z - buf) + 7 : 0;
  }
  return hl; /* e.g. 204 */
}

static void on_pub(evutil_socket_t fd, short what, void *arg)
{
  struct pub *p = arg;
  if (what & EV_WRITE) {
    pub_flush(p);
    if (p->outoff >= p->outlen) {
      event_del(p->ev);
      event_assign(p->ev, base, p->fd, EV_READ | EV_PERSIST, on_pub, p);
      event_add(p->ev, NULL);
    }
  }
  if (!(what & EV_READ))
    return;
  ssize_t n = read(fd, p->in + p->inlen, sizeof(p->in) - p->inlen);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
    /* The server closed the keep-alive connection: the request in flight
     * (if any) counts as an error; reconnect and go on. */
    event_free(p->ev);
    p->ev = NULL;
    close(p->fd);
    p->fd = -1;
    if (p->busy) {
      p->busy = 0;
      pub_errors++;
    }
    if (!finished && pub_reconnects++ < 1000 && pub_connect(p) == 0)
      pub_next(p);
    return;
  }
  p->inlen += (size_t)n;
  for (;;) {
    int status = 0;
    size_t len = response_len(p->in, p->inlen, &status);
    if (!len) {
      if (p->inlen == sizeof(p->in))
        p->inlen = 0; /* absurd answer: drop it */
      break;
    }
    if (status < 200 || status > 299) {
      if (pub_errors++ < 3)
        fprintf(stderr, "loadgen: publish answered %d: %.*s\n", status, (int)len, p->in);
    }
    memmove(p->in, p->in + len, p->inlen - len);
    p->inlen -= len;
    p->busy = 0;
    acked++;
    t_last_ack = now_us();
    pub_next(p);
  }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
  uint64_t now = now_us();
  if (finished)
    return;
  if (t_pub0) {
    int busy = 0;
    for (int i = 0; i < npublishers; i++) {
      pub_next(&pubs[i]);
      busy += pubs[i].busy;
    }
    if ((double)(now - t_pub0) / 1e6 > timeout_s) {
      finish("timeout");
      return;
    }
    if (sent >= nmessages && !busy) {
      uint64_t last = t_last_delivery > t_last_ack ? t_last_delivery : t_last_ack;
      if ((double)(now - last) / 1e6 > quiet_s)
        finish("quiet");
    }
  } else if (!phase_publishing && (double)(now - t_connect0) / 1e6 > connect_timeout_s) {
    fprintf(stderr, "loadgen: connect phase timed out with %d connecting\n", nconnecting);
    if (h2_mode)
      for (int i = 0; i < h2_started; i++)
        h2_give_up(&h2conns[i]);
    else
      for (int i = 0; i < next_client; i++)
        if (clients[i].phase == C_CONNECTING || clients[i].phase == C_TLS ||
            clients[i].phase == C_HEADERS)
          client_close(&clients[i], 1);
    next_client = nclients;
    connect_more();
  }
}

/* ---- phases ---- */
static struct event *sig_ev;
static struct event *sigwait_to;
static int waiting; /* 1: before publishing, 2: before exit */

static void after_wait(void)
{
  int w = waiting;
  waiting = 0;
  evtimer_del(sigwait_to);
  if (w == 1)
    start_publishing();
  else
    event_base_loopexit(base, NULL);
}

static void on_sigusr1(evutil_socket_t fd, short what, void *arg)
{
  if (waiting)
    after_wait();
}

static void on_sigwait_timeout(evutil_socket_t fd, short what, void *arg)
{
  fprintf(stderr, "loadgen: no SIGUSR1 within 120 s; going on\n");
  if (waiting)
    after_wait();
}

static void wait_for_signal(int which)
{
  struct timeval tv = {120, 0};
  waiting = which;
  evtimer_add(sigwait_to, &tv);
}

static double connect_seconds(void)
{
  return t_connect_last > t_connect0 ? (double)(t_connect_last - t_connect0) / 1e6 : 0;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
  if (phase_publishing || finished)
    return;
  double cs = connect_seconds(), wall = (double)(now_us() - t_connect0) / 1e6;
  connect_busy = wall > 0.05 ? (cpu_s() - cpu_connect0) / wall : 0;
  fprintf(stdout, "READY open=%d failed=%d connect_s=%.3f connect_rate=%.0f connect_busy=%.2f\n",
          nopen, nfailed, cs, cs > 0 ? nopen / cs : 0, connect_busy);
  fflush(stdout);
  phase_publishing = 1; /* connect_more must not fire again */
  if (sync_mode)
    wait_for_signal(1);
  else
    start_publishing();
}

static void start_publishing(void)
{
  phase_publishing = 1;
  expected = (uint64_t)nopen * (uint64_t)nmessages;
  if (nmessages <= 0 || nopen == 0) {
    finish(nopen ? "no_messages" : "no_streams");
    return;
  }
  padbuf = malloc((size_t)payload + 1);
  memset(padbuf, 'x', (size_t)payload + 1);
  pubs = calloc((size_t)npublishers, sizeof(*pubs));
  for (int i = 0; i < npublishers; i++)
    if (pub_connect(&pubs[i]) != 0) {
      finish("publisher_connect_failed");
      return;
    }
  t_pub0 = now_us();
  cpu_pub0 = cpu_s();
  for (int i = 0; i < npublishers; i++)
    pub_next(&pubs[i]);
}

static double cpu_s(void)
{
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void finish(const char *why)
{
  if (finished)
    return;
  finished = 1;
  finish_reason = why;
  double cs = connect_seconds();
  double dur = t_pub0 && t_last_delivery > t_pub0 ? (double)(t_last_delivery - t_pub0) / 1e6 : 0;
  double pub_dur = t_pub0 && t_last_ack > t_pub0 ? (double)(t_last_ack - t_pub0) / 1e6 : 0;
  printf("RESULT target=%s status=%s clients=%d open=%d connect_failed=%d connect_s=%.3f "
         "connect_rate=%.0f messages=%d published=%d acked=%d publish_errors=%d "
         "publish_rate=%.1f expected=%llu deliveries=%llu missing=%lld closed_streams=%d "
         "other_data=%llu duration_s=%.3f deliveries_per_s=%.0f p50_ms=%.3f p99_ms=%.3f "
         "max_ms=%.3f loadgen_busy=%.2f connect_busy=%.2f transport=%s connections=%d%s%s\n",
         target == T_TINYSSE ? "tinysse" : "nchan", why, nclients, nopen + nclosed, nfailed, cs,
         cs > 0 ? (nopen + nclosed) / cs : 0, nmessages, sent, acked, pub_errors,
         pub_dur > 0 ? acked / pub_dur : 0, (unsigned long long)expected,
         (unsigned long long)received, (long long)expected - (long long)received, nclosed,
         (unsigned long long)other_data, dur, dur > 0 ? (double)received / dur : 0,
         hist_n ? hist_pct(0.50) / 1e3 : -1, hist_n ? hist_pct(0.99) / 1e3 : -1,
         hist_n ? (double)hist_max / 1e3 : -1,
         t_pub0 && dur > 0 ? (cpu_s() - cpu_pub0) / ((double)(now_us() - t_pub0) / 1e6) : 0,
         connect_busy,
         h2_mode == 1 ? "h2" : h2_mode == 2 ? "h2c" : use_tls ? "tls" : "plain",
         h2_mode ? h2_started : next_client, tls_seen[0] ? " " : "", tls_seen);
  fflush(stdout);
  if (sync_mode)
    wait_for_signal(2);
  else
    event_base_loopexit(base, NULL);
}

static void usage(const char *argv0)
{
  fprintf(stderr,
          "usage: %s [--target tinysse|nchan] [--host 127.0.0.1] [--port 8080] [--pub-port P]\n"
          "  [--clients N] [--messages M] [--payload BYTES] [--rate R (0 = back to back)]\n"
          "  [--publishers P] [--channels-per-client K] [--channel c0] [--sources S]\n"
          "  [--window W (connects in flight)] [--key KEY] [--token-prefix b] [--token-file F]\n"
          "  [--jwt-secret S] [--timeout s] [--quiet s] [--connect-timeout s] [--sync]\n"
          "  [--no-uring (read each stream with read() instead of batched io_uring receives)]\n"
          "  [--tls (streams over TLS 1.2/1.3, ALPN http/1.1, no verification; needs --pub-port)]\n"
          "  [--tls-version 1.2|1.3 (only that one)]\n"
          "  [--h2 (HTTP/2 over TLS, ALPN h2) | --h2c (HTTP/2, prior knowledge)]\n"
          "  [--streams-per-conn K (with --h2/--h2c; default 1)]\n",
          argv0);
  exit(2);
}

int main(int argc, char **argv)
{
  static const struct option opts[] = {
      {"target", 1, 0, 'T'},      {"host", 1, 0, 'h'},       {"port", 1, 0, 'p'},
      {"clients", 1, 0, 'c'},     {"messages", 1, 0, 'm'},   {"payload", 1, 0, 'b'},
      {"rate", 1, 0, 'r'},        {"publishers", 1, 0, 'P'}, {"channels-per-client", 1, 0, 'k'},
      {"sources", 1, 0, 's'},     {"key", 1, 0, 'K'},        {"token-prefix", 1, 0, 't'},
      {"jwt-secret", 1, 0, 'j'},  {"token-file", 1, 0, 'F'},  {"timeout", 1, 0, 'o'},    {"quiet", 1, 0, 'q'},
      {"window", 1, 0, 'w'},      {"sync", 0, 0, 'S'},       {"channel", 1, 0, 'C'},
      {"connect-timeout", 1, 0, 'x'}, {"help", 0, 0, 'H'}, {"pub-port", 1, 0, 'u'},
      {"no-uring", 0, 0, 'N'},    {"tls", 0, 0, 'L'},        {"h2", 0, 0, '2'},
      {"h2c", 0, 0, '3'},         {"streams-per-conn", 1, 0, 'M'}, {"tls-version", 1, 0, 'V'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'T':
      if (!strcmp(optarg, "tinysse"))
        target = T_TINYSSE;
      else if (!strcmp(optarg, "nchan"))
        target = T_NCHAN;
      else
        usage(argv[0]);
      break;
    case 'h': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'u': pub_port = atoi(optarg); break;
    case 'c': nclients = atoi(optarg); break;
    case 'm': nmessages = atoi(optarg); break;
    case 'b': payload = atoi(optarg); break;
    case 'r': rate = atof(optarg); break;
    case 'P': npublishers = atoi(optarg); break;
    case 'k': kchannels = atoi(optarg); break;
    case 's': nsources = atoi(optarg); break;
    case 'K': key = optarg; break;
    case 't': token_prefix = optarg; break;
    case 'j': jwt_secret = optarg; break;
    case 'F': load_tokens(optarg); break;
    case 'o': timeout_s = atof(optarg); break;
    case 'q': quiet_s = atof(optarg); break;
    case 'w': window = atoi(optarg); break;
    case 'S': sync_mode = 1; break;
    case 'N': no_uring = 1; break;
    case 'C': channel = optarg; break;
    case 'x': connect_timeout_s = atof(optarg); break;
    case 'L': use_tls = 1; break;
    case '2': h2_mode = 1; use_tls = 1; break;
    case '3': h2_mode = 2; break;
    case 'M': streams_per_conn = atoi(optarg); break;
    case 'V':
      if (!strcmp(optarg, "1.2"))
        tls_version = TLS1_2_VERSION;
      else if (!strcmp(optarg, "1.3"))
        tls_version = TLS1_3_VERSION;
      else
        usage(argv[0]);
      break;
    default: usage(argv[0]);
    }
  }
  if (h2_mode == 2 && use_tls) {
    fprintf(stderr, "loadgen: --h2c is HTTP/2 without TLS: not with --tls or --h2\n");
    exit(2);
  }
  if (streams_per_conn < 1 || (streams_per_conn > 1 && !h2_mode)) {
    fprintf(stderr, "loadgen: --streams-per-conn needs --h2 or --h2c\n");
    exit(2);
  }
  if (use_tls && nmessages > 0 && !pub_port) {
    fprintf(stderr, "loadgen: --tls: the publishers speak plain HTTP/1.1: give --pub-port "
                    "(a plain listener of the same server)\n");
    exit(2);
  }
  if (nclients < 0 || nmessages < 0 || payload < 16 || payload > 1 << 20 || npublishers < 1 ||
      kchannels < 1 || nsources < 1 || nsources > 254 || window < 1)
    usage(argv[0]);
  signal(SIGPIPE, SIG_IGN);
  struct event_config *ecfg = event_config_new();
  if (ecfg) /* timers to the microsecond (timerfd), for --rate pacing */
    event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  base = ecfg ? event_base_new_with_config(ecfg) : event_base_new();
  if (ecfg)
    event_config_free(ecfg);
  pace_ev = evtimer_new(base, on_pace, NULL);
#ifdef TINYSSE_HAVE_URING
  if (!no_uring && !use_tls && !h2_mode)
    rb_init();
#endif
  clients = calloc((size_t)(nclients ? nclients : 1), sizeof(*clients));
  for (int i = 0; i < nclients; i++)
    clients[i].fd = -1;
  if (use_tls)
    tls_init();
  if (h2_mode)
    h2_init();
  ready_ev = event_new(base, -1, 0, on_ready, NULL);
  sig_ev = evsignal_new(base, SIGUSR1, on_sigusr1, NULL);
  event_add(sig_ev, NULL);
  sigwait_to = evtimer_new(base, on_sigwait_timeout, NULL);
  /* The tick paces rate-limited publishing and checks for the end. */
  double period = rate > 0 ? 1.0 / rate : 0.05;
  if (period > 0.05)
    period = 0.05;
  if (period < 0.001)
    period = 0.001;
  struct timeval tp = {0, (suseconds_t)(period * 1e6)};
  tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
  event_add(tick_ev, &tp);

  t_connect0 = now_us();
  cpu_connect0 = cpu_s();
  connect_more();
  event_base_dispatch(base);
  for (int i = 0; i < nclients; i++)
    if (clients[i].fd >= 0)
      client_close(&clients[i], 0);
  for (int i = 0; i < h2_started; i++)
    h2_close(&h2conns[i], 0);
  return finished && !strcmp(finish_reason, "complete") ? 0 : 1;
}
