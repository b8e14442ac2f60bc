/* Publishing: id, frame, ring, inboxes; one lock. */
#include "broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "log.h"
#include "ring.h"
#include "sse.h"
#include "subs.h"

/* Under the ring lock: frame it, keep it, hand it to every worker. */
static int append(struct gateway *gw, struct msgpos pos, const char *id, const struct pub_item *it,
                  enum message_kind kind)
{
  struct frame *f = sse_frame_message(id, it->event, it->handler_id, it->json, it->json_len);
  struct message *m = f ? message_new(ring_last_seq(gw->ring) + 1, it->targets, it->ntargets, f) : NULL;
  if (!m) {
    frame_unref(f);
    return -1;
  }
  m->pos = pos;
  m->kind = kind;
  ring_push(gw->ring, m);
  for (int i = 0; i < gw->nsinks; i++)
    gw->sinks[i].push(gw->sinks[i].arg, m);
  message_unref(m);
  return 0;
}

static void wake_all(struct gateway *gw)
{
  for (int i = 0; i < gw->nsinks; i++)
    gw->sinks[i].wake(gw->sinks[i].arg);
}

/* Under the ring lock: consecutive positions, so a batch's ids are
 * first..first+n-1. */
static size_t publish_locked(struct gateway *gw, const struct pub_item *items, size_t n,
                             char (*ids)[MESSAGE_ID_MAX])
{
  size_t done = 0;
  for (; done < n; done++) {
    struct msgpos pos = {gw->epoch, ring_last_seq(gw->ring) + 1};
    message_id_format(ids[done], pos.ms, pos.seq);
    if (append(gw, pos, ids[done], &items[done], MESSAGE_LIVE) != 0)
      break;
  }
  return done;
}

size_t broker_publish(struct gateway *gw, const struct pub_item *items, size_t n,
                      char (*ids)[MESSAGE_ID_MAX])
{
  ring_lock(gw->ring);
  size_t done = publish_locked(gw, items, n, ids);
  ring_unlock(gw->ring);
  atomic_fetch_add(&gw->published, done);
  wake_all(gw);
  return done;
}

enum idem_result broker_publish_once(struct gateway *gw, const struct pub_item *items, size_t n,
                                     const char *key, size_t keylen,
                                     const unsigned char digest[IDEM_DIGEST_LEN],
                                     char (*ids)[MESSAGE_ID_MAX], size_t *done)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
  struct msgpos first;
  size_t had = 0;
  *done = 0;
  ring_lock(gw->ring);
  enum idem_result r = idem_lookup(gw->idem, key, keylen, digest, now, &first, &had);
  if (r == IDEM_REPEAT) {
    for (size_t i = 0; i < had && i < n; i++)
      message_id_format(ids[i], first.ms, first.seq + i);
    *done = had < n ? had : n;
  } else if (r == IDEM_NEW) {
    *done = publish_locked(gw, items, n, ids);
    if (*done == n && n > 0) {
      first = (struct msgpos){gw->epoch, ring_last_seq(gw->ring) + 1 - n};
      if (idem_remember(gw->idem, key, keylen, digest, now, first, n) != 0)
        log_event(LOG_WARN, "idempotency_key_lost", "reason=\"out of memory\"");
    }
  }
  ring_unlock(gw->ring);
  if (r == IDEM_NEW) {
    atomic_fetch_add(&gw->published, *done);
    wake_all(gw);
  }
  return r;
}

void broker_digest(const struct pub_item *items, size_t n, int is_array,
                   unsigned char out[IDEM_DIGEST_LEN])
{
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  if (!ctx) {
    fprintf(stderr, "tinysse: out of memory\n");
    abort();
  }
  unsigned char shape[2] = {(unsigned char)is_array, 0};
  EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  EVP_DigestUpdate(ctx, shape, 1);
  for (size_t i = 0; i < n; i++) {
    const struct pub_item *it = &items[i];
    char head[64];
    int hl = snprintf(head, sizeof(head), "%zu/%d/%zu/", it->ntargets, it->handler_id, it->json_len);
    EVP_DigestUpdate(ctx, head, (size_t)hl);
    for (size_t k = 0; k < it->ntargets; k++)
      EVP_DigestUpdate(ctx, it->targets[k], strlen(it->targets[k]) + 1);
    EVP_DigestUpdate(ctx, it->event ? it->event : "", it->event ? strlen(it->event) + 1 : 1);
    EVP_DigestUpdate(ctx, it->json, it->json_len);
  }
  EVP_DigestFinal_ex(ctx, out, NULL);
  EVP_MD_CTX_free(ctx);
}

size_t broker_ingest(struct gateway *gw, const struct msgpos *pos, const struct pub_item *items,
                     size_t n, enum message_kind kind)
{
  size_t done = 0;
  ring_lock(gw->ring);
  for (size_t i = 0; i < n; i++) {
    if (msgpos_cmp(pos[i], ring_last_pos(gw->ring)) <= 0)
      continue; /* already here (a catch-up overlapping what was read) */
    char id[MESSAGE_ID_MAX];
    message_id_format(id, pos[i].ms, pos[i].seq);
    if (append(gw, pos[i], id, &items[i], kind) != 0)
      break;
    done++;
  }
  ring_unlock(gw->ring);
  if (kind == MESSAGE_LIVE)
    atomic_fetch_add(&gw->published, done);
  wake_all(gw);
  return done;
}

int broker_set_floor(struct gateway *gw, struct msgpos floor, int reset_clients)
{
  struct message *m = NULL;
  if (reset_clients) {
    if (!(m = message_new(0, NULL, 0, NULL)))
      return -1;
    m->pos = floor;
    m->kind = MESSAGE_GAP;
  }
  ring_lock(gw->ring);
  ring_raise_floor(gw->ring, floor);
  for (int i = 0; m && i < gw->nsinks; i++)
    gw->sinks[i].push(gw->sinks[i].arg, m);
  ring_unlock(gw->ring);
  message_unref(m);
  wake_all(gw);
  return 0;
}

/* The change as a message: "u<user>" or "c<client>", "+add"..., "-del"...;
 * the optional tinysse.subscribed frame is built here, once. */
static struct message *subs_message(const struct gateway *gw, const struct subs_change *c)
{
  size_t n = 1 + c->nadd + c->ndel;
  char **t = calloc(n, sizeof(char *));
  struct message *m = NULL;
  struct frame *f = NULL;
  int ok = t != NULL;
  for (size_t i = 0; ok && i < n; i++) {
    const char *s = i == 0 ? (c->user ? c->user : c->client) : i <= c->nadd ? c->add[i - 1] : c->del[i - 1 - c->nadd];
    char kind = i == 0 ? (c->user ? 'u' : 'c') : i <= c->nadd ? '+' : '-';
    size_t len = strlen(s);
    if ((t[i] = malloc(len + 2))) {
      t[i][0] = kind;
      memcpy(t[i] + 1, s, len + 1);
    }
    ok = t[i] != NULL;
  }
  if (ok && gw->cfg->subscribed_event) {
    char head[96];
    snprintf(head, sizeof(head), "{\"type\":\"subscribed\",\"subscribed\":%zu,\"unsubscribed\":%zu,\"data\":",
             c->nadd, c->ndel);
    size_t hl = strlen(head), dl = c->data ? c->data_len : 4;
    char *json = malloc(hl + dl + 2);
    if (json) {
      memcpy(json, head, hl);
      memcpy(json + hl, c->data ? c->data : "null", dl);
      memcpy(json + hl + dl, "}", 2);
      f = sse_frame_event(NULL, "tinysse.subscribed", json);
      free(json);
    }
    ok = f != NULL;
  }
  if (ok && (m = message_new(0, (const char *const *)t, n, f)))
    m->kind = MESSAGE_SUBS;
  else
    frame_unref(f);
  for (size_t i = 0; t && i < n; i++)
    free(t[i]);
  free(t);
  return m;
}

int broker_subscribe(struct gateway *gw, const struct subs_change *c, int record)
{
  struct message *m = subs_message(gw, c);
  if (!m)
    return SUBS_NOMEM;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ring_lock(gw->ring);
  int rc = record ? subs_record(gw->subs, c, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9, 0) : SUBS_OK;
  for (int i = 0; rc == SUBS_OK && i < gw->nsinks; i++)
    gw->sinks[i].push(gw->sinks[i].arg, m);
  ring_unlock(gw->ring);
  message_unref(m);
  if (rc == SUBS_OK)
    wake_all(gw);
  return rc;
}
