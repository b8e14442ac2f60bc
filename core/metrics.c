/* /metrics in the Prometheus text format. */
#include "metrics.h"

#include <dirent.h>
#include <stddef.h>
#include <sys/resource.h>
#include <time.h>

#include <event2/buffer.h>

#include "cluster.h"
#include "jwks_cache.h"
#include "shared.h"
#include "ring.h"
#include "subs.h"
#include "worker.h"

static void head(struct evbuffer *out, const char *name, const char *type, const char *help)
{
  evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One unlabelled sample with its HELP and TYPE. */
static void scalar(struct evbuffer *out, const char *name, const char *type, const char *help,
                   unsigned long v)
{
  head(out, name, type, help);
  evbuffer_add_printf(out, "%s %lu\n", name, v);
}

/* A histogram: cumulative bucket counts for the given upper bounds. */
static void histogram(struct evbuffer *out, const char *name, const char *help,
                      const double *bounds, const unsigned long *buckets, int n,
                      unsigned long count, double sum)
{
  head(out, name, "histogram", help);
  for (int b = 0; b < n; b++)
    evbuffer_add_printf(out, "%s_bucket{le=\"%g\"} %lu\n", name, bounds[b], buckets[b]);
  evbuffer_add_printf(out, "%s_bucket{le=\"+Inf\"} %lu\n", name, count);
  evbuffer_add_printf(out, "%s_sum %.6f\n", name, sum);
  evbuffer_add_printf(out, "%s_count %lu\n", name, count);
}

/* A worker_stats field, per worker or summed. */
static void per_worker(struct evbuffer *out, struct gateway *gw, const char *name,
                       const char *type, const char *help, size_t off)
{
  head(out, name, type, help);
  for (int i = 0; i < gw->nworkers; i++) {
    atomic_ulong *cnt = (atomic_ulong *)((char *)worker_counters(gw->workers[i]) + off);
    evbuffer_add_printf(out, "%s{worker=\"%d\"} %lu\n", name, i, STAT_GET(*cnt));
  }
}

unsigned long metrics_sum(struct gateway *gw, size_t off)
{
  unsigned long sum = 0;
  for (int i = 0; i < gw->nworkers; i++)
    sum += STAT_GET(*(atomic_ulong *)((char *)worker_counters(gw->workers[i]) + off));
  return sum;
}

static void summed(struct evbuffer *out, struct gateway *gw, const char *name, const char *type,
                   const char *help, size_t off)
{
  head(out, name, type, help);
  evbuffer_add_printf(out, "%s %lu\n", name, metrics_sum(gw, off));
}

#define WS(field) offsetof(struct worker_stats, field)

/* The process's open descriptors and its open-files limit, under the names
 * Prometheus's own process collectors use, for the open-files headroom
 * alert. Counting /proc/self/fd costs a directory read per scrape (20,000
 * entries: about a millisecond), on the thread that answers /metrics. */
static void process_fds(struct evbuffer *out)
{
  DIR *d = opendir("/proc/self/fd");
  if (d) {
    long n = -1; /* the directory's own descriptor is not the gateway's */
    struct dirent *e;
    while ((e = readdir(d)))
      if (e->d_name[0] != '.')
        n++;
    closedir(d);
    head(out, "process_open_fds", "gauge", "Open file descriptors.");
    evbuffer_add_printf(out, "process_open_fds %ld\n", n);
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    head(out, "process_max_fds", "gauge", "The open-files limit (RLIMIT_NOFILE soft limit).");
    evbuffer_add_printf(out, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
  }
}

void metrics_render(struct gateway *gw, struct evbuffer *out)
{
  per_worker(out, gw, "tinysse_connections", "gauge", "Open streams.", WS(connections));
  summed(out, gw, "tinysse_connections_total", "counter", "Streams opened.", WS(connections_total));
  scalar(out, "tinysse_messages_published_total", "counter", "Messages accepted for publishing.", atomic_load(&gw->published));
  summed(out, gw, "tinysse_deliveries_total", "counter", "Messages queued to streams (live).", WS(deliveries));
  summed(out, gw, "tinysse_replayed_messages_total", "counter", "Messages sent from the replay buffer on resume.", WS(replayed));
  summed(out, gw, "tinysse_resets_total", "counter", "tinysse.reset events sent (resume id too old or unknown).", WS(resets));
  summed(out, gw, "tinysse_slow_disconnects_total", "counter", "Streams closed because their queue passed --max-queue.", WS(slow));
  summed(out, gw, "tinysse_expired_total", "counter", "Streams closed because their token expired.", WS(expired));
  summed(out, gw, "tinysse_auth_rejected_total", "counter", "Stream requests refused for a missing or rejected token.", WS(auth_rejected));
  summed(out, gw, "tinysse_bytes_queued", "gauge", "Bytes waiting in stream output queues.", WS(bytes_queued));
  summed(out, gw, "tinysse_http_requests_total", "counter", "HTTP requests handled.", WS(http_requests));
  head(out, "tinysse_http_connections", "gauge", "HTTP connections other than streams (requests, idle keep-alive).");
  evbuffer_add_printf(out, "tinysse_http_connections %ld\n", atomic_load(&gw->nconns));
  summed(out, gw, "tinysse_request_timeouts_total", "counter", "Requests answered 408: not complete within --request-timeout.", WS(request_timeouts));
  summed(out, gw, "tinysse_io_uring_workers", "gauge", "Workers writing streams in io_uring batches (the others write one writev per stream).", WS(io_uring));
  summed(out, gw, "tinysse_connections_refused_total", "counter", "Connections over --max-connections (shed or answered 503 once their request is read, or closed at accept when too many are) or over --max-connections-per-peer (503).", WS(connections_refused));
  summed(out, gw, "tinysse_hook_waits_abandoned_total", "counter", "Hook calls dropped, with their call-outs, because the client went away while they waited.", WS(hook_waits_abandoned));
  summed(out, gw, "tinysse_subscription_changes_total", "counter", "Streams whose channels a server-side subscription changed.", WS(subs_changed));
  summed(out, gw, "tinysse_subscription_channels_dropped_total", "counter", "Channels a server-side subscription could not add: the stream had 256 already.", WS(subs_dropped));
  size_t kept_users, kept_channels;
  struct timespec rt;
  clock_gettime(CLOCK_REALTIME, &rt);
  subs_counts(gw->subs, (double)rt.tv_sec + (double)rt.tv_nsec / 1e9, &kept_users, &kept_channels);
  scalar(out, "tinysse_subscription_users", "gauge", "Users whose server-side subscriptions are kept (see --subscription-users).", kept_users);
  scalar(out, "tinysse_subscription_channels", "gauge", "Channels kept for those users, in all.", kept_channels);
  head(out, "tinysse_shed_total", "counter", "Stream requests refused for capacity or readiness with tinysse.busy and a jittered retry (EventSource retries).");
  for (int r = 0; r < SHED_REASONS; r++)
    evbuffer_add_printf(out, "tinysse_shed_total{reason=\"%s\"} %lu\n", shed_reason_names[r],
                        metrics_sum(gw, WS(shed) + (size_t)r * sizeof(atomic_ulong)));

  /* publish-to-write latency, summed over workers */
  unsigned long wb[10] = {0}, wcount = 0;
  double wsum = 0;
  for (int i = 0; i < gw->nworkers; i++) {
    struct worker_stats *st = worker_counters(gw->workers[i]);
    for (int b = 0; b < 10; b++)
      wb[b] += STAT_GET(st->write_latency_buckets[b]);
    wcount += STAT_GET(st->write_latency_count);
    wsum += atomic_load_explicit(&st->write_latency_sum, memory_order_relaxed);
  }
  histogram(out, "tinysse_publish_to_write_seconds",
            "From a message's publish to the end of the fan-out pass that wrote it, per worker.",
            write_latency_bounds, wb, 10, wcount, wsum);

  struct ring_stats rs;
  ring_lock(gw->ring);
  ring_expire(gw->ring);
  size_t held = ring_count(gw->ring);
  ring_get_stats(gw->ring, &rs);
  ring_unlock(gw->ring);
  head(out, "tinysse_replay_buffer_messages", "gauge", "Messages in the replay ring (the last --buffer).");
  evbuffer_add_printf(out, "tinysse_replay_buffer_messages %zu\n", held);
  scalar(out, "tinysse_history_messages", "gauge", "Messages held for replay: the ring and the channels' histories, each once.", rs.held);
  scalar(out, "tinysse_history_bytes", "gauge", "Bytes held for replay (counted against --buffer-bytes).", rs.bytes);
  scalar(out, "tinysse_history_channels", "gauge", "Channels with a history or a watermark.", rs.channels);
  head(out, "tinysse_history_oldest_seconds", "gauge", "Age of the oldest message held for replay.");
  evbuffer_add_printf(out, "tinysse_history_oldest_seconds %.3f\n", rs.oldest_age);
  static const char *const causes[RING_CAUSES] = {"count", "bytes", "age", "channels"};
  head(out, "tinysse_history_evictions_total", "counter", "Messages that left the replay history, by the bound that pushed them out.");
  for (int c = 0; c < RING_CAUSES; c++)
    evbuffer_add_printf(out, "tinysse_history_evictions_total{cause=\"%s\"} %lu\n", causes[c], rs.evicted[c]);
  head(out, "tinysse_history_evicted_bytes_total", "counter", "Bytes of those messages, by cause.");
  for (int c = 0; c < RING_CAUSES; c++)
    evbuffer_add_printf(out, "tinysse_history_evicted_bytes_total{cause=\"%s\"} %lu\n", causes[c], rs.evicted_bytes[c]);
  static const char *const reasons[3] = {"too_old", "unknown", "gap"};
  head(out, "tinysse_replay_resets_total", "counter", "tinysse.reset events sent, by reason.");
  for (int k = 0; k < 3; k++) {
    unsigned long n = 0;
    for (int i = 0; i < gw->nworkers; i++)
      n += STAT_GET(worker_counters(gw->workers[i])->resets_by[k]);
    evbuffer_add_printf(out, "tinysse_replay_resets_total{reason=\"%s\"} %lu\n", reasons[k], n);
  }

  /* Script counters (plain words written by each worker's own thread). */
  unsigned long errors = 0, timeouts = 0, memory = 0, bad = 0, calls[HOOK_COUNT] = {0};
  unsigned long waits = 0, waiting = 0, callouts = 0, callout_errors = 0;
  unsigned long buckets[8] = {0}, count = 0;
  double sum = 0;
  for (int i = 0; i < gw->nworkers; i++) {
    const struct script_stats *s = worker_script_stats(gw->workers[i]);
    errors += s->errors;
    timeouts += s->timeouts;
    memory += s->memory_errors;
    bad += s->bad_returns;
    waits += s->waits;
    waiting += s->waiting;
    callouts += s->callouts;
    callout_errors += s->callout_errors;
    for (int h = 0; h < HOOK_COUNT; h++)
      calls[h] += s->calls[h];
    for (int b = 0; b < 8; b++)
      buckets[b] += s->latency_buckets[b];
    sum += s->latency_sum;
    count += s->latency_count;
  }
  scalar(out, "tinysse_script_errors_total", "counter", "Lua hook calls that failed (any cause).", errors);
  scalar(out, "tinysse_script_timeouts_total", "counter", "Lua hook calls stopped by the time budget.", timeouts);
  scalar(out, "tinysse_script_memory_errors_total", "counter", "Lua hook calls stopped by the memory cap.", memory);
  scalar(out, "tinysse_script_bad_returns_total", "counter", "Lua hook calls that returned the wrong types.", bad);
  head(out, "tinysse_hook_calls_total", "counter", "Lua hook calls by hook.");
  for (int h = 0; h < HOOK_COUNT; h++)
    evbuffer_add_printf(out, "tinysse_hook_calls_total{hook=\"%s\"} %lu\n",
                        script_hook_name((enum script_hook)h), calls[h]);
  histogram(out, "tinysse_hook_duration_seconds", "Time spent running Lua hook calls (CPU; waits for call-outs not counted).",
            script_latency_bounds, buckets, 8, count, sum);
  scalar(out, "tinysse_hook_waits_total", "counter", "Lua hook calls that waited for a call-out (tinysse.http).", waits);
  scalar(out, "tinysse_hooks_waiting", "gauge", "Lua hook calls waiting for a call-out now.", waiting);
  scalar(out, "tinysse_callouts_total", "counter", "tinysse.http calls made by hooks.", callouts);
  scalar(out, "tinysse_callout_errors_total", "counter", "tinysse.http calls that got no HTTP answer (timeout, connect, TLS, too large, queue full).", callout_errors);
  jwks_cache_metrics(gw->jwks, out);
  process_fds(out);
  cluster_metrics(gw, out);
}
