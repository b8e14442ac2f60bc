/* GET on the stream endpoint. Every refusal is answered here with JSON; an
 * accepted request becomes a client (client.c) that owns the connection. */
#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/http.h>

#include "client.h"
#include "cluster.h"
#include "http.h"
#include "jsonutil.h"
#include "log.h"
#include "worker.h"

static char **default_channels(const char *user_id, const char *role, size_t *n)
{
  char **v = calloc(3, sizeof(char *));
  if (!v)
    return NULL;
  const char *fmts[3] = {"all", "role:%s", "user:%s"};
  const char *args[3] = {"", role, user_id};
  for (int i = 0; i < 3; i++) {
    size_t len = strlen(fmts[i]) + strlen(args[i]) + 1;
    v[i] = malloc(len);
    if (!v[i]) {
      script_strv_free(v, 3);
      return NULL;
    }
    snprintf(v[i], len, fmts[i], args[i]);
  }
  *n = 3;
  return v;
}

void stream_request(struct worker *w, struct evhttp_request *req)
{
  struct req_view v;
  struct client_params p = {0};
  char why[512], cors[512], q[600];
  double expires_at = 0;

  if (req_view_init(&v, req, 0) != 0) {
    reply_error(req, 500, "internal", "out of memory");
    return;
  }
  if (!cluster_ready(w->gw)) {
    reply_error(req, 503, "not_ready",
                "this gateway has not read the cluster's stream from Redis yet; retry shortly");
    goto done;
  }
  const char *token = http_bearer(req);
  if (!token)
    token = req_view_query(&v, "token");
  if (!token || !*token) {
    STAT_ADD(w->stats.auth_rejected, 1);
    reply_error(req, 401, "auth", "a token is required: ?token=... or Authorization: Bearer ...");
    goto done;
  }
  if (!script_has(w->script, HOOK_VALIDATE_TOKEN)) {
    STAT_ADD(w->stats.auth_rejected, 1);
    reply_error(req, 401, "auth", "this gateway's script accepts no tokens (no validate_token hook)");
    goto done;
  }
  switch (script_validate_token(w->script, token, &v.sr, &p.user_id, &p.role, &expires_at, why,
                                sizeof(why))) {
  case SCRIPT_OK:
    break;
  case SCRIPT_DENY:
    STAT_ADD(w->stats.auth_rejected, 1);
    log_event(LOG_INFO, "auth_rejected", "peer=%s reason=%s", v.peer, log_quote(q, sizeof(q), why));
    script_on_error(w->script, "auth", why);
    reply_error(req, 401, "auth", "%s", why);
    goto done;
  default:
    reply_error(req, 500, "script", "validate_token failed: %s", why);
    goto done;
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if (expires_at > 0 && expires_at <= (double)ts.tv_sec + (double)ts.tv_nsec / 1e9) {
    STAT_ADD(w->stats.auth_rejected, 1);
    reply_error(req, 401, "auth", "token expired");
    goto done;
  }
  p.expires_at = expires_at;

  if (script_has(w->script, HOOK_CHANNELS)) {
    int rc = script_channels(w->script, p.user_id, p.role, &v.sr, &p.channels, &p.nchannels, why,
                             sizeof(why));
    if (rc != SCRIPT_OK) {
      reply_error(req, 500, "script", "channels failed: %s", why);
      goto done;
    }
  } else if (!(p.channels = default_channels(p.user_id, p.role, &p.nchannels))) {
    reply_error(req, 500, "internal", "out of memory");
    goto done;
  }

  p.resume_id = evhttp_find_header(evhttp_request_get_input_headers(req), "Last-Event-ID");
  if (!p.resume_id || !*p.resume_id)
    p.resume_id = req_view_query(&v, "lastEventId");
  if (p.resume_id && !*p.resume_id)
    p.resume_id = NULL;
  p.extra_headers = http_cors_lines(w, req, cors, sizeof(cors));
  char *peer_ip = NULL;
  ev_uint16_t peer_port;
  evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer_ip, &peer_port);
  p.peer_ip = peer_ip;

  switch (client_open(w, req, &p)) {
  case 0:
    break;
  case -2:
    reply_error(req, 503, "too_many_clients", "this gateway is at its limit of %ld streams",
                w->gw->cfg->max_clients);
    break;
  case -3:
    reply_error(req, 503, "too_many_clients",
                "your address holds %ld streams, the limit per address", w->gw->cfg->max_per_peer);
    break;
  default:
    reply_error(req, 500, "internal", "out of memory");
  }
done:
  free(p.user_id);
  free(p.role);
  script_strv_free(p.channels, p.nchannels);
  req_view_free(&v);
}
