/* The replay ring: a circular array of message references ordered by seq. */
#include "ring.h"
#include "message.h"

#include <pthread.h>
#include <stdlib.h>

struct ring {
  pthread_mutex_t lock;
  size_t cap, head, count; /* head: index of the oldest entry */
  uint64_t last_seq;
  struct message **slots;
};

struct ring *ring_new(size_t capacity)
{
  struct ring *r = calloc(1, sizeof(*r));
  if (!r || capacity == 0)
    goto err;
  r->slots = calloc(capacity, sizeof(*r->slots));
  if (!r->slots)
    goto err;
  r->cap = capacity;
  pthread_mutex_init(&r->lock, NULL);
  return r;
err:
  free(r);
  return NULL;
}

void ring_free(struct ring *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->count; i++)
    message_unref(r->slots[(r->head + i) % r->cap]);
  pthread_mutex_destroy(&r->lock);
  free(r->slots);
  free(r);
}

void ring_lock(struct ring *r) { pthread_mutex_lock(&r->lock); }
void ring_unlock(struct ring *r) { pthread_mutex_unlock(&r->lock); }
uint64_t ring_last_seq(const struct ring *r) { return r->last_seq; }
size_t ring_count(const struct ring *r) { return r->count; }

uint64_t ring_oldest_seq(const struct ring *r)
{
  return r->count ? r->slots[r->head]->seq : 0;
}

void ring_push(struct ring *r, struct message *m)
{
  if (r->count == r->cap) {
    message_unref(r->slots[r->head]);
    r->head = (r->head + 1) % r->cap;
    r->count--;
  }
  r->slots[(r->head + r->count) % r->cap] = message_ref(m);
  r->count++;
  r->last_seq = m->seq;
}

enum ring_resume ring_check_resume(const struct ring *r, uint64_t seen)
{
  if (seen > r->last_seq)
    return RING_RESUME_UNKNOWN;
  if (seen == r->last_seq)
    return RING_RESUME_OK;
  /* Something after `seen` was published: it must all still be held. */
  if (r->count == 0 || ring_oldest_seq(r) > seen + 1)
    return RING_RESUME_TOO_OLD;
  return RING_RESUME_OK;
}

/* Index (0 = oldest) of the first entry with seq > after. */
static size_t first_after(const struct ring *r, uint64_t after)
{
  size_t lo = 0, hi = r->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (r->slots[(r->head + mid) % r->cap]->seq <= after)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void ring_each_range(struct ring *r, uint64_t after, uint64_t upto,
                     void (*fn)(struct message *m, void *arg), void *arg)
{
  for (size_t i = first_after(r, after); i < r->count; i++) {
    struct message *m = r->slots[(r->head + i) % r->cap];
    if (m->seq > upto)
      break;
    fn(m, arg);
  }
}
