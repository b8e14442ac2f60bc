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

struct token_args {
  const char *token;
  const struct script_req *req;
};

static int start_validate_token(struct script *s, void *arg, struct script_result *res,
                                const struct script_wait *wait)
{
  struct token_args *a = arg;
  return script_validate_token(s, a->token, a->req, res, wait);
}

struct channels_args {
  const char *user_id, *role;
  const struct script_req *req;
};

static int start_channels(struct script *s, void *arg, struct script_result *res,
                          const struct script_wait *wait)
{
  struct channels_args *a = arg;
  return script_channels(s, a->user_id, a->role, a->req, res, wait);
}

/* The token: ?token=, else a Bearer header, else the --token-cookie
 * cookie. NULL when none. */
static const char *stream_token(struct request *r, const struct req_view *v)
{
  const char *token = request_bearer(r);
  if (!token)
    token = request_query(r, "token");
  const char *cookie = r->f->gw->cfg->token_cookie;
  if ((!token || !*token) && cookie) {
    for (size_t i = 0; i < v->sr.ncookies; i++)
      if (strcmp(v->sr.cookies[i].key, cookie) == 0)
        token = v->sr.cookies[i].value;
  }
  return token;
}

/* A hook for the stream endpoint refused or failed: the answer, and 0
 * only when it went on. */
static int hook_verdict(struct request *r, const char *hook, int rc, const char *why,
                        const char *peer)
{
  struct front *f = r->f;
  char q[600];
  switch (rc) {
  case SCRIPT_OK:
    return 0;
  case SCRIPT_PENDING:
    return -1; /* the handler runs again when the hook ends */
  case SCRIPT_DENY:
    STAT_ADD(f->stats->auth_rejected, 1);
    log_event(LOG_INFO, "auth_rejected", "peer=%s reason=%s", peer, log_quote(q, sizeof(q), why));
    script_on_error(worker_script(f->w), "auth", why);
    reply_error(r, 401, "auth", "%s", why);
    return -1;
  default:
    reply_error(r, 500, "script", "%s failed: %s", hook, why);
    return -1;
  }
}

int stream_identify(struct request *r, struct req_view *v, struct script_result *who,
                    struct script_result *where)
{
  struct front *f = r->f;
  const char *token = stream_token(r, v);
  if (!token || !*token) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "a token is required: ?token=... or Authorization: Bearer ...%s",
                f->gw->cfg->token_cookie ? " or the token cookie" : "");
    return -1;
  }
  if (!script_has(worker_script(f->w), HOOK_VALIDATE_TOKEN)) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "this gateway's script accepts no tokens (no validate_token hook)");
    return -1;
  }
  struct token_args ta = {token, &v->sr};
  int rc = request_hook(r, HOOK_VALIDATE_TOKEN, start_validate_token, &ta, who);
  if (hook_verdict(r, "validate_token", rc, who->why, v->peer) != 0)
    return -1;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (who->expires_at > 0 && who->expires_at <= (double)ts.tv_sec + (double)ts.tv_nsec / 1e9) {
    STAT_ADD(f->stats->auth_rejected, 1);
    reply_error(r, 401, "auth", "token expired");
    return -1;
  }
  if (script_has(worker_script(f->w), HOOK_CHANNELS)) {
    struct channels_args ca = {who->user_id, who->role, &v->sr};
    rc = request_hook(r, HOOK_CHANNELS, start_channels, &ca, where);
    if (rc == SCRIPT_PENDING) {
      /* validate_token's result is needed again when the handler reruns */
      request_hook_keep(r, HOOK_VALIDATE_TOKEN, who);
      return -1;
    }
    if (rc != SCRIPT_OK) {
      reply_error(r, 500, "script", "channels failed: %s", where->why);
      return -1;
    }
  } else {
    where->channels = default_channels(who->user_id, who->role, &where->nchannels);
  }
  return 0;
}

void stream_request(struct request *r)
{
  struct front *f = r->f;
  struct req_view v;
  struct client_params p = {0};
  struct script_result who = {0}, where = {0};
  int rc;

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
  if (stream_identify(r, &v, &who, &where) != 0)
    goto done;
  p.user_id = who.user_id;
  p.role = who.role;
  p.expires_at = who.expires_at;
  p.channels = where.channels;
  p.nchannels = where.nchannels;

  p.resume_id = r->ops->header(r, "Last-Event-ID");
  if (!p.resume_id || !*p.resume_id)
    p.resume_id = request_query(r, "lastEventId");
  if (p.resume_id && !*p.resume_id)
    p.resume_id = NULL;
  p.peer_ip = r->peer;

  rc = r->ops->open_stream(r, &p);
  /* what the stream did not take (or freed) is still ours */
  who.user_id = p.user_id;
  who.role = p.role;
  where.channels = p.channels;
  where.nchannels = p.nchannels;
  switch (rc) {
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
  script_result_free(&who);
  script_result_free(&where);
  req_view_free(&v);
}
