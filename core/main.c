/* tinysse: start-up, signals and shutdown. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "alloc.h"
#include "broker.h"
#include "cluster.h"
#include "config.h"
#include "gateway.h"
#include "host.h"
#include "hub.h"
#include "idem.h"
#include "log.h"
#include "publisher.h"
#include "ring.h"
#include "worker.h"

#define TINYSSE_VERSION "0.1.0"

static int apply_config(const char *key, const char *value, void *arg)
{
  struct config *cfg = arg;
  char err[256];
  if (config_set_from_script(cfg, key, value, err, sizeof(err)) != 0) {
    fprintf(stderr, "tinysse: %s: %s\n", cfg->script, err);
    return -1;
  }
  return 0;
}

static void host_log(void *ud, int level, const char *msg, size_t len)
{
  (void)ud;
  char q[1100], copy[1024];
  snprintf(copy, sizeof(copy), "%.*s", (int)(len < 1023 ? len : 1023), msg);
  log_event((enum log_level)(level < 0 ? 0 : level > 3 ? 3 : level), "script_log", "msg=%s",
            log_quote(q, sizeof(q), copy));
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
  int status = publisher_send(gw, w ? w->redis : NULL, &rq, &res);
  id_out[0] = '\0';
  if (status == 200)
    snprintf(id_out, id_cap, "%s", ids[0]);
  else if (status == 409)
    snprintf(err, errcap, "idempotency_conflict: %s", res.message);
  else if (status != PUBLISH_PENDING)
    snprintf(err, errcap, "%s", res.message);
  return status == 200 || status == PUBLISH_PENDING ? 0 : -1;
}

static long host_count(void *ud, const char *channel)
{
  struct gateway *gw = ud;
  pthread_mutex_lock(&gw->presence_lock);
  long n = (long)hub_subscribers(gw->presence, channel);
  pthread_mutex_unlock(&gw->presence_lock);
  return n;
}

static int reload_config(const char *key, const char *value, void *arg)
{
  char err[256], q[300];
  if (config_set_from_script(arg, key, value, err, sizeof(err)) != 0) {
    log_event(LOG_ERROR, "reload_failed", "error=%s", log_quote(q, sizeof(q), err));
    return -1;
  }
  return 0;
}

static long open_files; /* RLIMIT_NOFILE, read at start */

static void reload_log_level(void *arg, int level)
{
  (void)arg;
  log_set_level((enum log_level)level);
}

static void reload_script_limits(void *arg, double hook_timeout, long script_memory)
{
  struct gateway *gw = arg;
  gw->limits.hook_timeout = hook_timeout;
  gw->limits.memory_cap = (size_t)script_memory;
}

/* What changes live and what needs a restart is the option table's reload
 * policy (config.c); fields that change are atomic (config.h). */
static void apply_reloaded_config(struct gateway *gw, const struct config *next)
{
  struct config_reload_ctx ctx = {open_files, gw, reload_log_level, reload_script_limits};
  char changed[256], restart[256];
  config_apply_reload(gw->cfg, next, &ctx, changed, sizeof(changed), restart, sizeof(restart));
  log_event(*restart ? LOG_WARN : LOG_INFO, "config_reloaded", "changed=%s needs_restart=%s",
            *changed ? changed : "none", *restart ? restart : "none");
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
  (void)sig;
  (void)what;
  struct gateway *gw = arg;
  char err[1024], q[1100];
  /* Check the new script once here; workers then each load their own. */
  struct script *s = script_load(gw->cfg->script, &gw->limits, &gw->module_host, NULL, err, sizeof(err));
  if (!s) {
    log_event(LOG_ERROR, "reload_failed", "keeping=old error=%s", log_quote(q, sizeof(q), err));
    return;
  }
  /* The script's config table: options that can change while running take
   * effect now; the others are reported as needing a restart. */
  struct config next = *gw->cfg;
  next.set_by_script = 0;
  if (script_config_each(s, reload_config, &next, err, sizeof(err)) != 0) {
    log_event(LOG_ERROR, "reload_failed", "keeping=old error=%s", log_quote(q, sizeof(q), err));
    script_free(s);
    return;
  }
  script_free(s);
  apply_reloaded_config(gw, &next);
  for (int i = 0; i < gw->nworkers; i++)
    worker_request_reload(gw->workers[i]);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
  (void)what;
  struct gateway *gw = arg;
  log_event(LOG_INFO, "shutdown", "signal=%d", (int)sig);
  for (int i = 0; i < gw->nworkers; i++)
    worker_request_stop(gw->workers[i]);
}

static int load_for_config(struct gateway *gw, struct config *cfg)
{
  char err[1024];
  struct script *s = script_load(cfg->script, &gw->limits, NULL, NULL, err, sizeof(err));
  if (!s) {
    fprintf(stderr, "tinysse: cannot load script: %s\n", err);
    return -1;
  }
  int rc = script_config_each(s, apply_config, cfg, err, sizeof(err));
  if (rc != 0 && err[0])
    fprintf(stderr, "tinysse: %s: %s\n", cfg->script, err);
  if (rc == 0 && cfg->check) {
    printf("ok: %s loads; hooks:", cfg->script);
    for (int h = 0; h < HOOK_COUNT; h++)
      if (script_has(s, (enum script_hook)h))
        printf(" %s", script_hook_name((enum script_hook)h));
    printf("\n");
  }
  gw->publish_key[0] = '\0';
  if (!cfg->publish_key && !script_has(s, HOOK_AUTHORIZE_PUBLISH))
    cfg->publish_key_generated = 1;
  script_free(s);
  return rc;
}

int main(int argc, char **argv)
{
  static struct config cfg;
  static struct gateway gw;
  char err[1024];
  int status = 2;

  signal(SIGPIPE, SIG_IGN);
  config_defaults(&cfg);
  if (config_parse_args(&cfg, argc, argv, err, sizeof(err)) != 0) {
    fprintf(stderr, "tinysse: %s\n", err);
    return 2;
  }
  if (cfg.help) {
    config_usage(argv[0]);
    return 0;
  }
  if (cfg.version) {
    printf("tinysse %s\n", TINYSSE_VERSION);
    return 0;
  }
  if (!cfg.publish_key && getenv("TINYSSE_PUBLISH_KEY") && *getenv("TINYSSE_PUBLISH_KEY"))
    cfg.publish_key = getenv("TINYSSE_PUBLISH_KEY");

  gw.cfg = &cfg;
  gw.limits.hook_timeout = cfg.hook_timeout;
  gw.limits.memory_cap = (size_t)cfg.script_memory;
  if (load_for_config(&gw, &cfg) != 0)
    return cfg.check ? 1 : 2;
  gw.limits.hook_timeout = cfg.hook_timeout;
  gw.limits.memory_cap = (size_t)cfg.script_memory;
  open_files = config_open_files();
  if (config_validate(&cfg, err, sizeof(err)) != 0 ||
      config_fit_connections(&cfg, open_files, err, sizeof(err)) != 0) {
    fprintf(stderr, "tinysse: %s\n", err);
    return cfg.check ? 1 : 2;
  }
  if (cfg.check)
    return 0;
  log_set_level((enum log_level)log_parse_level(cfg.log_level));

  struct timeval now;
  gettimeofday(&now, NULL);
  gw.epoch = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_usec / 1000;
  gw.started = (double)now.tv_sec;
  if (RAND_bytes(gw.secret, sizeof(gw.secret)) != 1) {
    fprintf(stderr, "tinysse: cannot get random bytes\n");
    return 2;
  }
  if (cfg.publish_key) {
    snprintf(gw.publish_key, sizeof(gw.publish_key), "%s", cfg.publish_key);
  } else if (cfg.publish_key_generated) {
    unsigned char raw[24];
    RAND_bytes(raw, sizeof(raw));
    for (size_t i = 0; i < sizeof(raw); i++)
      snprintf(gw.publish_key + 2 * i, 3, "%02x", raw[i]);
    /* Printed once, on purpose: with no key and no authorize_publish hook,
     * this is the only way to publish. It is never logged again. */
    fprintf(stderr, "tinysse: no --publish-key or TINYSSE_PUBLISH_KEY given; the publish key for this run is %s\n",
            gw.publish_key);
  }
  if (cfg.redis && !(gw.cluster = cluster_new(&gw, err, sizeof(err)))) {
    fprintf(stderr, "tinysse: %s\n", err);
    return 2;
  }
  /* Local ids are "<epoch>-<n>"; a cluster's are Redis's own. */
  gw.ring = ring_new((size_t)cfg.buffer, (struct msgpos){gw.cluster ? 0 : gw.epoch, 0});
  gw.presence = hub_new();
  gw.peers = hub_new();
  gw.conn_peers = hub_new();
  if (!gw.cluster && !(gw.idem = idem_new((size_t)cfg.idem_keys, cfg.idem_window))) {
    fprintf(stderr, "tinysse: out of memory\n");
    return 2;
  }
  for (int i = 0; i < cfg.ntrusted_proxy; i++) /* checked by config_validate */
    if (proxy_cidr_parse(cfg.trusted_proxy[i], &gw.trusted[gw.ntrusted], NULL, 0) == 0)
      gw.ntrusted++;
  pthread_mutex_init(&gw.presence_lock, NULL);
  gw.module_host = (struct tinysse_module_host){&gw, host_log, host_publish, host_count, gw.secret};
  gw.nworkers = (int)cfg.workers;
  gw.workers = calloc((size_t)gw.nworkers, sizeof(*gw.workers));
  if (!gw.ring || !gw.presence || !gw.peers || !gw.conn_peers || !gw.workers) {
    fprintf(stderr, "tinysse: out of memory\n");
    return 2;
  }
  gw.sinks = xcalloc((size_t)gw.nworkers, sizeof(*gw.sinks));
  for (int i = 0; i < gw.nworkers; i++) {
    if (!(gw.workers[i] = worker_new(&gw, i, err, sizeof(err)))) {
      fprintf(stderr, "tinysse: %s\n", err);
      goto cleanup;
    }
    gw.sinks[gw.nsinks++] = worker_sink(gw.workers[i]);
  }

  /* Signals go to worker 0's loop on this thread; other threads block them. */
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  int started = 1;
  for (int i = 1; i < gw.nworkers; i++, started++)
    if (worker_start_thread(gw.workers[i]) != 0) {
      fprintf(stderr, "tinysse: cannot start worker thread %d\n", i);
      break;
    }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  struct event_base *base = gw.workers[0]->base;
  struct event *ev_hup = evsignal_new(base, SIGHUP, on_reload_signal, &gw);
  struct event *ev_term = evsignal_new(base, SIGTERM, on_stop_signal, &gw);
  struct event *ev_int = evsignal_new(base, SIGINT, on_stop_signal, &gw);
  event_add(ev_hup, NULL);
  event_add(ev_term, NULL);
  event_add(ev_int, NULL);

  char q[600];
  /* Streams count against --max-connections too: say when it, or the
   * open-files limit behind it, is the tighter bound. */
  log_event(LOG_INFO, "limits",
            "max_connections=%ld max_clients=%ld open_files=%ld room=%ld%s", cfg.max_connections,
            cfg.max_clients, open_files, config_connection_room(&cfg, open_files),
            cfg.max_connections < cfg.max_clients ? " streams_bounded_by=max_connections" : "");
  for (int i = 0; i < cfg.nlisten; i++)
    log_event(LOG_INFO, "listening", "addr=%s endpoint=%s workers=%d script=%s", cfg.listen[i],
              cfg.endpoint, gw.nworkers, log_quote(q, sizeof(q), cfg.script));
  if (gw.cluster)
    log_event(LOG_INFO, "cluster_mode", "redis_key=%s buffer=%ld (every node must use the same)",
              cfg.redis_key, cfg.buffer);
  if (started == gw.nworkers) {
    worker_run(gw.workers[0]);
    status = 0;
  } else {
    on_stop_signal(0, 0, &gw);
  }
  /* Shutting down: a second SIGTERM must not kill the process halfway
   * through its cleanup (freeing the signal events restores the default
   * action), so the signals stay blocked from here to exit. */
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  for (int i = 1; i < started; i++)
    pthread_join(gw.workers[i]->thread, NULL);
  event_free(ev_hup);
  event_free(ev_term);
  event_free(ev_int);
  log_event(LOG_INFO, "stopped", NULL);
cleanup:
  for (int i = 0; i < gw.nworkers; i++)
    worker_free(gw.workers[i]);
  free(gw.workers);
  free(gw.sinks);
  ring_free(gw.ring);
  idem_free(gw.idem);
  cluster_free(gw.cluster);
  config_release();
  hub_free(gw.presence);
  hub_free(gw.peers);
  hub_free(gw.conn_peers);
  return status;
}
