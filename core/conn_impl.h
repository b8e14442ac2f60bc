/* What conn.c (accounting, limits, deadlines, requests) and accept.c
 * (accepting in batches, adoption, the PROXY header, which protocol a
 * connection speaks) share; nothing else includes this. */
#ifndef TINYSSE_CONN_IMPL_H
#define TINYSSE_CONN_IMPL_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "conn.h"
#include "proxyproto.h"
#include "ptrmap.h"

/* Past the limit, up to CONFIG_ANSWERED_REFUSALS connections at a time get
 * a 503 (config.c keeps descriptors for them); beyond those a connection is
 * closed right after accept, so a flood cannot hold descriptors waiting for
 * its answers to drain. */
/* How long an answered-and-closing connection may take to read its answer. */
#define LINGER_SECONDS 2.0
/* Connections accepted per loop turn, at most (see make_bev). */
#define CONNS_ACCEPT_BATCH 64
/* How long the listeners rest after accept() failed for lack of descriptors. */
#define ACCEPT_PAUSE_USEC 100000

enum conn_state {
  CONN_READING,  /* waiting for (the rest of) a request: the deadline runs */
  CONN_HANDLING, /* a whole request is being answered, or became a stream */
  CONN_CLOSING,  /* answered by us (408, 503); closes once that is written */
  CONN_PASSED,   /* HTTP/2, or a stream over TLS: evhttp keeps it, idle */
};

struct conn {
  struct conns *cs;
  struct bufferevent *bev;
  struct evhttp_connection *evcon; /* NULL until adopted */
  struct event *deadline;
  struct evbuffer_cb_entry *watch; /* notes bytes arriving */
  struct hub_sub *peer;            /* in gw->conn_peers, once it is not a stream */
  enum conn_state state;
  int got_bytes; /* since the deadline was last armed */
  int over;      /* accepted past --max-connections: refused once read */
  int tls;       /* accepted on a TLS listener */
  int sniff;     /* the first bytes may be HTTP/2's preface (h2c) */
  int want_proxy; /* a PROXY header may come first */
  int counted;   /* in gw->nconns (a stream over TLS leaves it) */
  long rank;     /* connections open when it was accepted, itself included */
  void (*then)(struct evhttp_request *, void *); /* also when the answer is written */
  /* a request kept for a hook: called if the connection closes first
   * (evhttp does not read while a request is being answered, so
   * gone_watch looks for the peer's EOF itself) */
  void (*gone)(void *arg);
  void *gone_arg;
  struct event *gone_watch;
  struct conn *next_fresh;
  /* evhttp's bufferevent callbacks, while a PROXY header is read first */
  bufferevent_data_cb http_read;
  bufferevent_event_cb http_event;
  void *http_arg;
  /* the client: the TCP peer, or what a trusted proxy said it is (the
   * PROXY header for the connection, X-Forwarded-For per request) */
  char addr[PROXY_ADDR_MAX], req_addr[PROXY_ADDR_MAX];
  unsigned port, req_port;
};

/* What make_bev gets: which conns, and whether the listener is TLS. */
struct conn_kind {
  struct conns *cs;
  int tls;
};

struct conns {
  struct front *f;
  struct evhttp *http[2]; /* plain, TLS (NULL when none) */
  struct conn_kind kinds[2];
  struct conn *fresh, **fresh_tail; /* accepted, not adopted yet (FIFO) */
  struct event *adopt_ev, *resume_ev;
  int burst_paused; /* listeners stopped until the next loop turn */
  int batch;        /* accepted since the last adoption */
  struct event *pace_ev; /* listens again, next loop turn */
  double last_warning;
  struct ptrmap by_evcon; /* evcon -> conn */
};

/* Frees c's accounting (evhttp is done with it, or it was never adopted). */
void conn_release(struct conn *c);
/* Arms the whole-request deadline. */
void conn_arm(struct conn *c, double seconds);
void conn_on_close(struct evhttp_connection *evcon, void *arg);
void conn_on_deadline(evutil_socket_t fd, short what, void *arg);
void conn_on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg);

#endif
