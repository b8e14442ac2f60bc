/* Server-side subscriptions in cluster mode. A change is one Redis script
 * that updates the kept set of the user (hash <key>:subs, field = user id,
 * value = "<expires ms>\n<channel>\n...", the hash itself expiring after
 * --subscription-ttl without changes) and appends an entry of its own kind
 * to the stream (k=s; u or c = the target; a, r = channels added and
 * removed; s, e = the user's kept set and its expiry after the change;
 * x = the data of tinysse.subscribed), chained like a message. Every node's
 * follower reads it in order with the messages: a message published after
 * the change's answer is read after it everywhere. A node starting later
 * loads the hash before it reads the stream. */
#include "cluster_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/async.h>

#include "broker.h"
#include "log.h"
#include "shared.h"
#include "config.h"
#include "subs.h"
#include "cluster_subs.h"
#include "validate.h"

/* KEYS: stream, hash. ARGV: bounds, 'u'|'c', target, added, removed (both
 * joined by line breaks), data ('' for none), ttl ms, most channels, most
 * users. Answer: {'ok', id} | {'too_many'} | {'full'}. */
static const char SUBS_SCRIPT[] = CLUSTER_TRIM_LUA
    "local function split(s)\n"
    "  local t = {}\n"
    "  for w in string.gmatch(s, '[^\\n]+') do t[#t + 1] = w end\n"
    "  return t\n"
    "end\n"
    "local tm = redis.call('TIME')\n"
    "local now = tonumber(tm[1]) * 1000 + math.floor(tonumber(tm[2]) / 1000)\n"
    "local f = {'k', 's', ARGV[2], ARGV[3], 'a', ARGV[4], 'r', ARGV[5]}\n"
    "if ARGV[2] == 'u' then\n"
    "  local c = redis.call('HSCAN', KEYS[2], redis.call('GET', KEYS[2] .. ':sweep') or '0', 'COUNT', 16)\n"
    "  redis.call('SET', KEYS[2] .. ':sweep', c[1], 'PX', ARGV[7])\n"
    "  for i = 1, #c[2], 2 do\n"
    "    local e = tonumber(string.match(c[2][i + 1], '^%d+'))\n"
    "    if not e or e <= now then redis.call('HDEL', KEYS[2], c[2][i]) end\n"
    "  end\n"
    "  local rec, cur = redis.call('HGET', KEYS[2], ARGV[3]), {}\n"
    "  if rec then\n"
    "    local p = split(rec)\n"
    "    if tonumber(p[1]) > now then for i = 2, #p do cur[#cur + 1] = p[i] end else rec = nil end\n"
    "  end\n"
    "  local drop, seen, out = {}, {}, {}\n"
    "  for _, x in ipairs(split(ARGV[5])) do drop[x] = true end\n"
    "  for _, x in ipairs(cur) do if not drop[x] and not seen[x] then seen[x] = true; out[#out + 1] = x end end\n"
    "  for _, x in ipairs(split(ARGV[4])) do if not seen[x] then seen[x] = true; out[#out + 1] = x end end\n"
    "  if #out > tonumber(ARGV[8]) then return {'too_many'} end\n"
    "  if not rec and #out > 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[9]) then return {'full'} end\n"
    "  local exp = now + tonumber(ARGV[7])\n"
    "  if #out == 0 then\n"
    "    redis.call('HDEL', KEYS[2], ARGV[3])\n"
    "  else\n"
    "    redis.call('HSET', KEYS[2], ARGV[3], exp .. '\\n' .. table.concat(out, '\\n'))\n"
    "    redis.call('PEXPIRE', KEYS[2], ARGV[7])\n"
    "  end\n"
    "  f[#f + 1] = 's'; f[#f + 1] = table.concat(out, '\\n')\n"
    "  f[#f + 1] = 'e'; f[#f + 1] = tostring(exp)\n"
    "end\n"
    "if ARGV[6] ~= '' then f[#f + 1] = 'x'; f[#f + 1] = ARGV[6] end\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)\n"
    "table.insert(f, 1, last[1] and last[1][1] or '0-0')\n"
    "table.insert(f, 1, 'p')\n"
    "local id = xadd(f)\n"
    "trim()\n"
    "if type(id) == 'table' then return id end\n"
    "return {'ok', id}\n";

/* Channel names joined by line breaks (names have no control characters). */
static char *join(const char *const *v, size_t n)
{
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  char *s = malloc(len), *p = s;
  if (!s)
    return NULL;
  for (size_t i = 0; i < n; i++) {
    size_t l = strlen(v[i]);
    memcpy(p, v[i], l);
    p += l;
    if (i + 1 < n)
      *p++ = '\n';
  }
  *p = '\0';
  return s;
}

/* Splits s (a copy, cut in place) at line breaks into *v; the count. */
static size_t split(char *s, const char ***v)
{
  size_t n = *s ? 1 : 0;
  for (char *p = s; *p; p++)
    n += *p == '\n';
  *v = calloc(n ? n : 1, sizeof(char *));
  if (!*v)
    return 0;
  for (size_t i = 0; i < n; i++) {
    (*v)[i] = s;
    char *nl = strchr(s, '\n');
    if (nl)
      *nl = '\0';
    s = nl ? nl + 1 : s + strlen(s);
  }
  return n;
}

struct sub_ctx {
  struct cluster *cl;
  struct redis_link *l;
  subs_done_fn done;
  void *arg;
};

static void on_subscribed(redisAsyncContext *ac, void *r, void *priv)
{
  struct sub_ctx *ctx = priv;
  redisReply *reply = r;
  struct subs_outcome o = {0};
  redis_link_progress(ctx->l, ac);
  const char *kind = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1 &&
                             reply->element[0]->type == REDIS_REPLY_STRING
                         ? reply->element[0]->str : NULL;
  if (kind && strcmp(kind, "ok") == 0 && reply->elements == 2 &&
      reply->element[1]->type == REDIS_REPLY_STRING) {
    o.status = 200;
    snprintf(o.id, sizeof(o.id), "%s", reply->element[1]->str);
  } else if (kind && strcmp(kind, "too_many") == 0) {
    o.status = 400;
    o.error = "bad_request";
    snprintf(o.field, sizeof(o.field), "subscribe");
    snprintf(o.message, sizeof(o.message),
             "the user would keep more than %d channels from server-side subscriptions", STREAM_MAX_CHANNELS);
  } else if (kind && strcmp(kind, "full") == 0) {
    o.status = 503;
    o.error = "subscriptions_full";
    snprintf(o.message, sizeof(o.message),
             "subscriptions are kept for --subscription-users users already; nothing changed");
  } else {
    o.status = 503;
    o.error = "redis_unavailable";
    snprintf(o.message, sizeof(o.message), "%s",
             !reply ? "the connection to Redis was lost before it answered; the change may or may not have been made"
             : reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer from Redis");
    atomic_fetch_add(&ctx->cl->publish_failed, 1);
  }
  ctx->done(ctx->arg, &o);
  free(ctx);
}

int cluster_subscribe(struct cluster *cl, struct redis_link *l, const struct subs_change *c,
                      subs_done_fn done, void *arg, char *err, size_t errlen)
{
  if (!redis_link_is_up(l)) {
    atomic_fetch_add(&cl->publish_refused, 1);
    snprintf(err, errlen, "Redis (%s:%d) is unreachable from this gateway; nothing changed",
             cl->url.host, cl->url.port);
    return -1;
  }
  const struct config *cfg = cl->gw->cfg;
  char hash[300], ttl[32], maxch[16], maxusers[32];
  snprintf(hash, sizeof(hash), "%s:subs", cl->key);
  snprintf(ttl, sizeof(ttl), "%ld", (long)(cfg->subscription_ttl * 1000));
  snprintf(maxch, sizeof(maxch), "%d", STREAM_MAX_CHANNELS);
  snprintf(maxusers, sizeof(maxusers), "%ld", (long)cfg->subscription_users);
  char *add = join(c->add, c->nadd), *del = join(c->del, c->ndel);
  struct sub_ctx *ctx = malloc(sizeof(*ctx));
  char *data = c->data ? strndup(c->data, c->data_len) : strdup("");
  int ok = add && del && ctx && data;
  if (ok) {
    const char *argv[] = {"EVAL", SUBS_SCRIPT, "2", cl->key, hash, cl->bounds, c->user ? "u" : "c",
                          c->user ? c->user : c->client, add, del, data, ttl, maxch, maxusers};
    *ctx = (struct sub_ctx){cl, l, done, arg};
    ok = redisAsyncCommandArgv(redis_link_ctx(l), on_subscribed, ctx,
                               (int)(sizeof(argv) / sizeof(argv[0])), argv, NULL) == REDIS_OK;
  }
  free(add);
  free(del);
  free(data);
  if (!ok) {
    free(ctx);
    snprintf(err, errlen, "could not send the change to Redis (out of memory); nothing changed");
    atomic_fetch_add(&cl->publish_refused, 1);
    return -1;
  }
  redis_link_awaiting(l);
  return 0;
}

int cluster_subs_is_entry(const redisReply *fields)
{
  const redisReply *k = cluster_field(fields, "k");
  return k && strcmp(k->str, "s") == 0;
}

const char *cluster_subs_entry(struct cluster *cl, const redisReply *fields, char *why, size_t whylen)
{
  const redisReply *u = cluster_field(fields, "u"), *cid = cluster_field(fields, "c"),
                   *a = cluster_field(fields, "a"), *r = cluster_field(fields, "r"),
                   *s = cluster_field(fields, "s"), *e = cluster_field(fields, "e"),
                   *x = cluster_field(fields, "x");
  struct subs_change c = {0};
  char *acopy = a ? strdup(a->str) : NULL, *rcopy = r ? strdup(r->str) : NULL;
  char *scopy = s ? strdup(s->str) : NULL;
  const char **add = NULL, **del = NULL, **kept = NULL;
  const char *bad = NULL;
  if ((!u == !cid) || !a || !r || (u && (!s || !e))) {
    bad = "fields u or c, a, r (and s, e for a user) are needed";
  } else if (!acopy || !rcopy || (s && !scopy)) {
    bad = "out of memory";
  } else {
    c.user = u ? u->str : NULL;
    c.client = cid ? cid->str : NULL;
    c.nadd = split(acopy, &add);
    c.ndel = split(rcopy, &del);
    c.add = add;
    c.del = del;
    c.data = x ? x->str : NULL;
    c.data_len = x ? x->len : 0;
    char field[32];
    bad = add && del ? subs_check(&c, field, sizeof(field), why, whylen) : "out of memory";
  }
  if (!bad && u) { /* this node's store mirrors Redis's, then the streams change */
    size_t n = split(scopy, &kept);
    if (subs_set(cl->gw->subs, u->str, kept, n, strtod(e->str, NULL) / 1000.0) != SUBS_OK)
      bad = "out of memory";
  }
  if (!bad && broker_subscribe(cl->gw, &c, 0) != SUBS_OK)
    bad = "out of memory";
  free(acopy);
  free(rcopy);
  free(scopy);
  free(add);
  free(del);
  free(kept);
  return bad;
}

static void (*load_then)(struct cluster *cl);

static void on_loaded(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster *cl = priv;
  redisReply *reply = redis_link_answer(cl->follow, ac, r);
  if (!reply)
    return;
  if (reply->type != REDIS_REPLY_ARRAY) {
    redis_link_drop(cl->follow, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer to HGETALL");
    return;
  }
  size_t users = 0;
  subs_clear(cl->gw->subs);
  for (size_t i = 0; i + 1 < reply->elements; i += 2) {
    const redisReply *k = reply->element[i], *v = reply->element[i + 1];
    char *copy = k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING ? strdup(v->str) : NULL;
    const char **parts = NULL;
    size_t n = copy ? split(copy, &parts) : 0;
    if (n >= 2 && subs_set(cl->gw->subs, k->str, parts + 1, n - 1, strtod(parts[0], NULL) / 1000.0) == SUBS_OK)
      users++;
    free(parts);
    free(copy);
  }
  log_event(LOG_INFO, "redis_subscriptions_loaded", "key=%s users=%zu", cl->key, users);
  load_then(cl);
}

void cluster_subs_load(struct cluster *cl, void (*then)(struct cluster *cl))
{
  char hash[300];
  snprintf(hash, sizeof(hash), "%s:subs", cl->key);
  const char *argv[] = {"HGETALL", hash};
  load_then = then;
  redis_link_awaiting(cl->follow);
  if (redisAsyncCommandArgv(redis_link_ctx(cl->follow), on_loaded, cl, 2, argv, NULL) != REDIS_OK)
    redis_link_drop(cl->follow, "cannot send HGETALL");
}
