/* Server-side subscriptions on the streams: the directory that finds a
 * user's streams and a stream by its connection id (across workers, under
 * gw->presence_lock), and the change of a live stream's channels when a
 * MESSAGE_SUBS reaches its worker.
 *
 * A connection id is "<worker>-<number>" (cluster mode: "<node>." first),
 * the number being (streams opened on that worker so far << 20) | slot, the
 * slot indexing the worker's table: so an id finds its stream in O(1)
 * without a map entry per stream, and never names a later stream. */
#include "client_impl.h"

#include <ctype.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub.h"
#include "log.h"
#include "ptrmap.h"
#include "shared.h"
#include "subs.h"
#include "validate.h"

#define SLOT_BITS 20
#define CLIENT_DIR_SLOTS (1u << SLOT_BITS) /* streams one worker may hold */

struct wslots {
  struct client **slot;
  uint32_t *free; /* stack of free slots */
  size_t n, cap, nfree;
  uint64_t opens;
};

struct client_dir {
  struct ptrmap users; /* (hash of user id | 1) -> first stream; chains through user_next */
  int nworkers;
  struct wslots w[];
};

struct client_dir *client_dir_new(int nworkers)
{
  struct client_dir *d = calloc(1, sizeof(*d) + (size_t)nworkers * sizeof(struct wslots));
  if (d)
    d->nworkers = nworkers;
  return d;
}

void client_dir_free(struct client_dir *d)
{
  if (!d)
    return;
  ptrmap_clear(&d->users);
  for (int i = 0; i < d->nworkers; i++) {
    free(d->w[i].slot);
    free(d->w[i].free);
  }
  free(d);
}

static const void *user_key(const char *user) { return (const void *)(uintptr_t)(hub_hash(user) | 1); }

int client_dir_add(struct client *c)
{
  struct client_dir *d = c->cs->gw->dir;
  struct wslots *ws = &d->w[c->cs->index];
  uint32_t slot;
  if (ws->nfree) {
    slot = ws->free[--ws->nfree];
  } else {
    if (ws->n == CLIENT_DIR_SLOTS)
      return -1;
    if (ws->n == ws->cap) {
      size_t cap = ws->cap ? ws->cap * 2 : 64;
      struct client **s = realloc(ws->slot, cap * sizeof(*s));
      if (s)
        ws->slot = s;
      uint32_t *f = s ? realloc(ws->free, cap * sizeof(*f)) : NULL;
      if (!f)
        return -1;
      ws->free = f;
      ws->cap = cap;
    }
    slot = (uint32_t)ws->n++;
  }
  if (c->user_id) {
    const void *k = user_key(c->user_id);
    struct client *head = ptrmap_get(&d->users, k);
    if (head)
      ptrmap_del(&d->users, k);
    if (ptrmap_put(&d->users, k, c) != 0) {
      if (head)
        ptrmap_put(&d->users, k, head); /* the slot it had is free again */
      ws->free[ws->nfree++] = slot;
      return -1;
    }
    c->user_next = head;
  }
  ws->slot[slot] = c;
  c->num = (++ws->opens << SLOT_BITS) | slot;
  return 0;
}

void client_dir_del(struct client *c)
{
  struct client_dir *d = c->cs->gw->dir;
  struct wslots *ws = &d->w[c->cs->index];
  if (!c->num)
    return;
  uint32_t slot = (uint32_t)(c->num & (CLIENT_DIR_SLOTS - 1));
  ws->slot[slot] = NULL;
  ws->free[ws->nfree++] = slot;
  c->num = 0;
  if (!c->user_id)
    return;
  const void *k = user_key(c->user_id);
  struct client *head = ptrmap_get(&d->users, k);
  if (head == c) {
    ptrmap_del(&d->users, k);
    if (c->user_next)
      ptrmap_put(&d->users, k, c->user_next); /* cannot grow: one was just removed */
  } else {
    for (struct client *x = head; x; x = x->user_next)
      if (x->user_next == c) {
        x->user_next = c->user_next;
        break;
      }
  }
  c->user_next = NULL;
}

void client_id(const struct client *c, char out[CLIENT_ID_MAX])
{
  const struct gateway *gw = c->cs->gw;
  snprintf(out, CLIENT_ID_MAX, "%s%s%d-%llu", gw->node, gw->node[0] ? "." : "", c->cs->index,
           (unsigned long long)c->num);
}

/* The stream a connection id names, under presence_lock; NULL when it is
 * not open here. */
static struct client *find_client(const struct gateway *gw, const char *id)
{
  const struct client_dir *d = gw->dir;
  size_t nl = strlen(gw->node);
  if (nl && (strncmp(id, gw->node, nl) != 0 || id[nl] != '.'))
    return NULL;
  const char *p = id + (nl ? nl + 1 : 0);
  char *end;
  if (!isdigit((unsigned char)*p))
    return NULL;
  long w = strtol(p, &end, 10);
  if (*end != '-' || w < 0 || w >= d->nworkers || !isdigit((unsigned char)end[1]))
    return NULL;
  unsigned long long num = strtoull(end + 1, &end, 10);
  size_t slot = num & (CLIENT_DIR_SLOTS - 1);
  const struct wslots *ws = &d->w[w];
  if (*end || slot >= ws->n || !ws->slot[slot] || ws->slot[slot]->num != num)
    return NULL;
  return ws->slot[slot];
}

size_t client_dir_count(struct gateway *gw, const char *user, const char *client)
{
  size_t n = 0;
  pthread_mutex_lock(&gw->presence_lock);
  if (user) {
    for (struct client *x = ptrmap_get(&gw->dir->users, user_key(user)); x; x = x->user_next)
      n += strcmp(x->user_id, user) == 0;
  } else {
    n = find_client(gw, client) != NULL;
  }
  pthread_mutex_unlock(&gw->presence_lock);
  return n;
}

/* One stream's new channel set; its hub and presence entries follow. */
static void change_one(struct client *c, const struct subs_change *ch, struct frame *event)
{
  struct clients *cs = c->cs;
  struct gateway *gw = cs->gw;
  size_t n, dropped;
  int changed;
  if (c->state != CLIENT_OPEN)
    return;
  char **next = subs_apply((const char *const *)c->channels, c->nchannels, ch, STREAM_MAX_CHANNELS,
                           &n, &changed, &dropped);
  struct hub_sub *sub = next && n ? hub_subscribe(cs->hub, c, (const char *const *)next, n) : NULL;
  if (!next || (n && !sub)) {
    for (size_t i = 0; next && i < n; i++)
      free(next[i]);
    free(next);
    client_close(c, "error");
    return;
  }
  if (dropped) {
    char id[CLIENT_ID_MAX];
    client_id(c, id);
    STAT_ADD(cs->stats->subs_dropped, dropped);
    log_event(LOG_WARN, "subscription_truncated", "client=%s dropped=%zu limit=%d", id, dropped,
              STREAM_MAX_CHANNELS);
  }
  hub_unsubscribe(cs->hub, c->sub);
  c->sub = sub;
  pthread_mutex_lock(&gw->presence_lock);
  hub_unsubscribe(gw->presence, c->presence);
  c->presence = n ? hub_subscribe(gw->presence, c, (const char *const *)next, n) : NULL;
  pthread_mutex_unlock(&gw->presence_lock);
  for (size_t i = 0; i < c->nchannels; i++)
    free(c->channels[i]);
  free(c->channels);
  c->channels = next;
  c->nchannels = n;
  if (changed) {
    STAT_ADD(cs->stats->subs_changed, 1);
    if (event)
      client_enqueue(c, event);
  }
}

void clients_subscription(struct clients *cs, const struct message *m)
{
  struct gateway *gw = cs->gw;
  const char *target = m->targets[0];
  struct subs_change ch = {0};
  const char **names = calloc(m->ntargets, sizeof(char *));
  struct client **mine = NULL;
  size_t nmine = 0, cap = 0;
  if (!names)
    return;
  ch.add = names;
  for (uint32_t i = 1; i < m->ntargets; i++)
    if (m->targets[i][0] == '+')
      names[ch.nadd++] = m->targets[i] + 1;
  ch.del = names + ch.nadd;
  for (uint32_t i = 1; i < m->ntargets; i++)
    if (m->targets[i][0] == '-')
      names[ch.nadd + ch.ndel++] = m->targets[i] + 1;
  /* This worker's streams the change names (only this thread frees them,
   * so they outlive the lock). */
  pthread_mutex_lock(&gw->presence_lock);
  struct client *x = target[0] == 'u' ? ptrmap_get(&gw->dir->users, user_key(target + 1))
                                      : find_client(gw, target + 1);
  for (; x; x = target[0] == 'u' ? x->user_next : NULL) {
    if (x->cs != cs || (target[0] == 'u' && strcmp(x->user_id, target + 1) != 0))
      continue;
    if (nmine == cap) {
      struct client **grown = realloc(mine, (cap = cap ? cap * 2 : 8) * sizeof(*mine));
      if (!grown)
        break;
      mine = grown;
    }
    mine[nmine++] = x;
  }
  pthread_mutex_unlock(&gw->presence_lock);
  for (size_t i = 0; i < nmine; i++)
    change_one(mine[i], &ch, m->frame);
  free(mine);
  free(names);
}
