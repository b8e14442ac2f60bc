/* Worker threads: one event loop each, with its streams (client.h), its
 * Lua state, its Redis connection in cluster mode, and the front that
 * serves HTTP on it. Messages reach a worker through its inbox (a locked
 * array plus an eventfd wake-up); the per-delivery path runs on the
 * worker's own thread without locks. The worker knows its front only
 * through the operations it is given (worker_front_ops). */
#ifndef TINYSSE_WORKER_H
#define TINYSSE_WORKER_H

#include <stddef.h>

#include "shared.h"

struct event_base;
struct clients;
struct redis_link;
struct script;
struct worker;

/* What the front (the HTTP side) does for a worker: open on its loop (bind
 * the listeners; returns the front's state, or NULL with err), stop
 * accepting (shutdown begins), tick (about once a second), close. */
struct worker_front_ops {
  void *(*open)(struct worker *w, char *err, size_t errlen);
  void (*stop_accepting)(void *front);
  void (*tick)(void *front, double now);
  void (*close)(void *front);
  /* while stopping: does the front still have connections finishing their
   * last output (HTTP/2's GOAWAY)? The worker waits for them, within its
   * grace time; the front calls worker_front_quiet once it has none. */
  int (*busy)(void *front);
};
/* See busy above. */
void worker_front_quiet(struct worker *w);

/* Creates worker index of gw with its base, streams, script, front and
 * Redis connection. NULL with a one-line reason in err. */
struct worker *worker_new(struct gateway *gw, int index, const struct worker_front_ops *front,
                          char *err, size_t errlen);
void worker_free(struct worker *w); /* after its loop has stopped */
int worker_start_thread(struct worker *w); /* runs the loop on a new thread; 0/-1 */
void worker_run(struct worker *w);         /* runs the loop on this thread */
void worker_join(struct worker *w);        /* after worker_start_thread */
/* The worker whose loop runs on this thread; NULL elsewhere. */
struct worker *worker_current(void);

/* w as a place the broker hands messages to (shared.h). */
struct broker_sink worker_sink(struct worker *w);
/* Fans out everything in the inbox now (on w's thread). */
void worker_drain(struct worker *w);

/* Asks the worker to reload its script / to stop; safe from any thread. */
void worker_request_reload(struct worker *w);
void worker_request_stop(struct worker *w);

/* For the front, on w's thread. */
struct gateway *worker_gateway(const struct worker *w);
struct event_base *worker_base(const struct worker *w);
struct worker_stats *worker_counters(struct worker *w);
struct script_stats *worker_script_stats(struct worker *w);
struct clients *worker_clients(struct worker *w);
struct script *worker_script(const struct worker *w); /* the current one */
struct redis_link *worker_link(const struct worker *w); /* NULL without --redis */
void *worker_front(const struct worker *w);
int worker_index(const struct worker *w);
int worker_stopping(const struct worker *w);

#endif
