/* HTTP/2 connections (see h2.h): one nghttp2 server session per
 * connection, fed from the connection's bufferevent (TLS or plain) and
 * writing into it. DATA frames of SSE streams take the shared frames from
 * the clients' queues without copying (nghttp2's no-copy path, then a
 * reference in the output buffer on plain connections); at most H2_OUT_MAX
 * bytes wait in a connection's output, so a connection that does not read
 * holds its streams' frames in their queues, where --max-queue applies.
 *
 * Abuse is bounded by nghttp2's own limits, set here: concurrent streams
 * (--h2-max-streams), the rate of stream resets (rapid reset), CONTINUATION
 * frames per header block, queued SETTINGS/PING acknowledgements; header
 * lists past --max-header are refused while HPACK decodes them. */
#include "h2_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>

#include "alloc.h"
#include "client.h"
#include "front.h"
#include "log.h"
#include "outq.h"
#include "worker.h"

/* The last GOAWAY: nothing after the streams already taken. */
static void goaway(struct h2conn *hc)
{
  nghttp2_submit_goaway(hc->s, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(hc->s),
                        NGHTTP2_NO_ERROR, NULL, 0);
}

/* No stream for --request-timeout (fractions kept: it may be 0.1 s). */
static void arm_idle(struct h2conn *hc)
{
  double t = hc->f->gw->cfg->request_timeout;
  struct timeval tv = {(time_t)t, (suseconds_t)((t - (double)(time_t)t) * 1e6)};
  evtimer_add(hc->idle, &tv);
}

static struct h2stream *stream_of(nghttp2_session *s, int32_t id)
{
  return nghttp2_session_get_stream_user_data(s, id);
}

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
  (void)s;
  (void)flags;
  struct h2conn *hc = arg;
  if (evbuffer_add(bufferevent_get_output(hc->bev), data, len) != 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return (ssize_t)len;
}

/* A DATA frame of an SSE stream: its header, then its bytes straight from
 * the client's queue. */
static int on_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                        size_t len, nghttp2_data_source *src, void *arg)
{
  (void)s;
  (void)frame;
  struct h2conn *hc = arg;
  struct h2stream *st = src->ptr;
  struct evbuffer *out = bufferevent_get_output(hc->bev);
  if (!st->client || evbuffer_add(out, framehd, 9) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (len > 0 && outq_move(st->q, len, out, hc->tls) != (long)len)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return 0;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
  struct h2conn *hc = arg;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  struct h2stream *st = xcalloc(1, sizeof(*st));
  st->hc = hc;
  st->id = frame->hd.stream_id;
  TAILQ_INIT(&st->in);
  TAILQ_INIT(&st->out);
  st->next = hc->streams;
  if (hc->streams)
    hc->streams->prev = st;
  hc->streams = st;
  if (hc->nstreams++ == 0 && !hc->idle_fired)
    evtimer_del(hc->idle);
  nghttp2_session_set_stream_user_data(s, st->id, st);
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
  (void)flags;
  struct h2conn *hc = arg;
  struct h2stream *st = stream_of(s, frame->hd.stream_id);
  if (!st || st->dispatched)
    return 0; /* trailers: not used */
  /* Counted as HPACK counts them; far past the limit (a header list that
   * decodes to much more than it weighs) the stream is reset at once. */
  st->header_bytes += namelen + valuelen + 32;
  long limit = hc->f->gw->cfg->max_header;
  if (st->header_bytes > (size_t)limit * 4)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (st->header_bytes > (size_t)limit)
    return 0; /* answered 431 by the router, which counts what is kept */
  const char *n = (const char *)name, *v = (const char *)value;
  char **pseudo = NULL;
  if (strcmp(n, ":method") == 0)
    pseudo = &st->method;
  else if (strcmp(n, ":path") == 0)
    pseudo = &st->path;
  else if (strcmp(n, ":scheme") == 0)
    pseudo = &st->scheme;
  else if (strcmp(n, ":authority") == 0)
    pseudo = &st->authority;
  if (pseudo) {
    free(*pseudo);
    *pseudo = xstrdup(v);
  } else if (n[0] != ':') {
    evhttp_add_header(&st->in, n, v);
  }
  return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *arg)
{
  (void)flags;
  struct h2conn *hc = arg;
  struct h2stream *st = stream_of(s, id);
  if (!st || st->dispatched)
    return 0;
  size_t max = (size_t)hc->f->gw->cfg->max_body;
  if (!st->body)
    st->body = evbuffer_new();
  if (!st->body)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  st->body_len += len;
  if (st->body_len > max) {
    h2_body_too_large(st);
    return 0;
  }
  evbuffer_add(st->body, data, len);
  return 0;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
  (void)arg;
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  struct h2stream *st = stream_of(s, frame->hd.stream_id);
  if (st && !st->dispatched) {
    st->dispatched = 1;
    h2_dispatch(st);
  }
  return 0;
}

/* A stream closed (or its connection went): its client closes, which
 * frees it; a kept request waiting for a hook is answered into the void,
 * which lets it go; else it is freed now. st is not touched after. */
static void stream_gone(struct h2stream *st)
{
  void (*gone)(void *) = st->gone;
  void *gone_arg = st->gone_arg;
  st->gone = NULL;
  if (st->client)
    client_close(st->client, "closed"); /* its close frees st */
  else if (!st->kept)
    h2_stream_free(st);
  else if (gone)
    gone(gone_arg);
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t code, void *arg)
{
  (void)code;
  struct h2conn *hc = arg;
  struct h2stream *st = stream_of(s, id);
  if (!st)
    return 0;
  nghttp2_session_set_stream_user_data(s, id, NULL);
  st->closed = 1;
  if (st->prev)
    st->prev->next = st->next;
  else
    hc->streams = st->next;
  if (st->next)
    st->next->prev = st->prev;
  st->prev = st->next = NULL;
  st->hc = NULL;
  if (--hc->nstreams == 0 && hc->f->h2_stopping)
    goaway(hc); /* sent by the nghttp2_session_send this runs in */
  else if (hc->nstreams == 0 && !hc->dead && !hc->idle_fired)
    arm_idle(hc);
  stream_gone(st);
  return 0;
}

/* Frees the connection: its streams' clients are closed (their own close
 * frees what is left of the streams), kept requests are answered into the
 * void, and evhttp lets go of the socket. */
static void conn_free(struct h2conn *hc)
{
  struct front *f = hc->f;
  while (hc->streams) {
    struct h2stream *st = hc->streams;
    hc->streams = st->next;
    st->hc = NULL;
    st->closed = 1;
    st->prev = st->next = NULL;
    stream_gone(st);
  }
  if (hc->prev)
    hc->prev->next = hc->next;
  else
    f->h2 = hc->next;
  if (hc->next)
    hc->next->prev = hc->prev;
  nghttp2_session_del(hc->s);
  event_free(hc->idle);
  event_free(hc->kill);
  evhttp_connection_free(hc->evcon); /* the bufferevent, its SSL, the socket */
  free(hc);
  if (f->h2_stopping && !f->h2)
    worker_front_quiet(f->w);
}

static void on_kill(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  conn_free(arg);
}

/* No stream for --request-timeout: GOAWAY, and if the peer does not take
 * even that within H2_LINGER_SECONDS, the connection is closed. A
 * connection ended by an error gets the same time to take its GOAWAY. */
#define H2_LINGER_SECONDS 2

void h2_kill(struct h2conn *hc)
{
  if (hc->dead)
    return;
  hc->dead = 1;
  if (evbuffer_get_length(bufferevent_get_output(hc->bev)) == 0) {
    event_active(hc->kill, EV_TIMEOUT, 0);
    return;
  }
  /* What is written (a GOAWAY) goes out first: on_written frees it. */
  bufferevent_disable(hc->bev, EV_READ);
  bufferevent_setwatermark(hc->bev, EV_WRITE, 0, 0);
  struct timeval tv = {H2_LINGER_SECONDS, 0};
  evtimer_add(hc->idle, &tv);
}

/* The connection has nothing more to do once nghttp2 neither reads nor
 * writes and the output is out. */
static void check_done(struct h2conn *hc)
{
  if (!hc->dead && !nghttp2_session_want_read(hc->s) && !nghttp2_session_want_write(hc->s) &&
      evbuffer_get_length(bufferevent_get_output(hc->bev)) == 0)
    h2_kill(hc);
}

void h2_flush(struct h2conn *hc)
{
  if (hc->dead || hc->in_recv)
    return; /* on_read sends once nghttp2 has read */
  /* A peer that does not read: what nghttp2 has to send stays in its
   * queue, where its flood limits (acknowledgements of SETTINGS and PING)
   * end the connection, instead of piling up in our output. */
  if (evbuffer_get_length(bufferevent_get_output(hc->bev)) >= H2_OUT_MAX) {
    hc->blocked = 1;
    return;
  }
  int rc = nghttp2_session_send(hc->s);
  if (rc != 0) {
    log_event(LOG_DEBUG, "h2_closed", "peer=%s reason=\"%s\"", hc->peer, nghttp2_strerror(rc));
    h2_kill(hc);
    return;
  }
  check_done(hc);
}

static void on_read(struct bufferevent *bev, void *arg)
{
  struct h2conn *hc = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  while (!hc->dead && evbuffer_get_length(in) > 0) {
    struct evbuffer_iovec v;
    if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
      break;
    hc->in_recv = 1;
    ssize_t n = nghttp2_session_mem_recv(hc->s, v.iov_base, v.iov_len);
    hc->in_recv = 0;
    if (n < 0) {
      log_event(LOG_DEBUG, "h2_closed", "peer=%s reason=\"%s\"", hc->peer,
                nghttp2_strerror((int)n));
      /* nghttp2 queued a GOAWAY for most errors: send it, then close. */
      nghttp2_session_send(hc->s);
      h2_kill(hc);
      return;
    }
    evbuffer_drain(in, (size_t)n);
  }
  h2_flush(hc);
}

/* The output drained below the low mark: streams whose DATA waited go on. */
static void on_written(struct bufferevent *bev, void *arg)
{
  (void)bev;
  struct h2conn *hc = arg;
  if (hc->dead) {
    if (evbuffer_get_length(bufferevent_get_output(hc->bev)) == 0)
      conn_free(hc);
    return;
  }
  if (hc->blocked) {
    hc->blocked = 0;
    for (struct h2stream *st = hc->streams; st; st = st->next)
      if (st->deferred) {
        st->deferred = 0;
        nghttp2_session_resume_data(hc->s, st->id);
      }
  }
  h2_flush(hc);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
  (void)bev;
  (void)what; /* EOF or an error: either way the connection is over */
  conn_free(arg);
}

static void on_idle(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct h2conn *hc = arg;
  if (hc->dead || hc->idle_fired) {
    conn_free(hc);
    return;
  }
  hc->idle_fired = 1;
  nghttp2_session_terminate_session(hc->s, NGHTTP2_NO_ERROR);
  h2_flush(hc);
  struct timeval tv = {H2_LINGER_SECONDS, 0};
  if (!hc->dead)
    evtimer_add(hc->idle, &tv);
}

static nghttp2_session *new_session(struct h2conn *hc)
{
  struct config *cfg = hc->f->gw->cfg;
  nghttp2_session_callbacks *cbs;
  nghttp2_option *opt;
  nghttp2_session *s = NULL;
  if (nghttp2_session_callbacks_new(&cbs) != 0)
    return NULL;
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  if (nghttp2_option_new(&opt) == 0) {
    /* Closed streams are not kept for priorities: memory stays per open
     * stream. nghttp2's defaults bound the rest: 1,000 resets in a burst
     * then 33 a second (rapid reset), 8 CONTINUATION frames per header
     * block, 1,000 queued SETTINGS/PING acknowledgements. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_settings(opt, 32);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
    nghttp2_option_set_max_continuations(opt, 8);
    nghttp2_session_server_new2(&s, cbs, hc, opt);
    nghttp2_option_del(opt);
  }
  nghttp2_session_callbacks_del(cbs);
  if (!s)
    return NULL;
  nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)cfg->h2_max_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cfg->max_header},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  if (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0) {
    nghttp2_session_del(s);
    return NULL;
  }
  return s;
}

void h2_accept(struct front *f, struct bufferevent *bev, struct evhttp_connection *evcon,
               const char *peer, unsigned port)
{
  struct h2conn *hc = xcalloc(1, sizeof(*hc));
  hc->f = f;
  hc->bev = bev;
  hc->evcon = evcon;
  hc->tls = bufferevent_openssl_get_ssl(bev) != NULL;
  snprintf(hc->peer, sizeof(hc->peer), "%s", peer);
  hc->port = port;
  hc->idle = evtimer_new(f->base, on_idle, hc);
  hc->kill = event_new(f->base, -1, 0, on_kill, hc);
  hc->s = new_session(hc);
  hc->next = f->h2;
  if (f->h2)
    f->h2->prev = hc;
  f->h2 = hc;
  if (!hc->idle || !hc->kill || !hc->s) {
    conn_free(hc);
    return;
  }
  arm_idle(hc);
  bufferevent_set_timeouts(bev, NULL, NULL); /* evhttp's, for HTTP/1.1 */
  bufferevent_setwatermark(bev, EV_READ, 0, 0);
  bufferevent_setwatermark(bev, EV_WRITE, H2_OUT_MAX / 2, 0);
  bufferevent_setcb(bev, on_read, on_written, on_event, hc);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  h2_flush(hc);     /* our SETTINGS first */
  on_read(bev, hc); /* then what came with the preface */
}

/* Shutdown: a GOAWAY notice (RFC 9113 6.8: no new streams, please) at
 * once; the streams then get their tinysse.shutdown and end, and the
 * connection its last GOAWAY when the last one has (on_close). */
void h2_stop_accepting(struct front *f)
{
  f->h2_stopping = 1;
  for (struct h2conn *hc = f->h2; hc; hc = hc->next) {
    if (hc->nstreams)
      nghttp2_submit_shutdown_notice(hc->s);
    else
      goaway(hc);
    h2_flush(hc);
  }
}

void h2_close_all(struct front *f)
{
  while (f->h2)
    conn_free(f->h2);
}
