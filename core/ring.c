/* The replay history: a circular array of message references in stream
 * order (the last --buffer messages), and per channel its last
 * --channel-history messages and the watermark of what it lost. A message is
 * held while either keeps it, and counted once against --buffer-bytes. */
#include "ring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sse.h"

/* A channel: the newest position it lost, and its last `keep` messages
 * (oldest at head). Open addressing, linear probing; name NULL is an empty
 * slot. */
struct chan {
  char *name;
  uint64_t hash;
  struct msgpos mark;
  struct message **hist;
  uint32_t head, n;
  uint32_t at; /* 1 + its index in the ring's heap while n > 0, else 0 */
};

struct ring {
  pthread_mutex_t lock;
  size_t cap, head, count; /* head: index of the oldest entry */
  uint64_t last_seq;
  struct msgpos last_pos, floor, start;
  struct message **slots;
  /* bounds beyond the count: 0 means none */
  size_t max_bytes, keep;
  double max_age;
  /* channels: at most nchans_max; one without an entry lost nothing after
   * marks_floor (raised when the table is cleared, and by ring_raise_floor:
   * a loss on every channel) */
  struct chan *chans;
  size_t nchans, chans_cap, nchans_max;
  /* the channels with history, a binary min-heap by their oldest entry's
   * position: the byte and age bounds find the oldest entry of all
   * channels without a scan (room for chans_cap) */
  struct chan **heap;
  size_t nheap;
  struct msgpos marks_floor;
  size_t held, bytes; /* distinct messages held, and their bytes with the channels' slots */
  double swept;       /* when the channels' histories were last checked for age */
  struct ring_stats stats;
};

static double mono(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct ring *ring_new(size_t capacity, struct msgpos start)
{
  struct ring *r = calloc(1, sizeof(*r));
  if (!r || capacity == 0)
    goto err;
  r->slots = calloc(capacity, sizeof(*r->slots));
  if (!r->slots)
    goto err;
  r->cap = capacity;
  r->last_pos = r->floor = r->marks_floor = r->start = start;
  r->nchans_max = RING_MARKS_PER_SLOT * capacity + RING_MARKS_MIN;
  pthread_mutex_init(&r->lock, NULL);
  return r;
err:
  free(r);
  return NULL;
}

void ring_set_limits(struct ring *r, size_t max_bytes, double max_age, size_t per_channel)
{
  r->max_bytes = max_bytes;
  r->max_age = max_age;
  r->keep = per_channel;
}

static size_t msg_bytes(const struct message *m)
{
  size_t n = sizeof(*m) + m->ntargets * sizeof(char *) + (m->frame ? sizeof(*m->frame) + m->frame->len : 0);
  for (uint32_t t = 0; t < m->ntargets; t++)
    n += strlen(m->targets[t]) + 1;
  return n;
}

static void hold(struct ring *r, struct message *m)
{
  message_ref(m);
  if (m->holds++ == 0) {
    r->held++;
    r->bytes += msg_bytes(m);
  }
}

static void let_go(struct ring *r, struct message *m, enum ring_cause cause)
{
  if (--m->holds == 0) {
    size_t b = msg_bytes(m);
    r->held--;
    r->bytes -= b;
    r->stats.evicted[cause]++;
    r->stats.evicted_bytes[cause] += b;
  }
  message_unref(m);
}

static void raise_pos(struct msgpos *to, struct msgpos pos)
{
  if (msgpos_cmp(pos, *to) > 0)
    *to = pos;
}

static uint64_t hash_name(const char *s)
{
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The slot of name: its entry, or the empty slot where it would go. */
static struct chan *slot_of(const struct ring *r, const char *name, uint64_t h)
{
  for (size_t i = h & (r->chans_cap - 1);; i = (i + 1) & (r->chans_cap - 1)) {
    struct chan *c = &r->chans[i];
    if (!c->name || (c->hash == h && strcmp(c->name, name) == 0))
      return c;
  }
}

static struct chan *chan_find(const struct ring *r, const char *name)
{
  if (!r->chans_cap)
    return NULL;
  struct chan *c = slot_of(r, name, hash_name(name));
  return c->name ? c : NULL;
}

/* Is m in the ring (not only in channel histories)? The ring holds a
 * suffix of the stream. */
static int in_ring(const struct ring *r, const struct message *m)
{
  return r->count && msgpos_cmp(m->pos, r->slots[r->head]->pos) >= 0;
}

/* ---- the heap of channel histories ---- */

static int older(const struct chan *a, const struct chan *b)
{
  return msgpos_cmp(a->hist[a->head]->pos, b->hist[b->head]->pos) < 0;
}

static void heap_put(struct ring *r, size_t i, struct chan *c)
{
  r->heap[i] = c;
  c->at = (uint32_t)i + 1;
}

static void heap_up(struct ring *r, size_t i)
{
  struct chan *c = r->heap[i];
  for (size_t p; i > 0 && older(c, r->heap[p = (i - 1) / 2]); i = p)
    heap_put(r, i, r->heap[p]);
  heap_put(r, i, c);
}

static void heap_down(struct ring *r, size_t i)
{
  struct chan *c = r->heap[i];
  for (size_t k; (k = 2 * i + 1) < r->nheap; i = k) {
    if (k + 1 < r->nheap && older(r->heap[k + 1], r->heap[k]))
      k++;
    if (!older(r->heap[k], c))
      break;
    heap_put(r, i, r->heap[k]);
  }
  heap_put(r, i, c);
}

/* c's oldest entry changed, or c was emptied or got its first entry. */
static void heap_fix(struct ring *r, struct chan *c)
{
  if (c->n && !c->at) {
    heap_put(r, r->nheap++, c);
    heap_up(r, r->nheap - 1);
  } else if (c->n) {
    heap_down(r, c->at - 1); /* its oldest entry only ever gets newer */
  } else if (c->at) {
    size_t i = c->at - 1;
    struct chan *last = r->heap[--r->nheap];
    c->at = 0;
    if (i < r->nheap) {
      heap_put(r, i, last);
      heap_up(r, i);
      heap_down(r, last->at - 1);
    }
  }
}

static void chan_drop(struct ring *r, struct chan *c, enum ring_cause cause)
{
  raise_pos(&r->marks_floor, c->mark);
  for (uint32_t i = 0; i < c->n; i++) {
    struct message *m = c->hist[(c->head + i) % r->keep];
    if (!in_ring(r, m)) /* in no other place: lost to it */
      raise_pos(&r->marks_floor, m->pos);
    let_go(r, m, cause);
  }
  if (c->hist)
    r->bytes -= r->keep * sizeof(*c->hist);
  free(c->hist);
  r->bytes -= strlen(c->name) + 1;
  free(c->name);
  memset(c, 0, sizeof(*c));
}

/* Forgets every channel: what they held or lost now counts as lost for
 * every channel (coarser, never a missed loss). */
static void clear_chans(struct ring *r, enum ring_cause cause)
{
  for (size_t i = 0; i < r->chans_cap; i++)
    if (r->chans[i].name)
      chan_drop(r, &r->chans[i], cause);
  r->nchans = 0;
  r->nheap = 0;
  r->stats.channel_clears++;
}

static int grow_chans(struct ring *r)
{
  size_t ncap = r->chans_cap ? r->chans_cap * 2 : 64;
  struct chan *old = r->chans, *nc = calloc(ncap, sizeof(*nc));
  struct chan **heap = nc ? realloc(r->heap, ncap * sizeof(*heap)) : NULL;
  if (!heap) {
    free(nc);
    return -1;
  }
  size_t ocap = r->chans_cap;
  r->chans = nc;
  r->chans_cap = ncap;
  r->heap = heap;
  r->nheap = 0; /* the channels move: the heap is made anew */
  for (size_t i = 0; i < ocap; i++)
    if (old[i].name) {
      struct chan *c = slot_of(r, old[i].name, old[i].hash);
      *c = old[i];
      c->at = 0;
      heap_fix(r, c);
    }
  free(old);
  return 0;
}

/* name's entry, made when missing; NULL without memory (then the caller
 * counts its loss in marks_floor). */
static struct chan *chan_get(struct ring *r, const char *name)
{
  struct chan *c = chan_find(r, name);
  if (c)
    return c;
  if (r->nchans >= r->nchans_max && r->chans_cap)
    clear_chans(r, RING_BY_CHANNELS);
  if ((r->nchans + 1) * 4 > r->chans_cap * 3 && grow_chans(r) != 0)
    return NULL;
  uint64_t h = hash_name(name);
  c = slot_of(r, name, h);
  if (!(c->name = strdup(name)))
    return NULL;
  c->hash = h;
  c->mark = r->marks_floor;
  r->nchans++;
  r->bytes += strlen(name) + 1;
  return c;
}

static void lost(struct ring *r, const char *name, struct msgpos pos)
{
  struct chan *c = chan_get(r, name);
  raise_pos(c ? &c->mark : &r->marks_floor, pos);
}

/* Does c's history hold m? It holds c's newest messages, in order. */
static int chan_holds(const struct ring *r, const struct chan *c, const struct message *m)
{
  return c && c->n && msgpos_cmp(c->hist[c->head % r->keep]->pos, m->pos) <= 0;
}

static void evict_main(struct ring *r, enum ring_cause cause)
{
  struct message *m = r->slots[r->head];
  raise_pos(&r->floor, m->pos);
  r->head = (r->head + 1) % r->cap;
  r->count--;
  for (uint32_t t = 0; t < m->ntargets; t++)
    if (!chan_holds(r, chan_find(r, m->targets[t]), m))
      lost(r, m->targets[t], m->pos);
  let_go(r, m, cause);
}

static void drop_chan_head(struct ring *r, struct chan *c, enum ring_cause cause)
{
  struct message *m = c->hist[c->head];
  c->head = (c->head + 1) % (uint32_t)r->keep;
  c->n--;
  if (!in_ring(r, m)) /* not in the ring either: lost to c */
    raise_pos(&c->mark, m->pos);
  heap_fix(r, c);
  let_go(r, m, cause);
}

static void keep_in_chan(struct ring *r, const char *name, struct message *m)
{
  struct chan *c = chan_get(r, name);
  if (!c)
    return;
  if (!c->hist) {
    if (!(c->hist = calloc(r->keep, sizeof(*c->hist))))
      return;
    r->bytes += r->keep * sizeof(*c->hist);
  }
  if (c->n && c->hist[(c->head + c->n - 1) % r->keep] == m)
    return; /* named twice */
  if (c->n == r->keep)
    drop_chan_head(r, c, RING_BY_COUNT);
  c->hist[(c->head + c->n) % r->keep] = m;
  if (c->n++ == 0)
    heap_fix(r, c);
  hold(r, m);
}

/* The channel whose history holds the oldest entry of all; NULL when none. */
static struct chan *oldest_chan(const struct ring *r) { return r->nheap ? r->heap[0] : NULL; }

/* The age and byte bounds (the newest message may go too: it was
 * delivered live; only replay misses it). */
static void enforce(struct ring *r, double now)
{
  if (r->max_age > 0) {
    while (r->count && now - r->slots[r->head]->published_at > r->max_age)
      evict_main(r, RING_BY_AGE);
    struct chan *c;
    if (r->keep && now - r->swept >= 1) { /* (entries age in position order) */
      r->swept = now;
      while ((c = oldest_chan(r)) && now - c->hist[c->head]->published_at > r->max_age)
        drop_chan_head(r, c, RING_BY_AGE);
    }
  }
  if (!r->max_bytes)
    return;
  while (r->bytes > r->max_bytes && r->count)
    evict_main(r, RING_BY_BYTES);
  struct chan *c;
  while (r->bytes > r->max_bytes && (c = oldest_chan(r)))
    drop_chan_head(r, c, RING_BY_BYTES);
  if (r->bytes > r->max_bytes && r->nchans) /* the channels' own slots */
    clear_chans(r, RING_BY_BYTES);
}

void ring_free(struct ring *r)
{
  if (!r)
    return;
  for (size_t i = 0; i < r->count; i++)
    message_unref(r->slots[(r->head + i) % r->cap]);
  for (size_t i = 0; i < r->chans_cap; i++) {
    struct chan *c = &r->chans[i];
    for (uint32_t k = 0; c->name && k < c->n; k++)
      message_unref(c->hist[(c->head + k) % r->keep]);
    free(c->hist);
    free(c->name);
  }
  free(r->chans);
  free(r->heap);
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
size_t ring_marks(const struct ring *r) { return r->nchans; }

int ring_oldest_pos(const struct ring *r, struct msgpos *out)
{
  if (!r->count)
    return 0;
  *out = r->slots[r->head]->pos;
  return 1;
}

struct msgpos ring_channel_mark(const struct ring *r, const char *channel)
{
  const struct chan *c = chan_find(r, channel);
  if (c && msgpos_cmp(c->mark, r->marks_floor) > 0)
    return c->mark;
  return r->marks_floor;
}

int ring_channel_lost(const struct ring *r, const char *channel, struct msgpos after)
{
  if (msgpos_cmp(after, r->start) < 0)
    after = r->start; /* nothing is positioned before the start */
  return msgpos_cmp(ring_channel_mark(r, channel), after) > 0;
}

void ring_push(struct ring *r, struct message *m)
{
  if (r->count == r->cap)
    evict_main(r, RING_BY_COUNT);
  r->slots[(r->head + r->count) % r->cap] = m;
  r->count++;
  hold(r, m);
  r->last_seq = m->seq;
  r->last_pos = m->pos;
  for (uint32_t t = 0; r->keep && t < m->ntargets; t++)
    keep_in_chan(r, m->targets[t], m);
  enforce(r, m->published_at);
}

void ring_expire(struct ring *r) { enforce(r, mono()); }

void ring_raise_floor(struct ring *r, struct msgpos pos)
{
  raise_pos(&r->floor, pos);
  raise_pos(&r->marks_floor, pos); /* lost on every channel */
  raise_pos(&r->last_pos, pos);
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
  if (msgpos_cmp(seen, r->last_pos) > 0)
    return RING_RESUME_UNKNOWN;
  /* a loss is always at or before the floor: past it nothing was lost */
  if (msgpos_cmp(seen, r->floor) >= 0)
    return RING_RESUME_OK;
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

static int by_seq(const void *a, const void *b)
{
  const struct message *x = *(struct message *const *)a, *y = *(struct message *const *)b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

void ring_each_for(struct ring *r, struct msgpos after, uint64_t upto,
                   const char *const *channels, size_t n,
                   void (*fn)(struct message *m, void *arg), void *arg)
{
  /* What only the channels' histories still hold (older than the ring),
   * merged in stream order, each message once; then the ring. */
  size_t k = 0, cap = r->keep * n;
  struct message **older = cap ? malloc(cap * sizeof(*older)) : NULL;
  for (size_t i = 0; older && i < n; i++) {
    const struct chan *c = chan_find(r, channels[i]);
    for (uint32_t j = 0; c && j < c->n; j++) {
      struct message *m = c->hist[(c->head + j) % r->keep];
      if (msgpos_cmp(m->pos, after) > 0 && !in_ring(r, m) && m->seq <= upto)
        older[k++] = m;
    }
  }
  if (k > 1)
    qsort(older, k, sizeof(*older), by_seq);
  for (size_t i = 0; i < k; i++)
    if (i == 0 || older[i] != older[i - 1])
      fn(older[i], arg);
  free(older);
  ring_each_range(r, after, upto, fn, arg);
}

size_t ring_channel_history(struct ring *r, const char *channel, struct msgpos after,
                            size_t limit, void (*fn)(struct message *m, void *arg), void *arg)
{
  size_t sent = 0;
  const struct chan *c = chan_find(r, channel);
  for (uint32_t j = 0; c && j < c->n && sent < limit; j++) {
    struct message *m = c->hist[(c->head + j) % r->keep];
    if (msgpos_cmp(m->pos, after) > 0 && !in_ring(r, m)) {
      fn(m, arg);
      sent++;
    }
  }
  for (size_t i = first_after(r, after); i < r->count && sent < limit; i++) {
    struct message *m = r->slots[(r->head + i) % r->cap];
    for (uint32_t t = 0; t < m->ntargets; t++)
      if (strcmp(m->targets[t], channel) == 0) {
        fn(m, arg);
        sent++;
        break;
      }
  }
  return sent;
}

void ring_get_stats(const struct ring *r, struct ring_stats *out)
{
  *out = r->stats;
  out->held = r->held;
  out->bytes = r->bytes;
  out->channels = r->nchans;
  double oldest = r->count ? r->slots[r->head]->published_at : 0;
  const struct chan *c = oldest_chan(r);
  if (c && (!oldest || c->hist[c->head]->published_at < oldest))
    oldest = c->hist[c->head]->published_at;
  out->oldest_age = oldest ? mono() - oldest : 0;
}
