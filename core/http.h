/* The HTTP front of a worker: evhttp with its limits set, the router, CORS,
 * and the small endpoints (/healthz, /metrics, /channels, /auth/sse-token).
 * The stream is in stream.c, publishing in publish.c. */
#ifndef TINYSSE_HTTP_H
#define TINYSSE_HTTP_H

#include <stddef.h>

#include <event2/keyvalq_struct.h>

#include "host.h"

struct worker;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct evconnlistener;

/* The worker's evhttp (also sets w->conns); NULL on OOM. */
struct evhttp *http_new(struct worker *w);
/* Serves HTTP on l (taken over: freed with the evhttp); NULL on failure. */
struct evhttp_bound_socket *http_bind_listener(struct worker *w, struct evconnlistener *l);
/* Frees w->http with its connections, and w->conns; safe to call twice. */
void http_free(struct worker *w);
/* A new id for an answer's X-Request-Id and its access-log line. */
void http_request_id(char *buf, size_t cap);

/* What a Lua hook sees of a request; built on demand, freed with
 * req_view_free. */
struct req_view {
  struct script_req sr;
  struct evkeyvalq query;
  struct script_kv *kv; /* query then headers */
  char *names;          /* lower-cased header names */
  char peer[64];
};
/* 0/-1 (out of memory). The body is included when with_body is set. */
int req_view_init(struct req_view *v, struct worker *w, struct evhttp_request *req, int with_body);
void req_view_free(struct req_view *v);
const char *req_view_query(const struct req_view *v, const char *key); /* NULL if absent */

/* The bearer token of Authorization, or NULL. Never log it. */
const char *http_bearer(struct evhttp_request *req);
/* Does the request carry the gateway's publish key? Constant time. */
int http_is_publisher(struct worker *w, struct evhttp_request *req);
/* Publish-side authorisation (for /publish and /channels): 0 when allowed;
 * otherwise the request has been answered (401/403/500) and -1 returned. */
int http_authorize_publisher(struct worker *w, struct evhttp_request *req, struct req_view *v);
/* The header lines of a stream's answer written outside evhttp: CORS and
 * X-Request-Id; buf >= 600. */
const char *http_stream_lines(struct worker *w, struct evhttp_request *req, char *buf, size_t cap);
/* CORS response header lines for req ("" when none apply); buf >= 512. */
const char *http_cors_lines(struct worker *w, struct evhttp_request *req, char *buf, size_t cap);

#endif
