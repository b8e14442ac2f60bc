/* Churn check: many clients connect, drop and resume with Last-Event-ID at
 * random while messages are published; afterwards every client must have
 * every message exactly once and in order, or an explicit tinysse.reset
 * before any gap. Loopback only, bounded in count and time.
 * Usage: churn PORT[,PORT...] PUBLISH_KEY [clients=1000] [messages=2000] [seconds=40]
 * With several ports (the nodes of a cluster), every (re)connect goes to a
 * node picked at random, so resumes cross nodes; publishes go to the first. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

struct client {
  int index;
  struct bufferevent *bev;
  struct event *retry;
  char last_id[64];
  long next;       /* the message number expected next */
  int open, use_query;
  long reconnects, resets, dups, gaps;
};

static struct event_base *base;
static struct client *clients;
static int nclients, nmsgs, port, opened;
static int ports[16], nports;
static const char *key;
static struct bufferevent *pub;
static int published, acked, publishing;
static long total_reconnects;

static void connect_client(struct client *c);

static void process_event(struct client *c, const char *id, const char *event, const char *data)
{
  if (id && *id)
    snprintf(c->last_id, sizeof(c->last_id), "%s", id);
  if (event && strcmp(event, "tinysse.reset") == 0) {
    c->resets++;
    c->next = -1; /* any next message is accepted as the new start */
    return;
  }
  if (!data)
    return;
  const char *p = strstr(data, "\"data\":{\"n\":");
  if (!p)
    return;
  long n = strtol(p + 12, NULL, 10);
  if (c->next == -1 || n == c->next)
    c->next = n + 1;
  else if (n < c->next)
    c->dups++;
  else {
    c->gaps++;
    c->next = n + 1;
  }
}

static void on_read(struct bufferevent *bev, void *arg)
{
  struct client *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  if (!c->open) {
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (p.pos < 0)
      return;
    char status[16] = {0};
    evbuffer_copyout(in, status, 12);
    if (strncmp(status + 9, "200", 3) != 0) {
      fprintf(stderr, "client %d: status %.12s\n", c->index, status);
      exit(3);
    }
    evbuffer_drain(in, (size_t)p.pos + 4);
    c->open = 1;
    opened++;
  }
  /* events end with a blank line; the gateway uses LF only */
  for (;;) {
    struct evbuffer_ptr p = evbuffer_search(in, "\n\n", 2, NULL);
    if (p.pos < 0)
      break;
    size_t len = (size_t)p.pos + 2;
    char *block = malloc(len + 1);
    evbuffer_remove(in, block, len);
    block[len] = '\0';
    const char *id = NULL, *event = NULL, *data = NULL;
    for (char *line = strtok(block, "\n"); line; line = strtok(NULL, "\n")) {
      if (strncmp(line, "id: ", 4) == 0)
        id = line + 4;
      else if (strncmp(line, "event: ", 7) == 0)
        event = line + 7;
      else if (strncmp(line, "data: ", 6) == 0)
        data = line + 6;
    }
    process_event(c, id, event, data);
    free(block);
  }
}

static void drop(struct client *c)
{
  if (c->bev) {
    bufferevent_free(c->bev);
    c->bev = NULL;
  }
  if (c->open)
    opened--;
  c->open = 0;
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct client *c = arg;
  c->reconnects++;
  total_reconnects++;
  c->use_query = rand() & 1;
  connect_client(c);
}

static void schedule_reconnect(struct client *c)
{
  struct timeval tv = {0, (rand() % 200) * 1000};
  evtimer_add(c->retry, &tv);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
  (void)bev;
  struct client *c = arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    drop(c);
    schedule_reconnect(c);
  }
}

static void connect_client(struct client *c)
{
  struct sockaddr_in sin = {0}, src = {0};
  sin.sin_family = src.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)ports[nports > 1 ? rand() % nports : 0]);
  sin.sin_addr.s_addr = htonl(0x7f000001u);
  src.sin_addr.s_addr = htonl(0x7f000001u + (unsigned)(c->index % 50));
  evutil_socket_t fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
    perror("socket/bind");
    exit(3);
  }
  evutil_make_socket_nonblocking(fd);
  c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
  bufferevent_enable(c->bev, EV_READ);
  bufferevent_socket_connect(c->bev, (struct sockaddr *)&sin, sizeof(sin));
  struct evbuffer *out = bufferevent_get_output(c->bev);
  if (!c->last_id[0])
    evbuffer_add_printf(out, "GET /events?token=churn%d:user HTTP/1.1\r\nHost: x\r\n\r\n", c->index);
  else if (c->use_query)
    evbuffer_add_printf(out, "GET /events?token=churn%d:user&lastEventId=%s HTTP/1.1\r\nHost: x\r\n\r\n",
                        c->index, c->last_id);
  else
    evbuffer_add_printf(out, "GET /events?token=churn%d:user HTTP/1.1\r\nHost: x\r\nLast-Event-ID: %s\r\n\r\n",
                        c->index, c->last_id);
}

static void publish_next(void)
{
  char body[128];
  int len = snprintf(body, sizeof(body), "{\"targets\":[\"all\"],\"handler_id\":0,\"data\":{\"n\":%d}}",
                     published + 1);
  evbuffer_add_printf(bufferevent_get_output(pub),
                      "POST /publish HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Length: %d\r\n\r\n%s", key, len, body);
  published++;
}

static void on_pub_read(struct bufferevent *bev, void *arg)
{
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  for (;;) {
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (p.pos < 0)
      return;
    char head[512] = {0};
    size_t hl = (size_t)p.pos + 4;
    evbuffer_copyout(in, head, hl < sizeof(head) - 1 ? hl : sizeof(head) - 1);
    char *cl = strcasestr(head, "Content-Length:");
    size_t body = cl ? (size_t)atoi(cl + 15) : 0;
    if (evbuffer_get_length(in) < hl + body)
      return;
    if (strncmp(head + 9, "200", 3) != 0) {
      fprintf(stderr, "publish failed: %.40s\n", head);
      exit(3);
    }
    evbuffer_drain(in, hl + body);
    acked++;
  }
}

/* Every 20 ms: publish a few messages and drop a few random clients. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  (void)arg;
  if (!publishing) {
    if (opened < nclients)
      return;
    publishing = 1;
    printf("churn: %d clients open; publishing %d messages\n", nclients, nmsgs);
    fflush(stdout);
  }
  for (int k = 0; k < 5 && published < nmsgs; k++)
    publish_next();
  if (published < nmsgs) {
    for (int k = 0; k < nclients / 100 + 1; k++) {
      struct client *c = &clients[rand() % nclients];
      /* only clients with an id to resume from: one dropped before its
       * first message would rightly start afresh */
      if (c->bev && c->open && c->last_id[0]) {
        drop(c);
        schedule_reconnect(c);
      }
    }
    return;
  }
  /* all published: done when every client has caught up */
  for (int i = 0; i < nclients; i++)
    if (clients[i].next != nmsgs + 1)
      return;
  event_base_loopbreak(base);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  (void)arg;
  fprintf(stderr, "churn: time limit reached (published %d, acked %d)\n", published, acked);
  event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
  if (argc < 3) {
    fprintf(stderr, "usage: %s PORT[,PORT...] PUBLISH_KEY [clients] [messages] [seconds]\n", argv[0]);
    return 2;
  }
  for (char *p = argv[1]; *p && nports < 16;) {
    ports[nports++] = atoi(p);
    p = strchr(p, ',');
    if (!p)
      break;
    p++;
  }
  port = ports[0];
  key = argv[2];
  nclients = argc > 3 ? atoi(argv[3]) : 1000;
  nmsgs = argc > 4 ? atoi(argv[4]) : 2000;
  int seconds = argc > 5 ? atoi(argv[5]) : 40;
  srand(12345);
  base = event_base_new();
  clients = calloc((size_t)nclients, sizeof(*clients));
  for (int i = 0; i < nclients; i++) {
    clients[i].index = i;
    clients[i].next = 1;
    clients[i].retry = evtimer_new(base, on_retry, &clients[i]);
    connect_client(&clients[i]);
  }
  struct sockaddr_in sin = {0};
  sin.sin_family = AF_INET;
  sin.sin_port = htons((unsigned short)port);
  sin.sin_addr.s_addr = htonl(0x7f000001u);
  pub = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(pub, on_pub_read, NULL, NULL, NULL);
  bufferevent_enable(pub, EV_READ);
  bufferevent_socket_connect(pub, (struct sockaddr *)&sin, sizeof(sin));
  struct timeval tick = {0, 20000}, limit = {seconds, 0};
  struct event *tick_ev = event_new(base, -1, EV_PERSIST, on_tick, NULL);
  struct event *dead_ev = evtimer_new(base, on_deadline, NULL);
  event_add(tick_ev, &tick);
  evtimer_add(dead_ev, &limit);
  event_base_dispatch(base);

  long dups = 0, gaps = 0, resets = 0, incomplete = 0;
  for (int i = 0; i < nclients; i++) {
    dups += clients[i].dups;
    gaps += clients[i].gaps;
    resets += clients[i].resets;
    incomplete += clients[i].next != nmsgs + 1;
  }
  printf("churn: clients=%d messages=%d published=%d reconnects=%ld resets=%ld "
         "duplicates=%ld gaps=%ld incomplete=%ld checked=%ld\n",
         nclients, nmsgs, published, total_reconnects, resets, dups, gaps, incomplete,
         (long)nclients * nmsgs);
  int ok = published == nmsgs && dups == 0 && gaps == 0 && incomplete == 0;
  for (int i = 0; i < nclients; i++) {
    drop(&clients[i]);
    event_free(clients[i].retry);
  }
  bufferevent_free(pub);
  event_free(tick_ev);
  event_free(dead_ev);
  free(clients);
  event_base_free(base);
  return ok ? 0 : 1;
}
