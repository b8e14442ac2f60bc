/* What h2.c (connections, the nghttp2 session, reading and writing) and
 * h2req.c (requests, answers and SSE streams on them) share; nothing else
 * includes this. */
#ifndef TINYSSE_H2_IMPL_H
#define TINYSSE_H2_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/keyvalq_struct.h>
#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "proxyproto.h"

struct client;
struct outq;

struct h2stream {
  struct h2conn *hc; /* NULL once the connection is gone */
  struct h2stream *prev, *next;
  int32_t id;
  char *method, *path, *scheme, *authority;
  struct evkeyvalq in, out; /* request headers; the answer's so far */
  size_t header_bytes;
  struct evbuffer *body; /* the request's, up to --max-body + 1 bytes */
  size_t body_len;
  struct evbuffer *resp; /* the answer's body, while it is sent */
  struct client *client; /* an SSE stream's, until the client is freed */
  struct outq *q;        /* its queue */
  int dispatched, answered, closed, eof, deferred;
  int kept; /* holds: a kept request, or the handler running */
  /* a kept request waiting for a hook: called if the stream closes first */
  void (*gone)(void *arg);
  void *gone_arg;
  int status;
};

struct h2conn {
  struct front *f;
  struct h2conn *prev, *next;
  struct bufferevent *bev;
  struct evhttp_connection *evcon;
  nghttp2_session *s;
  struct h2stream *streams;
  int nstreams;
  int tls;
  int blocked;           /* output past H2_OUT_MAX: DATA waits for the socket */
  int dead;              /* to be freed from the kill event */
  int in_recv;           /* inside nghttp2_session_mem_recv: send after it */
  struct event *idle;    /* no stream for --request-timeout: GOAWAY */
  int idle_fired;        /* GOAWAY sent for that: closed soon after */
  struct event *kill;    /* frees the connection outside nghttp2's calls */
  char peer[PROXY_ADDR_MAX];
  unsigned port;
};

/* Bytes of output a connection holds before its DATA frames wait. */
#define H2_OUT_MAX (256 * 1024)

/* Writes what nghttp2 has to send into the connection's output (up to
 * H2_OUT_MAX of DATA); a fatal error schedules the connection's end. */
void h2_flush(struct h2conn *hc);
/* Ends the connection soon (from inside nghttp2's calls or a client's). */
void h2_kill(struct h2conn *hc);
/* A stream's headers and body have arrived: answer it (h2req.c). */
void h2_dispatch(struct h2stream *st);
/* The stream's answer so far went wrong: reset it. */
void h2_reset(struct h2stream *st, uint32_t code);
/* Frees st's own memory (not the client) once nothing refers to it. */
void h2_stream_free(struct h2stream *st);
/* The data source of an SSE stream's DATA frames. */
ssize_t h2_sse_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                    uint32_t *flags, nghttp2_data_source *src, void *arg);
/* Answers a request whose body passed --max-body (413) and resets it. */
void h2_body_too_large(struct h2stream *st);

#endif
