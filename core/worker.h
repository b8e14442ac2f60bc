/* Worker threads: one event loop each. Messages reach a worker through its
 * inbox (a locked array plus an eventfd wake-up); the per-delivery path runs
 * on the worker's own thread without locks. */
#ifndef TINYSSE_WORKER_H
#define TINYSSE_WORKER_H

#include "gateway.h"

struct client;

/* Creates worker index of gw with its base, hub, script and listeners.
 * NULL with a one-line reason in err. */
struct worker *worker_new(struct gateway *gw, int index, char *err, size_t errlen);
void worker_free(struct worker *w); /* after its loop has stopped */
int worker_start_thread(struct worker *w); /* runs the loop on a new thread; 0/-1 */
void worker_run(struct worker *w);         /* runs the loop on this thread */
/* The worker whose loop runs on this thread; NULL elsewhere. */
struct worker *worker_current(void);

/* Called by the broker under the ring lock: queues m (takes a reference). */
void worker_inbox_push(struct worker *w, struct message *m);
void worker_wake(struct worker *w);
/* w as a place the broker hands messages to (gateway.h). */
struct broker_sink worker_sink(struct worker *w);
/* Fans out everything in the inbox now (on w's thread). */
void worker_drain(struct worker *w);

/* Asks every worker to reload its script / to stop; safe from any thread. */
void worker_request_reload(struct worker *w);
void worker_request_stop(struct worker *w);

/* Clients written per flush slice (between slices the loop reads and
 * acknowledges more publishes): a few milliseconds of sends. */
#define WORKER_FLUSH_SLICE 256

/* Makes sure the flush event runs (client.c calls it when output is queued). */
void worker_schedule_flush(struct worker *w);

/* Queues c to be freed after the current pass (never frees inline). */
void worker_reap_later(struct worker *w, struct client *c);

#endif
