/* The replay ring: a circular array of message references in stream order. */
#include "ring.h"

#include <pthread.h>
#include <stdlib.h>

struct ring {
  pthread_mutex_t lock;
  size_t cap, head, count; /* head: index of the oldest entry */
  uint64_t last_seq;
  struct msgpos last_pos, floor;
  struct message **slots;
};

struct ring *ring_new(size_t capacity, struct msgpos start)
{
  struct ring *r = calloc(1, sizeof(*r));
  if (!r || capacity == 0)
    goto err;
  r->slots = calloc(capacity, sizeof(*r->slots));
  if (!r->slots)
    goto err;
  r->cap = capacity;
  r->last_pos = r->floor = start;
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
struct msgpos ring_last_pos(const struct ring *r) { return r->last_pos; }
struct msgpos ring_floor(const struct ring *r) { return r->floor; }
size_t ring_count(const struct ring *r) { return r->count; }

int ring_oldest_pos(const struct ring *r, struct msgpos *out)
{
  if (!r->count)
    return 0;
  *out = r->slots[r->head]->pos;
  return 1;
}

void ring_push(struct ring *r, struct message *m)
{
  if (r->count == r->cap) {
    struct message *old = r->slots[r->head];
    if (msgpos_cmp(old->pos, r->floor) > 0)
      r->floor = old->pos;
    message_unref(old);
    r->head = (r->head + 1) % r->cap;
    r->count--;
  }
  r->slots[(r->head + r->count) % r->cap] = message_ref(m);
  r->count++;
  r->last_seq = m->seq;
  r->last_pos = m->pos;
}

void ring_raise_floor(struct ring *r, struct msgpos pos)
{
  if (msgpos_cmp(pos, r->floor) > 0)
    r->floor = pos;
  if (msgpos_cmp(pos, r->last_pos) > 0)
    r->last_pos = pos;
}

enum ring_resume ring_check_resume(const struct ring *r, struct msgpos seen)
{
  if (msgpos_cmp(seen, r->last_pos) > 0)
    return RING_RESUME_UNKNOWN;
  if (msgpos_cmp(seen, r->floor) < 0)
    return RING_RESUME_TOO_OLD;
  return RING_RESUME_OK;
}

/* Index (0 = oldest) of the first entry positioned after `after`. */
static size_t first_after(const struct ring *r, struct msgpos after)
{
  size_t lo = 0, hi = r->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (msgpos_cmp(r->slots[(r->head + mid) % r->cap]->pos, after) <= 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

void ring_each_range(struct ring *r, struct msgpos after, uint64_t upto,
                     void (*fn)(struct message *m, void *arg), void *arg)
{
  for (size_t i = first_after(r, after); i < r->count; i++) {
    struct message *m = r->slots[(r->head + i) % r->cap];
    if (m->seq > upto)
      break;
    fn(m, arg);
  }
}
