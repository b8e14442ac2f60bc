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
#include "conn_impl.h"

#include <errno.h>
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

static void stop_gone_watch(struct conn *c)
{
  if (c->gone_watch)
    event_free(c->gone_watch);
  c->gone_watch = NULL;
}

void conn_release(struct conn *c)
{
  struct conns *cs = c->cs;
  struct gateway *gw = cs->f->gw;
  if (c->evcon)
    ptrmap_del(&cs->by_evcon, c->evcon);
  if (c->deadline)
    event_free(c->deadline);
  stop_gone_watch(c);
  if (c->watch)
    evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->watch);
  if (c->peer) {
    pthread_mutex_lock(&gw->presence_lock);
    hub_unsubscribe(gw->conn_peers, c->peer);
    pthread_mutex_unlock(&gw->presence_lock);
  }
  if (!c->evcon)
    bufferevent_decref(c->bev); /* the reference make_bev took */
  if (c->counted)
    atomic_fetch_sub(&gw->nconns, 1);
  free(c);
}

void conn_arm(struct conn *c, double seconds)
{
  struct timeval tv = {(time_t)seconds, (suseconds_t)((seconds - (double)(time_t)seconds) * 1e6)};
  evtimer_add(c->deadline, &tv);
}

/* evhttp is about to free the connection (closed by the peer, by evhttp,
 * by us, or handed over to a stream). */
void conn_on_close(struct evhttp_connection *evcon, void *arg)
{
  (void)evcon;
  struct conn *c = arg;
  void (*gone)(void *) = c->gone;
  void *gone_arg = c->gone_arg;
  conn_release(c);
  if (gone) /* evhttp has let go of the request: answering it frees it */
    gone(gone_arg);
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
  conn_arm(c, LINGER_SECONDS);
  if (cfg->access_log)
    log_event(LOG_INFO, "access", "id=%s method=- path=- status=%d peer=%s:%u", id, code,
              c->addr, c->port);
}

void conn_on_deadline(evutil_socket_t fd, short what, void *arg)
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

void conn_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
  (void)buf;
  if (info->n_added)
    ((struct conn *)arg)->got_bytes = 1;
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
  conn_arm(c, c->cs->f->gw->cfg->request_timeout);
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

/* The socket of a connection whose request waits for a hook became
 * readable: EOF or an error means the client left (what it sends, a
 * pipelined request or TLS bytes, is evhttp's: then we stop looking). */
static void on_gone_watch(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct conn *c = arg;
  char b;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return;
  void (*gone)(void *) = n > 0 ? NULL : c->gone;
  void *gone_arg = c->gone_arg;
  stop_gone_watch(c);
  if (gone) {
    c->gone = NULL;
    gone(gone_arg); /* answers the request: evhttp writes to a closed socket and lets go */
  }
}

void conns_on_gone(struct conns *cs, struct evhttp_request *req, void (*fn)(void *arg), void *arg)
{
  struct evhttp_connection *evcon = evhttp_request_get_connection(req);
  struct conn *c = evcon ? ptrmap_get(&cs->by_evcon, evcon) : NULL;
  if (!c)
    return;
  c->gone = fn;
  c->gone_arg = arg;
  if (!fn) {
    stop_gone_watch(c);
  } else if (!c->gone_watch) {
    c->gone_watch = event_new(cs->f->base, bufferevent_getfd(c->bev), EV_READ | EV_PERSIST,
                              on_gone_watch, c);
    if (c->gone_watch)
      event_add(c->gone_watch, NULL);
  }
}

void conns_stream_kept(struct conns *cs, struct evhttp_request *req)
{
  struct conn *c = ptrmap_get(&cs->by_evcon, evhttp_request_get_connection(req));
  if (!c)
    return;
  c->state = CONN_PASSED;
  if (c->counted)
    atomic_fetch_sub(&cs->f->gw->nconns, 1);
  c->counted = 0;
}
