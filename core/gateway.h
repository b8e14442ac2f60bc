/* The process-wide gateway and its workers. A worker owns an event base, an
 * HTTP front, its clients, its channel index and its own Lua state; the
 * gateway holds what all workers share: the config, the replay ring, the
 * presence table and the instance secret. */
#ifndef TINYSSE_GATEWAY_H
#define TINYSSE_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "host.h"
#include "message.h"
#include "proxyproto.h"

struct event_base;
struct event;
struct evhttp;
struct evhttp_bound_socket;
struct hub;
struct ring;
struct message;
struct client;
struct cluster;
struct redis_link;
struct conns;

/* Why a stream request was shed: answered 200 with tinysse.busy and a
 * jittered retry: instead of a status that makes EventSource give up
 * (names: stream.c). */
enum shed_reason {
  SHED_MAX_CLIENTS,
  SHED_MAX_CLIENTS_PER_PEER,
  SHED_MAX_CONNECTIONS,
  SHED_NOT_READY,
  SHED_SHUTTING_DOWN,
  SHED_REASONS
};
extern const char *const shed_reason_names[SHED_REASONS];

/* Counters owned by one worker: written only by it (relaxed stores), summed
 * by /metrics from any thread. */
struct worker_stats {
  atomic_ulong connections, connections_total, deliveries, replayed, resets, slow,
      expired, auth_rejected, bytes_queued, http_requests;
  /* HTTP connections closed by --request-timeout / refused at accept by
   * --max-connections or --max-connections-per-peer (conn.c) */
  atomic_ulong request_timeouts, connections_refused;
  /* stream requests shed, by reason */
  atomic_ulong shed[SHED_REASONS];
  /* 1 while the worker writes streams in io_uring batches (uring.c) */
  atomic_ulong io_uring;
  /* publish-to-write latency: one observation per message per worker, taken
   * when the fan-out pass that wrote it ends (bounds: metrics.c) */
  atomic_ulong write_latency_buckets[10], write_latency_count;
  _Atomic double write_latency_sum;
};
extern const double write_latency_bounds[10];

struct worker {
  int index;
  struct gateway *gw;
  struct event_base *base;
  struct evhttp *http;
  struct conns *conns; /* its HTTP connections, see conn.c */
  struct hub *hub;
  struct script *script;
  struct script_stats sstats;
  struct worker_stats stats;

  /* Messages handed over by broker_publish, in seq order. */
  pthread_mutex_t inbox_lock;
  struct message **inbox;
  size_t inbox_n, inbox_cap;
  int wake_fd; /* eventfd */
  struct event *wake_ev;
  atomic_int reload_pending, stop_pending;

  uint64_t last_seq;     /* the last message this worker fanned out */
  struct msgpos last_pos; /* and its position (its id) */
  double now;        /* wall clock cached at the start of each pass */
  double status_sent; /* when the status page's stream last got an event */
  struct client *clients;        /* doubly linked list of open streams */
  struct client *dirty, *dirty_tail; /* FIFO of clients with output to write */
  struct event *flush_ev;            /* writes a slice of that FIFO */
  int flush_scheduled;
  /* publish times of messages routed since the FIFO was last empty, for
   * the publish-to-write histogram */
  double obs[256];
  int nobs;
  struct client **reap;          /* streams to free after the current pass */
  size_t nreap, reap_cap;
  struct event *reap_ev, *tick_ev;
  uint64_t next_client_id;
  struct evhttp_bound_socket *bound[CONFIG_MAX_LIST];
  int nbound;
  int stopping;
  struct event *stop_ev;
  struct uring *uring; /* batches the sends of a flush slice; NULL: writev */
  struct redis_link *redis; /* cluster mode: this worker's publishing connection */
  pthread_t thread;
};

struct gateway {
  struct config *cfg;
  struct ring *ring;
  struct idem *idem; /* single node: the Idempotency-Keys (cluster: in Redis) */
  struct cluster *cluster; /* NULL unless --redis */
  uint64_t epoch; /* start time in ms: the first half of every id */
  struct worker **workers;
  int nworkers;
  atomic_long nclients;
  atomic_long nconns; /* HTTP connections evhttp holds (not yet streams) */
  atomic_ulong published;
  double started;
  unsigned char secret[32];
  char publish_key[128]; /* empty when publishing is left to the script */
  struct tinysse_module_host module_host;
  struct script_limits limits;
  /* channel -> subscribers across all workers, for /channels and counts;
   * peer address -> streams, for --max-clients-per-peer; and peer address
   * -> HTTP connections, for --max-connections-per-peer (same lock) */
  pthread_mutex_t presence_lock;
  struct hub *presence, *peers, *conn_peers;
  /* where the broker hands every message (one per worker, in order) */
  struct broker_sink *sinks;
  int nsinks;
  /* --trusted-proxy, parsed */
  struct proxy_cidr trusted[CONFIG_MAX_LIST];
  size_t ntrusted;
};

/* Where the broker hands messages: push queues m (taking a reference)
 * under the broker's lock, in order; wake asks for the queue to be
 * drained, after the lock. Each worker is one. */
struct broker_sink {
  void (*push)(void *arg, struct message *m);
  void (*wake)(void *arg);
  void *arg;
};

/* Relaxed single-writer increment for worker_stats fields. */
#define STAT_ADD(field, n) \
  atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n), \
                        memory_order_relaxed)
#define STAT_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

#endif
