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
 * driver can sample the server in between (each wait ends after 120 s). */
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
#include <openssl/evp.h>
#include <openssl/hmac.h>

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
enum { C_IDLE, C_CONNECTING, C_HEADERS, C_STREAM, C_DONE };
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
static double cpu_pub0;
static void start_publishing(void);
static void connect_more(void);

static void client_close(struct client *c, int failed)
{
  if (c->ev) {
    event_free(c->ev);
    c->ev = NULL;
  }
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->hdr);
  c->hdr = NULL;
  if (c->phase == C_STREAM) {
    nopen--;
    nclosed++;
  } else if (c->phase == C_CONNECTING || c->phase == C_HEADERS) {
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

static void client_send_request(struct client *c, int i)
{
  char tok[1024], req[4096], path[2048];
  int len;
  if (target == T_TINYSSE) {
    make_token(i, tok, sizeof(tok));
    snprintf(path, sizeof(path), "/events?token=%s&k=%d", tok, kchannels);
  } else {
    len = snprintf(path, sizeof(path), "/sub/c0");
    for (int k = 1; k < kchannels && len < (int)sizeof(path) - 16; k++)
      len += snprintf(path + len, sizeof(path) - (size_t)len, ",c%d", k);
  }
  len = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n", path,
                 host, port);
  ssize_t w = write(c->fd, req, (size_t)len);
  if (w != len) {
    client_close(c, 1);
    return;
  }
  c->phase = C_HEADERS;
  event_del(c->ev);
  event_assign(c->ev, base, c->fd, EV_READ | EV_PERSIST, on_client, c);
  event_add(c->ev, NULL);
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
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
      static int shown;
      if (shown++ < 3)
        fprintf(stderr, "loadgen: connect: %s\n", strerror(err));
      client_close(c, 1);
      connect_more();
      return;
    }
    client_send_request(c, i);
    if (c->phase == C_DONE)
      connect_more();
    return;
  }
  ssize_t n = read(fd, rbuf, sizeof(rbuf));
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
      return;
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
  if (rc == 0) {
    client_send_request(c, i);
  } else if (errno == EINPROGRESS) {
    event_add(c->ev, NULL);
  } else {
    static int shown;
    if (shown++ < 3)
      fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
    client_close(c, 1);
  }
}

static struct event *ready_ev;

static void connect_more(void)
{
  while (next_client < nclients && nconnecting < window)
    client_start(next_client++);
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

static int make_token(int i, char *out, size_t outlen)
{
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
    for (int i = 0; i < next_client; i++)
      if (clients[i].phase == C_CONNECTING || clients[i].phase == C_HEADERS)
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
  double cs = connect_seconds();
  fprintf(stdout, "READY open=%d failed=%d connect_s=%.3f connect_rate=%.0f\n", nopen, nfailed,
          cs, cs > 0 ? nopen / cs : 0);
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
         "max_ms=%.3f loadgen_busy=%.2f\n",
         target == T_TINYSSE ? "tinysse" : "nchan", why, nclients, nopen + nclosed, nfailed, cs,
         cs > 0 ? (nopen + nclosed) / cs : 0, nmessages, sent, acked, pub_errors,
         pub_dur > 0 ? acked / pub_dur : 0, (unsigned long long)expected,
         (unsigned long long)received, (long long)expected - (long long)received, nclosed,
         (unsigned long long)other_data, dur, dur > 0 ? (double)received / dur : 0,
         hist_n ? hist_pct(0.50) / 1e3 : -1, hist_n ? hist_pct(0.99) / 1e3 : -1,
         hist_n ? (double)hist_max / 1e3 : -1,
         t_pub0 && dur > 0 ? (cpu_s() - cpu_pub0) / ((double)(now_us() - t_pub0) / 1e6) : 0);
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
          "  [--window W (connects in flight)] [--key KEY] [--token-prefix b]\n"
          "  [--jwt-secret S] [--timeout s] [--quiet s] [--connect-timeout s] [--sync]\n"
          "  [--no-uring (read each stream with read() instead of batched io_uring receives)]\n",
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
      {"jwt-secret", 1, 0, 'j'},  {"timeout", 1, 0, 'o'},    {"quiet", 1, 0, 'q'},
      {"window", 1, 0, 'w'},      {"sync", 0, 0, 'S'},       {"channel", 1, 0, 'C'},
      {"connect-timeout", 1, 0, 'x'}, {"help", 0, 0, 'H'}, {"pub-port", 1, 0, 'u'},
      {"no-uring", 0, 0, 'N'},    {0, 0, 0, 0}};
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
    case 'o': timeout_s = atof(optarg); break;
    case 'q': quiet_s = atof(optarg); break;
    case 'w': window = atoi(optarg); break;
    case 'S': sync_mode = 1; break;
    case 'N': no_uring = 1; break;
    case 'C': channel = optarg; break;
    case 'x': connect_timeout_s = atof(optarg); break;
    default: usage(argv[0]);
    }
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
  if (!no_uring)
    rb_init();
#endif
  clients = calloc((size_t)(nclients ? nclients : 1), sizeof(*clients));
  for (int i = 0; i < nclients; i++)
    clients[i].fd = -1;
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
  connect_more();
  event_base_dispatch(base);
  for (int i = 0; i < nclients; i++)
    if (clients[i].fd >= 0)
      client_close(&clients[i], 0);
  return finished && !strcmp(finish_reason, "complete") ? 0 : 1;
}
