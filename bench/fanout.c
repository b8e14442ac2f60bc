#define _GNU_SOURCE
/* A quick fan-out load tool: opens N streams on a running tinysse, publishes
 * M messages to `all` over one keep-alive connection, and prints how long
 * it took until every stream had every message (deliveries per second).
 * Usage: fanout PORT PUBLISH_KEY [clients=1000] [messages=200] [payload=64]
 * Streams use tokens "bN:user", which spec/e2e/scripts/test.lua accepts. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

struct conn {
  struct bufferevent *bev;
  long got;     /* "id: " lines seen */
  int match;    /* how much of "\nid: " matched so far */
  int open;
};

static struct event_base *base;
static struct conn *conns;
static int nclients, nopen, nmsgs, payload, port;
static long total, want;
static const char *key;
static double t_start, t_end;
static struct bufferevent *pub;
static int published, acked;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void publish_next(void)
{
  char body[8192], data[4096];
  if (published >= nmsgs)
    return;
  int n = payload < (int)sizeof(data) - 1 ? payload : (int)sizeof(data) - 1;
  memset(data, 'x', (size_t)n);
  data[n] = '\0';
  int len = snprintf(body, sizeof(body), "{\"targets\":[\"all\"],\"handler_id\":0,\"data\":\"%s\"}", data);
  evbuffer_add_printf(bufferevent_get_output(pub),
                      "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Length: %d\r\n\r\n%s", key, len, body);
  published++;
}

static void on_pub_read(struct bufferevent *bev, void *arg)
{
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  /* Each answer is small; count status lines. */
  for (;;) {
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (p.pos < 0)
      break;
    size_t hl = (size_t)p.pos + 4;
    char *head = malloc(hl + 1);
    evbuffer_copyout(in, head, hl);
    head[hl] = '\0';
    char *cl = strcasestr(head, "Content-Length:");
    size_t body = cl ? (size_t)atoi(cl + 15) : 0;
    free(head);
    if (evbuffer_get_length(in) < hl + body)
      break;
    evbuffer_drain(in, hl + body);
    acked++;
    publish_next();
  }
}

static void on_read(struct bufferevent *bev, void *arg)
{
  struct conn *c = arg;
  static const char pat[] = "\nid: ";
  struct evbuffer *in = bufferevent_get_input(bev);
  char buf[16384];
  int n;
  while ((n = evbuffer_remove(in, buf, sizeof(buf))) > 0) {
    for (int i = 0; i < n; i++) {
      if (buf[i] == pat[c->match]) {
        if (++c->match == 5) {
          c->got++;
          total++;
          c->match = 0;
        }
      } else {
        c->match = buf[i] == '\n' ? 1 : 0;
      }
    }
    if (!c->open && c->got == 0) {
      c->open = 1;
      if (++nopen == nclients) {
        printf("all %d streams open; publishing %d messages of %d bytes\n", nclients, nmsgs, payload);
        t_start = now();
        publish_next();
      }
    }
  }
  if (want && total >= want && !t_end) {
    t_end = now();
    event_base_loopbreak(base);
  }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
  (void)bev;
  (void)arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    fprintf(stderr, "a connection closed early (event 0x%x)\n", what);
    event_base_loopbreak(base);
  }
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  (void)arg;
  fprintf(stderr, "timeout: %ld of %ld deliveries\n", total, want);
  event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT PUBLISH_KEY [clients] [messages] [payload]\n", argv[0]);
    return 2;
  }
  port = atoi(argv[1]);
  key = argv[2];
  nclients = argc > 3 ? atoi(argv[3]) : 1000;
  nmsgs = argc > 4 ? atoi(argv[4]) : 200;
  payload = argc > 5 ? atoi(argv[5]) : 64;
  want = (long)nclients * nmsgs;
  base = event_base_new();
  conns = calloc((size_t)nclients, sizeof(*conns));
  struct sockaddr_in sin = {0};
  sin.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)port);
  for (int i = 0; i < nclients; i++) {
    /* spread source addresses over 127.0.0.x */
    struct sockaddr_in src = {0};
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(i % 200));
    sin.sin_addr.s_addr = htonl(0x7f000001u);
    evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&src, sizeof(src));
    evutil_make_socket_nonblocking(fd);
    conns[i].bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(conns[i].bev, on_read, NULL, on_event, &conns[i]);
    bufferevent_enable(conns[i].bev, EV_READ);
    bufferevent_socket_connect(conns[i].bev, (struct sockaddr *)&sin, sizeof(sin));
    evbuffer_add_printf(bufferevent_get_output(conns[i].bev),
                        "GET /events?token=b%d:user HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n", i);
  }
  sin.sin_addr.s_addr = htonl(0x7f000001u);
  pub = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(pub, on_pub_read, NULL, on_event, NULL);
  bufferevent_enable(pub, EV_READ);
  bufferevent_socket_connect(pub, (struct sockaddr *)&sin, sizeof(sin));
  struct timeval limit = {120, 0};
  struct event *to = evtimer_new(base, on_timeout, NULL);
  evtimer_add(to, &limit);
  event_base_dispatch(base);
  if (t_end > 0) {
    double dt = t_end - t_start;
    printf("clients=%d messages=%d payload=%d deliveries=%ld time=%.3fs rate=%.0f deliveries/s\n",
           nclients, nmsgs, payload, total, dt, (double)total / dt);
  }
  for (int i = 0; i < nclients; i++)
    bufferevent_free(conns[i].bev);
  bufferevent_free(pub);
  event_free(to);
  free(conns);
  event_base_free(base);
  return t_end > 0 ? 0 : 1;
}
