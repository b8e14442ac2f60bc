/* The replay ring: a circular array of message references in stream order,
 * and the watermarks of what it evicted, per channel. */
#include "ring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* A channel's watermark: the newest position evicted from the ring among
 * the messages sent to it. Open addressing, linear probing; name NULL is
 * an empty slot. */
struct mark {
  char *name;
  uint64_t hash;
  struct msgpos pos;
};

struct ring {
  pthread_mutex_t lock;
  size_t cap, head, count; /* head: index of the oldest entry */
  uint64_t last_seq;
  struct msgpos last_pos, floor;
  struct message **slots;
  /* watermarks: at most nmarks_max channels; a channel without one lost
   * nothing after marks_floor (raised when the table is cleared, and by
   * ring_raise_floor: a loss on every channel) */
  struct mark *marks;
  size_t nmarks, marks_cap, nmarks_max;
  struct msgpos marks_floor;
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
  r->last_pos = r->floor = r->marks_floor = start;
  r->nmarks_max = RING_MARKS_PER_SLOT * capacity + RING_MARKS_MIN;
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
  for (size_t i = 0; i < r->marks_cap; i++)
    free(r->marks[i].name);
  free(r->marks);
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

static uint64_t hash_name(const char *s)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static struct mark *find_mark(const struct ring *r, const char *name, uint64_t h)
{
  if (!r->marks_cap)
    return NULL;
  for (size_t i = h & (r->marks_cap - 1);; i = (i + 1) & (r->marks_cap - 1)) {
    struct mark *k = &r->marks[i];
    if (!k->name || (k->hash == h && strcmp(k->name, name) == 0))
      return k;
  }
}

/* Forgets every watermark: what they said now holds for every channel. */
static void clear_marks(struct ring *r)
{
  for (size_t i = 0; i < r->marks_cap; i++) {
    if (r->marks[i].name && msgpos_cmp(r->marks[i].pos, r->marks_floor) > 0)
      r->marks_floor = r->marks[i].pos;
    free(r->marks[i].name);
    r->marks[i].name = NULL;
  }
  r->nmarks = 0;
}

static void grow_marks(struct ring *r)
{
  size_t ncap = r->marks_cap ? r->marks_cap * 2 : 64;
  struct mark *old = r->marks, *nm = calloc(ncap, sizeof(*nm));
  if (!nm) { /* no room: coarser, still right */
    clear_marks(r);
    return;
  }
  size_t ocap = r->marks_cap;
  r->marks = nm;
  r->marks_cap = ncap;
  for (size_t i = 0; i < ocap; i++)
    if (old[i].name)
      *find_mark(r, old[i].name, old[i].hash) = old[i];
  free(old);
}

/* m leaves the ring: each of its channels has lost up to m->pos. */
static void mark_evicted(struct ring *r, const struct message *m)
{
  for (uint32_t t = 0; t < m->ntargets; t++) {
    if (r->nmarks >= r->nmarks_max)
      clear_marks(r);
    if ((r->nmarks + 1) * 4 > r->marks_cap * 3)
      grow_marks(r);
    uint64_t h = hash_name(m->targets[t]);
    struct mark *k = r->marks_cap ? find_mark(r, m->targets[t], h) : NULL;
    if (!k) /* the table could not grow: every channel shares one mark */
      continue;
    if (!k->name) {
      if (!(k->name = strdup(m->targets[t]))) {
        clear_marks(r);
        if (msgpos_cmp(m->pos, r->marks_floor) > 0)
          r->marks_floor = m->pos;
        continue;
      }
      k->hash = h;
      k->pos = m->pos;
      r->nmarks++;
    } else if (msgpos_cmp(m->pos, k->pos) > 0) {
      k->pos = m->pos;
    }
  }
  if (!r->marks_cap && msgpos_cmp(m->pos, r->marks_floor) > 0)
    r->marks_floor = m->pos;
}

struct msgpos ring_channel_mark(const struct ring *r, const char *channel)
{
  const struct mark *k = find_mark(r, channel, hash_name(channel));
  if (k && k->name && msgpos_cmp(k->pos, r->marks_floor) > 0)
    return k->pos;
  return r->marks_floor;
}

size_t ring_marks(const struct ring *r) { return r->nmarks; }

void ring_push(struct ring *r, struct message *m)
{
  if (r->count == r->cap) {
    struct message *old = r->slots[r->head];
    if (msgpos_cmp(old->pos, r->floor) > 0)
      r->floor = old->pos;
    mark_evicted(r, old);
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
  if (msgpos_cmp(pos, r->marks_floor) > 0)
    r->marks_floor = pos; /* lost on every channel */
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

enum ring_resume ring_check_resume_channels(const struct ring *r, struct msgpos seen,
                                            const char *const *channels, size_t n)
{
  enum ring_resume v = ring_check_resume(r, seen);
  if (v != RING_RESUME_TOO_OLD)
    return v;
  /* Older than what the ring holds: fine when none of the channels lost a
   * message positioned after seen. */
  for (size_t i = 0; i < n; i++)
    if (msgpos_cmp(ring_channel_mark(r, channels[i]), seen) > 0)
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
