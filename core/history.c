/* The status page's memory: a fixed ring of the last HISTORY_SLOTS samples
 * of the gateway's numbers (see history.h). */
#include "history.h"

#include <string.h>

void history_init(struct history *h)
{
  memset(h, 0, sizeof(*h));
  pthread_mutex_init(&h->lock, NULL);
}

void history_destroy(struct history *h) { pthread_mutex_destroy(&h->lock); }

int history_record(struct history *h, double now,
                   void (*fill)(void *arg, struct history_sample *s), void *arg)
{
  pthread_mutex_lock(&h->lock);
  /* One sample per whole second of the clock (the first tick in it takes
   * it), so HISTORY_SLOTS samples span at least HISTORY_SLOTS seconds
   * however many workers tick. A tick a little late (a worker whose loop
   * was busy) is skipped; a clock stepped back by more than
   * HISTORY_STEP_BACK intervals starts afresh. */
  double slot = (double)(long long)(now / HISTORY_INTERVAL);
  if (slot < h->next - HISTORY_STEP_BACK)
    h->head = h->n = 0;
  else if (slot < h->next) {
    pthread_mutex_unlock(&h->lock);
    return 0;
  }
  h->next = slot + 1;
  struct history_sample *s;
  if (h->n < HISTORY_SLOTS) {
    s = &h->s[(h->head + h->n) % HISTORY_SLOTS];
    h->n++;
  } else {
    s = &h->s[h->head];
    h->head = (h->head + 1) % HISTORY_SLOTS;
  }
  memset(s, 0, sizeof(*s));
  fill(arg, s);
  s->time = now;
  pthread_mutex_unlock(&h->lock);
  return 1;
}

size_t history_copy(struct history *h, struct history_sample *out, size_t cap)
{
  pthread_mutex_lock(&h->lock);
  size_t n = h->n;
  if (n > cap)
    n = cap;
  /* the newest n when cap is short */
  size_t first = h->head + (h->n - n);
  for (size_t i = 0; i < n; i++)
    out[i] = h->s[(first + i) % HISTORY_SLOTS];
  pthread_mutex_unlock(&h->lock);
  return n;
}
