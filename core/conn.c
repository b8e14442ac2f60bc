/* HTTP/1.1 connections while evhttp holds them: accounting, limits, the
 * client's address (PROXY header, X-Forwarded-For) and the whole-request
 * deadline. libevent 2.1 calls nothing of ours when evhttp accepts; it only
 * asks us to make the bufferevent (evhttp_set_bevcb) and makes the
 * connection right after, so each bufferevent is adopted from an event
 * activated during the accept, which runs before anything is read;
 * evhttp's close callback says when the connection goes.
 *
 * evhttp's own timeout restarts with every byte read, so a client sending
 * one header byte a second would hold a connection forever. Here a timer
 * runs from accept (or from the end of the previous answer, on keep-alive)
 * until a whole request has arrived, and is not moved by the bytes. */
#include "conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <json-c/json.h>

#include "front.h"
#include "hub.h"
#include "jsonutil.h"
#include "log.h"
#include "proxyproto.h"
#include "ptrmap.h"
#include "request.h"

/* Past the limit, up to CONFIG_ANSWERED_REFUSALS connections at a time get
 * a 503 (config.c keeps descriptors for them); beyond those a connection is
 * closed right after accept, so a flood cannot hold descriptors waiting for
 * its answers to drain. */
/* How long an answered-and-closing connection may take to read its answer. */
#define LINGER_SECONDS 2.0
/* Connections accepted per loop turn, at most (see make_bev). */
#define CONNS_ACCEPT_BATCH 64
/* How long the listeners rest after accept() failed for lack of descriptors. */
#define ACCEPT_PAUSE_USEC 100000

enum conn_state {
  CONN_READING,  /* waiting for (the rest of) a request: the deadline runs */
  CONN_HANDLING, /* a whole request is being answered, or became a stream */
  CONN_CLOSING,  /* answered by us (408, 503); closes once that is written */
};

struct conn {
  struct conns *cs;
  struct bufferevent *bev;
  struct evhttp_connection *evcon; /* NULL until adopted */
  struct event *deadline;
  struct evbuffer_cb_entry *watch; /* notes bytes arriving */
  struct hub_sub *peer;            /* in gw->conn_peers, once it is not a stream */
  enum conn_state state;
  int got_bytes; /* since the deadline was last armed */
  int over;      /* accepted past --max-connections: refused once read */
  long rank;     /* connections open when it was accepted, itself included */
  void (*then)(struct evhttp_request *, void *); /* also when the answer is written */
  struct conn *next_fresh;
  /* evhttp's bufferevent callbacks, while a PROXY header is read first */
  bufferevent_data_cb http_read;
  bufferevent_event_cb http_event;
  void *http_arg;
  /* the client: the TCP peer, or what a trusted proxy said it is (the
   * PROXY header for the connection, X-Forwarded-For per request) */
  char addr[PROXY_ADDR_MAX], req_addr[PROXY_ADDR_MAX];
  unsigned port, req_port;
};

struct conns {
  struct front *f;
  struct evhttp *http;
  struct conn *fresh, **fresh_tail; /* accepted, not adopted yet (FIFO) */
  struct event *adopt_ev, *resume_ev;
  int burst_paused; /* listeners stopped until the next loop turn */
  int batch;        /* accepted since the last adoption */
  struct event *pace_ev; /* listens again, next loop turn */
  double last_warning;
  struct ptrmap by_evcon; /* evcon -> conn */
};

/* The accept error callback gets the evhttp, not us: evhttp_bind_listener
 * owns the listener's argument. Workers are few; a small table does. */
#define REGISTRY_MAX 256
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conns *registry[REGISTRY_MAX];

static void release(struct conn *c)
{
  struct conns *cs = c->cs;
  struct gateway *gw = cs->f->gw;
  if (c->evcon)
    ptrmap_del(&cs->by_evcon, c->evcon);
  if (c->deadline)
    event_free(c->deadline);
  if (c->watch)
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->watch);
  if (c->peer) {
    pthread_mutex_lock(&gw->presence_lock);
    hub_unsubscribe(gw->conn_peers, c->peer);
    pthread_mutex_unlock(&gw->presence_lock);
  }
  if (!c->evcon)
    bufferevent_decref(c->bev); /* the reference make_bev took */
  atomic_fetch_sub(&gw->nconns, 1);
  free(c);
}

static void arm(struct conn *c, double seconds)
{
  struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
  evtimer_add(c->deadline, &tv);
}

/* evhttp is about to free the connection (closed by the peer, by evhttp,
 * by us, or handed over to a stream). */
static void on_close(struct evhttp_connection *evcon, void *arg)
{
  (void)evcon;
  release(arg);
}

/* While closing: whatever the peer still sends is read and dropped, so the
 * close does not turn into a reset that could destroy the answer. The
 * argument is not used: evhttp's deferred read may call this with its own. */
static void drain_input(struct bufferevent *bev, void *arg)
{
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_answer_written(struct bufferevent *bev, void *arg)
{
  (void)arg;
  if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
    shutdown(bufferevent_getfd(bev), SHUT_WR);
}

static void on_closing_event(struct bufferevent *bev, short what, void *arg)
{
  (void)bev;
  (void)what;
  struct conn *c = arg;
  evhttp_connection_free(c->evcon); /* on_close frees c */
}

/* Answers with a JSON error outside evhttp (there is no request object to
 * answer with: the request is not complete, or was never read) and closes
 * once the answer is written, or after LINGER_SECONDS. */
static void answer_and_close(struct conn *c, int code, const char *error, const char *message)
{
  struct config *cfg = c->cs->f->gw->cfg;
  char id[24];
  request_new_id(id, sizeof(id));
  struct json_object *body = json_error(error, message);
  const char *text = json_text(body);
  evbuffer_add_printf(bufferevent_get_output(c->bev),
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\nX-Request-Id: %s\r\n"
                      "Content-Length: %zu\r\n\r\n%s\n",
                      code, http_reason(code), id, strlen(text) + 1, text);
  json_object_put(body);
  c->state = CONN_CLOSING;
  bufferevent_setcb(c->bev, drain_input, on_answer_written, on_closing_event, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  arm(c, LINGER_SECONDS);
  if (cfg->access_log)
    log_event(LOG_INFO, "access", "id=%s method=- path=- status=%d peer=%s:%u", id, code,
              c->addr, c->port);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct conn *c = arg;
  struct front *f = c->cs->f;
  if (c->state != CONN_READING) {
    if (c->state == CONN_CLOSING)
      evhttp_connection_free(c->evcon); /* its answer was not taken in time */
    return;
  }
  /* Part of a request came: say why it is refused, unless evhttp is already
   * writing an answer of its own (a 400, say) that the peer does not read. */
  int partial = c->got_bytes || evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
  if (partial && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
    char msg[160];
    STAT_ADD(f->stats->request_timeouts, 1);
    snprintf(msg, sizeof(msg), "the request was not complete within %g s (--request-timeout)",
             f->gw->cfg->request_timeout);
    answer_and_close(c, 408, "request_timeout", msg);
  } else {
    evhttp_connection_free(c->evcon); /* idle, or stuck: nothing to say */
  }
}

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
  (void)buf;
  if (info->n_added)
    ((struct conn *)arg)->got_bytes = 1;
}

/* Puts evhttp's callbacks back once the PROXY header is read (or found
 * missing: a trusted proxy may also speak plain HTTP). */
static void proxy_done(struct conn *c)
{
  bufferevent_setcb(c->bev, c->http_read, NULL, c->http_event, c->http_arg);
  c->http_read = NULL;
}

static void proxy_read(struct bufferevent *bev, void *arg)
{
  struct conn *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len = evbuffer_get_length(in);
  if (len > PROXY_HEADER_MAX)
    len = PROXY_HEADER_MAX;
  struct proxy_header h;
  int n = proxy_parse(evbuffer_pullup(in, (ev_ssize_t)len), len, &h);
  if (n == -2)
    return; /* more to come, within --request-timeout */
  if (n > 0) {
    evbuffer_drain(in, (size_t)n);
    if (!h.local) {
      snprintf(c->addr, sizeof(c->addr), "%s", h.addr);
      c->port = h.port;
    }
  }
  bufferevent_data_cb read = c->http_read;
  void *http_arg = c->http_arg;
  proxy_done(c);
  if (evbuffer_get_length(in) > 0)
    read(bev, http_arg); /* may free c */
}

static void proxy_event(struct bufferevent *bev, short what, void *arg)
{
  struct conn *c = arg;
  bufferevent_event_cb event = c->http_event;
  void *http_arg = c->http_arg;
  proxy_done(c);
  event(bev, what, http_arg); /* may free c */
}

static void adopt(struct conn *c)
{
  struct conns *cs = c->cs;
  struct gateway *gw = cs->f->gw;
  struct config *cfg = gw->cfg;
  bufferevent_data_cb readcb = NULL;
  bufferevent_event_cb eventcb = NULL;
  void *evcon = NULL;
  bufferevent_getcb(c->bev, &readcb, NULL, &eventcb, &evcon);
  if (!readcb || !evcon) { /* evhttp already gave up on it */
    release(c);
    return;
  }
  c->evcon = evcon;
  evhttp_connection_set_closecb(c->evcon, on_close, c);
  bufferevent_decref(c->bev); /* evhttp holds it from here */
  c->deadline = evtimer_new(cs->f->base, on_deadline, c);
  c->watch = evbuffer_add_cb(bufferevent_get_input(c->bev), on_input, c);
  if (!c->deadline || !c->watch || ptrmap_put(&cs->by_evcon, c->evcon, c) != 0) {
    evhttp_connection_free(c->evcon);
    return;
  }
  char *addr = NULL;
  ev_uint16_t port = 0;
  evhttp_connection_get_peer(c->evcon, &addr, &port);
  snprintf(c->addr, sizeof(c->addr), "%s", addr ? addr : "?");
  c->port = port;

  /* Past --max-connections: a few at a time are read, so a stream request
   * can be shed the way a browser survives (and others get their 503);
   * beyond those, the connection is closed unanswered, which EventSource
   * takes as a network error and retries. The per-peer limit on
   * connections that are not streams waits for the request: a burst of
   * stream requests from one address is not what it is for. */
  double deadline = cfg->request_timeout;
  if (c->rank > cfg->max_connections) {
    STAT_ADD(cs->f->stats->connections_refused, 1);
    if (c->rank - cfg->max_connections > CONFIG_ANSWERED_REFUSALS) {
      evhttp_connection_free(c->evcon);
      return;
    }
    c->over = 1;
    if (deadline > LINGER_SECONDS)
      deadline = LINGER_SECONDS;
  }
  c->state = CONN_READING;
  arm(c, deadline);
  if (gw->ntrusted && proxy_cidr_match(gw->trusted, gw->ntrusted, c->addr)) {
    c->http_read = readcb;
    c->http_event = eventcb;
    c->http_arg = evcon;
    bufferevent_setcb(c->bev, proxy_read, NULL, proxy_event, c);
  }
}

/* The worker's current listeners (a stopping worker has none left). */
static void set_listening(struct front *f, int on)
{
  for (int i = 0; i < f->nbound; i++) {
    struct evconnlistener *l = evhttp_bound_socket_get_listener(f->bound[i]);
    if (on)
      evconnlistener_enable(l);
    else
      evconnlistener_disable(l);
  }
}

static void on_adopt(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct conns *cs = arg;
  struct conn *list = cs->fresh;
  cs->fresh = NULL;
  cs->fresh_tail = &cs->fresh;
  while (list) {
    struct conn *c = list;
    list = c->next_fresh;
    adopt(c);
  }
  cs->batch = 0;
  if (cs->burst_paused) {
    static const struct timeval next_turn = {0, 0};
    evtimer_add(cs->pace_ev, &next_turn);
  }
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct conns *cs = arg;
  cs->burst_paused = 0;
  if (!evtimer_pending(cs->resume_ev, NULL))
    set_listening(cs->f, 1);
}

/* Is the kernel's queue of connections waiting for accept() past half
 * full on one of the worker's listeners? Then pausing would have it drop
 * connections (the clients retry a second later). Linux reports the
 * queue's length and limit in tcp_info for a listening socket. */
static int backlog_filling(struct front *f)
{
  for (int i = 0; i < f->nbound; i++) {
    struct tcp_info info;
    socklen_t len = sizeof(info);
    evutil_socket_t fd = evconnlistener_get_fd(evhttp_bound_socket_get_listener(f->bound[i]));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
        (size_t)info.tcpi_unacked * 2 > (size_t)info.tcpi_sacked)
      return 1;
  }
  return 0;
}

/* evhttp's bufferevent callback: runs inside the accept, before evhttp has
 * made the connection object. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
  struct conns *cs = arg;
  struct conn *c = calloc(1, sizeof(*c));
  struct bufferevent *bev = c ? bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE) : NULL;
  if (!bev) {
    free(c);
    return NULL; /* evhttp makes its own; this connection goes uncounted */
  }
  c->cs = cs;
  c->bev = bev;
  c->state = CONN_READING;
  /* Keeps bev valid until adopted, even if evhttp drops the connection. */
  bufferevent_incref(bev);
  *cs->fresh_tail = c;
  cs->fresh_tail = &c->next_fresh;
  struct gateway *gw = cs->f->gw;
  /* Streams count too: each one holds a descriptor as long as it lives. */
  c->rank = atomic_fetch_add(&gw->nconns, 1) + 1 + atomic_load(&gw->nclients);
  /* libevent accepts everything the backlog holds in one go. In a storm
   * that is thousands of connections, each with its evhttp state, before
   * any request is read: accepting in batches, with the requests of one
   * batch read (and most of that state freed) before the next, keeps the
   * peak, and the memory it leaves scattered, small. Far past the limit,
   * the batch stops at once; on_adopt closes the excess. */
  if (((++cs->batch >= CONNS_ACCEPT_BATCH && !backlog_filling(cs->f)) ||
       c->rank > gw->cfg->max_connections + CONFIG_ANSWERED_REFUSALS) &&
      !cs->burst_paused) {
    cs->burst_paused = 1;
    set_listening(cs->f, 0);
  }
  event_active(cs->adopt_ev, EV_TIMEOUT, 0);
  return bev;
}

static void on_answered(struct evhttp_request *req, void *arg)
{
  struct conn *c = arg;
  if (c->then) {
    c->then(req, NULL);
    c->then = NULL;
  }
  /* Keep-alive: the next request, idle time included, gets the same time. */
  c->state = CONN_READING;
  c->got_bytes = 0;
  arm(c, c->cs->f->gw->cfg->request_timeout);
}

/* The client behind req: a trusted peer's X-Forwarded-For names it. */
static void request_peer(struct conn *c, struct evhttp_request *req)
{
  struct gateway *gw = c->cs->f->gw;
  snprintf(c->req_addr, sizeof(c->req_addr), "%s", c->addr);
  c->req_port = c->port;
  if (!gw->ntrusted || !proxy_cidr_match(gw->trusted, gw->ntrusted, c->addr))
    return;
  /* Several X-Forwarded-For headers are one list, in order (the last 64
   * of them: no proxy chain is longer). */
  const char *values[64];
  size_t n = 0;
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(req), next) {
    if (evutil_ascii_strcasecmp(kv->key, "X-Forwarded-For") != 0)
      continue;
    if (n == 64)
      memmove(values, values + 1, --n * sizeof(*values));
    values[n++] = kv->value;
  }
  char xff[PROXY_XFF_MAX_LEN + 1];
  if (n && proxy_xff_join_tail(values, n, xff, sizeof(xff)) > 0 &&
      proxy_xff_client(xff, gw->trusted, gw->ntrusted, c->req_addr, sizeof(c->req_addr)) == 0)
    c->req_port = 0;
}

int conns_request_started(struct conns *cs, struct evhttp_request *req, int is_stream)
{
  struct conn *c = ptrmap_get(&cs->by_evcon, evhttp_request_get_connection(req));
  if (!c)
    return CONNS_OK; /* evhttp made this connection's bufferevent itself (OOM) */
  if (c->state == CONN_READING) {
    event_del(c->deadline);
    c->state = CONN_HANDLING;
    evhttp_request_set_on_complete_cb(req, on_answered, c);
  }
  request_peer(c, req);
  if (c->over)
    return CONNS_OVER_LIMIT;
  if (is_stream || c->peer)
    return CONNS_OK;
  /* From its first request that is not a stream, the connection counts
   * against --max-connections-per-peer until it closes. */
  struct gateway *gw = cs->f->gw;
  const char *peer = c->req_addr;
  pthread_mutex_lock(&gw->presence_lock);
  c->peer = hub_subscribe(gw->conn_peers, c, &peer, 1);
  long from_peer = (long)hub_subscribers(gw->conn_peers, peer);
  pthread_mutex_unlock(&gw->presence_lock);
  if (from_peer > gw->cfg->max_conn_per_peer) {
    STAT_ADD(cs->f->stats->connections_refused, 1);
    return CONNS_OVER_PEER_LIMIT;
  }
  return CONNS_OK;
}

const char *conns_peer(struct conns *cs, struct evhttp_request *req, unsigned *port)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct conn *c = ptrmap_get(&cs->by_evcon, evcon);
  if (c && c->state != CONN_READING) {
    if (port)
      *port = c->req_port;
    return c->req_addr;
  }
  char *addr = NULL;
  ev_uint16_t p = 0;
  if (evcon)
    evhttp_connection_get_peer(evcon, &addr, &p);
  if (port)
    *port = p;
  return addr ? addr : "?";
}

void conns_when_answered(struct conns *cs, struct evhttp_request *req,
                         void (*fn)(struct evhttp_request *, void *))
{
  struct conn *c = ptrmap_get(&cs->by_evcon, evhttp_request_get_connection(req));
  if (c && c->state == CONN_HANDLING)
    c->then = fn;
  else
    evhttp_request_set_on_complete_cb(req, fn, NULL);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  set_listening(((struct conns *)arg)->f, 1);
}

static void on_accept_error(struct evconnlistener *l, void *http)
{
  int err = EVUTIL_SOCKET_ERROR();
  struct conns *cs = NULL;
  pthread_mutex_lock(&registry_lock);
  for (int i = 0; i < REGISTRY_MAX && !cs; i++)
    if (registry[i] && registry[i]->http == http)
      cs = registry[i];
  pthread_mutex_unlock(&registry_lock);
  /* libevent would call accept() again at once and fail again, in a loop,
   * as long as the descriptors are short; rest instead. */
  evconnlistener_disable(l);
  if (!cs)
    return;
  struct timeval pause = {0, ACCEPT_PAUSE_USEC};
  evtimer_add(cs->resume_ev, &pause);
  struct timeval now;
  event_base_gettimeofday_cached(cs->f->base, &now);
  double t = (double)now.tv_sec + (double)now.tv_usec / 1e6;
  if (t - cs->last_warning >= 1) { /* at most one line a second per worker */
    cs->last_warning = t;
    log_event(LOG_WARN, "accept_failed", "worker=%d error=\"%s\" paused_ms=%d connections=%ld",
              cs->f->index, evutil_socket_error_to_string(err), ACCEPT_PAUSE_USEC / 1000,
              atomic_load(&cs->f->gw->nconns) + atomic_load(&cs->f->gw->nclients));
  }
}

void conns_watch_listener(struct conns *cs, struct evconnlistener *l)
{
  (void)cs;
  evconnlistener_set_error_cb(l, on_accept_error);
}

struct conns *conns_new(struct front *f, struct evhttp *http)
{
  struct conns *cs = calloc(1, sizeof(*cs));
  if (!cs)
    return NULL;
  cs->f = f;
  cs->http = http;
  cs->fresh_tail = &cs->fresh;
  cs->adopt_ev = event_new(f->base, -1, 0, on_adopt, cs);
  cs->resume_ev = evtimer_new(f->base, on_resume, cs);
  cs->pace_ev = evtimer_new(f->base, on_pace, cs);
  int slot = -1;
  pthread_mutex_lock(&registry_lock);
  for (int i = 0; i < REGISTRY_MAX && slot < 0; i++)
    if (!registry[i])
      registry[(slot = i)] = cs;
  pthread_mutex_unlock(&registry_lock);
  if (!cs->adopt_ev || !cs->resume_ev || !cs->pace_ev || slot < 0) {
    conns_free(cs);
    return NULL;
  }
  /* adopt_ev keeps the default priority, that of the read events: it is
   * activated during the accept, so it runs before any read event of the
   * new connection can (those come from a later poll, behind it in the
   * same queue). A higher priority would make libevent cut every loop turn
   * short after each accept, and a storm's accepts then starve the reads
   * of the connections already accepted. */
  evhttp_set_bevcb(http, make_bev, cs);
  return cs;
}

void conns_free(struct conns *cs)
{
  if (!cs)
    return;
  pthread_mutex_lock(&registry_lock);
  for (int i = 0; i < REGISTRY_MAX; i++)
    if (registry[i] == cs)
      registry[i] = NULL;
  pthread_mutex_unlock(&registry_lock);
  while (cs->fresh) {
    struct conn *c = cs->fresh;
    cs->fresh = c->next_fresh;
    release(c);
  }
  if (cs->adopt_ev)
    event_free(cs->adopt_ev);
  if (cs->resume_ev)
    event_free(cs->resume_ev);
  if (cs->pace_ev)
    event_free(cs->pace_ev);
  ptrmap_clear(&cs->by_evcon);
  free(cs);
}
