/* What every part of a gateway shares: the config, the replay ring, the
 * presence tables, the idempotency keys, the instance secret, where the
 * broker hands messages, and the counters each worker keeps (summed by
 * /metrics). Data only: gateway.c assembles a gateway, worker.c runs one
 * event loop of it. */
#ifndef TINYSSE_SHARED_H
#define TINYSSE_SHARED_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "host.h"
#include "message.h"
#include "proxyproto.h"

struct hub;
struct tls;
struct history;
struct ring;
struct message;
struct cluster;
struct idem;
struct worker;

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
  /* tinysse.reset sent, by reason: too_old, unknown, gap */
  atomic_ulong resets_by[3];
  /* 1 while the worker writes streams in io_uring batches (uring.c) */
  atomic_ulong io_uring;
  /* server-side subscriptions: streams changed; channels not joined
   * because the stream had STREAM_MAX_CHANNELS already */
  atomic_ulong subs_changed, subs_dropped;
  /* hooks dropped because their client went away while they waited */
  atomic_ulong hook_waits_abandoned;
  /* publish-to-write latency: one observation per message per worker, taken
   * when the fan-out pass that wrote it ends (bounds: metrics.c) */
  atomic_ulong write_latency_buckets[10], write_latency_count;
  _Atomic double write_latency_sum;
};
extern const double write_latency_bounds[10];

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
  /* connections accepted plus streams closed, ever: what worker 0's
   * memory trim (worker.c) waits for */
  atomic_ulong churn;
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
  struct tls *tls; /* --tls-cert's server context, NULL without TLS */
  struct history *history; /* the status page's last 10 minutes */
  struct jwks_cache *jwks; /* key sets from tinysse.jwks URLs, shared by every worker */
  /* server-side subscriptions: what each user was subscribed to (subs.h),
   * and the index of open streams by user and by connection id
   * (client_subs.c; under presence_lock) */
  struct subs *subs;
  struct client_dir *dir;
  char node[8]; /* cluster mode: this node's tag in connection ids */
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
