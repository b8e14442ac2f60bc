/* Requests on HTTP/2 streams: the transport seam's operations (request.h)
 * over an h2stream, so every handler serves HTTP/2 as it serves HTTP/1.1;
 * answers as HEADERS (+ DATA from a buffer); SSE streams as a client whose
 * transport is the HTTP/2 stream (stream_io_ops): its frames leave as DATA
 * when the stream's and the connection's windows allow. */
#include "h2_impl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>

#include "alloc.h"
#include "client.h"
#include "front.h"
#include "log.h"
#include "outq.h"
#include "request.h"
#include "router.h"

static struct h2stream *st_of(const struct request *r) { return r->impl; }

void h2_stream_free(struct h2stream *st)
{
  free(st->method);
  free(st->path);
  free(st->scheme);
  free(st->authority);
  evhttp_clear_headers(&st->in);
  evhttp_clear_headers(&st->out);
  if (st->body)
    evbuffer_free(st->body);
  if (st->resp)
    evbuffer_free(st->resp);
  free(st);
}

void h2_reset(struct h2stream *st, uint32_t code)
{
  if (st->hc && !st->closed) {
    nghttp2_submit_rst_stream(st->hc->s, NGHTTP2_FLAG_NONE, st->id, code);
    h2_flush(st->hc);
  }
}

static const char *op_header(const struct request *r, const char *name)
{
  return evhttp_find_header(&st_of(r)->in, name);
}

static void op_each_header(const struct request *r,
                           void (*fn)(void *arg, const char *name, const char *value), void *arg)
{
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, &st_of(r)->in, next)
    fn(arg, kv->key, kv->value);
}

static const char *op_body(const struct request *r, size_t *len)
{
  struct h2stream *st = st_of(r);
  *len = st->body ? evbuffer_get_length(st->body) : 0;
  return *len ? (const char *)evbuffer_pullup(st->body, -1) : NULL;
}

static void op_add_header(struct request *r, const char *name, const char *value)
{
  evhttp_add_header(&st_of(r)->out, name, value);
}

/* Headers HTTP/2 forbids (RFC 9113 8.2.2): the connection's own. */
static int hop_by_hop(const char *name)
{
  static const char *const names[] = {"connection", "keep-alive", "proxy-connection",
                                      "transfer-encoding", "upgrade"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (evutil_ascii_strcasecmp(name, names[i]) == 0)
      return 1;
  return 0;
}

static ssize_t resp_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *arg)
{
  (void)s;
  (void)id;
  (void)arg;
  struct h2stream *st = src->ptr;
  int n = evbuffer_remove(st->resp, buf, len);
  if (n < 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (evbuffer_get_length(st->resp) == 0)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return n;
}

/* Submits the answer's HEADERS (:status, the headers added, and extra),
 * with prd for its body (NULL: none). 0, or -1. */
static int submit(struct h2stream *st, int code, const char *const *extra, size_t nextra,
                  const nghttp2_data_provider *prd)
{
  nghttp2_nv nv[64];
  char status[8], lower[64][64];
  size_t n = 0;
  snprintf(status, sizeof(status), "%d", code);
  nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
                         NGHTTP2_NV_FLAG_NONE};
  for (size_t i = 0; i + 1 < nextra && n < 64; i += 2)
    nv[n++] = (nghttp2_nv){(uint8_t *)extra[i], (uint8_t *)extra[i + 1], strlen(extra[i]),
                           strlen(extra[i + 1]), NGHTTP2_NV_FLAG_NONE};
  struct evkeyval *kv;
  TAILQ_FOREACH(kv, &st->out, next) {
    size_t len = strlen(kv->key);
    if (n == 64 || len >= sizeof(lower[0]) || hop_by_hop(kv->key))
      continue; /* only our own headers are here: never that many or long */
    for (size_t i = 0; i <= len; i++)
      lower[n][i] = (char)tolower((unsigned char)kv->key[i]);
    nv[n] = (nghttp2_nv){(uint8_t *)lower[n], (uint8_t *)kv->value, len, strlen(kv->value),
                         NGHTTP2_NV_FLAG_NONE};
    n++;
  }
  st->status = code;
  st->answered = 1;
  return nghttp2_submit_response(st->hc->s, st->id, nv, n, prd) == 0 ? 0 : -1;
}

/* The access log line (the path only: tokens travel in the query). */
static void log_access(struct h2stream *st, const char *rid)
{
  struct h2conn *hc = st->hc;
  if (!hc || !hc->f->gw->cfg->access_log)
    return;
  char qp[256];
  log_event(LOG_INFO, "access", "id=%s method=%s path=%s status=%d peer=%s:%u proto=h2", rid,
            st->method ? st->method : "?", log_quote(qp, sizeof(qp), st->path ? st->path : "?"),
            st->status, hc->peer, hc->port);
}

/* A kept copy of a request is freed once answered; the stream too, once
 * nothing refers to it. */
static void unhold(struct h2stream *st)
{
  if (--st->kept == 0 && st->closed && !st->client)
    h2_stream_free(st);
}

static void done_with(struct request *r)
{
  if (!r->kept)
    return;
  struct h2stream *st = st_of(r);
  request_release(r);
  free(r);
  unhold(st);
}

static void op_send(struct request *r, int code, const char *body, size_t len)
{
  struct h2stream *st = st_of(r);
  if (st->hc && !st->closed && !st->answered) {
    char clen[24];
    snprintf(clen, sizeof(clen), "%zu", len);
    const char *extra[] = {"content-length", clen};
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = resp_read};
    int with_body = len > 0 && r->method != REQ_HEAD;
    if (with_body) {
      st->resp = evbuffer_new();
      if (!st->resp || evbuffer_add(st->resp, body, len) != 0)
        with_body = 0;
    }
    if (submit(st, code, extra, 2, with_body ? &prd : NULL) != 0)
      h2_reset(st, NGHTTP2_INTERNAL_ERROR);
    if (r->kept)
      log_access(st, r->id);
    h2_flush(st->hc);
  }
  done_with(r);
}

static void op_send_file(struct request *r, int fd, size_t size)
{
  struct evbuffer *b = evbuffer_new();
  if (b && evbuffer_add_file(b, fd, 0, (ev_off_t)size) == 0) {
    r->ops->send(r, 200, (const char *)evbuffer_pullup(b, -1), evbuffer_get_length(b));
  } else {
    close(fd);
    r->ops->send(r, 500, NULL, 0);
  }
  if (b)
    evbuffer_free(b);
}

/* SSE streams: the client's queue is the stream's data source. */
ssize_t h2_sse_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                    nghttp2_data_source *src, void *arg)
{
  (void)s;
  (void)id;
  (void)buf;
  struct h2conn *hc = arg;
  struct h2stream *st = src->ptr;
  size_t held = st->client ? st->q->bytes : 0;
  if (held == 0) {
    if (st->eof) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      return 0;
    }
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  if (evbuffer_get_length(bufferevent_get_output(hc->bev)) >= H2_OUT_MAX) {
    hc->blocked = 1; /* resumed once the socket took some */
    st->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
  }
  *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
  return (ssize_t)(held < len ? held : len);
}

static int io_open(void *arg, struct client *c)
{
  struct h2stream *st = arg;
  if (!st->hc || st->closed)
    return -1;
  const char *extra[] = {"content-type", "text/event-stream", "cache-control",
                         "no-cache, no-transform", "x-accel-buffering", "no"};
  nghttp2_data_provider prd = {.source.ptr = st, .read_callback = h2_sse_read};
  if (submit(st, 200, extra, 6, &prd) != 0)
    return -1;
  st->client = c;
  st->q = client_queue(c);
  return 0;
}

static long io_write(void *arg, struct outq *q)
{
  (void)q;
  struct h2stream *st = arg;
  if (!st->hc || st->closed)
    return -1;
  if (st->deferred && !st->hc->blocked) {
    st->deferred = 0;
    nghttp2_session_resume_data(st->hc->s, st->id);
  }
  h2_flush(st->hc);
  return 0;
}

static void io_close(void *arg, int drained)
{
  struct h2stream *st = arg;
  st->client = NULL;
  st->q = NULL;
  if (st->closed) {
    if (!st->kept)
      h2_stream_free(st);
    return;
  }
  if (drained) { /* every frame is out: end the stream cleanly */
    st->eof = 1;
    st->deferred = 0;
    nghttp2_session_resume_data(st->hc->s, st->id);
    h2_flush(st->hc);
  } else {
    h2_reset(st, NGHTTP2_CANCEL);
  }
}

static const struct stream_io_ops h2_io = {.open = io_open, .write = io_write, .close = io_close};

static int op_open_stream(struct request *r, struct client_params *p)
{
  p->io = &h2_io;
  p->io_arg = st_of(r);
  int rc = client_open(r->f->streams, p);
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
  k->args_parsed = 0;
  st_of(r)->kept++;
  return k;
}

static void op_on_gone(struct request *r, void (*fn)(void *arg), void *arg)
{
  struct h2stream *st = st_of(r);
  if (!st->closed) {
    st->gone = fn;
    st->gone_arg = arg;
  }
}

static const struct request_ops h2_ops = {op_header,    op_each_header, op_body, op_add_header,
                                          op_send,      op_send_file,   op_open_stream,
                                          op_keep,      op_on_gone};

static enum request_method method_of(const char *m)
{
  static const struct {
    const char *name;
    enum request_method m;
  } known[] = {{"GET", REQ_GET}, {"HEAD", REQ_HEAD}, {"POST", REQ_POST}, {"OPTIONS", REQ_OPTIONS}};
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(m, known[i].name) == 0)
      return known[i].m;
  return REQ_OTHER;
}

void h2_dispatch(struct h2stream *st)
{
  struct h2conn *hc = st->hc;
  struct front *f = hc->f;
  if (!st->method || !st->path || st->path[0] != '/') {
    h2_reset(st, NGHTTP2_PROTOCOL_ERROR);
    return;
  }
  if (st->authority && !evhttp_find_header(&st->in, "Host"))
    evhttp_add_header(&st->in, "Host", st->authority);
  char *q = strchr(st->path, '?');
  if (q)
    *q = 0; /* the path, then the query (as evhttp gives them) */
  struct request r = {.ops = &h2_ops, .impl = st, .f = f, .path = st->path,
                      .query = q ? q + 1 : NULL, .peer = hc->peer, .port = hc->port,
                      .method_name = st->method};
  r.method = method_of(st->method);
  request_new_id(r.id, sizeof(r.id));
  op_add_header(&r, "X-Request-Id", r.id);
  STAT_ADD(f->stats->http_requests, 1);
  st->kept++; /* st outlives the handler, whatever the answer does */
  long limit = f->gw->cfg->max_header;
  if (st->header_bytes > (size_t)limit) /* what is past the limit was not kept */
    reply_error(&r, 431, "headers_too_large", "the request's headers exceed %ld bytes", limit);
  else
    router_dispatch(&r);
  if (st->answered && !r.kept)
    log_access(st, r.id);
  request_release(&r);
  if (st->client) { /* a stream holds only what it needs from here */
    evhttp_clear_headers(&st->in);
    evhttp_clear_headers(&st->out);
    if (st->body)
      evbuffer_free(st->body);
    st->body = NULL;
  }
  unhold(st);
}

void h2_body_too_large(struct h2stream *st)
{
  st->dispatched = 1;
  struct request r = {.ops = &h2_ops, .impl = st, .f = st->hc->f, .path = "", .peer = st->hc->peer,
                      .method = REQ_POST, .method_name = "POST"};
  request_new_id(r.id, sizeof(r.id));
  op_add_header(&r, "X-Request-Id", r.id);
  /* The rest of the body is read and dropped: a reset would overtake the
   * answer (nghttp2 sends control frames first). */
  reply_error(&r, 413, "body_too_large", "the body exceeds %ld bytes",
              st->hc->f->gw->cfg->max_body);
}
