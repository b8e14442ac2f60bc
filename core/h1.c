/* The HTTP/1.1 transport, on evhttp: listeners, evhttp's limits, the
 * request operations handlers answer through (request.h), streams taken
 * over from evhttp, the access log, and the worker's front operations.
 * Connection accounting and the request deadline are in conn.c. */
#include "h1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "alloc.h"
#include "client.h"
#include "conn.h"
#include "front.h"
#include "h2.h"
#include "jsonutil.h"
#include "log.h"
#include "request.h"
#include "router.h"
#include "status.h"
#include "stream.h"
#include "takeover.h"
#include "tlsstream.h"

static struct evhttp_request *ev(const struct request *r) { return r->impl; }

static const char *op_header(const struct request *r, const char *name)
{
  return evhttp_find_header(evhttp_request_get_input_headers(ev(r)), name);
}

static void op_each_header(const struct request *r,
                           void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_input_headers(ev(r)), next)
    fn(arg, kv->key, kv->value);
}

static const char *op_body(const struct request *r, size_t *len)
{
  struct evbuffer *in = evhttp_request_get_input_buffer(ev(r));
  *len = evbuffer_get_length(in);
  return *len ? (const char *)evbuffer_pullup(in, -1) : NULL;
}

/* Every header the gateway sets appears once: a later value replaces. */
static void op_add_header(struct request *r, const char *name, const char *value)
{
  struct evkeyvalq *h = evhttp_request_get_output_headers(ev(r));
  if (evutil_ascii_strcasecmp(name, "Vary") != 0)
    evhttp_remove_header(h, name);
  evhttp_add_header(h, name, value);
}

static void done_with(struct request *r)
{
  if (r->kept) {
    request_release(r);
    free(r);
  }
}

static void op_send(struct request *r, int code, const char *body, size_t len)
{
  struct evbuffer *out = evbuffer_new();
  if (!out)
    alloc_failed(0);
  if (len)
    evbuffer_add(out, body, len);
  evhttp_send_reply(ev(r), code, http_reason(code), out);
  evbuffer_free(out);
  done_with(r);
}

static void op_send_file(struct request *r, int fd, size_t size)
{
  struct evbuffer *out = evbuffer_new();
  if (!out)
    alloc_failed(0);
  if (evbuffer_add_file(out, fd, 0, (ev_off_t)size) != 0) { /* takes fd */
    evbuffer_free(out);
    reply_error(r, 500, "internal", "cannot read the file");
    return;
  }
  evhttp_send_reply(ev(r), 200, "OK", out);
  evbuffer_free(out);
  done_with(r);
}

struct take {
  struct takeover *t;
  struct evhttp_request *req;
};

static int take_socket(void *arg)
{
  struct take *t = arg;
  return takeover_socket(t->t, t->req);
}

/* The answer's head, written by us: evhttp would send a streamed answer
 * chunked. Then the socket leaves evhttp for the stream. */
static int open_stream(struct request *r, struct client_params *p)
{
  struct front *f = r->f;
  if (!evhttp_request_get_connection(ev(r)))
    return -1; /* the client left while a hook waited */
  char head[2048];
  size_t hl = (size_t)snprintf(head, sizeof(head),
                               "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/event-stream\r\n"
                               "Cache-Control: no-cache, no-transform\r\n"
                               "X-Accel-Buffering: no\r\n");
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, evhttp_request_get_output_headers(ev(r)), next) {
    int n = snprintf(head + hl, sizeof(head) - hl, "%s: %s\r\n", kv->key, kv->value);
    if (n < 0 || (size_t)n >= sizeof(head) - hl - 2)
      break; /* only our own headers are here (CORS, request id): never this long */
    hl += (size_t)n;
  }
  hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "\r\n");
  struct bufferevent *bev = evhttp_connection_get_bufferevent(evhttp_request_get_connection(ev(r)));
  if (bufferevent_openssl_get_ssl(bev)) {
    int rc = tlsstream_open(f->streams, ev(r), head, hl, p);
    if (rc == 0)
      conns_stream_kept(f->conns, ev(r));
    return rc;
  }
  struct take t = {f->takeover, ev(r)};
  p->head = head;
  p->head_len = hl;
  p->take = take_socket;
  p->take_arg = &t;
  return client_open(f->streams, p);
}

static int op_open_stream(struct request *r, struct client_params *p)
{
  int rc = open_stream(r, p);
  if (rc == 0)
    done_with(r); /* a kept copy ends with its answer */
  return rc;
}

static struct request *op_keep(struct request *r)
{
  if (r->kept)
    return r;
  struct request *k = xmalloc(sizeof(*k));
  *k = *r;
  k->kept = 1;
  snprintf(k->peer_copy, sizeof(k->peer_copy), "%s", r->peer ? r->peer : "?");
  k->peer = k->peer_copy;
  k->args_parsed = 0; /* parsed again if needed: the list belongs to r */
  return k;
}

static void op_on_gone(struct request *r, void (*fn)(void *arg), void *arg)
{
  conns_on_gone(r->f->conns, ev(r), fn, arg);
}

static const struct request_ops h1_ops = {op_header,    op_each_header, op_body, op_add_header,
                                          op_send,      op_send_file,   op_open_stream,
                                          op_keep,      op_on_gone};

static enum request_method method_of(enum evhttp_cmd_type cmd, const char **name)
{
  switch (cmd) {
  case EVHTTP_REQ_GET: *name = "GET"; return REQ_GET;
  case EVHTTP_REQ_HEAD: *name = "HEAD"; return REQ_HEAD;
  case EVHTTP_REQ_POST: *name = "POST"; return REQ_POST;
  case EVHTTP_REQ_OPTIONS: *name = "OPTIONS"; return REQ_OPTIONS;
  case EVHTTP_REQ_PUT: *name = "PUT"; return REQ_OTHER;
  case EVHTTP_REQ_DELETE: *name = "DELETE"; return REQ_OTHER;
  case EVHTTP_REQ_PATCH: *name = "PATCH"; return REQ_OTHER;
  default: *name = "OTHER"; return REQ_OTHER;
  }
}

static const char *path_of(struct evhttp_request *req)
{
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
  return path && *path ? path : "/";
}

/* One access-log line: the path only (query strings carry tokens). */
static void log_access(struct evhttp_request *req, void *arg)
{
  (void)arg;
  const char *rid = evhttp_find_header(evhttp_request_get_output_headers(req), "X-Request-Id");
  int code = evhttp_request_get_response_code(req);
  const char *method;
  method_of(evhttp_request_get_command(req), &method);
  char qp[300];
  unsigned port = 0;
  struct worker *cur = worker_current();
  struct front *f = cur ? worker_front(cur) : NULL;
  const char *addr = f ? conns_peer(f->conns, req, &port) : "?";
  log_event(LOG_INFO, "access", "id=%s method=%s path=%s status=%d peer=%s:%u", rid ? rid : "?",
            method, log_quote(qp, sizeof(qp), path_of(req)), code ? code : 200, addr, port);
}

static void on_request(struct evhttp_request *req, void *arg)
{
  struct front *f = arg;
  struct config *cfg = f->gw->cfg;
  const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
  struct request r = {.ops = &h1_ops, .impl = req, .f = f, .path = path_of(req),
                      .query = uri ? evhttp_uri_get_query(uri) : NULL};
  r.method = method_of(evhttp_request_get_command(req), &r.method_name);
  int is_stream = router_is_stream(cfg, &r);
  int verdict = conns_request_started(f->conns, req, is_stream);
  r.peer = conns_peer(f->conns, req, &r.port);
  request_new_id(r.id, sizeof(r.id));
  op_add_header(&r, "X-Request-Id", r.id);
  STAT_ADD(f->stats->http_requests, 1);
  if (verdict == CONNS_OK) {
    router_dispatch(&r);
  } else if (is_stream) {
    request_add_cors(&r);
    stream_shed(&r, SHED_MAX_CONNECTIONS);
  } else {
    op_add_header(&r, "Connection", "close");
    if (verdict == CONNS_OVER_LIMIT)
      reply_error(&r, 503, "too_many_connections", "this gateway is at its limit of %ld connections",
                  cfg->max_connections);
    else
      reply_error(&r, 503, "too_many_connections",
                  "your address holds more than %ld connections other than streams, the limit "
                  "per address", cfg->max_conn_per_peer);
  }
  if (cfg->access_log) {
    /* An answer given later (a publish waiting for Redis) is logged once
     * written; an accepted stream (no evhttp reply) at once, as 200. */
    if (evhttp_request_get_response_code(req) == 0 && !is_stream)
      conns_when_answered(f->conns, req, log_access);
    else
      log_access(req, NULL);
  }
  request_release(&r);
}

static struct evhttp *make_evhttp(struct front *f)
{
  struct config *cfg = f->gw->cfg;
  struct evhttp *http = evhttp_new(f->base);
  if (!http)
    return NULL;
  evhttp_set_gencb(http, on_request, f);
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                       EVHTTP_REQ_PATCH);
  /* evhttp's own limits are a backstop above ours: what lies between gets
   * a JSON 431/413 from us; beyond it libevent answers (or closes) itself. */
  evhttp_set_max_headers_size(http, cfg->max_header * 4);
  evhttp_set_max_body_size(http, cfg->max_body * 2);
  /* conn.c bounds the time to send a whole request and the keep-alive idle
   * time by --request-timeout; evhttp's own timeout, which restarts with
   * every byte, stays behind it as a bound on an answer the peer does not
   * read. A stream leaves both behind when its connection is taken over. */
  double t = cfg->request_timeout + 1;
  struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
  evhttp_set_timeout_tv(http, &tv);
  return http;
}

/* Binds each address of list (option name opt) to http. */
static int bind_list(struct front *f, struct evhttp *http, const char *const *list, int n,
                     const char *opt, char *err, size_t errlen)
{
  unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
  if (f->gw->nworkers > 1)
    flags |= LEV_OPT_REUSEABLE_PORT;
  for (int i = 0; i < n; i++) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (evutil_parse_sockaddr_port(list[i], (struct sockaddr *)&ss, &len) != 0 ||
        strchr(list[i], ':') == NULL) {
      snprintf(err, errlen, "%s: expected ADDR:PORT (e.g. 127.0.0.1:8080), got '%s'", opt,
               list[i]);
      return -1;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(f->base, NULL, NULL, flags, 4096, (struct sockaddr *)&ss, len);
    if (!l) {
      snprintf(err, errlen, "cannot listen on %s: %s", list[i], strerror(errno));
      return -1;
    }
    struct evhttp_bound_socket *b = evhttp_bind_listener(http, l);
    if (!b) {
      evconnlistener_free(l);
      snprintf(err, errlen, "cannot serve HTTP on %s", list[i]);
      return -1;
    }
    conns_watch_listener(f->conns, l);
    f->bound[f->nbound] = b;
    f->bound_http[f->nbound++] = http;
  }
  return 0;
}

/* --listen speaks TLS when there is a certificate; --plain-listen never. */
static int bind_listeners(struct front *f, char *err, size_t errlen)
{
  struct config *cfg = f->gw->cfg;
  struct evhttp *primary = f->https ? f->https : f->http;
  if (bind_list(f, primary, cfg->listen, cfg->nlisten, "--listen", err, errlen) != 0)
    return -1;
  return bind_list(f, f->http, cfg->plain_listen, cfg->nplain_listen, "--plain-listen", err,
                   errlen);
}

static void front_close(void *arg)
{
  struct front *f = arg;
  h2_close_all(f); /* before evhttp, which holds their connections */
  if (f->http)
    evhttp_free(f->http); /* closes its connections, idle keep-alive ones too */
  if (f->https)
    evhttp_free(f->https);
  takeover_free(f->takeover);
  conns_free(f->conns);
  free(f);
}

static void *front_open(struct worker *w, char *err, size_t errlen)
{
  struct front *f = xcalloc(1, sizeof(*f));
  *f = (struct front){.w = w, .gw = worker_gateway(w), .base = worker_base(w),
                      .stats = worker_counters(w), .streams = worker_clients(w),
                      .index = worker_index(w)};
  if (!(f->takeover = takeover_new(f->base))) {
    snprintf(err, errlen, "socket: %s", strerror(errno));
    front_close(f);
    return NULL;
  }
  f->http = make_evhttp(f);
  if (f->gw->tls)
    f->https = make_evhttp(f);
  if (!f->http || (f->gw->tls && !f->https) ||
      !(f->conns = conns_new(f, f->http, f->https))) {
    snprintf(err, errlen, "out of memory");
    front_close(f);
    return NULL;
  }
  if (bind_listeners(f, err, errlen) != 0) {
    front_close(f);
    return NULL;
  }
  return f;
}

static void front_stop_accepting(void *arg)
{
  struct front *f = arg;
  for (int i = 0; i < f->nbound; i++)
    evhttp_del_accept_socket(f->bound_http[i], f->bound[i]);
  f->nbound = 0;
  h2_stop_accepting(f); /* GOAWAY: no new streams on open connections */
}

static void front_tick(void *arg, double now) { status_tick(arg, now); }

static int front_busy(void *arg) { return ((struct front *)arg)->h2 != NULL; }

const struct worker_front_ops h1_front_ops = {front_open, front_stop_accepting, front_tick,
                                                front_close, front_busy};
