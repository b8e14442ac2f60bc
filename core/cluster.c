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
#include "worker.h"

#define LINK_TIMEOUT 5.0     /* seconds to connect, or to get an answer */
#define BACKOFF_MIN 0.1      /* first reconnect delay; doubles up to ... */
#define BACKOFF_MAX 5.0
#define FOLLOW_BLOCK_MS 1000 /* XREAD BLOCK: well inside LINK_TIMEOUT */
#define FOLLOW_COUNT 1000    /* entries per XREAD */

struct cluster {
  struct gateway *gw;
  struct redis_url url;
  const char *key;
  char maxlen[24]; /* --buffer: Redis keeps as many messages as each node */
  size_t cap;
  /* the follower: worker 0's thread only */
  struct cluster_link *follow;
  struct msgpos last; /* the newest id read */
  int synced;
  /* read from any thread */
  atomic_int ready, links, links_up;
  atomic_ulong connects, disconnects, entries_read, bad_entries, gaps, publish_refused,
      publish_failed;
};

struct cluster_link {
  struct cluster *cl;
  struct worker *w;
  const char *role; /* "publish" or "follow" */
  redisAsyncContext *ac; /* NULL while down */
  int up, stopping;
  double backoff;
  struct event *retry_ev, *watch_ev;
  int outstanding;      /* commands whose answer is awaited */
  double last_progress; /* when the last answer came (or the wait began) */
  void (*on_up)(struct cluster_link *l);
};

static double mono_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval to_tv(double s)
{
  struct timeval tv = {(time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6)};
  return tv;
}

/* ---- the URL ---- */

int redis_url_parse(const char *url, struct redis_url *out, char *err, size_t errlen)
{
  static const char scheme[] = "redis://";
  memset(out, 0, sizeof(*out));
  out->port = 6379;
  if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
    snprintf(err, errlen, "--redis: expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]");
    return -1;
  }
  const char *p = url + sizeof(scheme) - 1;
  const char *at = strrchr(p, '@');
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *pw = colon ? colon + 1 : p;
    if ((size_t)(at - pw) >= sizeof(out->password) ||
        (colon && (size_t)(colon - p) >= sizeof(out->user))) {
      snprintf(err, errlen, "--redis: the user name or password is too long");
      return -1;
    }
    if (colon)
      memcpy(out->user, p, (size_t)(colon - p));
    memcpy(out->password, pw, (size_t)(at - pw));
    p = at + 1;
  }
  size_t hl = strcspn(p, ":/");
  if (hl == 0 || hl >= sizeof(out->host)) {
    snprintf(err, errlen, "--redis: a host is needed (redis://HOST:PORT)");
    return -1;
  }
  memcpy(out->host, p, hl);
  for (size_t i = 0; i < hl; i++)
    if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') || (p[i] >= '0' && p[i] <= '9') ||
          p[i] == '.' || p[i] == '-' || p[i] == '_')) {
      snprintf(err, errlen, "--redis: unexpected '%c' in the host name", p[i]);
      return -1;
    }
  p += hl;
  if (*p == ':') {
    char *end;
    errno = 0;
    long port = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || port < 1 || port > 65535 || (*end && *end != '/')) {
      snprintf(err, errlen, "--redis: the port must be a number from 1 to 65535");
      return -1;
    }
    out->port = (int)port;
    p = end;
  }
  if (*p == '/' && p[1]) {
    char *end;
    errno = 0;
    long db = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || *end || db < 0 || db > 100000) {
      snprintf(err, errlen, "--redis: the database must be a number (redis://HOST:PORT/DB)");
      return -1;
    }
    out->db = (int)db;
  } else if (*p && strcmp(p, "/") != 0) {
    snprintf(err, errlen, "--redis: unexpected '%s' after the host", p);
    return -1;
  }
  return 0;
}

/* ---- connections ---- */

static void link_connect(struct cluster_link *l);

static void link_schedule(struct cluster_link *l)
{
  if (l->stopping)
    return;
  double d = l->backoff * (0.75 + 0.5 * ((double)random() / (double)RAND_MAX));
  l->backoff = l->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : l->backoff * 2;
  struct timeval tv = to_tv(d);
  evtimer_add(l->retry_ev, &tv);
}

/* The connection is gone (hiredis frees it, or the caller does). */
static void link_lost(struct cluster_link *l, const char *why)
{
  struct cluster *cl = l->cl;
  char q[300];
  l->ac = NULL;
  l->outstanding = 0;
  if (l->up) {
    l->up = 0;
    atomic_fetch_sub(&cl->links_up, 1);
    atomic_fetch_add(&cl->disconnects, 1);
    log_event(LOG_WARN, "redis_down", "role=%s worker=%d reason=%s", l->role, l->w->index,
              log_quote(q, sizeof(q), why));
  } else if (!l->stopping) {
    log_event(LOG_WARN, "redis_connect_failed", "role=%s worker=%d addr=%s:%d reason=%s retry_in=%.1fs",
              l->role, l->w->index, cl->url.host, cl->url.port, log_quote(q, sizeof(q), why),
              l->backoff);
  }
  link_schedule(l);
}

/* Closes the connection on purpose; answers still awaited come back empty. */
static void link_drop(struct cluster_link *l, const char *why)
{
  redisAsyncContext *ac = l->ac;
  if (!ac)
    return;
  char copy[256];
  snprintf(copy, sizeof(copy), "%s", why);
  link_lost(l, copy);
  redisAsyncFree(ac);
}

static void progress(struct cluster_link *l, const redisAsyncContext *ac)
{
  if (l->ac == ac) {
    if (l->outstanding > 0)
      l->outstanding--;
    l->last_progress = mono_now();
  }
}

static void awaiting(struct cluster_link *l)
{
  if (l->outstanding++ == 0)
    l->last_progress = mono_now();
}

/* The answer to a command of l, or NULL when there is none to act on (the
 * connection went, or l has moved on to another one). */
static redisReply *answer(struct cluster_link *l, redisAsyncContext *ac, void *r)
{
  progress(l, ac);
  return l->ac == ac ? r : NULL;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
  struct cluster_link *l = ac->data;
  if (l && l->ac == ac && status != REDIS_OK)
    link_lost(l, ac->errstr[0] ? ac->errstr : "cannot connect");
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
  struct cluster_link *l = ac->data;
  if (l && l->ac == ac)
    link_lost(l, status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
}

/* AUTH and SELECT: an error reply ends the attempt. */
static void on_setup(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster_link *l = priv;
  redisReply *reply = answer(l, ac, r);
  if (reply && reply->type == REDIS_REPLY_ERROR)
    link_drop(l, reply->str);
}

static void on_ready(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster_link *l = priv;
  redisReply *reply = answer(l, ac, r);
  struct cluster *cl = l->cl;
  if (!reply)
    return;
  if (reply->type == REDIS_REPLY_ERROR) {
    link_drop(l, reply->str);
    return;
  }
  l->up = 1;
  l->backoff = BACKOFF_MIN;
  atomic_fetch_add(&cl->links_up, 1);
  atomic_fetch_add(&cl->connects, 1);
  log_event(LOG_INFO, "redis_connected", "role=%s worker=%d addr=%s:%d db=%d", l->role,
            l->w->index, cl->url.host, cl->url.port, cl->url.db);
  if (l->on_up)
    l->on_up(l);
}

static void link_connect(struct cluster_link *l)
{
  struct redis_url *u = &l->cl->url;
  redisAsyncContext *ac = redisAsyncConnect(u->host, u->port);
  if (!ac) {
    link_lost(l, "out of memory");
    return;
  }
  if (ac->err) {
    char why[256];
    snprintf(why, sizeof(why), "%s", ac->errstr);
    redisAsyncFree(ac);
    link_lost(l, why);
    return;
  }
  ac->data = l;
  if (redisLibeventAttach(ac, l->w->base) != REDIS_OK) {
    redisAsyncFree(ac);
    link_lost(l, "cannot attach to the event loop");
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  l->ac = ac;
  l->outstanding = 0;
  if (u->user[0]) {
    awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "AUTH %s %s", u->user, u->password);
  } else if (u->password[0]) {
    awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "AUTH %s", u->password);
  }
  if (u->db) {
    awaiting(l);
    redisAsyncCommand(ac, on_setup, l, "SELECT %d", u->db);
  }
  awaiting(l);
  redisAsyncCommand(ac, on_ready, l, "PING");
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct cluster_link *l = arg;
  if (!l->stopping && !l->ac)
    link_connect(l);
}

/* hiredis 0.14 has no timeouts: a connection that does not answer within
 * LINK_TIMEOUT (a paused or unreachable server) is dropped and redialled. */
static void on_watch(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct cluster_link *l = arg;
  if (l->ac && (l->outstanding > 0 || !l->up) && mono_now() - l->last_progress > LINK_TIMEOUT)
    link_drop(l, l->up ? "no answer from Redis within 5 s" : "connect timed out after 5 s");
}

static struct cluster_link *link_new(struct cluster *cl, struct worker *w, const char *role)
{
  struct cluster_link *l = calloc(1, sizeof(*l));
  if (!l)
    return NULL;
  l->cl = cl;
  l->w = w;
  l->role = role;
  l->backoff = BACKOFF_MIN;
  l->retry_ev = evtimer_new(w->base, on_retry, l);
  l->watch_ev = event_new(w->base, -1, EV_PERSIST, on_watch, l);
  if (!l->retry_ev || !l->watch_ev) {
    if (l->retry_ev)
      event_free(l->retry_ev);
    if (l->watch_ev)
      event_free(l->watch_ev);
    free(l);
    return NULL;
  }
  struct timeval now = {0, 0}, second = {1, 0};
  evtimer_add(l->retry_ev, &now); /* connect once the loop runs */
  event_add(l->watch_ev, &second);
  atomic_fetch_add(&cl->links, 1);
  return l;
}

static void link_free(struct cluster_link *l)
{
  if (!l)
    return;
  l->stopping = 1;
  if (l->ac) {
    redisAsyncContext *ac = l->ac;
    if (l->up)
      atomic_fetch_sub(&l->cl->links_up, 1);
    l->up = 0;
    l->ac = NULL;
    redisAsyncFree(ac); /* answers still awaited come back empty */
  }
  atomic_fetch_sub(&l->cl->links, 1);
  event_free(l->retry_ev);
  event_free(l->watch_ev);
  free(l);
}

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

static const redisReply *field(const redisReply *fields, const char *name)
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
  const redisReply *p = field(entry->element[1], "p");
  *has_prev = p && message_id_parse(p->str, &prev->ms, &prev->seq) == 0;
  return entry->element[1];
}

/* Fills slot e->n from an entry's fields; NULL, or why it is refused (a
 * message written by something other than a gateway is never sent on). */
static const char *parse_fields(struct entries *e, const redisReply *fields)
{
  size_t k = e->n;
  const redisReply *d = field(fields, "d"), *t = field(fields, "t"), *h = field(fields, "h"),
                   *ev = field(fields, "e");
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
    }
    if (fields) {
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
  struct cluster_link *l = priv;
  struct cluster *cl = l->cl;
  redisReply *reply = answer(l, ac, r);
  if (!reply)
    return;
  if (reply->type != REDIS_REPLY_ARRAY) {
    link_drop(l, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer to XREVRANGE");
    return;
  }
  if (consume(cl, reply, 1, MESSAGE_BACKLOG) != 0) {
    link_drop(l, "out of memory");
    return;
  }
  log_event(LOG_INFO, "redis_synced", "key=%s backlog=%zu", cl->key, reply->elements);
  cl->synced = 1;
  atomic_store(&cl->ready, 1);
  follow_read(cl);
}

static void on_read(redisAsyncContext *ac, void *r, void *priv)
{
  struct cluster_link *l = priv;
  struct cluster *cl = l->cl;
  redisReply *reply = answer(l, ac, r);
  if (!reply)
    return;
  if (reply->type != REDIS_REPLY_NIL) { /* NIL: BLOCK ran out, nothing new */
    /* [[key, [entry, ...]]] */
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 1 ||
        reply->element[0]->type != REDIS_REPLY_ARRAY || reply->element[0]->elements != 2 ||
        reply->element[0]->element[1]->type != REDIS_REPLY_ARRAY) {
      link_drop(l, reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer to XREAD");
      return;
    }
    if (consume(cl, reply->element[0]->element[1], 0, MESSAGE_LIVE) != 0) {
      link_drop(l, "out of memory");
      return;
    }
  }
  follow_read(cl);
}

static void follow_read(struct cluster *cl)
{
  struct cluster_link *l = cl->follow;
  char from[MESSAGE_ID_MAX], count[16], block[16];
  if (!l->ac)
    return;
  message_id_format(from, cl->last.ms, cl->last.seq);
  snprintf(count, sizeof(count), "%d", FOLLOW_COUNT);
  snprintf(block, sizeof(block), "%d", FOLLOW_BLOCK_MS);
  const char *argv[] = {"XREAD", "COUNT", count, "BLOCK", block, "STREAMS", cl->key, from};
  awaiting(l);
  if (redisAsyncCommandArgv(l->ac, on_read, l, 8, argv, NULL) != REDIS_OK)
    link_drop(l, "cannot send XREAD");
}

/* The follower is (back) up: the first time it loads what Redis holds;
 * after a disconnection it simply reads on from the last id it saw (the
 * chain check in consume() notices anything it can no longer get). */
static void follow_up(struct cluster_link *l)
{
  struct cluster *cl = l->cl;
  if (cl->synced) {
    log_event(LOG_INFO, "redis_catching_up", "key=%s", cl->key);
    follow_read(cl);
    return;
  }
  char count[24];
  snprintf(count, sizeof(count), "%zu", cl->cap);
  const char *argv[] = {"XREVRANGE", cl->key, "+", "-", "COUNT", count};
  awaiting(l);
  if (redisAsyncCommandArgv(l->ac, on_backlog, l, 6, argv, NULL) != REDIS_OK)
    link_drop(l, "cannot send XREVRANGE");
}

/* ---- publishing ---- */

/* One atomic step in Redis: append the messages, trimmed to --buffer
 * entries, each with "p" = the id of the entry before it, so followers can
 * tell exactly whether they missed anything. With an idempotency key
 * (KEYS[2]) the same step checks it first, and records the digest and the
 * ids for the window: a repeat gets the recorded ids and appends nothing,
 * wherever it lands in the cluster. ARGV: maxlen, digest, window ms, then
 * per message data, targets, handler_id, event ("" for none).
 * Answer: {"new"|"repeat", id...}, {"conflict"}, or {"error", why, id...}. */
static const char PUBLISH_SCRIPT[] =
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
    "  local r\n"
    "  if ARGV[b + 3] ~= '' then\n"
    "    r = redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'p', p, 'd', ARGV[b], "
    "'t', ARGV[b + 1], 'h', ARGV[b + 2], 'e', ARGV[b + 3])\n"
    "  else\n"
    "    r = redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'p', p, 'd', ARGV[b], "
    "'t', ARGV[b + 1], 'h', ARGV[b + 2])\n"
    "  end\n"
    "  if type(r) == 'table' and r.err then\n"
    "    ids[1] = r.err\n"
    "    table.insert(ids, 1, 'error')\n"
    "    return ids\n"
    "  end\n"
    "  ids[#ids + 1] = r\n"
    "  p = r\n"
    "end\n"
    "if KEYS[2] then\n"
    "  redis.call('SET', KEYS[2], ARGV[2] .. ' ' .. table.concat(ids, ' ', 2), 'PX', ARGV[3])\n"
    "end\n"
    "return ids\n";

struct pub_ctx {
  struct cluster_link *l;
  size_t n;
  cluster_done_fn done;
  void *arg;
};

static void on_published(redisAsyncContext *ac, void *r, void *priv)
{
  struct pub_ctx *ctx = priv;
  struct cluster *cl = ctx->l->cl;
  redisReply *reply = r;
  progress(ctx->l, ac);
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

int cluster_publish(struct worker *w, const struct pub_item *items, size_t n,
                    const struct cluster_once *once, cluster_done_fn done, void *arg, char *err,
                    size_t errlen)
{
  struct cluster_link *l = w->redis;
  struct cluster *cl = w->gw->cluster;
  if (!l || !l->up || !l->ac) {
    atomic_fetch_add(&cl->publish_refused, 1);
    snprintf(err, errlen, "Redis (%s:%d) is unreachable from this gateway; nothing was published",
             cl->url.host, cl->url.port);
    return -1;
  }
  /* EVAL script numkeys stream [idem] maxlen digest window (data targets handler event)* */
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
    argv[a++] = cl->maxlen;
    argv[a++] = once ? once->digest : "-";
    snprintf(window, sizeof(window), "%ld", (long)(w->gw->cfg->idem_window * 1000));
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
    *ctx = (struct pub_ctx){l, n, done, arg};
    ok = redisAsyncCommandArgv(l->ac, on_published, ctx, (int)a, argv, lens) == REDIS_OK;
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
  awaiting(l);
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
  snprintf(cl->maxlen, sizeof(cl->maxlen), "%zu", cl->cap);
  return cl;
}

void cluster_free(struct cluster *cl) { free(cl); }

int cluster_worker_init(struct worker *w)
{
  struct cluster *cl = w->gw->cluster;
  if (!cl)
    return 0;
  if (!(w->redis = link_new(cl, w, "publish")))
    return -1;
  if (w->index == 0) {
    if (!(cl->follow = link_new(cl, w, "follow")))
      return -1;
    cl->follow->on_up = follow_up;
  }
  return 0;
}

void cluster_worker_stop(struct worker *w)
{
  struct cluster *cl = w->gw->cluster;
  if (!cl)
    return;
  link_free(w->redis);
  w->redis = NULL;
  if (w->index == 0) {
    link_free(cl->follow);
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
  return !cl || atomic_load(&cl->links_up) == atomic_load(&cl->links);
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
       (unsigned long)atomic_load(&cl->links_up)},
      {"tinysse_redis_connects_total", "counter", "Successful connections to Redis.", atomic_load(&cl->connects)},
      {"tinysse_redis_disconnects_total", "counter", "Redis connections lost after being up.",
       atomic_load(&cl->disconnects)},
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
