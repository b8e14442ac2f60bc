/* Assembling a gateway from its final config, and taking it apart: one
 * place for main() and for the HTTP fuzz target. Also the gateway's side
 * of the tinysse Lua module (logging, publishing, counts). */
#include "gateway.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <openssl/rand.h>

#include "alloc.h"
#include "client.h"
#include "cluster.h"
#include "history.h"
#include "hub.h"
#include "idem.h"
#include "jwks_cache.h"
#include "log.h"
#include "publisher.h"
#include "ring.h"
#include "subs.h"
#include "subscriptions.h"
#include "tls.h"
#include "worker.h"

static void host_log(void *ud, int level, const char *msg, size_t len)
{
  (void)ud;
  char q[1100], copy[1024];
  snprintf(copy, sizeof(copy), "%.*s", (int)(len < 1023 ? len : 1023), msg);
  log_event((enum log_level)(level < 0 ? 0 : level > 3 ? 3 : level), "script_log", "msg=%s",
            log_quote(q, sizeof(q), copy));
}

static struct jose_keyset *host_jwks(void *ud, const char *url, double refresh, int kid_missing)
{
  struct gateway *gw = ud;
  return jwks_cache_get(gw->jwks, url, refresh, kid_missing);
}

static void script_published(void *arg, int status, char (*ids)[MESSAGE_ID_MAX], size_t n,
                             const char *reason)
{
  (void)arg;
  (void)ids;
  (void)n;
  char q[400];
  if (status == 409)
    log_event(LOG_ERROR, "script_publish_failed", "reason=idempotency_conflict");
  else if (status != 200)
    log_event(LOG_ERROR, "script_publish_failed", "reason=%s", log_quote(q, sizeof(q), reason));
}

static int host_publish(void *ud, const char *const *targets, size_t ntargets, const char *json,
                        size_t len, int handler_id, const char *event, const char *key,
                        char *id_out, size_t id_cap, char *err, size_t errcap)
{
  struct gateway *gw = ud;
  char ids[1][MESSAGE_ID_MAX], scoped[IDEM_KEY_MAX + 16];
  struct pub_item it = {targets, ntargets, handler_id, event, json, len};
  struct worker *w = worker_current();
  if (key && !idem_key_valid(key)) {
    snprintf(err, errcap, "a key is 1 to %d printable ASCII characters", IDEM_KEY_MAX);
    return -1;
  }
  if (key) /* scripts share one scope, apart from HTTP publishers' */
    snprintf(scoped, sizeof(scoped), "script:%s", key);
  if (gw->cluster && !w) {
    snprintf(err, errcap, "not available while the script loads in cluster mode");
    return -1;
  }
  /* Cluster mode: Redis assigns the id later; the hook gets nil and a
   * failure is logged (script_published). */
  struct publish_req rq = {&it, 1, 0, key ? scoped : NULL, (size_t)gw->cfg->max_body,
                           script_published, NULL};
  struct publish_result res = {.ids = ids};
  int status = publisher_send(gw, w ? worker_link(w) : NULL, &rq, &res);
  id_out[0] = '\0';
  if (status == 200)
    snprintf(id_out, id_cap, "%s", ids[0]);
  else if (status == 409)
    snprintf(err, errcap, "idempotency_conflict: %s", res.message);
  else if (status != PUBLISH_PENDING)
    snprintf(err, errcap, "%s", res.message);
  return status == 200 || status == PUBLISH_PENDING ? 0 : -1;
}

static void script_subscribed(void *arg, const struct subs_outcome *o)
{
  (void)arg;
  char q[400];
  if (o->status != 200)
    log_event(LOG_ERROR, "script_subscribe_failed", "status=%d reason=%s", o->status,
              log_quote(q, sizeof(q), o->message));
}

static long host_subscribe(void *ud, const char *user, const char *client, const char *const *add,
                           size_t nadd, const char *const *del, size_t ndel, const char *data,
                           size_t data_len, char *err, size_t errcap)
{
  struct gateway *gw = ud;
  struct worker *w = worker_current();
  if (!w) {
    snprintf(err, errcap, "not available while the script loads");
    return -1;
  }
  struct subs_change c = {user, client, add, nadd, del, ndel, data, data_len};
  struct subs_outcome o;
  int status = subscriptions_send(gw, worker_link(w), &c, script_subscribed, NULL, &o);
  if (status == SUBS_PENDING)
    return -2;
  if (status == 200)
    return (long)o.streams;
  snprintf(err, errcap, "%s", o.message);
  return -1;
}

static long host_count(void *ud, const char *channel)
{
  struct gateway *gw = ud;
  pthread_mutex_lock(&gw->presence_lock);
  long n = (long)hub_subscribers(gw->presence, channel);
  pthread_mutex_unlock(&gw->presence_lock);
  return n;
}

int gateway_init(struct gateway *gw, struct config *cfg, const struct worker_front_ops *front,
                 char *err, size_t errlen)
{
  memset(gw, 0, sizeof(*gw));
  gw->cfg = cfg;
  gw->limits.hook_timeout = cfg->hook_timeout;
  gw->limits.hook_wall = cfg->hook_wall;
  gw->limits.memory_cap = (size_t)cfg->script_memory;
  struct timeval now;
  gettimeofday(&now, NULL);
  gw->epoch = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
  gw->started = (double)now.tv_sec;
  if (RAND_bytes(gw->secret, sizeof(gw->secret)) != 1) {
    snprintf(err, errlen, "cannot get random bytes");
    return -1;
  }
  if (cfg->publish_key) {
    snprintf(gw->publish_key, sizeof(gw->publish_key), "%s", cfg->publish_key);
  } else if (cfg->publish_key_generated) {
    unsigned char raw[24];
    RAND_bytes(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++)
      snprintf(gw->publish_key + 2 * i, 3, "%02x", raw[i]);
    /* Printed once, on purpose: with no key and no authorize_publish hook,
     * this is the only way to publish. It is never logged again. */
    fprintf(stderr, "tinysse: no --publish-key or TINYSSE_PUBLISH_KEY given; the publish key for this run is %s\n",
            gw->publish_key);
  }
  if (cfg->tls_cert && !(gw->tls = tls_new(cfg, err, errlen)))
    return -1;
  if (cfg->redis && !(gw->cluster = cluster_new(gw, err, errlen)))
    return -1;
  /* Local ids are "<epoch>-<n>"; a cluster's are Redis's own. */
  gw->ring = ring_new((size_t)cfg->buffer, (struct msgpos){gw->cluster ? 0 : gw->epoch, 0});
  if (gw->ring)
    ring_set_limits(gw->ring, (size_t)cfg->buffer_bytes, cfg->buffer_age, (size_t)cfg->channel_history);
  gw->presence = hub_new();
  gw->peers = hub_new();
  gw->conn_peers = hub_new();
  if (!gw->cluster && !(gw->idem = idem_new((size_t)cfg->idem_keys, cfg->idem_window)))
    alloc_failed(0);
  for (int i = 0; i < cfg->ntrusted_proxy; i++) /* checked by config_validate */
    if (proxy_cidr_parse(cfg->trusted_proxy[i], &gw->trusted[gw->ntrusted], NULL, 0) == 0)
      gw->ntrusted++;
  pthread_mutex_init(&gw->presence_lock, NULL);
  gw->history = xmalloc(sizeof(*gw->history));
  history_init(gw->history);
  gw->jwks = jwks_cache_new();
  gw->subs = subs_new((size_t)cfg->subscription_users, cfg->subscription_ttl);
  gw->dir = client_dir_new((int)cfg->workers);
  if (!gw->subs || !gw->dir)
    alloc_failed(0);
  if (gw->cluster) { /* connection ids name their node: a change by id finds one stream */
    unsigned char tag[3];
    RAND_bytes(tag, sizeof(tag));
    snprintf(gw->node, sizeof(gw->node), "%02x%02x%02x", tag[0], tag[1], tag[2]);
  }
  gw->module_host = (struct tinysse_module_host){.ud = gw,
                                                 .log = host_log,
                                                 .publish = host_publish,
                                                 .subscribe = host_subscribe,
                                                 .count = host_count,
                                                 .instance_secret = gw->secret,
                                                 .jwks_fetch = host_jwks};
  gw->nworkers = (int)cfg->workers;
  gw->workers = xcalloc((size_t)gw->nworkers, sizeof(*gw->workers));
  if (!gw->ring || !gw->presence || !gw->peers || !gw->conn_peers)
    alloc_failed(0);
  gw->sinks = xcalloc((size_t)gw->nworkers, sizeof(*gw->sinks));
  for (int i = 0; i < gw->nworkers; i++) {
    if (!(gw->workers[i] = worker_new(gw, i, front, err, errlen)))
      return -1;
    gw->sinks[gw->nsinks++] = worker_sink(gw->workers[i]);
  }
  /* the scripts have named their JWKS URLs: worker 0's loop fetches them */
  return jwks_cache_start(gw->jwks, worker_base(gw->workers[0]), cfg, err, errlen);
}

void gateway_teardown(struct gateway *gw)
{
  jwks_cache_free(gw->jwks); /* before worker 0's loop goes */
  gw->jwks = NULL;
  for (int i = 0; gw->workers && i < gw->nworkers; i++)
    worker_free(gw->workers[i]);
  free(gw->workers);
  free(gw->sinks);
  ring_free(gw->ring);
  idem_free(gw->idem);
  cluster_free(gw->cluster);
  tls_free(gw->tls);
  if (gw->history) {
    history_destroy(gw->history);
    free(gw->history);
  }
  subs_free(gw->subs);
  client_dir_free(gw->dir);
  hub_free(gw->presence);
  hub_free(gw->peers);
  hub_free(gw->conn_peers);
  if (gw->presence)
    pthread_mutex_destroy(&gw->presence_lock);
  memset(gw, 0, sizeof(*gw));
}
