/* The front of a worker: what the HTTP side keeps per worker (its evhttp,
 * the connection accounting, the listeners) and the worker's parts it
 * uses, gathered once when the worker opens its front. Handlers get a
 * `struct front *`; only this layer and main know the worker. */
#ifndef TINYSSE_FRONT_H
#define TINYSSE_FRONT_H

#include "config.h"
#include "shared.h"
#include "worker.h"

struct evhttp;
struct evhttp_bound_socket;
struct conns;
struct takeover;
struct h2conn;
struct clients;

struct front {
  struct worker *w;
  struct gateway *gw;
  struct event_base *base;
  struct worker_stats *stats;
  struct clients *streams;
  int index;
  struct evhttp *http;  /* plain listeners' (HTTP/1.1; h2c goes to h2.c) */
  struct evhttp *https; /* TLS listeners' (NULL without --tls-cert) */
  struct conns *conns;  /* HTTP/1.1 connections, see conn.c */
  struct h2conn *h2;    /* HTTP/2 connections, see h2.c */
  int h2_stopping;      /* shutting down: each gets its last GOAWAY once its streams end */
  struct takeover *takeover; /* streams' sockets out of evhttp */
  struct evhttp_bound_socket *bound[2 * CONFIG_MAX_LIST];
  struct evhttp *bound_http[2 * CONFIG_MAX_LIST]; /* which evhttp each is bound to */
  int nbound;
  double status_sent; /* when the status page's stream last got an event */
};

#endif
