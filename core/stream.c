/* GET on the stream endpoint. Every refusal is answered here (JSON, or
 * tinysse.busy for capacity and readiness); an accepted request becomes a
 * client (client.c) that owns the connection. */
#include "stream.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "client.h"
#include "cluster.h"
#include "front.h"
#include "log.h"
#include "request.h"

const char *const shed_reason_names[SHED_REASONS] = {
    "max_clients", "max_clients_per_peer", "max_connections", "not_ready", "shutting_down"};

/* A per-thread xorshift for retry jitter: no lock, no syscall per shed. */
static uint64_t jitter_next(void)
{
  static _Thread_local uint64_t x;
  if (!x) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&x;
    x |= 1;
  }
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

void stream_shed(struct request *r, enum shed_reason reason)
{
  struct front *f = r->f;
  const struct config *cfg = f->gw->cfg;
  long lo = cfg->busy_retry_min, hi = cfg->busy_retry_max;
  if (hi < lo) /* a reload in progress: the two are written one by one */
    hi = lo;
  long retry = lo + (long)(jitter_next() % (uint64_t)(hi - lo + 1));
  STAT_ADD(f->stats->shed[reason], 1);
  r->ops->add_header(r, "Content-Type", "text/event-stream");
  r->ops->add_header(r, "Cache-Control", "no-cache, no-transform");
  r->ops->add_header(r, "X-Accel-Buffering", "no");
  r->ops->add_header(r, "Connection", "close");
  /* No id: line, so the browser keeps its Last-Event-ID for the retry. */
  char body[256];
  int n = snprintf(body, sizeof(body),
                   "retry: %ld\n\nevent: tinysse.busy\n"
                   "data: {\"type\":\"busy\",\"reason\":\"%s\",\"retry_ms\":%ld}\n\n",
                   retry, shed_reason_names[reason], retry);
  r->ops->send(r, 200, body, (size_t)n);
}

static char **default_channels(const char *user_id, const char *role, size_t *n)
{
  char **v = xcalloc(3, sizeof(char *));
  const char *fmts[3] = {"all", "role:%s", "user:%s"};
  const char *args[3] = {"", role, user_id};
  for (int i = 0; i < 3; i++) {
    size_t len = strlen(fmts[i]) + strlen(args[i]) + 1;
    v[i] = xmalloc(len);
    snprintf(v[i], len, fmts[i], args[i]);
  }
  *n = 3;
  return v;
}

void stream_request(struct request *r)
{
  struct front *f = r->f;
  struct req_view v;
  struct client_params p = {0};
  char why[512], q[600];
  double expires_at = 0;

  req_view_init(&v, r, 0);
  if (worker_stopping(f->w)) {
    stream_shed(r, SHED_SHUTTING_DOWN);
    goto done;
  }
  if (!cluster_ready(f->gw)) { /* has not read the cluster's stream yet */
    stream_shed(r, SHED_NOT_READY);
    goto done;
  }
  /* Cheap early refusal in a storm: no Lua runs for a stream that cannot
   * be held anyway (client_open checks again, exactly). */
  if (atomic_load(&f->gw->nclients) >= f->gw->cfg->max_clients) {
    stream_shed(r, SHED_MAX_CLIENTS);
    goto done;
  }
  const char *token = request_bearer(r);
  if (!token)
    token = request_query(r, "token");
  if (!token || !*token) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "a token is required: ?token=... or Authorization: Bearer ...");
    goto done;
  }
  if (!script_has(worker_script(f->w), HOOK_VALIDATE_TOKEN)) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "this gateway's script accepts no tokens (no validate_token hook)");
    goto done;
  }
  switch (script_validate_token(worker_script(f->w), token, &v.sr, &p.user_id, &p.role, &expires_at, why,
                                sizeof(why))) {
  case SCRIPT_OK:
    break;
  case SCRIPT_DENY:
    STAT_ADD(f->stats->auth_rejected, 1);
    log_event(LOG_INFO, "auth_rejected", "peer=%s reason=%s", v.peer, log_quote(q, sizeof(q), why));
    script_on_error(worker_script(f->w), "auth", why);
    reply_error(r, 401, "auth", "%s", why);
    goto done;
  default:
    reply_error(r, 500, "script", "validate_token failed: %s", why);
    goto done;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (expires_at > 0 && expires_at <= (double)ts.tv_sec + (double)ts.tv_nsec / 1e9) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "token expired");
    goto done;
  }
  p.expires_at = expires_at;

  if (script_has(worker_script(f->w), HOOK_CHANNELS)) {
    int rc = script_channels(worker_script(f->w), p.user_id, p.role, &v.sr, &p.channels, &p.nchannels, why,
                             sizeof(why));
    if (rc != SCRIPT_OK) {
      reply_error(r, 500, "script", "channels failed: %s", why);
      goto done;
    }
  } else if (!(p.channels = default_channels(p.user_id, p.role, &p.nchannels))) {
    reply_error(r, 500, "internal", "out of memory");
    goto done;
  }

  p.resume_id = r->ops->header(r, "Last-Event-ID");
  if (!p.resume_id || !*p.resume_id)
    p.resume_id = request_query(r, "lastEventId");
  if (p.resume_id && !*p.resume_id)
    p.resume_id = NULL;
  p.peer_ip = r->peer;

  switch (r->ops->open_stream(r, &p)) {
  case 0:
    break;
  case -2:
    stream_shed(r, SHED_MAX_CLIENTS);
    break;
  case -3:
    stream_shed(r, SHED_MAX_CLIENTS_PER_PEER);
    break;
  case -4: /* the open-files limit, below --max-connections */
    stream_shed(r, SHED_MAX_CONNECTIONS);
    break;
  default:
    reply_error(r, 500, "internal", "out of memory");
  }
done:
  free(p.user_id);
  free(p.role);
  script_strv_free(p.channels, p.nchannels);
  req_view_free(&v);
}
