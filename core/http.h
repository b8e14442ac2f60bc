/* The HTTP front of a worker: evhttp with its limits set, the router, CORS,
 * and the small endpoints (/healthz, /metrics, /channels, /auth/sse-token).
 * The stream is in stream.c, publishing in publish.c. */
#ifndef TINYSSE_HTTP_H
#define TINYSSE_HTTP_H

#include <stddef.h>

#include <event2/keyvalq_struct.h>

#include "host.h"

struct front;
struct evhttp;
struct evhttp_request;
struct evhttp_bound_socket;
struct evconnlistener;

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
int req_view_init(struct req_view *v, struct front *f, struct evhttp_request *req, int with_body);
void req_view_free(struct req_view *v);
const char *req_view_query(const struct req_view *v, const char *key); /* NULL if absent */

/* The bearer token of Authorization, or NULL. Never log it. */
const char *http_bearer(struct evhttp_request *req);
/* Does the request carry the gateway's publish key? Constant time. */
int http_is_publisher(struct front *f, struct evhttp_request *req);
/* Publish-side authorisation (for /publish and /channels): 0 when allowed;
 * otherwise the request has been answered (401/403/500) and -1 returned. */
int http_authorize_publisher(struct front *f, struct evhttp_request *req, struct req_view *v);
/* Opens a stream on req's connection: the HTTP/1.1 answer head (status,
 * SSE headers, CORS, X-Request-Id) and the socket taken over from evhttp
 * go to client_open, whose result this returns. */
struct client_params;
int http_open_stream(struct front *f, struct evhttp_request *req, struct client_params *p);
/* The header lines of a stream's answer written outside evhttp: CORS and
 * X-Request-Id; buf >= 600. */
const char *http_stream_lines(struct front *f, struct evhttp_request *req, char *buf, size_t cap);
/* CORS response header lines for req ("" when none apply); buf >= 512. */
const char *http_cors_lines(struct front *f, struct evhttp_request *req, char *buf, size_t cap);

#endif
