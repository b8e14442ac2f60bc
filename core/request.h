/* The transport seam: what every handler sees of a request and how it
 * answers, whether the request came over HTTP/1.1 (evhttp, h1.c) or,
 * later, another transport. A transport fills a struct request and its
 * operations; handlers never call the transport's library. Also the
 * helpers every handler shares: JSON answers, the view a Lua hook gets,
 * the bearer token, publisher authorisation, CORS, request ids. */
#ifndef TINYSSE_REQUEST_H
#define TINYSSE_REQUEST_H

#include <stddef.h>

#include <event2/keyvalq_struct.h>

#include "host.h"

struct front;
struct request;
struct client_params;
struct json_object;

/* What a transport does for a request. Every answer goes through send
 * (once) or open_stream (once, successfully). */
struct request_ops {
  /* a request header (case-insensitive name), NULL when absent */
  const char *(*header)(const struct request *r, const char *name);
  /* visits every request header, in order */
  void (*each_header)(const struct request *r,
                      void (*fn)(void *arg, const char *name, const char *value), void *arg);
  /* the body (NULL and 0 when none); valid until the answer */
  const char *(*body)(const struct request *r, size_t *len);
  /* adds a header to the answer */
  void (*add_header)(struct request *r, const char *name, const char *value);
  /* answers with code and body (len bytes; may be 0) */
  void (*send)(struct request *r, int code, const char *body, size_t len);
  /* answers 200 with size bytes of the open file fd (taken) */
  void (*send_file)(struct request *r, int fd, size_t size);
  /* answers 200 text/event-stream with the headers added so far and hands
   * the connection to a stream: client_open()'s result */
  int (*open_stream)(struct request *r, struct client_params *p);
  /* the answer is sent later, from another callback (cluster publishes,
   * hooks that wait): returns a copy of r to answer then (freed by its
   * send or open_stream); r itself when r is such a copy already */
  struct request *(*keep)(struct request *r);
  /* for a kept copy waiting for a hook: calls fn(arg) once if the client
   * goes away before the answer (the connection or HTTP/2 stream closes);
   * fn NULL forgets it. fn answers the copy (into the void). */
  void (*on_gone)(struct request *r, void (*fn)(void *arg), void *arg);
};

enum request_method { REQ_GET, REQ_HEAD, REQ_POST, REQ_OPTIONS, REQ_OTHER };

struct request {
  const struct request_ops *ops;
  void *impl;             /* the transport's own request */
  struct front *f;        /* the worker's front */
  enum request_method method;
  const char *method_name; /* "GET", ... */
  const char *path;       /* never NULL */
  const char *query;      /* the raw query string, NULL when none */
  const char *peer;       /* the client's address (see conn.c) */
  unsigned port;          /* and port, 0 when unknown */
  char id[24];            /* X-Request-Id */
  int kept;               /* a copy made by keep(): freed by its answer */
  char peer_copy[64];     /* a kept copy's peer (the connection may go first) */
  struct evkeyvalq args;  /* the query, parsed on first use */
  int args_parsed;
  /* Hooks that waited (request_hook): their results, and the handler the
   * router runs again with them when one ends. */
  struct hook_memo *memo;
  void (*resume)(struct request *r);
};

/* Runs hook h for r through start(script, arg, res, wait). Returns the
 * hook's status with res filled, or SCRIPT_PENDING: the hook waits for a
 * call-out; r has been kept and its handler (r->resume) runs again when the
 * hook ends, and this call then returns the hook's result at once. A hook
 * runs once per request. */
typedef int (*request_hook_start)(struct script *s, void *arg, struct script_result *res,
                                  const struct script_wait *wait);
int request_hook(struct request *r, enum script_hook h, request_hook_start start, void *arg,
                 struct script_result *res);
/* Gives a result request_hook returned back to r, for a handler that waits
 * for a later hook and needs this one's result when it runs again (only a
 * kept request holds it; res is emptied then). */
void request_hook_keep(struct request *r, enum script_hook h, struct script_result *res);

/* The query's value for key (NULL when absent); parsed on first use. */
const char *request_query(struct request *r, const char *key);
/* Frees what the request parsed (the transport calls it when done with r;
 * a kept copy's own send does). */
void request_release(struct request *r);

/* JSON answers: {"error":<kind>,"message":...} with the right status. */
void reply_json(struct request *r, int code, struct json_object *body); /* takes body */
void reply_error(struct request *r, int code, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The same with "field" naming the offending input (error "bad_request"). */
void reply_field_error(struct request *r, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void reply_method_not_allowed(struct request *r, const char *allow);

/* What a Lua hook sees of a request; freed with req_view_free. */
struct req_view {
  struct script_req sr;
  struct script_kv *kv; /* query then headers */
  char *names;          /* lower-cased header names */
  struct script_kv *cookies;
  char *cookie_text;    /* the Cookie headers' text, cut into names and values */
  size_t nkv, cap;
  char peer[64];
};
/* The body is included when with_body is set. */
void req_view_init(struct req_view *v, struct request *r, int with_body);
void req_view_free(struct req_view *v);

/* The bearer token of Authorization, or NULL. Never log it. */
const char *request_bearer(const struct request *r);
/* Does the request carry the gateway's publish key? Constant time. */
int request_is_publisher(const struct request *r);
/* Publish-side authorisation (for /publish and /channels): 0 when allowed;
 * otherwise -1: the request has been answered (401/403/500), or it waits
 * for authorize_publish and its handler runs again when that ends. */
int request_authorize_publisher(struct request *r, struct req_view *v);
/* The start of a publisher's POST (/publish, /subscriptions): the body
 * within --max-body (else 413), the hook view with it in v, and publisher
 * authorisation. 0: go on (*len is the body's length; free v with
 * req_view_free); -1: answered, or waiting for authorize_publish (v is
 * freed already). */
int request_publisher_start(struct request *r, struct req_view *v, size_t *len);
/* The answer's CORS headers for a browser origin allowed by --cors-origin
 * (none when the request has no Origin, or it is not allowed). */
void request_add_cors(struct request *r);
/* A new id for an answer's X-Request-Id and its access-log line. */
void request_new_id(char *buf, size_t cap);

#endif
