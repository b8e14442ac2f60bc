/* Private to the HTTP client: the structs httpc.c (calls, queue, timers)
 * and httpc_conn.c (connections, TLS, evhttp callbacks) share. */
#ifndef TINYSSE_HTTPC_IMPL_H
#define TINYSSE_HTTPC_IMPL_H

#include <sys/queue.h>

#include <event2/http.h>
#include <openssl/ssl.h>

#include "httpc.h"

/* CALL_DONE: inside its done(), about to be freed */
enum httpc_call_state { CALL_QUEUED, CALL_ACTIVE, CALL_FAILING, CALL_DONE };

struct httpc_conn;
struct httpc_lookup;

struct httpc_call {
  TAILQ_ENTRY(httpc_call) link; /* in c->queue, c->active or c->failing */
  struct httpc *c;
  enum httpc_call_state state;
  enum evhttp_cmd_type method;
  int tls, port, retried, fresh; /* fresh: must not reuse an idle connection */
  char *host;                    /* brackets stripped from an IPv6 literal */
  char *target;                  /* path?query */
  char *key;                     /* "https://host:port", the keep-alive pool key */
  char *host_header;
  struct httpc_header *headers; /* copies, in one block with their strings */
  size_t nheaders;
  char *body;
  size_t body_len;
  double timeout, started;
  struct event *timer;
  struct httpc_conn *conn; /* while active */
  const char *error;       /* set while failing */
  char detail[256];
  httpc_done_fn done;
  void *arg;
};

TAILQ_HEAD(httpc_callq, httpc_call);

struct httpc_conn {
  TAILQ_ENTRY(httpc_conn) link;      /* in c->conns */
  TAILQ_ENTRY(httpc_conn) idle_link; /* in c->idle while idle */
  struct httpc *c;
  struct evhttp_connection *evcon; /* NULL while its host name resolves */
  struct httpc_lookup *lookup;     /* that lookup */
  SSL *ssl; /* owned by the bufferevent; NULL for http */
  char *key;
  struct httpc_call *call;     /* the one request on it, or NULL */
  struct evhttp_request *req;  /* evhttp's, while the request is on the wire */
  struct event *idle_timer;
  unsigned long uses;          /* requests sent on it */
  int idle, dead, tls_heard, got_headers;
  int closed; /* evhttp closed it after it was established */
};

TAILQ_HEAD(httpc_connq, httpc_conn);

struct httpc {
  struct event_base *base;
  struct httpc_opts o;
  char *ca_file;
  SSL_CTX *ssl_ctx;         /* verifies against ca_file or the system's CAs */
  struct httpc_dns *dns;    /* made at the first host name */
  struct event *kick;       /* deferred work: failures, reaping, the queue */
  struct httpc_callq queue, active, failing;
  struct httpc_connq conns, idle;
  size_t nqueued, ninflight;
  int closing;
  struct httpc_stats st;
};

/* httpc.c */
double httpc_now(void);
void httpc_kick(struct httpc *c);
/* Ends a call with res (error or answer): counts, calls done, frees it. */
void httpc_finish(struct httpc_call *call, struct httpc_result *res);
/* Ends an active call with an error from inside an evhttp callback. */
void httpc_fail(struct httpc_call *call, const char *error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Puts an active call back at the head of the queue, for a fresh connection. */
void httpc_requeue(struct httpc_call *call);

/* httpc_conn.c (httpc_dns.c's lookups report to httpc_conn_resolved) */
/* Makes the client's TLS context (httpc_new); NULL with a reason in err. */
SSL_CTX *httpc_tls_ctx(struct httpc *c, char *err, size_t errlen);
/* Sends call on an idle connection for its key or a new one. 0 when it
 * is on its way, 1 when it already ended (evhttp failed it at once), -1
 * with call->error and call->detail set when it could not start. */
int httpc_conn_start(struct httpc *c, struct httpc_call *call);
/* Takes an active call off its connection: its request is cancelled on
 * the wire and the connection closed (it may be mid-response). */
void httpc_conn_detach(struct httpc_call *call);
/* Frees connections marked dead; with all, every connection. */
void httpc_conn_reap(struct httpc *c, int all);
/* Called back (perhaps at once) with the address to connect to, or
 * NULL and why not. */
void httpc_conn_resolved(struct httpc_conn *conn, const char *addr, const char *why);

/* httpc_dns.c */
/* Looks up conn's host name; httpc_conn_resolved gets the answer. */
void httpc_dns_resolve(struct httpc_conn *conn, const char *host);
/* Drops conn's lookup, if any: httpc_conn_resolved is not called. */
void httpc_dns_cancel(struct httpc_conn *conn);
/* Frees the resolver, or leaves that to the last cancelled lookup: evdns
 * finishes a cancelled lookup from the loop and needs its base then. */
void httpc_dns_release(struct httpc *c);

#endif
