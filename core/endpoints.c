/* The small endpoints: /healthz, /metrics, /channels, /auth/sse-token and
 * the browser client's files. */
#include "endpoints.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "cluster.h"
#include "front.h"
#include "jsonutil.h"
#include "hub.h"
#include "metrics.h"
#include "request.h"

void endpoint_healthz(struct request *r)
{
  struct gateway *gw = r->f->gw;
  struct json_object *o = json_obj();
  /* Cluster mode: "starting" (503) until the node has read the stream once;
   * "degraded" (200: streams are served, publishes are refused) while a
   * Redis connection is down. */
  int ready = cluster_ready(gw), healthy = cluster_healthy(gw);
  json_object_object_add(o, "status", json_str(!ready     ? "starting"
                                                              : !healthy ? "degraded"
                                                                         : "ok"));
  json_object_object_add(o, "connections", json_i64(atomic_load(&gw->nclients)));
  json_object_object_add(o, "workers", json_i64(gw->nworkers));
  if (gw->cluster)
    json_object_object_add(o, "redis", json_str(healthy ? "up" : "down"));
  reply_json(r, ready ? 200 : 503, o);
}

void endpoint_metrics(struct request *r)
{
  struct evbuffer *out = evbuffer_new();
  if (!out) {
    reply_error(r, 500, "internal", "out of memory");
    return;
  }
  metrics_render(r->f->gw, out);
  size_t len = evbuffer_get_length(out);
  r->ops->add_header(r, "Content-Type", "text/plain; version=0.0.4");
  r->ops->send(r, 200, (const char *)evbuffer_pullup(out, -1), len);
  evbuffer_free(out);
}

static void add_count(const char *ch, size_t n, void *arg)
{
  json_object_object_add(arg, ch, json_i64((int64_t)n));
}

void endpoint_channels(struct request *r)
{
  struct gateway *gw = r->f->gw;
  struct req_view v;
  req_view_init(&v, r, 0);
  v.sr.publisher = request_is_publisher(r);
  if (request_authorize_publisher(r, &v) == 0) {
    const char *one = request_query(r, "channel");
    struct json_object *o = json_obj();
    pthread_mutex_lock(&gw->presence_lock);
    if (one) {
      json_object_object_add(o, "channel", json_str(one));
      json_object_object_add(o, "subscribers",
                             json_i64((int64_t)hub_subscribers(gw->presence, one)));
    } else {
      struct json_object *all = json_obj();
      hub_each_channel(gw->presence, add_count, all);
      json_object_object_add(o, "channels", all);
    }
    pthread_mutex_unlock(&gw->presence_lock);
    reply_json(r, 200, o);
  }
  req_view_free(&v);
}

static int start_issue_token(struct script *s, void *arg, struct script_result *res,
                             const struct script_wait *wait)
{
  return script_issue_token(s, arg, res, wait);
}

void endpoint_token(struct request *r)
{
  struct script *s = worker_script(r->f->w);
  struct req_view v;
  struct script_result res;
  if (!script_has(s, HOOK_ISSUE_TOKEN)) {
    reply_error(r, 404, "not_found", "this gateway's script does not issue tokens (no issue_token hook)");
    return;
  }
  req_view_init(&v, r, 1);
  v.sr.publisher = request_is_publisher(r);
  switch (request_hook(r, HOOK_ISSUE_TOKEN, start_issue_token, &v.sr, &res)) {
  case SCRIPT_OK: {
    struct json_object *o = json_obj();
    json_object_object_add(o, "token", json_str(res.token));
    json_object_object_add(o, "expires_in", json_i64((int64_t)res.expires_in));
    reply_json(r, 200, o);
    break;
  }
  case SCRIPT_PENDING:
    break; /* answered when the hook ends */
  case SCRIPT_DENY:
    reply_error(r, 403, "forbidden", "%s", res.why);
    break;
  default:
    reply_error(r, 500, "script", "issue_token failed: %s", res.why);
  }
  script_result_free(&res);
  req_view_free(&v);
}

/* The browser client and its demo page, read from --assets per request
 * (small files, fetched once per page load). */
static const struct asset {
  const char *path, *file, *type;
} assets[] = {
    {"/tinysse.js", "tinysse.js", "text/javascript; charset=utf-8"},
    {"/tinysse.wasm", "tinysse.wasm", "application/wasm"},
    {"/tinysse.d.ts", "tinysse.d.ts", "text/plain; charset=utf-8"},
    {"/demo", "demo.html", "text/html; charset=utf-8"},
    {"/demo.html", "demo.html", "text/html; charset=utf-8"},
};

static const struct asset *find_asset(const char *path)
{
  for (size_t i = 0; i < sizeof(assets) / sizeof(assets[0]); i++)
    if (strcmp(path, assets[i].path) == 0)
      return &assets[i];
  return NULL;
}

int endpoint_is_asset(const char *path) { return find_asset(path) != NULL; }

void endpoint_asset(struct request *r)
{
  const struct asset *a = find_asset(r->path);
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", r->f->gw->cfg->assets, a ? a->file : "");
  int fd = a ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    if (fd >= 0)
      close(fd);
    reply_error(r, 404, "not_found", "the browser client is not built here (see --assets)");
    return;
  }
  r->ops->add_header(r, "Content-Type", a->type);
  r->ops->add_header(r, "Cache-Control", "no-cache");
  r->ops->add_header(r, "X-Content-Type-Options", "nosniff");
  r->ops->send_file(r, fd, (size_t)st.st_size);
}
