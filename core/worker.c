/* Worker threads: event loop, inbox, fan-out pass, heartbeat tick, reaping,
 * script reload and stop requests. */
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "client.h"
#include "cluster.h"
#include "http.h"
#include "hub.h"
#include "log.h"
#include "message.h"
#include "ring.h"
#include "uring.h"
#include "status.h"

/* Events get the middle priority by default; fan-out and reaping the lowest. */
#define WORKER_PRIORITIES 3

static void deliver_cb(void *owner, const struct message *m, void *arg)
{
  (void)arg;
  client_deliver(owner, m);
}

const double write_latency_bounds[10] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                          0.025, 0.05, 0.1, 0.25, 1.0};

static void observe_write_latency(struct worker *w, double dt)
{
  for (int b = 0; b < 10; b++)
    if (dt <= write_latency_bounds[b])
      STAT_ADD(w->stats.write_latency_buckets[b], 1);
  STAT_ADD(w->stats.write_latency_count, 1);
  atomic_store_explicit(&w->stats.write_latency_sum,
                        atomic_load_explicit(&w->stats.write_latency_sum, memory_order_relaxed) + dt,
                        memory_order_relaxed);
}

void worker_drain(struct worker *w)
{
  pthread_mutex_lock(&w->inbox_lock);
  struct message **batch = w->inbox;
  size_t n = w->inbox_n;
  w->inbox = NULL;
  w->inbox_n = w->inbox_cap = 0;
  pthread_mutex_unlock(&w->inbox_lock);

  struct timeval tv;
  event_base_gettimeofday_cached(w->base, &tv);
  w->now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  for (size_t i = 0; i < n; i++) {
    struct message *m = batch[i];
    w->last_pos = m->pos;
    if (m->kind == MESSAGE_GAP) {
      for (struct client *c = w->clients; c; c = client_next(c))
        client_reset(c, "gap");
      message_unref(m);
      continue;
    }
    if (m->kind == MESSAGE_LIVE) {
      hub_route(w->hub, m, deliver_cb, NULL);
      if (w->nobs < (int)(sizeof(w->obs) / sizeof(w->obs[0])))
        w->obs[w->nobs++] = m->published_at;
    }
    w->last_seq = m->seq;
    message_unref(m);
  }
  free(batch);
  /* The writes happen in slices (on_flush), between which the loop reads
   * and acknowledges more publishes. */
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  w->flush_scheduled = 0;
  if (client_flush_some(w, WORKER_FLUSH_SLICE)) {
    worker_schedule_flush(w);
    return;
  }
  /* Everything routed so far is written (or waiting on a full socket). */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double done = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  for (int i = 0; i < w->nobs; i++)
    observe_write_latency(w, done - w->obs[i]);
  w->nobs = 0;
}

void worker_schedule_flush(struct worker *w)
{
  if (!w->flush_scheduled) {
    w->flush_scheduled = 1;
    event_active(w->flush_ev, EV_TIMEOUT, 0);
  }
}

void worker_inbox_push(struct worker *w, struct message *m)
{
  pthread_mutex_lock(&w->inbox_lock);
  if (w->inbox_n == w->inbox_cap) {
    size_t cap = w->inbox_cap ? w->inbox_cap * 2 : 16;
    struct message **p = realloc(w->inbox, cap * sizeof(*p));
    if (!p) {
      /* Without memory the worker cannot queue it; its clients will see a
       * gap, so say so loudly. The message stays in the ring for replay. */
      pthread_mutex_unlock(&w->inbox_lock);
      log_event(LOG_ERROR, "inbox_full", "worker=%d seq=%llu", w->index, (unsigned long long)m->seq);
      return;
    }
    w->inbox = p;
    w->inbox_cap = cap;
  }
  w->inbox[w->inbox_n++] = message_ref(m);
  pthread_mutex_unlock(&w->inbox_lock);
}

static void sink_push(void *arg, struct message *m) { worker_inbox_push(arg, m); }
static void sink_wake(void *arg) { worker_wake(arg); }

struct broker_sink worker_sink(struct worker *w)
{
  return (struct broker_sink){sink_push, sink_wake, w};
}

void worker_wake(struct worker *w)
{
  uint64_t one = 1;
  ssize_t r = write(w->wake_fd, &one, sizeof(one));
  (void)r; /* EAGAIN means a wake-up is already pending */
}

static void reload_script(struct worker *w)
{
  char err[1024];
  struct gateway *gw = w->gw;
  struct script *s = script_load(gw->cfg->script, &gw->limits, &gw->module_host, &w->sstats, err,
                                 sizeof(err));
  char q[1100];
  if (!s) {
    log_event(LOG_ERROR, "reload_failed", "worker=%d keeping=old error=%s", w->index,
              log_quote(q, sizeof(q), err));
    return;
  }
  /* Say what changed, hook by hook. */
  char added[256] = "", removed[256] = "";
  for (int h = 0; h < HOOK_COUNT; h++) {
    int was = script_has(w->script, (enum script_hook)h), is = script_has(s, (enum script_hook)h);
    char *list = is && !was ? added : was && !is ? removed : NULL;
    if (list)
      snprintf(list + strlen(list), 256 - strlen(list), "%s%s", *list ? "," : "",
               script_hook_name((enum script_hook)h));
  }
  script_free(w->script);
  w->script = s;
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
  for (struct client *c = w->clients; c; c = client_next(c))
    client_close(c, "shutdown");
  for (size_t i = 0; i < w->nreap; i++)
    client_free(w->reap[i]);
  w->nreap = 0;
  /* Publishes still waiting for Redis are answered (503) before the HTTP
   * front goes. */
  if (w->gw->cluster)
    cluster_detach(w->gw->cluster, w->redis, w->index);
  w->redis = NULL;
  http_free(w); /* also closes idle keep-alive connections */
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
  for (int i = 0; i < w->nbound; i++)
    evhttp_del_accept_socket(w->http, w->bound[i]);
  w->nbound = 0;
  for (struct client *c = w->clients; c; c = client_next(c))
    client_close_after(c, "tinysse.shutdown", "{\"type\":\"shutdown\",\"reconnect\":true}",
                       "shutdown");
  struct timeval grace = {2, 0};
  w->stop_ev = evtimer_new(w->base, finish_stop, w);
  if (w->stop_ev && w->clients)
    evtimer_add(w->stop_ev, &grace);
  else
    finish_stop(-1, 0, w);
}

/* Called after reaping: a stopping worker finishes once no stream is left. */
static void check_stopped(struct worker *w)
{
  if (w->stopping && !w->clients && w->stop_ev && evtimer_pending(w->stop_ev, NULL)) {
    evtimer_del(w->stop_ev);
    finish_stop(-1, 0, w);
  }
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

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  /* on_disconnect hooks may publish, but never close other clients. */
  for (size_t i = 0; i < w->nreap; i++)
    client_free(w->reap[i]);
  w->nreap = 0;
  check_stopped(w);
}

void worker_reap_later(struct worker *w, struct client *c)
{
  if (w->nreap == w->reap_cap) {
    size_t cap = w->reap_cap ? w->reap_cap * 2 : 64;
    struct client **p = realloc(w->reap, cap * sizeof(*p));
    if (!p) {
      log_event(LOG_ERROR, "out_of_memory", "where=reap");
      abort();
    }
    w->reap = p;
    w->reap_cap = cap;
  }
  w->reap[w->nreap++] = c;
  event_active(w->reap_ev, EV_READ, 0);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct worker *w = arg;
  struct timeval tv;
  event_base_gettimeofday_cached(w->base, &tv);
  double now = w->now = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
  size_t queued = 0;
  for (struct client *c = w->clients; c; c = client_next(c))
    queued += client_tick(c, now, w->gw->cfg->heartbeat);
  status_tick(w, now);
  atomic_store_explicit(&w->stats.bytes_queued, queued, memory_order_relaxed);
}

void worker_request_reload(struct worker *w)
{
  atomic_store(&w->reload_pending, 1);
  worker_wake(w);
}

void worker_request_stop(struct worker *w)
{
  atomic_store(&w->stop_pending, 1);
  worker_wake(w);
}

static int bind_listeners(struct worker *w, char *err, size_t errlen)
{
  struct config *cfg = w->gw->cfg;
  unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
  if (w->gw->nworkers > 1)
    flags |= LEV_OPT_REUSEABLE_PORT;
  for (int i = 0; i < cfg->nlisten; i++) {
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (evutil_parse_sockaddr_port(cfg->listen[i], (struct sockaddr *)&ss, &len) != 0 ||
        strchr(cfg->listen[i], ':') == NULL) {
      snprintf(err, errlen, "--listen: expected ADDR:PORT (e.g. 127.0.0.1:8080), got '%s'",
               cfg->listen[i]);
      return -1;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(w->base, NULL, NULL, flags, 4096, (struct sockaddr *)&ss, len);
    if (!l) {
      snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen[i], strerror(errno));
      return -1;
    }
    struct evhttp_bound_socket *b = http_bind_listener(w, l);
    if (!b) {
      evconnlistener_free(l);
      snprintf(err, errlen, "cannot serve HTTP on %s", cfg->listen[i]);
      return -1;
    }
    w->bound[w->nbound++] = b;
  }
  return 0;
}

struct worker *worker_new(struct gateway *gw, int index, char *err, size_t errlen)
{
  struct worker *w = calloc(1, sizeof(*w));
  if (!w) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  w->index = index;
  w->gw = gw;
  w->wake_fd = -1;
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
  w->hub = hub_new();
  if (w->base)
    event_base_priority_init(w->base, WORKER_PRIORITIES);
  if (!w->base || !w->hub) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  w->script = script_load(gw->cfg->script, &gw->limits, &gw->module_host, &w->sstats, err, errlen);
  if (!w->script)
    goto fail;
  w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (w->wake_fd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  w->wake_ev = event_new(w->base, w->wake_fd, EV_READ | EV_PERSIST, on_wake, w);
  w->reap_ev = event_new(w->base, -1, 0, on_reap, w);
  w->flush_ev = event_new(w->base, -1, 0, on_flush, w);
  if (w->flush_ev)
    event_priority_set(w->flush_ev, WORKER_PRIORITIES - 1);
  /* Fan-out runs after the loop's other ready events: publishes arriving
   * together are all read and acknowledged first, and one pass then writes
   * each client its frames in one writev. */
  if (w->wake_ev)
    event_priority_set(w->wake_ev, WORKER_PRIORITIES - 1);
  if (w->reap_ev)
    event_priority_set(w->reap_ev, WORKER_PRIORITIES - 1);
  w->tick_ev = event_new(w->base, -1, EV_PERSIST, on_tick, w);
  w->http = http_new(w);
  if (!w->wake_ev || !w->reap_ev || !w->tick_ev || !w->flush_ev || !w->http) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (bind_listeners(w, err, errlen) != 0)
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
  w->last_seq = ring_last_seq(gw->ring);
  w->last_pos = ring_last_pos(gw->ring);
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
  for (size_t i = 0; i < w->nreap; i++)
    client_free(w->reap[i]);
  if (w->gw->cluster)
    cluster_detach(w->gw->cluster, w->redis, w->index);
  w->redis = NULL;
  http_free(w);
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
  free(w->reap);
  if (w->wake_fd >= 0)
    close(w->wake_fd);
  script_free(w->script);
  hub_free(w->hub);
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
    w->uring = uring_new(WORKER_FLUSH_SLICE);
    STAT_ADD(w->stats.io_uring, w->uring ? 1 : 0);
    if (!w->uring && w->index == 0)
      log_event(LOG_INFO, "io_uring_unavailable", "reason=%s (streams are written with one writev each)",
                strerror(errno));
  }
  event_base_dispatch(w->base);
  uring_free(w->uring);
  w->uring = NULL;
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
