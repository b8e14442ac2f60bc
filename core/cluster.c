/* Cluster mode over Redis streams: connections, the follower, publishing. */
#include "cluster.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <hiredis/adapters/libevent.h>
#include <json-c/json.h>

#include "broker.h"
#include "idem.h"
#include "log.h"
#include "validate.h"
#include "ring.h"
#include "sse.h"
#include "redis_link.h"
#include "cluster_impl.h"

/* ---- reading the stream ---- */

/* Entries of one reply waiting for broker_ingest, oldest first. */
struct entries {
  size_t n;
  struct msgpos *pos;
  struct pub_item *items;
  char **targets_copy;   /* the "t" field, split in place */
  const char ***targetv; /* pointers into targets_copy */
  char why[200];         /* why the last entry was refused */
};

static void entries_clear(struct entries *e)
{
  for (size_t i = 0; i < e->n; i++) {
    free(e->targets_copy[i]);
    free(e->targetv[i]);
    e->targets_copy[i] = NULL;
    e->targetv[i] = NULL;
  }
  e->n = 0;
}

const redisReply *cluster_field(const redisReply *fields, const char *name)
{
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    const redisReply *k = fields->element[i];
    if (k->type == REDIS_REPLY_STRING && k->len == strlen(name) && memcmp(k->str, name, k->len) == 0)
      return fields->element[i + 1]->type == REDIS_REPLY_STRING ? fields->element[i + 1] : NULL;
  }
  return NULL;
}

/* The id of entry [id, [field, value, ...]], and its "p" field: the id of
 * the entry before it in the stream when it was added (see PUBLISH_SCRIPT).
 * Returns the fields, or NULL when this is not a stream entry. */
static const redisReply *entry_ids(const redisReply *entry, struct msgpos *id, int *has_prev,
                                   struct msgpos *prev)
{
  if (entry->type != REDIS_REPLY_ARRAY || entry->elements != 2 ||
      entry->element[0]->type != REDIS_REPLY_STRING || entry->element[1]->type != REDIS_REPLY_ARRAY ||
      message_id_parse(entry->element[0]->str, &id->ms, &id->seq) != 0)
    return NULL;
  const redisReply *p = cluster_field(entry->element[1], "p");
  *has_prev = p && message_id_parse(p->str, &prev->ms, &prev->seq) == 0;
  return entry->element[1];
}

/* Fills slot e->n from an entry's fields; NULL, or why it is refused (a
 * message written by something other than a gateway is never sent on). */
static const char *parse_fields(struct entries *e, const redisReply *fields)
{
  size_t k = e->n;
  const redisReply *d = cluster_field(fields, "d"), *t = cluster_field(fields, "t"), *h = cluster_field(fields, "h"),
                   *ev = cluster_field(fields, "e");
  struct pub_item *it = &e->items[k];
  memset(it, 0, sizeof(*it));
  if (!d || !t || t->len == 0)
    return "field d (data) or t (targets) is missing";
  it->json = d->str;
  it->json_len = d->len;
  if (h) {
    char *end;
    long v = strtol(h->str, &end, 10);
    it->handler_id = end == h->str || *end || v < 0 || v > 255 ? -1 : (int)v;
  }
  it->event = ev ? ev->str : NULL;
  if (!(e->targets_copy[k] = strndup(t->str, t->len)))
    return "out of memory";
  size_t nt = 1;
  for (size_t i = 0; i < t->len; i++)
    nt += t->str[i] == '\n';
  if (nt > PUBLISH_MAX_TARGETS)
    return "field t (targets) names too many channels";
  if (!(e->targetv[k] = calloc(nt, sizeof(char *))))
    return "out of memory";
  char *p = e->targets_copy[k];
  for (size_t i = 0; i < nt; i++) {
    char *nl = strchr(p, '\n');
    if (nl)
      *nl = '\0';
    e->targetv[k][i] = p;
    p = nl ? nl + 1 : p + strlen(p);
  }
  it->targets = e->targetv[k];
  it->ntargets = nt;
  /* The same rules as every publish: an entry that breaks them was not
   * written by a gateway (whose publishes are checked before Redis). */
  char field_name[32];
  return validate_item(it, 0, field_name, sizeof(field_name), e->why, sizeof(e->why));
}

static void flush_entries(struct cluster *cl, struct entries *e, enum message_kind kind)
{
  if (e->n)
    broker_ingest(cl->gw, e->pos, e->items, e->n, kind);
  entries_clear(e);
}

/* Consumes a list of stream entries (newest first when reverse) as
 * messages of the given kind. Every entry names the one before it, so a
 * break in the chain says exactly when this node missed entries (it fell
 * behind or was cut off longer than Redis keeps them, or the stream was
 * recreated): nothing before the break can be replayed here, and (live)
 * every client gets tinysse.reset. -1 out of memory. */
static int consume(struct cluster *cl, const redisReply *list, int reverse, enum message_kind kind)
{
  size_t n = list->elements;
  struct entries e = {0};
  if (n == 0)
    return 0;
  e.pos = calloc(n, sizeof(*e.pos));
  e.items = calloc(n, sizeof(*e.items));
  e.targets_copy = calloc(n, sizeof(char *));
  e.targetv = calloc(n, sizeof(char **));
  int rc = e.pos && e.items && e.targets_copy && e.targetv ? 0 : -1;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const redisReply *entry = list->element[reverse ? n - 1 - i : i];
    struct msgpos id, prev;
    int has_prev;
    const redisReply *fields = entry_ids(entry, &id, &has_prev, &prev);
    const char *bad = fields ? NULL : "not a stream entry";
    if (fields && msgpos_cmp(id, cl->last) <= 0)
      continue; /* already read */
    if (fields && has_prev && msgpos_cmp(prev, cl->last) != 0) {
      flush_entries(cl, &e, kind);
      if (kind == MESSAGE_LIVE) {
        char a[MESSAGE_ID_MAX], b[MESSAGE_ID_MAX];
        message_id_format(a, cl->last.ms, cl->last.seq);
        message_id_format(b, prev.ms, prev.seq);
        atomic_fetch_add(&cl->gaps, 1);
        log_event(LOG_WARN, "redis_gap", "key=%s last_read=%s missed_up_to=%s clients=reset", cl->key, a, b);
      }
      broker_set_floor(cl->gw, prev, kind == MESSAGE_LIVE);
      cl->subs_stale = kind == MESSAGE_LIVE; /* changes may be among what was missed */
    }
    if (fields && has_prev && cluster_subs_is_entry(fields)) {
      /* a subscription change: after the messages before it, before those after */
      cl->last = id;
      flush_entries(cl, &e, kind);
      bad = cluster_subs_entry(cl, fields, e.why, sizeof(e.why));
      if (!bad) {
        atomic_fetch_add(&cl->entries_read, 1);
        continue;
      }
    } else if (fields) {
      cl->last = id;
      e.pos[e.n] = id;
      bad = has_prev ? parse_fields(&e, fields) : "field p (previous id) is missing";
    }
    if (bad) {
      char q[300];
      atomic_fetch_add(&cl->bad_entries, 1);
      log_event(LOG_WARN, "redis_bad_entry", "key=%s id=%s reason=%s", cl->key,
                fields ? entry->element[0]->str : "?", log_quote(q, sizeof(q), bad));
      free(e.targets_copy[e.n]); /* what parse_fields kept before refusing */
      free(e.targetv[e.n]);
      e.targets_copy[e.n] = NULL;
      e.targetv[e.n] = NULL;
      continue;
    }
    e.n++;
    atomic_fetch_add(&cl->entries_read, 1);
  }
  flush_entries(cl, &e, kind);
  free(e.pos);
  free(e.items);
  free(e.targets_copy);
  free(e.targetv);
  return rc;
}

static void follow_read(struct cluster *cl);

/* At start: what Redis holds becomes the replay backlog, never sent live. */
static void on_backlog(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster *cl = priv;
  struct redis_link *l = cl->follow;
  redisReply *reply = redis_link_answer(l, ac, r);
  if (!reply)
    return;
  if (reply->type != REDIS_REPLY_ARRAY) {
    redis_link_drop(l, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer to XREVRANGE");
    return;
  }
  if (consume(cl, reply, 1, MESSAGE_BACKLOG) != 0) {
    redis_link_drop(l, "out of memory");
    return;
  }
  log_event(LOG_INFO, "redis_synced", "key=%s backlog=%zu", cl->key, reply->elements);
  cl->synced = 1;
  atomic_store(&cl->ready, 1);
  follow_read(cl);
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster *cl = priv;
  struct redis_link *l = cl->follow;
  redisReply *reply = redis_link_answer(l, ac, r);
  if (!reply)
    return;
  if (reply->type != REDIS_REPLY_NIL) { /* NIL: BLOCK ran out, nothing new */
    /* [[key, [entry, ...]]] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
        reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
      redis_link_drop(l, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer to XREAD");
      return;
    }
    if (consume(cl, reply->element[0]->element[1], 0, MESSAGE_LIVE) != 0) {
      redis_link_drop(l, "out of memory");
      return;
    }
  }
  if (cl->subs_stale) { /* after a gap: the kept subscriptions afresh, then on */
    cl->subs_stale = 0;
    cluster_subs_load(cl, follow_read);
    return;
  }
  follow_read(cl);
}

static void follow_read(struct cluster *cl)
{
  struct redis_link *l = cl->follow;
  char from[MESSAGE_ID_MAX], count[16], block[16];
  redisAsyncContext *ac = redis_link_ctx(l);
  if (!ac)
    return;
  message_id_format(from, cl->last.ms, cl->last.seq);
  snprintf(count, sizeof(count), "%d", FOLLOW_COUNT);
  snprintf(block, sizeof(block), "%d", FOLLOW_BLOCK_MS);
  const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", cl->key, from};
  redis_link_awaiting(l);
  if (redisAsyncCommandArgv(ac, on_read, cl, 8, argv, NULL) != REDIS_OK)
    redis_link_drop(l, "cannot send XREAD");
}

/* At start, what Redis holds becomes the replay backlog. */
static void load_backlog(struct cluster *cl)
{
  struct redis_link *l = cl->follow;
  char count[24];
  snprintf(count, sizeof(count), "%zu", cl->cap);
  const char *argv[] = {"XREVRANGE", cl->key, "+", "-", "COUNT", count};
  redis_link_awaiting(l);
  if (redisAsyncCommandArgv(redis_link_ctx(l), on_backlog, cl, 6, argv, NULL) != REDIS_OK)
    redis_link_drop(l, "cannot send XREVRANGE");
}

/* The follower is (back) up: the first time it loads what Redis holds;
 * after a disconnection it simply reads on from the last id it saw (the
 * chain check in consume() notices anything it can no longer get). */
static void follow_up(struct redis_link *l, void *arg)
{
  (void)l;
  struct cluster *cl = arg;
  if (cl->synced) {
    log_event(LOG_INFO, "redis_catching_up", "key=%s", cl->key);
    follow_read(cl);
    return;
  }
  cluster_subs_load(cl, load_backlog); /* the kept subscriptions, then the backlog */
}

/* ---- publishing ---- */

/* One atomic step in Redis: append the messages, each with "p" = the id
 * of the entry before it, so followers can tell exactly whether they missed
 * anything, then trim as each node does (CLUSTER_TRIM_LUA). With an
 * idempotency key (KEYS[2]) the same step checks it first, and records the
 * digest and the ids for the window: a repeat gets the recorded ids and appends nothing,
 * wherever it lands in the cluster. ARGV: bounds, digest, window ms, then
 * per message data, targets, handler_id, event ("" for none).
 * Answer: {"new"|"repeat", id...}, {"conflict"}, or {"error", why, id...}. */
static const char PUBLISH_SCRIPT[] = CLUSTER_TRIM_LUA
    "if KEYS[2] then\n"
    "  local rec = redis.call('GET', KEYS[2])\n"
    "  if rec then\n"
    "    local out, i = {}, 0\n"
    "    for w in string.gmatch(rec, '%S+') do\n"
    "      i = i + 1\n"
    "      if i == 1 and w ~= ARGV[2] then return {'conflict'} end\n"
    "      out[i] = w\n"
    "    end\n"
    "    out[1] = 'repeat'\n"
    "    return out\n"
    "  end\n"
    "end\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "local p = last[1] and last[1][1] or '0-0'\n"
    "local ids = {'new'}\n"
    "for b = 4, #ARGV, 4 do\n"
    "  local f = {'p', p, 'd', ARGV[b], 't', ARGV[b + 1], 'h', ARGV[b + 2]}\n"
    "  if ARGV[b + 3] ~= '' then f[9] = 'e'; f[10] = ARGV[b + 3] end\n"
    "  local r = xadd(f)\n"
    "  if type(r) == 'table' and r.err then\n"
    "    ids[1] = r.err\n"
    "    table.insert(ids, 1, 'error')\n"
    "    trim()\n"
    "    return ids\n"
    "  end\n"
    "  ids[#ids + 1] = r\n"
    "  p = r\n"
    "end\n"
    "if KEYS[2] then\n"
    "  redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. table.concat(ids, ' ', 2), 'PX', ARGV[3])\n"
    "end\n"
    "trim()\n"
    "return ids\n";

struct pub_ctx {
  struct cluster *cl;
  struct redis_link *l;
  size_t n;
  cluster_done_fn done;
  void *arg;
};

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
  struct pub_ctx *ctx = priv;
  struct cluster *cl = ctx->cl;
  redisReply *reply = r;
  redis_link_progress(ctx->l, ac);
  char (*ids)[MESSAGE_ID_MAX] = calloc(ctx->n, sizeof(*ids));
  const char *error = NULL, *note = NULL;
  int status = 503;
  char why[300];
  if (!ids) {
    error = "out of memory (the messages may have been stored)";
  } else if (!reply) {
    error = "the connection to Redis was lost before it answered; the messages may or may not "
            "have been stored";
  } else if (reply->type == REDIS_REPLY_ERROR) {
    snprintf(why, sizeof(why), "Redis refused the messages: %s", reply->str);
    error = why;
  } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
             reply->element[0]->type != REDIS_REPLY_STRING) {
    error = "unexpected answer from Redis; the messages may not have been stored";
  } else {
    const char *kind = reply->element[0]->str;
    size_t first = 1; /* where the ids start */
    if (strcmp(kind, "conflict") == 0) {
      status = 409;
      note = "conflict";
    } else if (strcmp(kind, "error") == 0) {
      snprintf(why, sizeof(why), "Redis refused message %zu: %s",
               reply->elements >= 2 ? reply->elements - 2 : 0,
               reply->elements >= 2 && reply->element[1]->type == REDIS_REPLY_STRING
                   ? reply->element[1]->str : "unknown error");
      error = why;
      first = 2;
    } else if (strcmp(kind, "new") == 0 || strcmp(kind, "repeat") == 0) {
      status = 200;
      note = kind[0] == 'r' ? "replayed" : NULL;
    } else {
      error = "unexpected answer from Redis; the messages may not have been stored";
    }
    for (size_t i = first, k = 0; status != 409 && i < reply->elements && k < ctx->n; i++, k++)
      if (reply->element[i]->type == REDIS_REPLY_STRING)
        snprintf(ids[k], MESSAGE_ID_MAX, "%s", reply->element[i]->str);
    if (status == 200 && reply->elements - 1 != ctx->n) {
      error = "unexpected number of ids from Redis";
      status = 503;
    }
  }
  if (error)
    atomic_fetch_add(&cl->publish_failed, 1);
  ctx->done(ctx->arg, error ? 503 : status, ids, ids ? ctx->n : 0, error ? error : note);
  free(ids);
  free(ctx);
}

int cluster_publish(struct cluster *cl, struct redis_link *l, const struct pub_item *items,
                    size_t n, const struct cluster_once *once, cluster_done_fn done, void *arg,
                    char *err, size_t errlen)
{
  if (!redis_link_is_up(l)) {
    atomic_fetch_add(&cl->publish_refused, 1);
    snprintf(err, errlen, "Redis (%s:%d) is unreachable from this gateway; nothing was published",
             cl->url.host, cl->url.port);
    return -1;
  }
  /* EVAL script numkeys stream [idem] bounds digest window (data targets handler event)* */
  size_t argc = 9 + 4 * n;
  const char **argv = calloc(argc, sizeof(*argv));
  size_t *lens = calloc(argc, sizeof(*lens));
  char **owned = calloc(n + 1, sizeof(*owned)), (*handlers)[8] = calloc(n + 1, sizeof(*handlers));
  struct pub_ctx *ctx = calloc(1, sizeof(*ctx));
  char window[32], idem_key[IDEM_KEY_MAX * 2 + 256];
  int ok = argv && lens && owned && handlers && ctx;
  size_t a = 0;
  if (ok) {
    argv[a++] = "EVAL";
    argv[a++] = PUBLISH_SCRIPT;
    argv[a++] = once ? "2" : "1";
    argv[a++] = cl->key;
    if (once) {
      snprintf(idem_key, sizeof(idem_key), "%s:idem:%s", cl->key, once->key);
      argv[a++] = idem_key;
    }
    argv[a++] = cl->bounds;
    argv[a++] = once ? once->digest : "-";
    snprintf(window, sizeof(window), "%ld", (long)(cl->gw->cfg->idem_window * 1000));
    argv[a++] = window;
  }
  for (size_t i = 0; ok && i < n; i++) {
    const struct pub_item *it = &items[i];
    /* Targets travel as one field, separated by line breaks (channel names
     * have no control characters). */
    size_t tl = 0;
    for (size_t k = 0; k < it->ntargets; k++)
      tl += strlen(it->targets[k]) + 1;
    char *t = owned[i] = malloc(tl ? tl : 1);
    if (!t) {
      ok = 0;
      break;
    }
    size_t o = 0;
    for (size_t k = 0; k < it->ntargets; k++) {
      size_t len = strlen(it->targets[k]);
      memcpy(t + o, it->targets[k], len);
      o += len;
      t[o++] = '\n';
    }
    snprintf(handlers[i], sizeof(handlers[i]), "%d", it->handler_id);
    argv[a] = it->json;
    lens[a++] = it->json_len;
    argv[a] = t;
    lens[a++] = o ? o - 1 : 0;
    argv[a++] = handlers[i];
    argv[a++] = it->event ? it->event : "";
  }
  for (size_t i = 0; ok && i < a; i++)
    if (!lens[i])
      lens[i] = strlen(argv[i]);
  if (ok) {
    *ctx = (struct pub_ctx){cl, l, n, done, arg};
    ok = redisAsyncCommandArgv(redis_link_ctx(l), on_published, ctx, (int)a, argv, lens) == REDIS_OK;
  }
  for (size_t i = 0; owned && i < n; i++)
    free(owned[i]);
  free(owned);
  free(handlers);
  free(argv);
  free(lens);
  if (!ok) {
    free(ctx);
    snprintf(err, errlen, "could not send the messages to Redis (out of memory); nothing was published");
    atomic_fetch_add(&cl->publish_refused, 1);
    return -1;
  }
  redis_link_awaiting(l);
  return 0;
}

/* ---- lifecycle ---- */

struct cluster *cluster_new(struct gateway *gw, char *err, size_t errlen)
{
  struct cluster *cl = calloc(1, sizeof(*cl));
  if (!cl) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  if (redis_url_parse(gw->cfg->redis, &cl->url, err, errlen) != 0) {
    free(cl);
    return NULL;
  }
  cl->gw = gw;
  cl->key = gw->cfg->redis_key;
  cl->cap = (size_t)gw->cfg->buffer;
  snprintf(cl->bounds, sizeof(cl->bounds), "%zu:%.0f:%ld", cl->cap, gw->cfg->buffer_age * 1000,
           (long)gw->cfg->buffer_bytes);
  return cl;
}

void cluster_free(struct cluster *cl) { free(cl); }

struct redis_link *cluster_attach(struct cluster *cl, struct event_base *base, int index)
{
  struct redis_link *l = redis_link_new(base, &cl->url, "publish", index, &cl->links, NULL, NULL);
  if (l && index == 0 && !cl->follow &&
      !(cl->follow = redis_link_new(base, &cl->url, "follow", index, &cl->links, follow_up, cl))) {
    redis_link_free(l);
    return NULL;
  }
  return l;
}

void cluster_detach(struct cluster *cl, struct redis_link *l, int index)
{
  redis_link_free(l);
  if (index == 0) {
    redis_link_free(cl->follow);
    cl->follow = NULL;
  }
}

int cluster_ready(const struct gateway *gw)
{
  return !gw->cluster || atomic_load(&gw->cluster->ready);
}

int cluster_healthy(const struct gateway *gw)
{
  struct cluster *cl = gw->cluster;
  return !cl || atomic_load(&cl->links.links_up) == atomic_load(&cl->links.links);
}

void cluster_metrics(const struct gateway *gw, struct evbuffer *out)
{
  struct cluster *cl = gw->cluster;
  if (!cl)
    return;
  struct {
    const char *name, *type, *help;
    unsigned long v;
  } m[] = {
      {"tinysse_redis_up", "gauge", "1 when every Redis connection of this node is up.",
       (unsigned long)cluster_healthy(gw)},
      {"tinysse_redis_connections_up", "gauge", "Redis connections up (one per worker, plus the follower).",
       (unsigned long)atomic_load(&cl->links.links_up)},
      {"tinysse_redis_connects_total", "counter", "Successful connections to Redis.", atomic_load(&cl->links.connects)},
      {"tinysse_redis_disconnects_total", "counter", "Redis connections lost after being up.",
       atomic_load(&cl->links.disconnects)},
      {"tinysse_redis_entries_read_total", "counter", "Stream entries this node read from Redis.",
       atomic_load(&cl->entries_read)},
      {"tinysse_redis_bad_entries_total", "counter", "Stream entries skipped: not written by a gateway.",
       atomic_load(&cl->bad_entries)},
      {"tinysse_redis_gaps_total", "counter",
       "Times this node was cut off longer than Redis keeps messages (clients got tinysse.reset).",
       atomic_load(&cl->gaps)},
      {"tinysse_redis_publish_refused_total", "counter", "Publishes answered 503 because Redis was unreachable.",
       atomic_load(&cl->publish_refused)},
      {"tinysse_redis_publish_failed_total", "counter",
       "Publishes answered 503 after they were sent (connection lost or Redis refused).",
       atomic_load(&cl->publish_failed)},
  };
  for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %lu\n", m[i].name, m[i].help, m[i].name,
                        m[i].type, m[i].name, m[i].v);
}
