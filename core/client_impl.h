/* What client.c (opening, replay, closing) and client_write.c (the output
 * path) share of a stream; nothing else includes this. */
#ifndef TINYSSE_CLIENT_IMPL_H
#define TINYSSE_CLIENT_IMPL_H

#include <event2/util.h>

#include "client.h"
#include "hub.h"
#include "outq.h"

enum client_state { CLIENT_OPEN, CLIENT_DRAINING, CLIENT_CLOSED };

struct client {
  struct client *prev, *next;
  struct clients *cs;
  evutil_socket_t fd; /* -1 when the transport is not a socket of its own */
  const struct stream_io_ops *io; /* that transport (TLS, HTTP/2), or NULL */
  void *io_arg;
  struct outq out;
  struct outq wire; /* a sealed transport's bytes to send (see client.h) */
  struct event *ev; /* EV_READ always; EV_WRITE only while output is stuck */
  int want_write;
  struct hub_sub *sub, *presence, *peer;
  char *user_id, *role;
  char **channels;
  size_t nchannels;
  struct msgpos after; /* the resume id: messages up to it are not sent */
  double last_write;
  struct event *expiry;
  const char *reason;
  enum client_state state;
  int internal;
  int drained; /* closed once its last frame was written (client_close_after) */
  int dirty;   /* has output queued since its last flush */
  int in_list; /* on the worker's FIFO of clients to flush */
  struct client *dirty_next;
  struct client *user_next; /* the next stream of the same user (client_subs.c) */
  uint64_t num;             /* the connection id's number: (opens << 20) | slot */
};

/* The stream directory (client_subs.c), with gw->presence_lock held: adds
 * c (its user and its connection id: c->num is set); 0, or -1 when out of
 * memory or past CLIENT_DIR_SLOTS streams on one worker. And removes it. */
int client_dir_add(struct client *c);
void client_dir_del(struct client *c);

/* The stream's event: EOF from the peer, and writability while stuck. */
void client_on_io(evutil_socket_t fd, short what, void *arg);
/* Queues a reference to f and marks the client for the next flush. */
void client_enqueue(struct client *c, struct frame *f);
/* Writes what is queued now, if anything. */
void client_flush_one(struct client *c);

#endif
