/* What the status page remembers: the last 10 minutes of the gateway's
 * numbers, one sample a second, in a fixed ring (no allocation per sample),
 * so that a page that connects (or reloads) can draw them at once. Any
 * thread may record or read; the ring has its own lock. */
#ifndef TINYSSE_HISTORY_H
#define TINYSSE_HISTORY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY_SLOTS 600    /* samples kept: 10 minutes ... */
#define HISTORY_INTERVAL 1.0 /* ... one a second */

/* The counters are cumulative (the page takes rates and counts per
 * interval from neighbouring samples); streams is the number open. */
struct history_sample {
  double time; /* Unix seconds */
  uint64_t streams, published, deliveries, slow, script_errors;
};

struct history {
  pthread_mutex_t lock;
  const void *owner; /* whose samples these are (a new owner starts afresh) */
  double next;       /* the first clock second (now / HISTORY_INTERVAL) not yet sampled */
  size_t head, n;    /* the oldest sample's slot, and how many are held */
  struct history_sample s[HISTORY_SLOTS];
};

#define HISTORY_INIT {.lock = PTHREAD_MUTEX_INITIALIZER}

/* Takes a sample for owner when one is due at now: fill(arg, &sample) sets
 * everything but time, under the ring's lock (keep it short). Returns 1
 * when a sample was taken. */
int history_record(struct history *h, const void *owner, double now,
                   void (*fill)(void *arg, struct history_sample *s), void *arg);
/* Copies up to cap of owner's samples into out, oldest first; returns how
 * many. */
size_t history_copy(struct history *h, const void *owner, struct history_sample *out, size_t cap);

#endif
