/* A non-blocking HTTP/1.1 client on one event loop (one per worker), for
 * Lua hooks' call-outs: libevent's evhttp does the protocol, OpenSSL the
 * https; connections are kept alive per scheme+host+port, calls beyond a
 * limit wait in a queue, and each call is bounded by its own timeout. */
#ifndef TINYSSE_HTTPC_H
#define TINYSSE_HTTPC_H

#include <stddef.h>

struct event_base;
struct httpc;
struct httpc_call;

struct httpc_opts {
  size_t max_inflight;      /* requests on the wire at once; beyond: queued (0: 1) */
  size_t max_queue;         /* queued beyond max_inflight; beyond that: "queue_full" */
  size_t max_body;          /* response body cap, bytes: "too_large" (0: 1 MiB) */
  size_t max_idle_per_host; /* kept-alive idle connections per scheme+host+port (0: none) */
  double idle_timeout;      /* seconds an idle kept-alive connection is kept */
  const char *ca_file;      /* PEM CA bundle for https; NULL: the system's default paths */
};

/* A client on base (the caller's loop thread only; nothing here is
 * thread-safe). o is copied (ca_file too). NULL with a one-line reason in
 * err when ca_file cannot be loaded. */
struct httpc *httpc_new(struct event_base *base, const struct httpc_opts *o, char *err,
                        size_t errlen);
/* Every call still queued or in flight first gets done() with error
 * "shutdown" (a call made from inside those done()s gets it too); then
 * connections close. NULL is safe. Not from inside a done(). */
void httpc_free(struct httpc *c);

struct httpc_header {
  const char *name, *value;
};

struct httpc_result {
  int status;         /* HTTP status, 0 when error is set */
  const char *error;  /* NULL on an answer; else "bad_url", "bad_request", "timeout",
                         "connect_failed", "tls_failed", "too_large", "queue_full",
                         "shutdown", "bad_response" */
  const char *detail; /* one line for logs, never NULL (never holds request headers) */
  const char *body;   /* response body (never NULL), valid during the callback only */
  size_t body_len;
  const struct httpc_header *headers; /* response headers, during the callback only */
  size_t nheaders;
  double elapsed; /* seconds from httpc_request to this callback */
};

typedef void (*httpc_done_fn)(void *arg, const struct httpc_result *res);

/* Starts a call: method is GET POST PUT DELETE HEAD OPTIONS or PATCH (any
 * case; others give "bad_request"), url http:// or https:// with a host
 * name, IPv4 or [IPv6] literal and optional port, path and query (others
 * give "bad_url"). Host, Content-Length, Connection and Transfer-Encoding
 * among headers are ignored (the client sets them); User-Agent defaults to
 * "tinysse". Everything is copied. timeout (seconds, queue wait included;
 * <= 0: 30) bounds the call. done is called exactly once, always from the
 * loop and never from inside httpc_request, unless the call is cancelled
 * first; the call handle is invalid once done has been called. Never NULL
 * (allocation failure aborts, as alloc.h says). */
struct httpc_call *httpc_request(struct httpc *c, const char *method, const char *url,
                                 const struct httpc_header *headers, size_t nheaders,
                                 const char *body, size_t body_len, double timeout,
                                 httpc_done_fn done, void *arg);
/* Drops a call whose done has not been called yet: done never is. Safe
 * while queued or in flight (the request is cancelled on the wire and its
 * connection closed), and from inside another call's done. */
void httpc_cancel(struct httpc_call *call);

struct httpc_stats {
  unsigned long requests, failures, timeouts, queued_now, inflight_now, connections_opened,
      connections_reused;
};
/* requests: calls made; failures: done()s with an error (timeouts among
 * them); connections_reused: requests sent on a kept-alive connection. */
void httpc_get_stats(const struct httpc *c, struct httpc_stats *out);

#endif
