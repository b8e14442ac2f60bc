/* Fault-injecting TCP proxy for the end-to-end specs (spec/e2e/faults_spec.lua),
 * since netem is not always there: forwards each connection from a loopback
 * port to the gateway and, toward the client, adds latency and jitter, cuts
 * writes into tiny segments, stalls chosen connections and resets connections
 * at random mid-stream. Loopback only and bounded in time; one stderr line per
 * injected fault (logfmt, `event=fault kind=...`).
 * Usage: faultproxy --listen [ADDR:]PORT --upstream [ADDR:]PORT [options], see usage(). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

/* Gateway-to-client bytes held per connection before the proxy stops reading
 * the gateway: a client that reads slowly slows the gateway, as it would
 * without the proxy. */
#define QUEUE_HIGH (256 * 1024)
#define QUEUE_LOW (64 * 1024)
#define READ_SIZE 16384

struct options {
  struct sockaddr_in listen, upstream;
  long latency_ms, jitter_ms, segment;
  double reset_prob;
  long stall_every, stall_after, stall_seconds, rcvbuf, mss;
  unsigned long long seed;
  long max_seconds;
};

/* One read from the gateway, written to the client once it is due. */
struct chunk {
  struct chunk *next;
  uint64_t due_ms;
  size_t len, off;
  size_t cut; /* reset the connection after this many bytes; SIZE_MAX: never */
  char data[];
};

struct conn {
  struct conn *prev, *next;
  long index;
  int down, up; /* the client's socket, the gateway's */
  struct event *down_read, *down_write, *up_read, *up_write, *due, *stall_end;
  struct evbuffer *to_up; /* client bytes the gateway has not taken yet */
  struct chunk *head, *tail;
  size_t queued;
  unsigned long long from_up, to_down;
  int connected, up_eof, reading_up;
  int stall_target, stalled; /* index a multiple of --stall-every, not stalled yet; stalled now */
};

static struct options opt = {.segment = 0, .seed = 1, .max_seconds = 300, .rcvbuf = -1, .mss = -1};
static struct event_base *base;
static struct conn *conns;
static long nconns, nresets, nstalls;
static uint64_t rng;

/* xorshift64*: reproducible from --seed whatever the libc. */
static uint64_t rand64(void)
{
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

static long rand_below(long n) { return n > 0 ? (long)(rand64() % (uint64_t)n) : 0; }
static double rand_unit(void) { return (double)(rand64() >> 11) / (double)(1ULL << 53); }

static uint64_t now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void conn_free(struct conn *c)
{
  event_free(c->down_read);
  event_free(c->down_write);
  event_free(c->up_read);
  event_free(c->up_write);
  event_free(c->due);
  event_free(c->stall_end);
  evbuffer_free(c->to_up);
  while (c->head) {
    struct chunk *k = c->head;
    c->head = k->next;
    free(k);
  }
  close(c->down);
  close(c->up);
  if (c->prev)
    c->prev->next = c->next;
  else
    conns = c->next;
  if (c->next)
    c->next->prev = c->prev;
  free(c);
}

/* SO_LINGER 0 makes close() send RST instead of FIN, on both sides. */
static void conn_abort(struct conn *c, size_t cut)
{
  struct linger lg = {1, 0};
  setsockopt(c->down, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  setsockopt(c->up, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  nresets++;
  fprintf(stderr, "faultproxy: event=fault kind=reset conn=%ld bytes_down=%llu cut=%zu\n",
          c->index, c->to_down, cut);
  conn_free(c);
}

static void update_up_reading(struct conn *c)
{
  int want = c->connected && !c->up_eof && !c->stalled && c->queued < (c->reading_up ? QUEUE_HIGH : QUEUE_LOW);
  if (want == c->reading_up)
    return;
  c->reading_up = want;
  if (want)
    event_add(c->up_read, NULL);
  else
    event_del(c->up_read);
}

static void maybe_stall(struct conn *c)
{
  if (!c->stall_target || c->from_up < (unsigned long long)opt.stall_after)
    return;
  c->stall_target = 0; /* once per connection */
  c->stalled = 1;
  nstalls++;
  fprintf(stderr, "faultproxy: event=fault kind=stall conn=%ld bytes_up=%llu seconds=%ld\n", c->index,
          c->from_up, opt.stall_seconds);
  struct timeval tv = {opt.stall_seconds, 0};
  evtimer_add(c->stall_end, &tv);
  update_up_reading(c);
}

static void on_stall_end(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct conn *c = arg;
  c->stalled = 0;
  fprintf(stderr, "faultproxy: event=stall_end conn=%ld\n", c->index);
  update_up_reading(c);
}

/* Writes what is due toward the client, a few bytes per write() when
 * --segment asks for it. Returns -1 when the connection is gone. */
static int deliver(struct conn *c)
{
  uint64_t now = now_ms();
  while (c->head && c->head->due_ms <= now) {
    struct chunk *k = c->head;
    size_t end = k->cut != SIZE_MAX ? k->cut : k->len;
    while (k->off < end) {
      size_t n = end - k->off;
      if (opt.segment > 0 && n > (size_t)opt.segment)
        n = 1 + (size_t)rand_below(opt.segment);
      ssize_t w = write(c->down, k->data + k->off, n);
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        event_add(c->down_write, NULL);
        return 0;
      }
      if (w <= 0) {
        conn_free(c);
        return -1;
      }
      k->off += (size_t)w;
      c->to_down += (unsigned long long)w;
    }
    if (k->cut != SIZE_MAX) {
      conn_abort(c, k->cut);
      return -1;
    }
    c->head = k->next;
    if (!c->head)
      c->tail = NULL;
    c->queued -= k->len;
    free(k);
  }
  if (c->head) {
    uint64_t wait = c->head->due_ms - now;
    struct timeval tv = {(time_t)(wait / 1000), (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(c->due, &tv);
  } else if (c->up_eof) { /* the gateway closed and the client has it all */
    conn_free(c);
    return -1;
  }
  update_up_reading(c);
  return 0;
}

static void on_due(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  deliver(arg);
}

static void on_up_read(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct conn *c = arg;
  size_t want = READ_SIZE;
  if (c->stall_target && c->from_up + want > (unsigned long long)opt.stall_after)
    want = (size_t)(opt.stall_after - (long)c->from_up); /* stall at exactly that byte */
  struct chunk *k = malloc(sizeof(*k) + READ_SIZE);
  if (!k)
    abort();
  ssize_t n = read(fd, k->data, want);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    free(k);
    return;
  }
  if (n <= 0) { /* EOF or an error: the client gets what is queued, then EOF */
    free(k);
    c->up_eof = 1;
    update_up_reading(c);
    if (!c->head)
      conn_free(c);
    return;
  }
  /* due after the one before it, so jitter never reorders a connection */
  uint64_t due = now_ms() + (uint64_t)opt.latency_ms + (uint64_t)rand_below(opt.jitter_ms + 1);
  if (c->tail && c->tail->due_ms > due)
    due = c->tail->due_ms;
  k->next = NULL;
  k->due_ms = due;
  k->len = (size_t)n;
  k->off = 0;
  k->cut = opt.reset_prob > 0 && rand_unit() < opt.reset_prob ? (size_t)rand_below(n) : SIZE_MAX;
  int was_empty = c->head == NULL;
  if (c->tail)
    c->tail->next = k;
  else
    c->head = k;
  c->tail = k;
  c->queued += k->len;
  c->from_up += (unsigned long long)n;
  maybe_stall(c);
  update_up_reading(c);
  if (was_empty)
    deliver(c);
}

static void on_down_write(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  deliver(arg);
}

/* Client to gateway: forwarded as it comes, no faults. */
static int flush_up(struct conn *c)
{
  if (!c->connected)
    return 0;
  int n = evbuffer_write(c->to_up, c->up);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    conn_free(c);
    return -1;
  }
  if (evbuffer_get_length(c->to_up) > 0)
    event_add(c->up_write, NULL);
  if (evbuffer_get_length(c->to_up) < QUEUE_HIGH)
    event_add(c->down_read, NULL);
  return 0;
}

static void on_up_write(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct conn *c = arg;
  if (!c->connected) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      fprintf(stderr, "faultproxy: event=upstream_failed conn=%ld error=\"%s\"\n", c->index,
              strerror(err ? err : errno));
      conn_free(c);
      return;
    }
    c->connected = 1;
    maybe_stall(c);
    update_up_reading(c);
  }
  flush_up(c);
}

static void on_down_read(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct conn *c = arg;
  int n = evbuffer_read(c->to_up, fd, READ_SIZE);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  if (n <= 0) { /* the client is gone: so is its stream */
    conn_free(c);
    return;
  }
  if (evbuffer_get_length(c->to_up) >= QUEUE_HIGH)
    event_del(c->down_read);
  flush_up(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
  (void)l;
  (void)sa;
  (void)salen;
  (void)arg;
  struct conn *c = calloc(1, sizeof(*c));
  if (!c)
    abort();
  c->index = ++nconns;
  c->down = fd;
  c->stall_target = opt.stall_every > 0 && c->index % opt.stall_every == 0;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  c->up = socket(AF_INET, SOCK_STREAM, 0);
  if (c->up < 0) {
    perror("faultproxy: socket");
    close(fd);
    free(c);
    return;
  }
  /* Small buffers, set before connect, make the gateway's socket fill soon
   * after a stall: a small receive buffer keeps the window small, and a small
   * MSS keeps the gateway's send buffer small (Linux sizes it from the MSS the
   * peer announced: on loopback's 64 KiB MSS it grows to tcp_wmem's maximum,
   * 4 MiB, whatever the window). */
  long rcvbuf = opt.rcvbuf >= 0 ? opt.rcvbuf : (c->stall_target ? 4096 : 0);
  long mss = opt.mss >= 0 ? opt.mss : (c->stall_target ? 536 : 0);
  if (rcvbuf > 0) {
    int v = (int)rcvbuf;
    setsockopt(c->up, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
  }
  if (mss > 0) {
    int v = (int)mss;
    setsockopt(c->up, IPPROTO_TCP, TCP_MAXSEG, &v, sizeof(v));
  }
  evutil_make_socket_nonblocking(c->up);
  c->to_up = evbuffer_new();
  c->down_read = event_new(base, fd, EV_READ | EV_PERSIST, on_down_read, c);
  c->down_write = event_new(base, fd, EV_WRITE, on_down_write, c);
  c->up_read = event_new(base, c->up, EV_READ | EV_PERSIST, on_up_read, c);
  c->up_write = event_new(base, c->up, EV_WRITE, on_up_write, c);
  c->due = evtimer_new(base, on_due, c);
  c->stall_end = evtimer_new(base, on_stall_end, c);
  if (!c->to_up || !c->down_read || !c->down_write || !c->up_read || !c->up_write || !c->due || !c->stall_end)
    abort();
  c->next = conns;
  if (conns)
    conns->prev = c;
  conns = c;
  if (connect(c->up, (struct sockaddr *)&opt.upstream, sizeof(opt.upstream)) != 0 && errno != EINPROGRESS) {
    fprintf(stderr, "faultproxy: event=upstream_failed conn=%ld error=\"%s\"\n", c->index, strerror(errno));
    conn_free(c);
    return;
  }
  event_add(c->up_write, NULL); /* fires once the connect completes */
  event_add(c->down_read, NULL);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  fprintf(stderr, "faultproxy: event=exit reason=%s connections=%ld resets=%ld stalls=%ld\n", (const char *)arg,
          nconns, nresets, nstalls);
  event_base_loopbreak(base);
}

/* [ADDR:]PORT with ADDR in 127.0.0.0/8 (default 127.0.0.1): the faults are
 * for tests, never for a real network. */
static int parse_addr(const char *s, struct sockaddr_in *sin)
{
  char host[64] = "127.0.0.1";
  const char *colon = strrchr(s, ':');
  const char *port = s;
  if (colon) {
    if ((size_t)(colon - s) >= sizeof(host))
      return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    port = colon + 1;
  }
  char *end;
  long p = strtol(port, &end, 10);
  memset(sin, 0, sizeof(*sin));
  sin->sin_family = AF_INET;
  if (*port == '\0' || *end != '\0' || p < 0 || p > 65535 || inet_pton(AF_INET, host, &sin->sin_addr) != 1)
    return -1;
  if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
    fprintf(stderr, "faultproxy: refusing %s: loopback addresses only\n", s);
    exit(2);
  }
  sin->sin_port = htons((unsigned short)p);
  return 0;
}

static void usage(const char *argv0)
{
  fprintf(stderr,
          "usage: %s --listen [ADDR:]PORT --upstream [ADDR:]PORT [options]\n"
          "  (ADDR in 127.0.0.0/8, default 127.0.0.1; --listen 0 picks a free port)\n"
          "  --latency-ms N        delay each gateway-to-client chunk by N ms\n"
          "  --jitter-ms N         plus 0..N ms at random (order is kept per connection)\n"
          "  --segment N           write 1..N bytes per write() toward the client\n"
          "  --reset-prob P        per chunk: reset both sides (RST) part-way through it\n"
          "  --stall-every K       stall connections K, 2K, 3K, ... (1: every one)\n"
          "  --stall-after-bytes N once exactly N bytes came from the gateway, stop reading it\n"
          "  --stall-seconds S     for S seconds\n"
          "  --rcvbuf N            SO_RCVBUF toward the gateway (default: 4096 on\n"
          "                        connections that will stall, the kernel's on others)\n"
          "  --mss N               TCP_MAXSEG toward the gateway (default: 536 on\n"
          "                        connections that will stall, the kernel's on others)\n"
          "  --seed N              random seed (default 1)\n"
          "  --max-seconds N       exit after N seconds (default 300)\n",
          argv0);
  exit(2);
}

static void parse_options(int argc, char **argv)
{
  int have_listen = 0, have_upstream = 0;
  for (int i = 1; i < argc; i++) {
    const char *k = argv[i];
    if (i + 1 >= argc)
      usage(argv[0]);
    const char *v = argv[++i];
    char *end = NULL;
    if (strcmp(k, "--listen") == 0) {
      if (parse_addr(v, &opt.listen) != 0)
        usage(argv[0]);
      have_listen = 1;
      continue;
    }
    if (strcmp(k, "--upstream") == 0) {
      if (parse_addr(v, &opt.upstream) != 0 || opt.upstream.sin_port == 0)
        usage(argv[0]);
      have_upstream = 1;
      continue;
    }
    if (strcmp(k, "--reset-prob") == 0) {
      opt.reset_prob = strtod(v, &end);
      if (*end || opt.reset_prob < 0 || opt.reset_prob > 1)
        usage(argv[0]);
      continue;
    }
    long n = strtol(v, &end, 10);
    if (*end || n < 0)
      usage(argv[0]);
    if (strcmp(k, "--latency-ms") == 0)
      opt.latency_ms = n;
    else if (strcmp(k, "--jitter-ms") == 0)
      opt.jitter_ms = n;
    else if (strcmp(k, "--segment") == 0)
      opt.segment = n;
    else if (strcmp(k, "--stall-every") == 0)
      opt.stall_every = n;
    else if (strcmp(k, "--stall-after-bytes") == 0)
      opt.stall_after = n;
    else if (strcmp(k, "--stall-seconds") == 0)
      opt.stall_seconds = n;
    else if (strcmp(k, "--rcvbuf") == 0)
      opt.rcvbuf = n;
    else if (strcmp(k, "--mss") == 0)
      opt.mss = n;
    else if (strcmp(k, "--seed") == 0)
      opt.seed = (unsigned long long)n;
    else if (strcmp(k, "--max-seconds") == 0)
      opt.max_seconds = n;
    else
      usage(argv[0]);
  }
  if (!have_listen || !have_upstream || opt.max_seconds == 0)
    usage(argv[0]);
}

int main(int argc, char **argv)
{
  parse_options(argc, argv);
  rng = opt.seed * 0x9E3779B97F4A7C15ULL + 1; /* never 0 */
  signal(SIGPIPE, SIG_IGN);
  base = event_base_new();
  struct evconnlistener *l =
      evconnlistener_new_bind(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                              (struct sockaddr *)&opt.listen, sizeof(opt.listen));
  if (!l) {
    perror("faultproxy: listen");
    return 1;
  }
  struct sockaddr_in bound;
  socklen_t blen = sizeof(bound);
  getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&bound, &blen);
  char a[INET_ADDRSTRLEN], u[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &bound.sin_addr, a, sizeof(a));
  inet_ntop(AF_INET, &opt.upstream.sin_addr, u, sizeof(u));
  fprintf(stderr, "faultproxy: event=listening listen=%s:%d upstream=%s:%d seed=%llu\n", a, ntohs(bound.sin_port), u,
          ntohs(opt.upstream.sin_port), opt.seed);

  struct timeval limit = {opt.max_seconds, 0};
  struct event *deadline = evtimer_new(base, on_stop, "max_seconds");
  struct event *term = evsignal_new(base, SIGTERM, on_stop, "SIGTERM");
  struct event *intr = evsignal_new(base, SIGINT, on_stop, "SIGINT");
  evtimer_add(deadline, &limit);
  event_add(term, NULL);
  event_add(intr, NULL);
  event_base_dispatch(base);

  while (conns)
    conn_free(conns);
  evconnlistener_free(l);
  event_free(deadline);
  event_free(term);
  event_free(intr);
  event_base_free(base);
  return 0;
}
