#define _GNU_SOURCE
/* storm: a reconnect storm against tinysse. Opens -n stream connections at
 * once (non-blocking connects, one thread, epoll), bound round-robin to
 * 127.0.0.1 .. 127.0.0.K, sends each its GET /events as soon as it is
 * connected, and sorts the answers: streaming (200, text/event-stream, a
 * retry: block and no busy event), shed (200 with `event: tinysse.busy`),
 * refused (any other status, counted per status and error code), closed
 * without an answer, connect failures. Streams stay open until every
 * connection has settled (or --timeout), then it prints the time until the
 * last stream was streaming and, with --pid, the server's CPU time and RSS
 * over the burst. The last line is machine-readable: STORM key=value ...
 *
 * --expect-message TEXT then waits until every stream has received a data
 * line containing TEXT (published by storm itself with --publish-key, else
 * by whoever reads the "SETTLED" line it prints). --help lists the options. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* descriptors storm needs besides its streams: stdio, epoll, the publisher,
 * /proc files read while the streams are open */
#define FD_RESERVE 16
#define CONN_BUF 1024 /* response head, error body, or one SSE line */

/* ---- options ---- */
static const char *host = "127.0.0.1", *token = "storm{i}:user", *path = "/events";
static const char *expect, *publish_key, *publish_target = "all";
static int port = 8080, nconns = 1000, nsources = 1, server_pid, connect_first;
static double timeout_s = 60, hold_s, grace_s = 0.3;

/* ---- time ---- */
static uint64_t now_us(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- the server, from /proc ---- */
static double proc_cpu_s(int pid)
{
  char p[64], buf[2048];
  snprintf(p, sizeof(p), "/proc/%d/stat", pid);
  FILE *f = fopen(p, "r");
  if (!f)
    return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *s = strrchr(buf, ')'); /* the command name may hold spaces */
  unsigned long ut = 0, st = 0;
  if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
    return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long proc_status_kb(int pid, const char *field)
{
  char p[64], line[256];
  size_t fl = strlen(field);
  long v = -1;
  snprintf(p, sizeof(p), "/proc/%d/status", pid);
  FILE *f = fopen(p, "r");
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (!strncmp(line, field, fl) && line[fl] == ':') {
      v = strtol(line + fl + 1, NULL, 10);
      break;
    }
  fclose(f);
  return v;
}

/* The kernel's listen-queue counters (this network namespace): a burst that
 * overflows the accept queue loses SYNs or handshakes, and those clients only
 * retry after a 1 s, then 3 s, ... retransmission timeout. */
enum { K_OVERFLOWS, K_DROPS, K_COOKIES, K_COUNT };
static const char *const kstat_name[K_COUNT] = {"ListenOverflows", "ListenDrops", "SyncookiesSent"};

static void kstat_read(long v[K_COUNT])
{
  static char names[8192], values[8192];
  for (int k = 0; k < K_COUNT; k++)
    v[k] = -1;
  FILE *f = fopen("/proc/net/netstat", "r");
  if (!f)
    return;
  while (fgets(names, sizeof(names), f) && fgets(values, sizeof(values), f)) {
    if (strncmp(names, "TcpExt:", 7))
      continue;
    char *sn, *sv, *n = strtok_r(names + 7, " \n", &sn), *x = strtok_r(values + 7, " \n", &sv);
    for (; n && x; n = strtok_r(NULL, " \n", &sn), x = strtok_r(NULL, " \n", &sv))
      for (int k = 0; k < K_COUNT; k++)
        if (!strcmp(n, kstat_name[k]))
          v[k] = strtol(x, NULL, 10);
  }
  fclose(f);
}

/* ---- tallies: answers by kind, refusals by status and error, shed by
 * reason, connect failures by errno ---- */
enum { R_PENDING, R_STREAMING, R_SHED, R_REFUSED, R_CLOSED, R_CONNFAIL, R_DROPPED, R_COUNT };
static long counts[R_COUNT];

struct tally {
  int status;
  char what[64];
  long n;
};
#define TALLY_MAX 32
static struct tally refusals[TALLY_MAX], sheds[TALLY_MAX], connfails[TALLY_MAX], closes[TALLY_MAX];

static void tally_add(struct tally *t, int status, const char *what)
{
  for (int i = 0; i < TALLY_MAX; i++) {
    if (t[i].n && (t[i].status != status || strcmp(t[i].what, what)))
      continue;
    if (!t[i].n) {
      t[i].status = status;
      snprintf(t[i].what, sizeof(t[i].what), "%s", what);
    }
    t[i].n++;
    return;
  }
  t[TALLY_MAX - 1].n++; /* too many kinds: the last one takes the rest */
}

/* ---- connections ---- */
enum { C_CONNECTING, C_HEAD, C_ERRBODY, C_SSE, C_DONE };

struct conn {
  int fd;
  uint8_t phase, result;
  uint8_t seen_retry, block_done, busy, got_msg, line_cut;
  int status;
  long want; /* error body: its Content-Length, -1 unknown */
  uint32_t blen;
  uint64_t t_stream; /* µs after t0 when it was streaming */
  char reason[48];   /* of a busy event */
  char buf[CONN_BUF];
};

static struct conn *conns;
static int ep;
static uint64_t t0;
static char rbuf[1 << 16];
static long received; /* streams that got the expected message */

static void set_result(struct conn *c, int r)
{
  counts[c->result]--;
  counts[r]++;
  c->result = (uint8_t)r;
}

static void conn_close(struct conn *c)
{
  if (c->fd >= 0)
    close(c->fd); /* leaves the epoll set with it */
  c->fd = -1;
  c->phase = C_DONE;
}

/* The value of a "key":"value" pair in a JSON text, or "" (enough for the
 * gateway's error and busy bodies). */
static void json_string(const char *text, size_t len, const char *key, char *out, size_t outlen)
{
  char pat[64];
  int pl = snprintf(pat, sizeof(pat), "\"%s\":\"", key);
  const char *p = memmem(text, len, pat, (size_t)pl);
  out[0] = '\0';
  if (!p)
    return;
  p += pl;
  const char *e = memchr(p, '"', (size_t)(text + len - p));
  size_t n = e ? (size_t)(e - p) : 0;
  if (n >= outlen)
    n = outlen - 1;
  memcpy(out, p, n);
  out[n] = '\0';
}

static char first_refusal[256]; /* the body of the first refusal, shown as an example */

static void refused(struct conn *c)
{
  char err[64];
  json_string(c->buf, c->blen, "error", err, sizeof(err));
  if (!first_refusal[0]) {
    int n = snprintf(first_refusal, sizeof(first_refusal), "%d %.*s", c->status,
                     (int)(c->blen < 200 ? c->blen : 200), c->buf);
    for (int i = 0; i < n && i < (int)sizeof(first_refusal); i++)
      if (first_refusal[i] == '\r' || first_refusal[i] == '\n')
        first_refusal[i] = ' ';
  }
  tally_add(refusals, c->status, err);
  set_result(c, R_REFUSED);
  conn_close(c);
}

static void sse_line(struct conn *c)
{
  char *l = c->buf;
  size_t n = c->blen;
  if (n && l[n - 1] == '\r')
    n--;
  if (n == 0) {
    if (c->seen_retry)
      c->block_done = 1;
    return;
  }
  if (n >= 6 && !memcmp(l, "retry:", 6)) {
    c->seen_retry = 1;
  } else if (n >= 6 && !memcmp(l, "event:", 6)) {
    size_t o = 6 + (n > 6 && l[6] == ' ');
    if (n - o == 12 && !memcmp(l + o, "tinysse.busy", 12))
      c->busy = 1;
  } else if (n >= 5 && !memcmp(l, "data:", 5)) {
    if (c->busy && !c->reason[0])
      json_string(l, n, "reason", c->reason, sizeof(c->reason));
    if (expect && !c->got_msg && memmem(l, n, expect, strlen(expect))) {
      c->got_msg = 1;
      received++;
    }
  }
}

static void sse_feed(struct conn *c, const char *p, size_t n)
{
  while (n) {
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) : n, room = CONN_BUF - c->blen;
    if (take > room)
      c->line_cut = 1; /* keep the start of a long line: enough to classify it */
    memcpy(c->buf + c->blen, p, take < room ? take : room);
    c->blen += (uint32_t)(take < room ? take : room);
    if (!nl)
      return;
    sse_line(c);
    c->blen = 0;
    c->line_cut = 0;
    p = nl + 1;
    n -= take + 1;
  }
}

/* What the bytes read so far say: run after each read, so a busy event that
 * came with the retry block is seen before the stream is counted. */
static void sse_settle(struct conn *c)
{
  if (c->busy) {
    tally_add(sheds, 0, c->reason[0] ? c->reason : "?");
    set_result(c, R_SHED);
    conn_close(c);
  } else if (c->block_done && c->result == R_PENDING) {
    c->t_stream = now_us() - t0;
    set_result(c, R_STREAMING);
  }
}

static void head_feed(struct conn *c, const char *p, size_t n)
{
  size_t room = CONN_BUF - 1 - c->blen, take = n < room ? n : room;
  memcpy(c->buf + c->blen, p, take);
  c->blen += (uint32_t)take;
  c->buf[c->blen] = '\0';
  char *e = strstr(c->buf, "\r\n\r\n");
  if (!e) {
    if (c->blen == CONN_BUF - 1) { /* no end of head in 1 KiB */
      c->status = 0;
      tally_add(refusals, 0, "malformed answer");
      set_result(c, R_REFUSED);
      conn_close(c);
    }
    return;
  }
  size_t hl = (size_t)(e - c->buf) + 4;
  size_t rest = c->blen - hl + (n - take);
  const char *restp = c->buf + hl;
  *e = '\0';
  if (sscanf(c->buf, "HTTP/1.%*d %d", &c->status) != 1)
    c->status = 0;
  int sse = 0;
  c->want = -1;
  for (char *h = strstr(c->buf, "\r\n"); h; h = strstr(h + 2, "\r\n")) {
    if (!strncasecmp(h + 2, "content-type:", 13) && strcasestr(h + 2, "text/event-stream"))
      sse = 1;
    if (!strncasecmp(h + 2, "content-length:", 15))
      c->want = strtol(h + 17, NULL, 10);
  }
  /* what came after the head: in buf after it, plus whatever did not fit */
  char tail[CONN_BUF + sizeof(rbuf)];
  size_t tl = c->blen - hl;
  memcpy(tail, restp, tl);
  memcpy(tail + tl, p + take, n - take);
  c->blen = 0;
  if (c->status == 200 && sse) {
    c->phase = C_SSE;
    sse_feed(c, tail, rest);
    return;
  }
  if (c->status == 200) {
    tally_add(refusals, 200, "not text/event-stream");
    set_result(c, R_REFUSED);
    conn_close(c);
    return;
  }
  c->phase = C_ERRBODY;
  size_t keep = rest < CONN_BUF - 1 ? rest : CONN_BUF - 1;
  memcpy(c->buf, tail, keep);
  c->blen = (uint32_t)keep;
  if (c->want < 0 || (long)rest >= c->want) /* without a length: what came is enough */
    refused(c);
}

static void feed(struct conn *c, const char *p, size_t n)
{
  switch (c->phase) {
  case C_HEAD:
    head_feed(c, p, n);
    break;
  case C_ERRBODY: {
    size_t room = CONN_BUF - 1 - c->blen, take = n < room ? n : room;
    memcpy(c->buf + c->blen, p, take);
    c->blen += (uint32_t)take;
    if ((c->want >= 0 && c->blen >= (uint32_t)c->want) || c->blen == CONN_BUF - 1)
      refused(c);
    break;
  }
  case C_SSE:
    sse_feed(c, p, n);
    break;
  }
}

/* Why a connection ended without an answer: where (the request's write,
 * or a read), how (end of file or the errno), after how much of an answer,
 * and roughly when (in tenths of a second since the burst began), so a
 * close the kernel made (a reset under a listen-queue overflow) can be
 * told from one the gateway made. */
static void tally_close(struct conn *c, const char *where, int err)
{
  char what[64];
  snprintf(what, sizeof(what), "%s_%s_%ub_t%.1fs", where, err ? strerror(err) : "eof", c->blen,
           (double)(now_us() - t0) / 1e6);
  for (char *p = what; *p; p++)
    if (*p == ' ')
      *p = '_';
  tally_add(closes, 0, what);
}

/* The server closed (or reset) the connection: err is the read's errno,
 * 0 for an end of file. */
static void on_eof(struct conn *c, int err)
{
  if (c->phase == C_ERRBODY) {
    refused(c);
    return;
  }
  if (c->phase == C_SSE)
    sse_settle(c);
  if (c->phase == C_DONE)
    return;
  if (c->result != R_STREAMING)
    tally_close(c, "read", err);
  set_result(c, c->result == R_STREAMING ? R_DROPPED : R_CLOSED);
  conn_close(c);
}

static void on_readable(struct conn *c)
{
  for (;;) {
    ssize_t r = read(c->fd, rbuf, sizeof(rbuf));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno == EAGAIN)
      break;
    if (r <= 0) {
      on_eof(c, r < 0 ? errno : 0);
      return;
    }
    feed(c, rbuf, (size_t)r);
    if (c->phase == C_DONE)
      return;
    if ((size_t)r < sizeof(rbuf))
      break;
  }
  if (c->phase == C_SSE)
    sse_settle(c);
}

static void connect_failed(struct conn *c, int err)
{
  tally_add(connfails, 0, strerror(err));
  set_result(c, R_CONNFAIL);
  conn_close(c);
}

static void send_request(struct conn *c, int i)
{
  char req[2048], tok[512];
  size_t tl = 0;
  for (const char *t = token; *t && tl < sizeof(tok) - 16; t++) {
    if (!strncmp(t, "{i}", 3)) {
      tl += (size_t)snprintf(tok + tl, sizeof(tok) - tl, "%d", i);
      t += 2;
    } else {
      tok[tl++] = *t;
    }
  }
  tok[tl] = '\0';
  int len = snprintf(req, sizeof(req),
                     "GET %s?token=%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n",
                     path, tok);
  ssize_t w = write(c->fd, req, (size_t)len);
  if (w != len) { /* reset at once, or a full buffer */
    tally_close(c, "write", w < 0 ? errno : EMSGSIZE);
    set_result(c, R_CLOSED);
    conn_close(c);
    return;
  }
  c->phase = C_HEAD;
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void start_connect(int i, const struct sockaddr_in *dst)
{
  struct conn *c = &conns[i];
  c->fd = -1;
  c->phase = C_CONNECTING;
  counts[R_PENDING]++;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    connect_failed(c, errno);
    return;
  }
  c->fd = fd;
  int one = 1;
  /* the port is chosen at connect(): each source address has its own range */
  setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
  struct sockaddr_in src = {.sin_family = AF_INET};
  src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % nsources));
  if (bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
    connect_failed(c, errno);
    return;
  }
  struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    connect_failed(c, errno);
    return;
  }
  if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) == 0)
    send_request(c, i);
  else if (errno != EINPROGRESS)
    connect_failed(c, errno);
}

static void on_event(uint32_t i, uint32_t events)
{
  struct conn *c = &conns[i];
  if (c->phase == C_DONE)
    return;
  if (c->phase == C_CONNECTING) {
    int err = 0;
    socklen_t el = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
      err = errno;
    if (err)
      connect_failed(c, err);
    else if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
      send_request(c, (int)i);
    return;
  }
  on_readable(c);
}

/* ---- publishing the expected message (one blocking request) ---- */
static int publish(const struct sockaddr_in *dst)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = 0;
  struct timeval tv = {5, 0};
  if (fd < 0)
    return 0;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (const struct sockaddr *)dst, sizeof(*dst)) == 0) {
    char body[512], req[1536], ans[256];
    int bl = snprintf(body, sizeof(body), "{\"targets\":[\"%s\"],\"handler_id\":0,\"data\":\"%s\"}",
                      publish_target, expect);
    int rl = snprintf(req, sizeof(req),
                      "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n"
                      "Connection: close\r\n\r\n%s",
                      publish_key, bl, body);
    ssize_t n;
    if (write(fd, req, (size_t)rl) == rl && (n = read(fd, ans, sizeof(ans) - 1)) > 0) {
      ans[n] = '\0';
      if (sscanf(ans, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    }
  }
  close(fd);
  return status;
}

/* ---- options ---- */
static void usage(FILE *f)
{
  fprintf(f,
          "usage: tinysse_storm [options]\n"
          "Opens -n stream connections to tinysse at once and sorts the answers.\n\n"
          "  --host ADDR            server address (default 127.0.0.1)\n"
          "  --port P               server port (default 8080)\n"
          "  -n, --connections N    stream connections (default 1000)\n"
          "  --sources K            bind round-robin to 127.0.0.1 .. 127.0.0.K (default 1)\n"
          "  --token T              token; {i} becomes the connection's number (default storm{i}:user)\n"
          "  --path P               stream path (default /events)\n"
          "  --timeout S            seconds to wait for every connection to settle, and then\n"
          "                         for the expected message (default 60)\n"
          "  --grace S              seconds to keep reading once settled, for a late busy event\n"
          "                         or close (default 0.3)\n"
          "  --pid P                the server's pid: its CPU time and RSS over the burst\n"
          "  --expect-message TEXT  then wait until every stream got a data line with TEXT\n"
          "                         ([A-Za-z0-9._:-]; prints SETTLED first, for a publisher)\n"
          "  --publish-key KEY      publish TEXT itself: POST /publish to --publish-target\n"
          "  --publish-target CH    channel for that publish (default all)\n"
          "  --hold S               keep the streams open S seconds after the report\n"
          "  --connect-first        make every connection before sending any request (by\n"
          "                         default each sends as soon as it is connected, as\n"
          "                         independent browsers do)\n"
          "  --help\n");
}

static int parse_args(int argc, char **argv)
{
  static const struct option opts[] = {
      {"host", required_argument, 0, 'H'},        {"port", required_argument, 0, 'p'},
      {"connections", required_argument, 0, 'n'}, {"sources", required_argument, 0, 's'},
      {"token", required_argument, 0, 't'},       {"path", required_argument, 0, 'P'},
      {"timeout", required_argument, 0, 'T'},     {"grace", required_argument, 0, 'g'},
      {"pid", required_argument, 0, 'i'},         {"expect-message", required_argument, 0, 'e'},
      {"publish-key", required_argument, 0, 'k'}, {"publish-target", required_argument, 0, 'c'},
      {"hold", required_argument, 0, 'h'},        {"help", no_argument, 0, 'u'},
      {"connect-first", no_argument, 0, 'f'},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
    switch (o) {
    case 'H': host = optarg; break;
    case 'p': port = atoi(optarg); break;
    case 'n': nconns = atoi(optarg); break;
    case 's': nsources = atoi(optarg); break;
    case 't': token = optarg; break;
    case 'P': path = optarg; break;
    case 'T': timeout_s = atof(optarg); break;
    case 'g': grace_s = atof(optarg); break;
    case 'i': server_pid = atoi(optarg); break;
    case 'e': expect = optarg; break;
    case 'k': publish_key = optarg; break;
    case 'c': publish_target = optarg; break;
    case 'h': hold_s = atof(optarg); break;
    case 'f': connect_first = 1; break;
    case 'u': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (nconns < 1 || nsources < 1 || nsources > 254 || port < 1 || port > 65535 ||
      timeout_s <= 0) {
    fprintf(stderr, "storm: -n, --sources (1-254), --port and --timeout must be positive\n");
    return 2;
  }
  if (expect && (!*expect || strspn(expect, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                             "0123456789._:-") != strlen(expect) ||
                 strlen(expect) > 200)) {
    fprintf(stderr, "storm: --expect-message takes 1-200 characters of [A-Za-z0-9._:-]\n");
    return 2;
  }
  if (publish_key && !expect) {
    fprintf(stderr, "storm: --publish-key publishes the --expect-message text: give both\n");
    return 2;
  }
  return -1;
}

/* Lifts the soft open-files limit to the hard one; refuses an -n it cannot hold. */
static int fit_open_files(void)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return -1;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)nconns + FD_RESERVE > rl.rlim_cur) {
    fprintf(stderr,
            "storm: -n %d needs %d open files, but this process may hold %lu (ulimit -Hn); "
            "use at most -n %lu, or run several storm processes\n",
            nconns, nconns + FD_RESERVE, (unsigned long)rl.rlim_cur,
            (unsigned long)(rl.rlim_cur > FD_RESERVE ? rl.rlim_cur - FD_RESERVE : 0));
    return -1;
  }
  return 0;
}

static int cmp_u64(const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- the run ---- */
static struct epoll_event evs[1024];

static void poll_once(int wait_ms)
{
  int n = epoll_wait(ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), wait_ms);
  for (int k = 0; k < n; k++)
    on_event(evs[k].data.u32, evs[k].events);
}

/* A tally as one key=value word: status/what:n,... (spaces and commas become _). */
static void print_tally_kv(const char *key, const struct tally *t)
{
  int first = 1;
  for (int i = 0; i < TALLY_MAX; i++) {
    if (!t[i].n)
      continue;
    char w[64];
    snprintf(w, sizeof(w), "%s", t[i].what[0] ? t[i].what : "-");
    for (char *q = w; *q; q++)
      if (*q == ' ' || *q == ',' || *q == '=')
        *q = '_';
    printf("%s", first ? "" : ",");
    if (first)
      printf(" %s=", key);
    first = 0;
    if (t[i].status)
      printf("%d/%s:%ld", t[i].status, w, t[i].n);
    else
      printf("%s:%ld", w, t[i].n);
  }
}

static void print_tally(const char *title, const struct tally *t)
{
  for (int i = 0; i < TALLY_MAX; i++)
    if (t[i].n) {
      if (t[i].status)
        printf("    %s %d %s: %ld\n", title, t[i].status, t[i].what[0] ? t[i].what : "-", t[i].n);
      else
        printf("    %s %s: %ld\n", title, t[i].what, t[i].n);
    }
}

int main(int argc, char **argv)
{
  int rc = parse_args(argc, argv);
  if (rc >= 0)
    return rc;
  if (fit_open_files() != 0)
    return 2;
  struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
    fprintf(stderr, "storm: --host must be an IPv4 address\n");
    return 2;
  }
  conns = calloc((size_t)nconns, sizeof(*conns));
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!conns || ep < 0) {
    perror("storm");
    return 1;
  }

  double cpu0 = -1, cpu1 = -1;
  long rss0 = -1, rss1 = -1, rss_peak = -1, hwm1 = -1;
  if (server_pid) {
    cpu0 = proc_cpu_s(server_pid);
    rss0 = rss_peak = proc_status_kb(server_pid, "VmRSS");
    if (cpu0 < 0 || rss0 < 0) {
      fprintf(stderr, "storm: cannot read /proc/%d (--pid)\n", server_pid);
      return 2;
    }
  }

  long ks0[K_COUNT], ks1[K_COUNT];
  kstat_read(ks0);

  /* the burst: every connect at once, before reading any answer */
  t0 = now_us();
  for (int i = 0; i < nconns; i++) {
    start_connect(i, &dst);
    /* Browsers each send their request once connected: do the same for
     * the connections made so far, instead of after all 10,000 connects. */
    if (!connect_first && i % 32 == 31)
      poll_once(0);
  }
  uint64_t t_connects = now_us() - t0;

  uint64_t deadline = t0 + (uint64_t)(timeout_s * 1e6), last_sample = 0, t_settled = 0;
  while (counts[R_PENDING] > 0 && now_us() < deadline) {
    poll_once(10);
    uint64_t t = now_us();
    if (server_pid && t - last_sample >= 50000) { /* the peak while the burst lasts */
      long r = proc_status_kb(server_pid, "VmRSS");
      if (r > rss_peak)
        rss_peak = r;
      last_sample = t;
    }
  }
  t_settled = now_us() - t0;
  kstat_read(ks1);
  if (server_pid) { /* right after the last connection settled */
    cpu1 = proc_cpu_s(server_pid);
    rss1 = proc_status_kb(server_pid, "VmRSS");
    hwm1 = proc_status_kb(server_pid, "VmHWM");
    if (rss1 > rss_peak)
      rss_peak = rss1;
  }
  int settled = counts[R_PENDING] == 0;
  long pend_connect = 0, pend_answer = 0;
  for (int i = 0; i < nconns; i++)
    if (conns[i].result == R_PENDING && conns[i].phase == C_CONNECTING)
      pend_connect++;
    else if (conns[i].result == R_PENDING)
      pend_answer++;
  printf("SETTLED settled=%d t_settled_s=%.3f streaming=%ld pending=%ld\n", settled,
         (double)t_settled / 1e6, counts[R_STREAMING], counts[R_PENDING]);
  fflush(stdout);

  /* a moment more for a busy event or a close that came late */
  for (uint64_t end = now_us() + (uint64_t)(grace_s * 1e6); now_us() < end;)
    poll_once(10);

  int pub_status = -1;
  long streaming_at_publish = counts[R_STREAMING];
  if (expect) {
    if (publish_key)
      pub_status = publish(&dst);
    uint64_t end = now_us() + (uint64_t)(timeout_s * 1e6);
    for (;;) {
      long want = 0, got = 0;
      for (int i = 0; i < nconns; i++)
        if (conns[i].result == R_STREAMING) {
          want++;
          got += conns[i].got_msg;
        }
      if (got == want || now_us() >= end)
        break;
      poll_once(10);
    }
  }

  /* time to streaming: of each stream still streaming now */
  long ns = 0;
  uint64_t *ts = malloc(sizeof(uint64_t) * (size_t)nconns);
  long missing = 0;
  for (int i = 0; i < nconns; i++)
    if (conns[i].result == R_STREAMING) {
      if (ts)
        ts[ns] = conns[i].t_stream;
      ns++;
      missing += expect && !conns[i].got_msg;
    }
  double t_all = -1, p50 = -1, p99 = -1;
  if (ts && ns) {
    qsort(ts, (size_t)ns, sizeof(*ts), cmp_u64);
    t_all = (double)ts[ns - 1] / 1e6;
    p50 = (double)ts[(ns - 1) / 2] / 1e6;
    p99 = (double)ts[(size_t)((double)(ns - 1) * 0.99)] / 1e6;
  }
  free(ts);
  double cpu = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
  long per_stream = rss0 >= 0 && rss1 >= 0 && ns ? (rss1 - rss0) * 1024 / ns : -1;
  int all = ns == nconns;

  printf("storm: %d stream connects at once from %d address%s to %s:%d (connects issued in %.3f s)\n",
         nconns, nsources, nsources == 1 ? "" : "es", host, port, (double)t_connects / 1e6);
  if (all)
    printf("  all %ld streaming after %.3f s (p50 %.3f s, p99 %.3f s)\n", ns, t_all, p50, p99);
  else if (ns)
    printf("  %ld of %d streaming, the last after %.3f s (p50 %.3f s, p99 %.3f s)\n", ns, nconns,
           t_all, p50, p99);
  else
    printf("  none streaming\n");
  printf("  streaming %ld, shed %ld, refused %ld, closed without answer %ld, connect failed %ld, "
         "dropped after streaming %ld, unsettled %ld\n",
         counts[R_STREAMING], counts[R_SHED], counts[R_REFUSED], counts[R_CLOSED],
         counts[R_CONNFAIL], counts[R_DROPPED], counts[R_PENDING]);
  print_tally("refused:", refusals);
  if (first_refusal[0])
    printf("    first refusal: %s\n", first_refusal);
  print_tally("shed, reason", sheds);
  print_tally("connect failed:", connfails);
  print_tally("closed without answer:", closes);
  if (!settled)
    printf("    unsettled after %.0f s: %ld still connecting, %ld waiting for an answer\n",
           timeout_s, pend_connect, pend_answer);
  if (server_pid)
    printf("  server (pid %d): %.2f CPU s over the burst; VmRSS %ld kB before, %ld kB after "
           "(%+ld B per stream), peak %ld kB, VmHWM %ld kB\n",
           server_pid, cpu, rss0, rss1, per_stream, rss_peak, hwm1);
  if (ks0[K_OVERFLOWS] >= 0)
    printf("  kernel, whole machine, during the burst: %ld listen-queue overflows, %ld listen drops, "
           "%ld SYN cookies sent\n",
           ks1[K_OVERFLOWS] - ks0[K_OVERFLOWS], ks1[K_DROPS] - ks0[K_DROPS],
           ks1[K_COOKIES] - ks0[K_COOKIES]);
  if (expect)
    printf("  message \"%s\"%s: received by %ld of %ld streams%s\n", expect,
           publish_key ? "" : " (published by someone else)", received, streaming_at_publish,
           pub_status >= 0 ? (pub_status == 200 ? " (publish 200)" : " (PUBLISH FAILED)") : "");

  printf("STORM n=%d sources=%d settled=%d all_streaming=%d streaming=%ld shed=%ld refused=%ld "
         "closed=%ld connect_failed=%ld dropped=%ld pending=%ld t_all_streaming_s=%.3f "
         "t_settled_s=%.3f p50_s=%.3f p99_s=%.3f",
         nconns, nsources, settled, all, counts[R_STREAMING], counts[R_SHED], counts[R_REFUSED],
         counts[R_CLOSED], counts[R_CONNFAIL], counts[R_DROPPED], counts[R_PENDING], t_all,
         (double)t_settled / 1e6, p50, p99);
  for (int s = 100; s < 600; s++) { /* refusals per status: status_503=N */
    long n = 0;
    for (int i = 0; i < TALLY_MAX; i++)
      n += refusals[i].n && refusals[i].status == s ? refusals[i].n : 0;
    if (n)
      printf(" status_%d=%ld", s, n);
  }
  print_tally_kv("refusals", refusals);
  print_tally_kv("shed_reasons", sheds);
  print_tally_kv("connect_errors", connfails);
  print_tally_kv("close_reasons", closes);
  if (ks0[K_OVERFLOWS] >= 0)
    printf(" listen_overflows=%ld listen_drops=%ld syncookies=%ld", ks1[K_OVERFLOWS] - ks0[K_OVERFLOWS],
           ks1[K_DROPS] - ks0[K_DROPS], ks1[K_COOKIES] - ks0[K_COOKIES]);
  if (server_pid)
    printf(" server_cpu_s=%.3f rss_before_kb=%ld rss_after_kb=%ld rss_peak_kb=%ld "
           "rss_per_stream_b=%ld",
           cpu, rss0, rss1, rss_peak, per_stream);
  if (expect)
    printf(" publish_status=%d received=%ld missing=%ld", pub_status, received, missing);
  printf("\n");
  fflush(stdout);

  if (hold_s > 0) {
    long before = counts[R_DROPPED];
    for (uint64_t end = now_us() + (uint64_t)(hold_s * 1e6); now_us() < end;)
      poll_once(50);
    fprintf(stderr, "storm: held the streams %.0f s; %ld closed by the server meanwhile\n", hold_s,
            counts[R_DROPPED] - before);
  }
  for (int i = 0; i < nconns; i++)
    if (conns[i].fd >= 0)
      close(conns[i].fd);
  free(conns);
  close(ep);
  return 0;
}
