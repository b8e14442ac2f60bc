/* The subscription store: a chained hash table of users, each with the
 * channels added for it and when it is forgotten; one lock. And the set
 * arithmetic a stream's change uses. */
#include "subs.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "validate.h"

struct user {
  struct user *next;
  uint64_t hash;
  double expires;
  size_t n;
  char **channels;
  char id[];
};

struct subs {
  pthread_mutex_t lock;
  struct user **buckets;
  size_t nbuckets, nusers, max_users;
  double ttl;
};

struct subs *subs_new(size_t max_users, double ttl)
{
  struct subs *s = calloc(1, sizeof(*s));
  if (!s)
    return NULL;
  s->nbuckets = 64;
  if (!(s->buckets = calloc(s->nbuckets, sizeof(*s->buckets)))) {
    free(s);
    return NULL;
  }
  s->max_users = max_users;
  s->ttl = ttl;
  pthread_mutex_init(&s->lock, NULL);
  return s;
}

static void user_free(struct user *u)
{
  for (size_t i = 0; i < u->n; i++)
    free(u->channels[i]);
  free(u->channels);
  free(u);
}

void subs_free(struct subs *s)
{
  if (!s)
    return;
  for (size_t i = 0; i < s->nbuckets; i++)
    for (struct user *u = s->buckets[i], *next; u; u = next) {
      next = u->next;
      user_free(u);
    }
  free(s->buckets);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* The user's slot in its chain (*slot NULL when absent); drops it first
 * when expired. */
static struct user **find(struct subs *s, const char *id, double now)
{
  uint64_t h = hub_hash(id);
  struct user **p = &s->buckets[h & (s->nbuckets - 1)];
  for (; *p; p = &(*p)->next)
    if ((*p)->hash == h && strcmp((*p)->id, id) == 0)
      break;
  if (*p && (*p)->expires <= now) {
    struct user *dead = *p;
    *p = dead->next;
    user_free(dead);
    s->nusers--;
  }
  return p;
}

static void grow(struct subs *s)
{
  size_t nb = s->nbuckets * 2;
  struct user **b = calloc(nb, sizeof(*b));
  if (!b)
    return; /* longer chains, still correct */
  for (size_t i = 0; i < s->nbuckets; i++)
    for (struct user *u = s->buckets[i], *next; u; u = next) {
      next = u->next;
      u->next = b[u->hash & (nb - 1)];
      b[u->hash & (nb - 1)] = u;
    }
  free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

/* Drops every user expired at now (when the store is full, before
 * refusing; all of them with now = +inf). */
static void sweep(struct subs *s, double now)
{
  for (size_t i = 0; i < s->nbuckets; i++)
    for (struct user **p = &s->buckets[i]; *p;) {
      if ((*p)->expires <= now) {
        struct user *dead = *p;
        *p = dead->next;
        user_free(dead);
        s->nusers--;
      } else {
        p = &(*p)->next;
      }
    }
}

/* Puts channels (taken) as user's set, or forgets the user when n is 0. */
static int put(struct subs *s, struct user **slot, const char *id, char **channels, size_t n,
               double expires)
{
  struct user *u = *slot;
  if (n == 0) {
    if (u) {
      *slot = u->next;
      user_free(u);
      s->nusers--;
    }
    free(channels);
    return SUBS_OK;
  }
  if (!u) {
    size_t len = strlen(id) + 1;
    if (!(u = calloc(1, sizeof(*u) + len)))
      return SUBS_NOMEM;
    memcpy(u->id, id, len);
    u->hash = hub_hash(id);
    u->next = NULL;
    *slot = u;
    if (++s->nusers > s->nbuckets)
      grow(s);
  }
  for (size_t i = 0; i < u->n; i++)
    free(u->channels[i]);
  free(u->channels);
  u->channels = channels;
  u->n = n;
  u->expires = expires;
  return SUBS_OK;
}

static void free_list(char **v, size_t n)
{
  for (size_t i = 0; v && i < n; i++)
    free(v[i]);
  free(v);
}

void subs_clear(struct subs *s)
{
  pthread_mutex_lock(&s->lock);
  sweep(s, HUGE_VAL);
  pthread_mutex_unlock(&s->lock);
}

int subs_record(struct subs *s, const struct subs_change *c, double now, int check_only)
{
  if (!c->user)
    return SUBS_OK;
  pthread_mutex_lock(&s->lock);
  struct user **slot = find(s, c->user, now);
  struct user *u = *slot;
  /* The kept set: what was added, minus what is removed now. */
  size_t n = 0, dropped = 0;
  int changed;
  char **next = subs_apply(u ? (const char *const *)u->channels : NULL, u ? u->n : 0, c,
                           (size_t)-1, &n, &changed, &dropped);
  int rc = next ? SUBS_OK : SUBS_NOMEM;
  if (rc == SUBS_OK && n > STREAM_MAX_CHANNELS)
    rc = SUBS_TOO_MANY_CHANNELS;
  if (rc == SUBS_OK && !u && n > 0 && s->nusers >= s->max_users) {
    sweep(s, now);
    slot = find(s, c->user, now);
    if (s->nusers >= s->max_users)
      rc = SUBS_FULL;
  }
  if (rc != SUBS_OK || check_only) {
    free_list(next, n);
    pthread_mutex_unlock(&s->lock);
    return rc;
  }
  rc = put(s, slot, c->user, next, n, now + s->ttl);
  if (rc != SUBS_OK)
    free_list(next, n);
  pthread_mutex_unlock(&s->lock);
  return rc;
}

int subs_set(struct subs *s, const char *user, const char *const *channels, size_t n,
             double expires)
{
  char **copy = n ? calloc(n, sizeof(char *)) : NULL;
  if (n && !copy)
    return SUBS_NOMEM;
  for (size_t i = 0; i < n; i++)
    if (!(copy[i] = strdup(channels[i]))) {
      free_list(copy, i);
      return SUBS_NOMEM;
    }
  pthread_mutex_lock(&s->lock);
  struct user **slot = find(s, user, 0);
  int rc = put(s, slot, user, copy, n, expires);
  pthread_mutex_unlock(&s->lock);
  if (rc != SUBS_OK)
    free_list(copy, n);
  return rc;
}

/* Is name one of the n strings of v? */
static int has(const char *const *v, size_t n, const char *name)
{
  for (size_t i = 0; i < n; i++)
    if (strcmp(v[i], name) == 0)
      return 1;
  return 0;
}

size_t subs_merge(struct subs *s, const char *user, double now, char ***list, size_t *n,
                  size_t max)
{
  size_t added = 0;
  if (!user)
    return 0;
  pthread_mutex_lock(&s->lock);
  struct user *u = *find(s, user, now);
  for (size_t i = 0; u && i < u->n && *n < max; i++) {
    if (has((const char *const *)*list, *n, u->channels[i]))
      continue;
    char **grown = realloc(*list, (*n + 1) * sizeof(char *));
    char *copy = strdup(u->channels[i]);
    if (grown)
      *list = grown;
    if (!grown || !copy) {
      free(copy);
      break;
    }
    (*list)[(*n)++] = copy;
    added++;
  }
  pthread_mutex_unlock(&s->lock);
  return added;
}

void subs_counts(struct subs *s, double now, size_t *users, size_t *channels)
{
  pthread_mutex_lock(&s->lock);
  sweep(s, now);
  size_t total = 0;
  for (size_t i = 0; i < s->nbuckets; i++)
    for (struct user *u = s->buckets[i]; u; u = u->next)
      total += u->n;
  *users = s->nusers;
  *channels = total;
  pthread_mutex_unlock(&s->lock);
}

char **subs_apply(const char *const *current, size_t n, const struct subs_change *c, size_t max,
                  size_t *out_n, int *changed, size_t *dropped)
{
  size_t cap = n + c->nadd, k = 0;
  char **out = calloc(cap ? cap : 1, sizeof(char *));
  *out_n = 0;
  *changed = 0;
  *dropped = 0;
  if (!out)
    return NULL;
  for (size_t pass = 0; pass < 2; pass++) {
    const char *const *from = pass ? c->add : current;
    size_t m = pass ? c->nadd : n;
    for (size_t i = 0; i < m; i++) {
      const char *name = from[i];
      if (!pass && has(c->del, c->ndel, name)) {
        *changed = 1; /* a current channel removed */
        continue;
      }
      if (has((const char *const *)out, k, name))
        continue;
      if (k >= max) {
        (*dropped)++;
        continue;
      }
      if (!(out[k] = strdup(name))) {
        free_list(out, k);
        return NULL;
      }
      k++;
      *changed |= pass; /* a new channel joined */
    }
  }
  *out_n = k;
  return out;
}

#define SUBS_MAX_ID 256 /* bytes in a user or connection id */

static const char *bad(char *field, size_t fieldlen, const char *name, char *msg, size_t msglen,
                       const char *fmt, const char *arg, long n)
{
  snprintf(field, fieldlen, "%s", name);
  snprintf(msg, msglen, fmt, arg, n);
  return msg;
}

static int id_ok(const char *s)
{
  size_t len = strlen(s);
  if (len == 0 || len > SUBS_MAX_ID)
    return 0;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 0x20)
      return 0;
  return 1;
}

const char *subs_check(const struct subs_change *c, char *field, size_t fieldlen,
                                char *msg, size_t msglen)
{
  field[0] = '\0';
  if (!c->user == !c->client)
    return bad(field, fieldlen, "user", msg, msglen, "give exactly one of user and client%s", "", 0);
  if (!id_ok(c->user ? c->user : c->client))
    return bad(field, fieldlen, c->user ? "user" : "client", msg, msglen,
               "%s must be 1 to %ld bytes without control characters", c->user ? "user" : "client",
               SUBS_MAX_ID);
  if (c->nadd + c->ndel == 0)
    return bad(field, fieldlen, "subscribe", msg, msglen,
               "nothing to change: subscribe and unsubscribe are both empty%s", "", 0);
  for (int list = 0; list < 2; list++) {
    const char *name = list ? "unsubscribe" : "subscribe";
    const char *const *v = list ? c->del : c->add;
    size_t n = list ? c->ndel : c->nadd;
    if (n > STREAM_MAX_CHANNELS)
      return bad(field, fieldlen, name, msg, msglen, "%s names more than %ld channels", name,
                 STREAM_MAX_CHANNELS);
    for (size_t i = 0; i < n; i++) {
      if (!channel_name_ok(v[i], strlen(v[i])))
        return bad(field, fieldlen, name, msg, msglen,
                   "%s: a channel name is 1 to %ld bytes without control characters", name,
                   CHANNEL_MAX_LEN);
      for (size_t k = 0; list && k < c->nadd; k++)
        if (strcmp(v[i], c->add[k]) == 0)
          return bad(field, fieldlen, name, msg, msglen,
                     "channel \"%.200s\" is in both subscribe and unsubscribe", v[i], 0);
    }
  }
  return NULL;
}

