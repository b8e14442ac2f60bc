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
#include "installed.h"
#include "log.h"
#include "tls.h"
#include "publisher.h"
#include "ring.h"
#include "front.h"
#include "h1.h"
#include "usage.h"
#include "worker.h"

#ifndef TINYSSE_VERSION
#define TINYSSE_VERSION "0.1.0"
#endif

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

static void reload_script_limits(void *arg, double hook_timeout, double hook_wall,
                                 long script_memory)
{
  struct gateway *gw = arg;
  gw->limits.hook_timeout = hook_timeout;
  gw->limits.hook_wall = hook_wall;
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
  /* A renewed certificate serves new handshakes; open connections keep
   * theirs. A bad pair is reported and the old one kept. */
  if (gw->tls) {
    if (tls_reload(gw->tls, err, sizeof(err)) == 0)
      log_event(LOG_INFO, "tls_reloaded", "cert=%s", gw->cfg->tls_cert);
    else
      log_event(LOG_ERROR, "tls_reload_failed", "keeping=old error=%s",
                log_quote(q, sizeof(q), err));
  }
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

/* Loads the script for its config table; with --check, hooks gets the
 * names of its hooks for the "ok" line printed once everything is valid. */
static struct jose_keyset *no_jwks(void *ud, const char *url, double refresh, int kid_missing)
{
  (void)ud, (void)url, (void)refresh, (void)kid_missing;
  return NULL; /* nothing is fetched for this load: the workers' loads fetch */
}

static int load_for_config(struct gateway *gw, struct config *cfg, char *hooks, size_t cap)
{
  char err[1024];
  struct tinysse_module_host host = {.jwks_fetch = no_jwks};
  struct script *s = script_load(cfg->script, &gw->limits, &host, NULL, err, sizeof(err));
  if (!s) {
    fprintf(stderr, "tinysse: cannot load script: %s\n", err);
    return -1;
  }
  int rc = script_config_each(s, apply_config, cfg, err, sizeof(err));
  if (rc != 0 && err[0])
    fprintf(stderr, "tinysse: %s: %s\n", cfg->script, err);
  hooks[0] = '\0';
  for (int h = 0; h < HOOK_COUNT; h++)
    if (script_has(s, (enum script_hook)h))
      snprintf(hooks + strlen(hooks), cap - strlen(hooks), " %s",
               script_hook_name((enum script_hook)h));
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
    usage_help(stdout, argv[0]);
    return 0;
  }
  if (cfg.man) {
    usage_man(stdout, TINYSSE_VERSION);
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
  }
  if (cfg.version) {
    usage_version(stdout, TINYSSE_VERSION);
    return 0;
  }
  /* Run outside the source and build trees: the installed default script
   * and browser client (installed.c). */
  installed_defaults(&cfg);
  if (!cfg.publish_key && getenv("TINYSSE_PUBLISH_KEY") && *getenv("TINYSSE_PUBLISH_KEY"))
    cfg.publish_key = getenv("TINYSSE_PUBLISH_KEY");

  gw.cfg = &cfg;
  gw.limits.hook_timeout = cfg.hook_timeout;
  gw.limits.hook_wall = cfg.hook_wall;
  gw.limits.memory_cap = (size_t)cfg.script_memory;
  char hooks[256];
  if (load_for_config(&gw, &cfg, hooks, sizeof(hooks)) != 0)
    return cfg.check ? 1 : 2;
  gw.limits.hook_timeout = cfg.hook_timeout;
  gw.limits.hook_wall = cfg.hook_wall;
  gw.limits.memory_cap = (size_t)cfg.script_memory;
  open_files = config_open_files();
  if (config_validate(&cfg, err, sizeof(err)) != 0 ||
      config_fit_connections(&cfg, open_files, err, sizeof(err)) != 0) {
    fprintf(stderr, "tinysse: %s\n", err);
    return cfg.check ? 1 : 2;
  }
  if (cfg.check) {
    printf("ok: %s loads; hooks:%s\n", cfg.script, hooks);
    return 0;
  }
  log_set_level((enum log_level)log_parse_level(cfg.log_level));

  if (gateway_init(&gw, &cfg, &h1_front_ops, err, sizeof(err)) != 0) {
    fprintf(stderr, "tinysse: %s\n", err);
    gateway_teardown(&gw);
    return 2;
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
  struct event_base *base = worker_base(gw.workers[0]);
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
    worker_join(gw.workers[i]);
  event_free(ev_hup);
  event_free(ev_term);
  event_free(ev_int);
  log_event(LOG_INFO, "stopped", NULL);
  gateway_teardown(&gw);
  config_release();
  return status;
}
