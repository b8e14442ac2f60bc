/* Worker threads: event loop, inbox, fan-out and flush scheduling,
 * heartbeat tick, reaping, script reload and stop requests. */
#include "worker.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

#include "alloc.h"
#include "callout_io.h"
#include "client.h"
#include "cluster.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "ring.h"
#include "uring.h"

/* States kept after reloads for their waiting hook calls. */
#define WORKER_RETIRED_MAX 8

/* Events get the middle priority by default; fan-out and reaping the lowest. */
#define WORKER_PRIORITIES 3

struct worker {
  int index;
  struct gateway *gw;
  struct event_base *base;
  struct clients streams;
  struct script_stats sstats;
  struct worker_stats stats;
  const struct worker_front_ops *front_ops;
  void *front;
  struct redis_link *redis; /* cluster mode: this worker's publishing connection */

  /* Messages handed over by the broker, in seq order. */
  pthread_mutex_t inbox_lock;
  struct message **inbox;
  size_t inbox_n, inbox_cap;
  int wake_fd; /* eventfd */
  struct event *wake_ev;
  atomic_int reload_pending, stop_pending;

  struct event *flush_ev; /* writes a slice of the clients' FIFO */
  int flush_scheduled;
  struct event *reap_ev, *tick_ev;
  int stopping;
  struct event *stop_ev;
  pthread_t thread;
  /* tinysse.http; and states replaced by a reload whose hook calls still
   * wait for call-outs (freed once they are done: on_tick) */
  struct callout_io *callouts;
  struct script *retired[WORKER_RETIRED_MAX];
  int nretired;
  /* worker 0: the gateway's churn at, and the time of, the last trim */
  unsigned long trim_churn;
  double trim_at;
};

/* A state as the worker runs it: its call-outs go through the worker. */
static struct script *load_script(struct worker *w, char *err, size_t errlen)
{
  struct gateway *gw = w->gw;
  struct script *s = script_load(gw->cfg->script, &gw->limits, &gw->module_host, &w->sstats, err,
                                 errlen);
  if (s && w->callouts) {
    struct script_io io = callout_io_ops(w->callouts);
    script_set_io(s, &io);
  }
  return s;
}

/* A replaced state: freed now, or once its waiting hook calls end (a
 * reload loses no request); past WORKER_RETIRED_MAX, the oldest one's
 * calls are ended. */
static void retire_script(struct worker *w, struct script *s)
{
  if (!script_busy(s)) {
    script_free(s);
    return;
  }
  if (w->nretired == WORKER_RETIRED_MAX) {
    script_free(w->retired[0]);
    memmove(w->retired, w->retired + 1, --w->nretired * sizeof(w->retired[0]));
  }
  w->retired[w->nretired++] = s;
}

static void free_idle_retired(struct worker *w)
{
  int k = 0;
  for (int i = 0; i < w->nretired; i++) {
    if (script_busy(w->retired[i]))
      w->retired[k++] = w->retired[i];
    else
      script_free(w->retired[i]);
  }
  w->nretired = k;
}

struct gateway *worker_gateway(const struct worker *w) { return w->gw; }
struct event_base *worker_base(const struct worker *w) { return w->base; }
struct worker_stats *worker_counters(struct worker *w) { return &w->stats; }
struct script_stats *worker_script_stats(struct worker *w) { return &w->sstats; }
struct clients *worker_clients(struct worker *w) { return &w->streams; }
struct script *worker_script(const struct worker *w) { return w->streams.script; }
struct redis_link *worker_link(const struct worker *w) { return w->redis; }
void *worker_front(const struct worker *w) { return w->front; }
int worker_index(const struct worker *w) { return w->index; }
int worker_stopping(const struct worker *w) { return w->stopping; }

/* ---- a worker's streams, as a set (client.h has one stream) ---- */

static void clients_reap(struct clients *cs)
{
  /* on_disconnect hooks may publish, but never close other clients. */
  for (size_t i = 0; i < cs->nreap; i++)
    client_free(cs->reap[i]);
  cs->nreap = 0;
}

static void clients_route(struct clients *cs, const struct message *m)
{
  if (m->kind == MESSAGE_SUBS) { /* not a position in the stream */
    clients_subscription(cs, m);
    return;
  }
  cs->last_pos = m->pos;
  if (m->kind == MESSAGE_GAP) {
    for (struct client *c = cs->clients; c; c = client_next(c))
      client_reset(c, "gap");
    return;
  }
  if (m->kind == MESSAGE_LIVE) {
    clients_send(cs, m);
    if (cs->nobs < (int)(sizeof(cs->obs) / sizeof(cs->obs[0])))
      cs->obs[cs->nobs++] = m->published_at;
  }
  cs->last_seq = m->seq;
}

const double write_latency_bounds[10] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025, 0.05, 0.1, 0.25, 1.0};

static void observe_write_latency(struct clients *cs, double dt)
{
  for (int b = 0; b < 10; b++)
    if (dt <= write_latency_bounds[b])
      STAT_ADD(cs->stats->write_latency_buckets[b], 1);
  STAT_ADD(cs->stats->write_latency_count, 1);
  atomic_store_explicit(&cs->stats->write_latency_sum,
                        atomic_load_explicit(&cs->stats->write_latency_sum, memory_order_relaxed) + dt,
                        memory_order_relaxed);
}

static int clients_flush_some(struct clients *cs, int max)
{
  if (client_flush_slice(cs, max))
    return 1;
  /* Everything routed so far is written (or waiting on a full socket). */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double done = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  for (int i = 0; i < cs->nobs; i++)
    observe_write_latency(cs, done - cs->obs[i]);
  cs->nobs = 0;
  return 0;
}

static size_t clients_tick(struct clients *cs, double now, double interval)
{
  size_t queued = 0;
  cs->now = now;
  for (struct client *c = cs->clients; c; c = client_next(c))
    queued += client_tick(c, now, interval);
  return queued;
}

static void clients_close_after(struct clients *cs, const char *event, const char *json,
                                const char *reason)
{
  for (struct client *c = cs->clients; c; c = client_next(c))
    client_close_after(c, event, json, reason);
}

static void clients_close_all(struct clients *cs, const char *reason)
{
  for (struct client *c = cs->clients; c; c = client_next(c))
    client_close(c, reason);
  clients_reap(cs);
}

static void clients_release(struct clients *cs)
{
  clients_reap(cs);
  free(cs->reap);
  cs->reap = NULL;
  cs->reap_cap = 0;
}

static double cached_now(struct worker *w)
{
  struct timeval tv;
  event_base_gettimeofday_cached(w->base, &tv);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

void worker_drain(struct worker *w)
{
  pthread_mutex_lock(&w->inbox_lock);
  struct message **batch = w->inbox;
  size_t n = w->inbox_n;
  w->inbox = NULL;
  w->inbox_n = w->inbox_cap = 0;
  pthread_mutex_unlock(&w->inbox_lock);

  w->streams.now = cached_now(w);
  for (size_t i = 0; i < n; i++) {
    clients_route(&w->streams, batch[i]);
    message_unref(batch[i]);
  }
  free(batch);
  /* The writes happen in slices (on_flush), between which the loop reads
   * and acknowledges more publishes. */
}

static void schedule_flush(void *arg)
{
  struct worker *w = arg;
  if (!w->flush_scheduled) {
    w->flush_scheduled = 1;
    event_active(w->flush_ev, EV_TIMEOUT, 0);
  }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  w->flush_scheduled = 0;
  if (clients_flush_some(&w->streams, CLIENTS_FLUSH_SLICE))
    schedule_flush(w);
}

static void inbox_push(void *arg, struct message *m)
{
  struct worker *w = arg;
  pthread_mutex_lock(&w->inbox_lock);
  if (w->inbox_n == w->inbox_cap) {
    w->inbox_cap = w->inbox_cap ? w->inbox_cap * 2 : 16;
    w->inbox = xrealloc(w->inbox, w->inbox_cap * sizeof(*w->inbox));
  }
  w->inbox[w->inbox_n++] = message_ref(m);
  pthread_mutex_unlock(&w->inbox_lock);
}

static void wake(void *arg)
{
  struct worker *w = arg;
  uint64_t one = 1;
  ssize_t r = write(w->wake_fd, &one, sizeof(one));
  (void)r; /* EAGAIN means a wake-up is already pending */
}

struct broker_sink worker_sink(struct worker *w) { return (struct broker_sink){inbox_push, wake, w}; }

static void reload_script(struct worker *w)
{
  char err[1024];
  struct gateway *gw = w->gw;
  struct script *s = load_script(w, err, sizeof(err));
  char q[1100];
  if (!s) {
    log_event(LOG_ERROR, "reload_failed", "worker=%d keeping=old error=%s", w->index,
              log_quote(q, sizeof(q), err));
    return;
  }
  /* Say what changed, hook by hook. */
  char added[256] = "", removed[256] = "";
  for (int h = 0; h < HOOK_COUNT; h++) {
    int was = script_has(w->streams.script, (enum script_hook)h), is = script_has(s, (enum script_hook)h);
    char *list = is && !was ? added : was && !is ? removed : NULL;
    if (list)
      snprintf(list + strlen(list), 256 - strlen(list), "%s%s", *list ? "," : "",
               script_hook_name((enum script_hook)h));
  }
  retire_script(w, w->streams.script);
  w->streams.script = s;
  log_event(LOG_INFO, "script_reloaded", "worker=%d script=%s hooks_added=%s hooks_removed=%s",
            w->index, log_quote(q, sizeof(q), gw->cfg->script), *added ? added : "none",
            *removed ? removed : "none");
}

/* Last step of a shutdown: every stream is gone (or out of time). */
static void finish_stop(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  clients_close_all(&w->streams, "shutdown");
  /* Publishes still waiting for Redis are answered (503) before the front
   * goes. */
  if (w->gw->cluster)
    cluster_detach(w->gw->cluster, w->redis, w->index);
  w->redis = NULL;
  if (w->front)
    w->front_ops->close(w->front); /* also closes idle keep-alive connections */
  w->front = NULL;
  event_base_loopbreak(w->base);
}

/* Shutdown: stop accepting, tell every stream to reconnect (an SSE event,
 * then the close that makes EventSource retry, elsewhere behind a load
 * balancer), keep serving requests already read, and finish when the
 * streams have drained or after a bounded grace time. */
static void stop(struct worker *w)
{
  if (w->stopping)
    return;
  w->stopping = 1;
  if (w->front)
    w->front_ops->stop_accepting(w->front);
  clients_close_after(&w->streams, "tinysse.shutdown", "{\"type\":\"shutdown\",\"reconnect\":true}",
                      "shutdown");
  struct timeval grace = {2, 0};
  w->stop_ev = evtimer_new(w->base, finish_stop, w);
  if (w->stop_ev && (w->streams.clients || (w->front && w->front_ops->busy &&
                                            w->front_ops->busy(w->front))))
    evtimer_add(w->stop_ev, &grace);
  else
    finish_stop(-1, 0, w);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
  (void)what;
  struct worker *w = arg;
  uint64_t v;
  ssize_t r = read(fd, &v, sizeof(v));
  (void)r;
  worker_drain(w);
  if (atomic_exchange(&w->reload_pending, 0))
    reload_script(w);
  if (atomic_exchange(&w->stop_pending, 0))
    stop(w);
}

static void schedule_reap(void *arg)
{
  struct worker *w = arg;
  event_active(w->reap_ev, EV_READ, 0);
}

static void drain(void *arg) { worker_drain(arg); }

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  clients_reap(&w->streams);
  worker_front_quiet(w);
}

/* A stopping worker finishes once no stream is left and its front has
 * written what it had to say (or when the grace time is up). */
void worker_front_quiet(struct worker *w)
{
  if (w->stopping && !w->streams.clients && w->stop_ev && evtimer_pending(w->stop_ev, NULL) &&
      !(w->front && w->front_ops->busy && w->front_ops->busy(w->front))) {
    evtimer_del(w->stop_ev);
    finish_stop(-1, 0, w);
  }
}

/* What connections give back (a TLS handshake's buffers, a request's
 * state, a closed stream) stays in glibc's heaps, scattered between live
 * objects, and in the process's RSS. malloc_trim gives the free pages
 * back to the kernel: after 15,000 streams closed, about 2.4 MB of the 19
 * MB they had added (bench/RESULTS.md). Worker 0 calls it (for every
 * thread's heap) at most once a second, once WORKER_TRIM_CHURN
 * connections came or went since the last time; a call took 0.1-3 ms. */
#define WORKER_TRIM_CHURN 1024

static void trim_memory(struct worker *w, double now)
{
#ifdef __GLIBC__
  unsigned long churn = atomic_load_explicit(&w->gw->churn, memory_order_relaxed);
  if (churn - w->trim_churn < WORKER_TRIM_CHURN || now - w->trim_at < 1)
    return;
  w->trim_churn = churn;
  w->trim_at = now;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  int gave = malloc_trim(0);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  log_event(LOG_DEBUG, "memory_trimmed", "released=%d ms=%.2f", gave,
            (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
#else
  (void)w;
  (void)now;
#endif
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  double now = cached_now(w);
  size_t queued = clients_tick(&w->streams, now, w->gw->cfg->heartbeat);
  if (w->nretired)
    free_idle_retired(w);
  if (w->front)
    w->front_ops->tick(w->front, now);
  if (w->index == 0)
    trim_memory(w, now);
  atomic_store_explicit(&w->stats.bytes_queued, queued, memory_order_relaxed);
}

void worker_request_reload(struct worker *w)
{
  atomic_store(&w->reload_pending, 1);
  wake(w);
}

void worker_request_stop(struct worker *w)
{
  atomic_store(&w->stop_pending, 1);
  wake(w);
}

struct worker *worker_new(struct gateway *gw, int index, const struct worker_front_ops *front,
                          char *err, size_t errlen)
{
  struct worker *w = xcalloc(1, sizeof(*w));
  w->index = index;
  w->gw = gw;
  w->wake_fd = -1;
  w->front_ops = front;
  pthread_mutex_init(&w->inbox_lock, NULL);
  /* At most one low-priority callback (a fan-out slice, a drain) per loop
   * turn: libevent would otherwise run a re-activated slice again at once,
   * without going back to the sockets for publishes and acknowledgements. */
  struct event_config *ec = event_config_new();
  if (ec)
    event_config_set_max_dispatch_interval(ec, NULL, 1, WORKER_PRIORITIES - 1);
  w->base = ec ? event_base_new_with_config(ec) : NULL;
  if (ec)
    event_config_free(ec);
  if (!w->base) {
    snprintf(err, errlen, "cannot make an event base");
    goto fail;
  }
  event_base_priority_init(w->base, WORKER_PRIORITIES);
  w->streams = (struct clients){.gw = gw, .base = w->base, .stats = &w->stats, .hub = hub_new(),
                                .index = index, .drain = drain, .schedule_flush = schedule_flush,
                                .schedule_reap = schedule_reap, .arg = w};
  if (!w->streams.hub)
    alloc_failed(0);
  if (!(w->callouts = callout_io_new(w->base, gw->cfg, err, errlen)))
    goto fail;
  w->streams.script = load_script(w, err, errlen);
  if (!w->streams.script)
    goto fail;
  w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
  w->reap_ev = event_new(w->base, -1, 0, on_reap, w);
  w->flush_ev = event_new(w->base, -1, 0, on_flush, w);
  w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
  if (!w->wake_ev || !w->reap_ev || !w->tick_ev || !w->flush_ev)
    alloc_failed(0);
  /* Fan-out runs after the loop's other ready events: publishes arriving
   * together are all read and acknowledged first, and one pass then writes
   * each client its frames in one writev. */
  event_priority_set(w->flush_ev, WORKER_PRIORITIES - 1);
  event_priority_set(w->wake_ev, WORKER_PRIORITIES - 1);
  event_priority_set(w->reap_ev, WORKER_PRIORITIES - 1);
  if (front && !(w->front = front->open(w, err, errlen)))
    goto fail;
  if (gw->cluster && !(w->redis = cluster_attach(gw->cluster, w->base, w->index))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  double period = gw->cfg->heartbeat / 2;
  if (period > 1)
    period = 1;
  struct timeval tv = {(time_t)period, (suseconds_t)((period - (double)(time_t)period) * 1e6)};
  event_add(w->wake_ev, NULL);
  event_add(w->tick_ev, &tv);
  /* Each worker starts where the ring is now (nothing published yet). */
  ring_lock(gw->ring);
  w->streams.last_seq = ring_last_seq(gw->ring);
  w->streams.last_pos = ring_last_pos(gw->ring);
  ring_unlock(gw->ring);
  return w;
fail:
  worker_free(w);
  return NULL;
}

void worker_free(struct worker *w)
{
  if (!w)
    return;
  /* Requests waiting for hooks get their answer (500) while the front is
   * open; hooks that streams closing now start are ended after. */
  for (int i = 0; i < w->nretired; i++)
    script_cancel_all(w->retired[i]);
  script_cancel_all(w->streams.script);
  clients_release(&w->streams);
  for (int i = 0; i < w->nretired; i++)
    script_free(w->retired[i]);
  w->nretired = 0;
  script_cancel_all(w->streams.script);
  callout_io_free(w->callouts);
  w->callouts = NULL;
  if (w->gw->cluster)
    cluster_detach(w->gw->cluster, w->redis, w->index);
  w->redis = NULL;
  if (w->front)
    w->front_ops->close(w->front);
  if (w->wake_ev)
    event_free(w->wake_ev);
  if (w->reap_ev)
    event_free(w->reap_ev);
  if (w->tick_ev)
    event_free(w->tick_ev);
  if (w->stop_ev)
    event_free(w->stop_ev);
  if (w->flush_ev)
    event_free(w->flush_ev);
  for (size_t i = 0; i < w->inbox_n; i++)
    message_unref(w->inbox[i]);
  free(w->inbox);
  if (w->wake_fd >= 0)
    close(w->wake_fd);
  script_free(w->streams.script);
  hub_free(w->streams.hub);
  if (w->base)
    event_base_free(w->base);
  pthread_mutex_destroy(&w->inbox_lock);
  free(w);
}

static __thread struct worker *current;

struct worker *worker_current(void) { return current; }

void worker_run(struct worker *w)
{
  current = w;
  /* The ring belongs to this thread (it is created single-issuer). */
  if (!w->gw->cfg->no_io_uring) {
    w->streams.uring = uring_new(CLIENTS_FLUSH_SLICE);
    STAT_ADD(w->stats.io_uring, w->streams.uring ? 1 : 0);
    if (!w->streams.uring && w->index == 0)
      log_event(LOG_INFO, "io_uring_unavailable", "reason=%s (streams are written with one writev each)",
                strerror(errno));
  }
  event_base_dispatch(w->base);
  uring_free(w->streams.uring);
  w->streams.uring = NULL;
  atomic_store_explicit(&w->stats.io_uring, 0, memory_order_relaxed);
  current = NULL;
}

static void *thread_main(void *arg)
{
  worker_run(arg);
  return NULL;
}

int worker_start_thread(struct worker *w)
{
  return pthread_create(&w->thread, NULL, thread_main, w) == 0 ? 0 : -1;
}

void worker_join(struct worker *w) { pthread_join(w->thread, NULL); }
