/* What the status page remembers: the last 10 minutes of the gateway's
 * numbers, one sample a second, in a fixed ring (no allocation per sample),
 * so that a page that connects (or reloads) can draw them at once. One per
 * gateway (struct gateway); any thread may record or read: the ring has
 * its own lock. */
#ifndef TINYSSE_HISTORY_H
#define TINYSSE_HISTORY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define HISTORY_SLOTS 600    /* samples kept: 10 minutes ... */
#define HISTORY_INTERVAL 1.0 /* ... one a second */
#define HISTORY_STEP_BACK 10 /* intervals the clock must go back to start afresh */

/* The counters are cumulative (the page takes rates and counts per
 * interval from neighbouring samples); streams is the number open. */
struct history_sample {
  double time; /* Unix seconds */
  uint64_t streams, published, deliveries, slow, script_errors;
};

struct history {
  pthread_mutex_t lock;
  double next;       /* the first clock second (now / HISTORY_INTERVAL) not yet sampled */
  size_t head, n;    /* the oldest sample's slot, and how many are held */
  struct history_sample s[HISTORY_SLOTS];
};

void history_init(struct history *h);
void history_destroy(struct history *h);
/* Takes a sample when one is due at now: fill(arg, &sample) sets
 * everything but time, under the ring's lock (keep it short). Returns 1
 * when a sample was taken. */
int history_record(struct history *h, double now,
                   void (*fill)(void *arg, struct history_sample *s), void *arg);
/* Copies the newest cap samples (or all, if fewer) into out, oldest first;
 * returns how many. */
size_t history_copy(struct history *h, struct history_sample *out, size_t cap);

#endif
