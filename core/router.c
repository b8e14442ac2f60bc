/* Routing (see router.h). */
#include "router.h"

#include <string.h>

#include "endpoints.h"
#include "front.h"
#include "history_api.h"
#include "subscriptions.h"
#include "publish.h"
#include "request.h"
#include "status.h"
#include "stream.h"

#define M(m) (1u << (m))

static const struct route {
  const char *path; /* NULL: the stream endpoint, --endpoint */
  unsigned methods;
  const char *allow;
  void (*handler)(struct request *r);
} routes[] = {
    {NULL, M(REQ_GET), "GET", stream_request},
    {"/publish", M(REQ_POST), "POST", publish_request},
    {"/auth/sse-token", M(REQ_POST), "POST", endpoint_token},
    {"/healthz", M(REQ_GET) | M(REQ_HEAD), "GET, HEAD", endpoint_healthz},
    {"/metrics", M(REQ_GET) | M(REQ_HEAD), "GET, HEAD", endpoint_metrics},
    {"/channels", M(REQ_GET) | M(REQ_HEAD), "GET, HEAD", endpoint_channels},
    {"/history", M(REQ_GET) | M(REQ_HEAD), "GET, HEAD", history_api_request},
    {"/subscriptions", M(REQ_POST), "POST", subscriptions_request},
    {"/status", M(REQ_GET) | M(REQ_HEAD), "GET, HEAD", status_page},
    {"/status/token", M(REQ_POST), "POST", status_token_request},
    {"/status/events", M(REQ_GET), "GET", status_stream_request},
};

static const struct route *find(const struct config *cfg, const char *path)
{
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
    if (strcmp(path, routes[i].path ? routes[i].path : cfg->endpoint) == 0)
      return &routes[i];
  return NULL;
}

int router_is_stream(const struct config *cfg, const struct request *r)
{
  const struct route *rt = find(cfg, r->path);
  return r->method == REQ_GET && rt &&
         (rt->handler == stream_request || rt->handler == status_stream_request);
}

static void count_header(void *arg, const char *name, const char *value)
{
  *(size_t *)arg += strlen(name) + strlen(value) + 4;
}

void router_dispatch(struct request *r)
{
  struct config *cfg = r->f->gw->cfg;
  size_t bytes = strlen(r->path) + (r->query ? strlen(r->query) + 1 : 0) + 16;
  r->ops->each_header(r, count_header, &bytes);
  if (bytes > (size_t)cfg->max_header) {
    reply_error(r, 431, "headers_too_large", "the request line and headers exceed %ld bytes",
                cfg->max_header);
    return;
  }
  request_add_cors(r);
  if (r->method == REQ_OPTIONS) { /* a CORS preflight */
    r->ops->add_header(r, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    r->ops->add_header(r, "Access-Control-Allow-Headers",
                       "Authorization, Content-Type, Last-Event-ID, Idempotency-Key");
    r->ops->add_header(r, "Access-Control-Max-Age", "600");
    r->ops->send(r, 204, NULL, 0);
    return;
  }
  const struct route *rt = find(cfg, r->path);
  if (rt) {
    if (r->method == REQ_OTHER || !(rt->methods & M(r->method))) {
      reply_method_not_allowed(r, rt->allow);
    } else {
      r->resume = rt->handler; /* run again when a hook that waited ends */
      rt->handler(r);
    }
  } else if (endpoint_is_asset(r->path)) {
    if (r->method != REQ_GET && r->method != REQ_HEAD)
      reply_method_not_allowed(r, "GET, HEAD");
    else
      endpoint_asset(r);
  } else {
    reply_error(r, 404, "not_found", "no such endpoint; see the README for the HTTP API");
  }
}
