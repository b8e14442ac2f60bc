/* The single-node table of idempotency keys: a chained hash for lookups
 * and a FIFO in insertion order, which is also expiry order (one window
 * for every key), so forgetting is a walk from the head. */
#include "idem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
  struct entry *chain; /* next in its bucket */
  struct entry *older, *newer;
  double at;
  struct msgpos first;
  size_t n;
  unsigned char digest[IDEM_DIGEST_LEN];
  size_t keylen;
  char key[]; /* not NUL-terminated */
};

struct idem {
  struct entry **buckets;
  size_t nbuckets, count, max_keys;
  double window;
  struct entry *oldest, *newest;
};

static uint64_t hash(const char *s, size_t len)
{
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 1099511628211ULL;
  }
  return h;
}

struct idem *idem_new(size_t max_keys, double window)
{
  struct idem *t = calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->nbuckets = 64;
  t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
  if (!t->buckets) {
    free(t);
    return NULL;
  }
  t->max_keys = max_keys ? max_keys : 1;
  t->window = window;
  return t;
}

void idem_free(struct idem *t)
{
  if (!t)
    return;
  for (struct entry *e = t->oldest, *next; e; e = next) {
    next = e->newer;
    free(e);
  }
  free(t->buckets);
  free(t);
}

size_t idem_count(const struct idem *t) { return t->count; }

static struct entry **slot(struct idem *t, const char *key, size_t keylen)
{
  return &t->buckets[hash(key, keylen) & (t->nbuckets - 1)];
}

static void forget_oldest(struct idem *t)
{
  struct entry *e = t->oldest;
  struct entry **p = slot(t, e->key, e->keylen);
  while (*p != e)
    p = &(*p)->chain;
  *p = e->chain;
  t->oldest = e->newer;
  if (t->oldest)
    t->oldest->older = NULL;
  else
    t->newest = NULL;
  t->count--;
  free(e);
}

static void expire(struct idem *t, double now)
{
  while (t->oldest && (t->oldest->at + t->window <= now || t->count > t->max_keys))
    forget_oldest(t);
}

enum idem_result idem_lookup(struct idem *t, const char *key, size_t keylen,
                             const unsigned char digest[IDEM_DIGEST_LEN], double now,
                             struct msgpos *first, size_t *n)
{
  expire(t, now);
  for (struct entry *e = *slot(t, key, keylen); e; e = e->chain) {
    if (e->keylen != keylen || memcmp(e->key, key, keylen) != 0)
      continue;
    if (memcmp(e->digest, digest, IDEM_DIGEST_LEN) != 0)
      return IDEM_CONFLICT;
    *first = e->first;
    *n = e->n;
    return IDEM_REPEAT;
  }
  return IDEM_NEW;
}

/* Doubles the buckets when the chains grow long; a failure only keeps
 * them long. */
static void grow(struct idem *t)
{
  size_t nb = t->nbuckets * 2;
  struct entry **b = calloc(nb, sizeof(*b));
  if (!b)
    return;
  for (size_t i = 0; i < t->nbuckets; i++) {
    for (struct entry *e = t->buckets[i], *next; e; e = next) {
      next = e->chain;
      struct entry **p = &b[hash(e->key, e->keylen) & (nb - 1)];
      e->chain = *p;
      *p = e;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

int idem_remember(struct idem *t, const char *key, size_t keylen,
                  const unsigned char digest[IDEM_DIGEST_LEN], double now, struct msgpos first,
                  size_t n)
{
  struct entry *e = malloc(sizeof(*e) + keylen);
  if (!e)
    return -1;
  e->at = now;
  e->first = first;
  e->n = n;
  memcpy(e->digest, digest, IDEM_DIGEST_LEN);
  e->keylen = keylen;
  memcpy(e->key, key, keylen);
  if (t->count >= t->nbuckets)
    grow(t);
  struct entry **p = slot(t, key, keylen);
  e->chain = *p;
  *p = e;
  e->newer = NULL;
  e->older = t->newest;
  if (t->newest)
    t->newest->newer = e;
  else
    t->oldest = e;
  t->newest = e;
  t->count++;
  expire(t, now); /* past max_keys: the oldest goes */
  return 0;
}

int idem_key_valid(const char *s)
{
  size_t len = 0;
  for (; s[len]; len++)
    if ((unsigned char)s[len] < 0x20 || (unsigned char)s[len] > 0x7e || len >= IDEM_KEY_MAX)
      return 0;
  return len > 0;
}
