/* Streams. A client is one open SSE stream on one worker: it owns its
 * socket (taken over from the transport that read the request), an output
 * queue of references to shared frames, and its channels. `struct clients`
 * is a worker's set of them: the list, the FIFO of clients with output to
 * write, the streams to free after the current pass, and where fan-out
 * stands. The worker owns it and hands it what it needs (event base,
 * counters, its script, and callbacks to reach back: drain, schedule a
 * flush, schedule reaping); nothing here knows the worker or HTTP. */
#ifndef TINYSSE_CLIENT_H
#define TINYSSE_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "message.h"

struct event_base;
struct gateway;
struct hub;
struct script;
struct uring;
struct worker_stats;
struct client;

/* Clients written per flush slice (between slices the loop reads and
 * acknowledges more publishes): a few milliseconds of sends. */
#define CLIENTS_FLUSH_SLICE 256

struct clients {
  struct gateway *gw;
  struct event_base *base;
  struct worker_stats *stats; /* the worker's counters */
  struct hub *hub;            /* channel -> clients, this worker's */
  struct script *script;      /* the worker's current script (swapped on reload) */
  int index;                  /* the worker's, for client ids and logs */
  double now;                 /* wall clock cached at the start of each pass */
  struct client *clients;     /* doubly linked list of open streams */
  struct client *dirty, *dirty_tail; /* FIFO of clients with output to write */
  struct uring *uring;        /* batches the sends of a flush slice; NULL: writev */
  uint64_t last_seq;          /* the last message fanned out here */
  struct msgpos last_pos;     /* and its position (its id) */
  struct client **reap;       /* streams to free after the current pass */
  size_t nreap, reap_cap;
  /* publish times of messages routed since the FIFO was last empty, for
   * the publish-to-write histogram */
  double obs[256];
  int nobs;
  /* the worker: fan out what the broker handed over so far; have
   * clients_flush_some run soon (low priority); have clients_reap run
   * after the current pass */
  void (*drain)(void *arg);
  void (*schedule_flush)(void *arg);
  void (*schedule_reap)(void *arg);
  void *arg;
};

/* Queues m to this worker's matching clients (a live message, or the
 * status page's events, which have no position). */
void clients_send(struct clients *cs, const struct message *m);

/* A stream whose transport is not a plain socket of its own. Two kinds:
 * - pulled (an HTTP/2 stream): the transport takes output from the
 *   client's queue when it can (write), and says when it can take more
 *   (client_io_ready) or the peer went away (client_close);
 * - sealed (HTTP/1.1 over TLS): the client writes and watches the socket
 *   itself, as a plain stream's, but its frames are sealed first (seal:
 *   encrypted into bytes of its own) and what arrives is the transport's
 *   to read (read). */
struct outq;
struct stream_io_ops {
  int sealed;
  /* the stream is sure to open (nothing fails after this): 0 (pulled) or
   * the socket to write and watch (sealed); -1 when that is impossible */
  int (*open)(void *arg, struct client *c);
  /* pulled: output was queued in q: take what can go now. Bytes taken
   * (>= 0), or -1 when the transport is gone. */
  long (*write)(void *arg, struct outq *q);
  /* sealed: moves frames from plain into wire, as bytes to send; 0, or
   * -1 when the connection is unusable */
  int (*seal)(void *arg, struct outq *plain, struct outq *wire);
  /* sealed: the socket is readable: 0, or -1 when the peer closed (bytes
   * the transport must send in answer go to wire) */
  int (*read)(void *arg, struct outq *wire);
  /* the client is being freed: drained when it closed on purpose once its
   * last frame was taken (end the stream cleanly), else reset it */
  void (*close)(void *arg, int drained);
};

struct client_params {
  char *user_id, *role;   /* ownership passes to the client */
  char **channels;        /* ownership passes to the client */
  size_t nchannels;
  double expires_at;      /* Unix seconds; 0 = never */
  const char *resume_id;  /* Last-Event-ID or ?lastEventId=, NULL when none */
  const char *peer_ip;    /* for --max-clients-per-peer */
  int internal;           /* the status page's stream: no hooks, no presence */
  /* the transport: the head of its answer (for HTTP/1.1 the status line
   * and headers), sent before the stream; and how to take its socket once
   * the stream is sure to open: a descriptor, or -1 with errno set */
  const char *head;
  size_t head_len;
  int (*take)(void *arg);
  void *take_arg;
  /* or a transport of its own (then head and take are not used) */
  const struct stream_io_ops *io;
  void *io_arg;
};

/* A connection id: "<worker>-<number>", with "<node>." before it in
 * cluster mode. */
#define CLIENT_ID_MAX 40
void client_id(const struct client *c, char out[CLIENT_ID_MAX]);

/* Server-side subscriptions (client_subs.c). The stream directory of a
 * gateway: by user id and by connection id, across workers. */
struct client_dir *client_dir_new(int nworkers);
void client_dir_free(struct client_dir *d);
/* Open streams a change names, on this node (takes presence_lock). */
size_t client_dir_count(struct gateway *gw, const char *user, const char *client);
/* On a worker: applies a MESSAGE_SUBS message to its streams. */
void clients_subscription(struct clients *cs, const struct message *m);

/* Opens a stream. 0 on success (the client now owns the socket and p's
 * strings); -1 out of memory, -2 too many clients, -3 too many from this
 * peer, -4 out of descriptors: then nothing was taken and the caller
 * answers the request. */
int client_open(struct clients *cs, struct client_params *p);
/* Sends tinysse.reset (reason "too_old", "unknown" or "gap"): the client
 * cannot be given what it missed and should refetch its state. */
void client_reset(struct client *c, const char *reason);
/* Stops deliveries and queues the client for freeing after the current pass. */
void client_close(struct client *c, const char *reason);
/* Sends a frame, then closes once it is written (or after a few seconds). */
void client_close_after(struct client *c, const char *event, const char *json,
                        const char *reason);
/* Frees a client closed by client_close: hooks, hub, socket. */
void client_free(struct client *c);
/* Queues m's frame unless the client already has it (replay seam). */
void client_deliver(struct client *c, const struct message *m);
/* Sends `: ping` when nothing was written for `interval` seconds; returns
 * the bytes queued for the client. */
size_t client_tick(struct client *c, double now, double interval);
struct client *client_next(const struct client *c);
/* For stream_io_ops transports: the client's queue (the frames not yet
 * taken), and "the transport can take more now". */
struct outq *client_queue(struct client *c);
void client_io_ready(struct client *c);
/* Writes the queued output of up to max clients from the FIFO (one
 * io_uring submission for the slice, or one writev each), closing as
 * `slow` those whose unwritten queue then passes --max-queue. Returns
 * whether clients remain in the FIFO. */
int client_flush_slice(struct clients *cs, int max);

#endif
