/* The channel index: a chained hash table of channels, each with an array of
 * subscriptions. A subscription remembers its slot in each channel's array,
 * so unsubscribing is O(channels) with swap-removal. Empty channels are freed
 * so per-user channels do not accumulate. */
#include "hub.h"
#include "message.h"

#include <stdlib.h>
#include <string.h>

struct channel {
  struct channel *next; /* hash chain */
  uint64_t hash;
  size_t n, cap;
  struct hub_sub **subs;
  char name[];
};

struct membership {
  struct channel *ch;
  size_t slot; /* index of the subscription in ch->subs */
};

struct hub_sub {
  void *owner;
  uint64_t stamp; /* seq of the last message routed to it: skips repeats */
  size_t n;
  struct membership m[];
};

struct hub {
  struct channel **buckets;
  size_t nbuckets, nchannels;
};

uint64_t hub_hash(const char *s)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h;
}

struct hub *hub_new(void)
{
  struct hub *h = calloc(1, sizeof(*h));
  if (!h)
    return NULL;
  h->nbuckets = 64;
  h->buckets = calloc(h->nbuckets, sizeof(*h->buckets));
  if (!h->buckets) {
    free(h);
    return NULL;
  }
  return h;
}

void hub_free(struct hub *h)
{
  if (!h)
    return;
  for (size_t i = 0; i < h->nbuckets; i++) {
    struct channel *c = h->buckets[i];
    while (c) {
      struct channel *next = c->next;
      free(c->subs);
      free(c);
      c = next;
    }
  }
  free(h->buckets);
  free(h);
}

static struct channel *find(const struct hub *h, const char *name, uint64_t hash)
{
  for (struct channel *c = h->buckets[hash & (h->nbuckets - 1)]; c; c = c->next)
    if (c->hash == hash && strcmp(c->name, name) == 0)
      return c;
  return NULL;
}

static void grow(struct hub *h)
{
  size_t nb = h->nbuckets * 2;
  struct channel **b = calloc(nb, sizeof(*b));
  if (!b)
    return; /* keep the longer chains; still correct */
  for (size_t i = 0; i < h->nbuckets; i++) {
    struct channel *c = h->buckets[i];
    while (c) {
      struct channel *next = c->next;
      c->next = b[c->hash & (nb - 1)];
      b[c->hash & (nb - 1)] = c;
      c = next;
    }
  }
  free(h->buckets);
  h->buckets = b;
  h->nbuckets = nb;
}

static struct channel *get_or_add(struct hub *h, const char *name)
{
  uint64_t hash = hub_hash(name);
  struct channel *c = find(h, name, hash);
  if (c)
    return c;
  size_t len = strlen(name) + 1;
  c = calloc(1, sizeof(*c) + len);
  if (!c)
    return NULL;
  memcpy(c->name, name, len);
  c->hash = hash;
  c->next = h->buckets[hash & (h->nbuckets - 1)];
  h->buckets[hash & (h->nbuckets - 1)] = c;
  if (++h->nchannels > h->nbuckets)
    grow(h);
  return c;
}

static void remove_channel(struct hub *h, struct channel *c)
{
  struct channel **pp = &h->buckets[c->hash & (h->nbuckets - 1)];
  while (*pp != c)
    pp = &(*pp)->next;
  *pp = c->next;
  h->nchannels--;
  free(c->subs);
  free(c);
}

static int channel_add(struct channel *c, struct hub_sub *s, size_t *slot)
{
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 4;
    struct hub_sub **subs = realloc(c->subs, cap * sizeof(*subs));
    if (!subs)
      return -1;
    c->subs = subs;
    c->cap = cap;
  }
  *slot = c->n;
  c->subs[c->n++] = s;
  return 0;
}

/* Removes the entry at slot, moving the last entry into it. */
static void channel_remove(struct hub *h, struct channel *c, size_t slot)
{
  struct hub_sub *last = c->subs[--c->n];
  if (slot != c->n) {
    c->subs[slot] = last;
    for (size_t i = 0; i < last->n; i++)
      if (last->m[i].ch == c)
        last->m[i].slot = slot;
  }
  if (c->n == 0)
    remove_channel(h, c);
}

struct hub_sub *hub_subscribe(struct hub *h, void *owner, const char *const *channels, size_t n)
{
  if (n == 0)
    return NULL;
  struct hub_sub *s = calloc(1, sizeof(*s) + n * sizeof(s->m[0]));
  if (!s)
    return NULL;
  s->owner = owner;
  for (size_t i = 0; i < n; i++) {
    struct channel *c = get_or_add(h, channels[i]);
    if (!c)
      goto err;
    int dup = 0;
    for (size_t j = 0; j < s->n; j++)
      dup |= s->m[j].ch == c;
    if (dup)
      continue;
    if (channel_add(c, s, &s->m[s->n].slot) != 0) {
      if (c->n == 0)
        remove_channel(h, c);
      goto err;
    }
    s->m[s->n++].ch = c;
  }
  return s;
err:
  hub_unsubscribe(h, s);
  return NULL;
}

void hub_unsubscribe(struct hub *h, struct hub_sub *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->n; i++)
    channel_remove(h, s->m[i].ch, s->m[i].slot);
  free(s);
}

size_t hub_route(struct hub *h, const struct message *m,
                 void (*deliver)(void *owner, const struct message *m, void *arg), void *arg)
{
  size_t calls = 0;
  for (uint32_t t = 0; t < m->ntargets; t++) {
    struct channel *c = find(h, m->targets[t], hub_hash(m->targets[t]));
    if (!c)
      continue;
    for (size_t i = 0; i < c->n; i++) {
      struct hub_sub *s = c->subs[i];
      if (s->stamp == m->seq && m->ntargets > 1)
        continue;
      s->stamp = m->seq;
      deliver(s->owner, m, arg);
      calls++;
    }
  }
  return calls;
}

int hub_sub_matches(const struct hub_sub *s, const struct message *m)
{
  for (uint32_t t = 0; t < m->ntargets; t++)
    for (size_t i = 0; i < s->n; i++)
      if (strcmp(s->m[i].ch->name, m->targets[t]) == 0)
        return 1;
  return 0;
}

size_t hub_channel_count(const struct hub *h) { return h->nchannels; }

size_t hub_subscribers(const struct hub *h, const char *ch)
{
  struct channel *c = find(h, ch, hub_hash(ch));
  return c ? c->n : 0;
}

size_t hub_sub_channels(const struct hub_sub *s, const char **out, size_t cap)
{
  size_t i;
  for (i = 0; i < s->n && i < cap; i++)
    out[i] = s->m[i].ch->name;
  return s->n;
}

void hub_each_channel(const struct hub *h, void (*fn)(const char *ch, size_t n, void *arg), void *arg)
{
  for (size_t i = 0; i < h->nbuckets; i++)
    for (struct channel *c = h->buckets[i]; c; c = c->next)
      fn(c->name, c->n, arg);
}
