/* Call-outs from Lua hooks over the worker's HTTP client (see
 * callout_io.h): converts between the host's request/answer structs and
 * httpc's. */
#include "callout_io.h"

#include <stdio.h>
#include <stdlib.h>

#include "alloc.h"
#include "config.h"
#include "httpc.h"

struct callout_io {
  struct httpc *http;
};

struct callout_io *callout_io_new(struct event_base *base, const struct config *cfg, char *err,
                                  size_t errlen)
{
  struct httpc_opts o = {
      .max_inflight = (size_t)cfg->callout_concurrency,
      .max_queue = (size_t)cfg->callout_queue,
      .max_body = (size_t)cfg->callout_max_body,
      .max_idle_per_host = 16,
      .idle_timeout = 30,
      .ca_file = cfg->callout_ca_file,
  };
  struct httpc *h = httpc_new(base, &o, err, errlen);
  if (!h)
    return NULL;
  struct callout_io *io = xmalloc(sizeof(*io));
  io->http = h;
  return io;
}

void callout_io_free(struct callout_io *io)
{
  if (!io)
    return;
  httpc_free(io->http);
  free(io);
}

/* A call-out in flight: the handle the host holds. */
struct pending {
  void (*done)(void *arg, const struct script_http_res *res);
  void *arg;
  struct httpc_call *call;
};

static void answered(void *arg, const struct httpc_result *r)
{
  struct pending p = *(struct pending *)arg;
  free(arg);
  struct script_kv hv[64];
  size_t n = r->nheaders < 64 ? r->nheaders : 64;
  for (size_t i = 0; i < n; i++)
    hv[i] = (struct script_kv){r->headers[i].name, r->headers[i].value};
  struct script_http_res res = {r->status, r->error, r->detail, r->body, r->body_len, hv, n};
  p.done(p.arg, &res);
}

static void *start(void *ud, const struct script_http_req *req,
                   void (*done)(void *arg, const struct script_http_res *res), void *arg)
{
  struct callout_io *io = ud;
  struct httpc_header hv[64];
  size_t n = req->nheaders < 64 ? req->nheaders : 64;
  for (size_t i = 0; i < n; i++)
    hv[i] = (struct httpc_header){req->headers[i].key, req->headers[i].value};
  struct pending *p = xmalloc(sizeof(*p));
  *p = (struct pending){done, arg, NULL};
  p->call = httpc_request(io->http, req->method, req->url, hv, n, req->body, req->body_len,
                          req->timeout, answered, p);
  if (!p->call) {
    free(p);
    return NULL;
  }
  return p;
}

static void cancel(void *ud, void *handle)
{
  (void)ud;
  struct pending *p = handle;
  httpc_cancel(p->call); /* answered is never called for it */
  free(p);
}

struct script_io callout_io_ops(struct callout_io *io)
{
  return (struct script_io){io, start, cancel};
}
