/* Accepting connections: in batches per loop turn (a storm's accepts must
 * not starve the reads), adopting each one evhttp makes (accounting, the
 * deadline, the --max-connections refusals), and, before evhttp reads a
 * request, what the connection is: a PROXY header from a trusted proxy,
 * then HTTP/2 (ALPN h2 on TLS, the preface on a plain listener), which
 * h2.c takes over, or HTTP/1.1, which stays with evhttp. */
#include "conn_impl.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "front.h"
#include "h2.h"
#include "log.h"
#include "tls.h"

/* The accept error callback gets the evhttp, not us: evhttp_bind_listener
 * owns the listener's argument. Workers are few; a small table does. */
#define REGISTRY_MAX 256
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conns *registry[REGISTRY_MAX];


/* Puts evhttp's callbacks back: the connection speaks HTTP/1.1. */
static void pre_done(struct conn *c)
{
  bufferevent_setcb(c->bev, c->http_read, NULL, c->http_event, c->http_arg);
  c->http_read = NULL;
}

/* HTTP/2 from here: h2.c takes the connection over (evhttp keeps it, idle,
 * until h2.c frees it). */
static void to_h2(struct conn *c)
{
  c->http_read = NULL;
  c->state = CONN_PASSED;
  event_del(c->deadline);
  h2_accept(c->cs->f, c->bev, c->evcon, c->addr, c->port); /* may free c */
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Before evhttp reads: a PROXY header from a trusted proxy (plain
 * listeners), then HTTP/2 or not: ALPN on TLS, the preface otherwise. */
static void pre_read(struct bufferevent *bev, void *arg)
{
  struct conn *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len = evbuffer_get_length(in);
  if (c->want_proxy) {
    struct proxy_header h;
    size_t n = len > PROXY_HEADER_MAX ? PROXY_HEADER_MAX : len;
    int r = proxy_parse(evbuffer_pullup(in, (ev_ssize_t)n), n, &h);
    if (r == -2)
      return; /* more to come, within --request-timeout */
    c->want_proxy = 0;
    if (r > 0) {
      evbuffer_drain(in, (size_t)r);
      len -= (size_t)r;
      if (!h.local) {
        snprintf(c->addr, sizeof(c->addr), "%s", h.addr);
        c->port = h.port;
      }
    }
  }
  if (c->tls && tls_is_h2(bufferevent_openssl_get_ssl(bev))) {
    to_h2(c);
    return;
  }
  if (c->sniff && len > 0) {
    size_t n = len < sizeof(h2_preface) - 1 ? len : sizeof(h2_preface) - 1;
    if (memcmp(evbuffer_pullup(in, (ev_ssize_t)n), h2_preface, n) == 0) {
      if (n == sizeof(h2_preface) - 1)
        to_h2(c);
      return; /* the preface so far: wait for the rest */
    }
  }
  bufferevent_data_cb read = c->http_read;
  void *http_arg = c->http_arg;
  pre_done(c);
  if (len > 0)
    read(bev, http_arg); /* may free c */
}

static void pre_event(struct bufferevent *bev, short what, void *arg)
{
  struct conn *c = arg;
  if (what == BEV_EVENT_CONNECTED)
    return; /* the TLS handshake is done: the first bytes decide */
  bufferevent_event_cb event = c->http_event;
  void *http_arg = c->http_arg;
  pre_done(c);
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
    conn_release(c);
    return;
  }
  c->evcon = evcon;
  evhttp_connection_set_closecb(c->evcon, conn_on_close, c);
  bufferevent_decref(c->bev); /* evhttp holds it from here */
  c->deadline = evtimer_new(cs->f->base, conn_on_deadline, c);
  c->watch = evbuffer_add_cb(bufferevent_get_input(c->bev), conn_on_input, c);
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
  conn_arm(c, deadline);
  /* A PROXY header is read on plain listeners only: a proxy that speaks
   * it to a TLS listener would have to wrap the handshake. */
  c->want_proxy = !c->tls && gw->ntrusted && proxy_cidr_match(gw->trusted, gw->ntrusted, c->addr);
  c->sniff = !c->tls && !cfg->no_http2;
  if (c->want_proxy || c->sniff || (c->tls && !cfg->no_http2)) {
    c->http_read = readcb;
    c->http_event = eventcb;
    c->http_arg = evcon;
    bufferevent_setcb(c->bev, pre_read, NULL, pre_event, c);
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
  struct conn_kind *kind = arg;
  struct conns *cs = kind->cs;
  struct conn *c = calloc(1, sizeof(*c));
  SSL *ssl = c && kind->tls ? tls_accept_new(cs->f->gw->tls) : NULL;
  struct bufferevent *bev = NULL;
  if (c && kind->tls && ssl)
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
  else if (c && !kind->tls)
    bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    if (ssl)
      SSL_free(ssl);
    free(c);
    /* evhttp makes its own and the connection goes uncounted; on a TLS
     * listener it fails its handshake */
    return NULL;
  }
  if (kind->tls) /* browsers often close without a close_notify */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  c->cs = cs;
  c->bev = bev;
  c->tls = kind->tls;
  c->counted = 1;
  c->state = CONN_READING;
  /* Keeps bev valid until adopted, even if evhttp drops the connection. */
  bufferevent_incref(bev);
  *cs->fresh_tail = c;
  cs->fresh_tail = &c->next_fresh;
  struct gateway *gw = cs->f->gw;
  /* Streams count too: each one holds a descriptor as long as it lives. */
  c->rank = atomic_fetch_add(&gw->nconns, 1) + 1 + atomic_load(&gw->nclients);
  atomic_fetch_add_explicit(&gw->churn, 1, memory_order_relaxed);
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
    if (registry[i] && (registry[i]->http[0] == http || registry[i]->http[1] == http))
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

struct conns *conns_new(struct front *f, struct evhttp *plain, struct evhttp *tls)
{
  struct conns *cs = calloc(1, sizeof(*cs));
  if (!cs)
    return NULL;
  cs->f = f;
  cs->http[0] = plain;
  cs->http[1] = tls;
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
  for (int i = 0; i < 2; i++) {
    cs->kinds[i] = (struct conn_kind){cs, i};
    if (cs->http[i])
      evhttp_set_bevcb(cs->http[i], make_bev, &cs->kinds[i]);
  }
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
    conn_release(c);
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
