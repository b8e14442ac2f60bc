/* The live status page and its stream. */
#include "status.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <json-c/json.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "stream.h"
#include "client.h"
#include "request.h"
#include "hub.h"
#include "alloc.h"
#include "log.h"
#include "message.h"
#include "metrics.h"
#include "ring.h"
#include "sse.h"
#include "front.h"
#include "jsonutil.h"
#include "history.h"

/* A channel name no publisher can use (targets refuse control bytes). */
#define STATUS_CHANNEL "\001status" /* CHANNEL_PRIVATE_PREFIX, validate.h */
#define STATUS_TOKEN_TTL 3600

/* The last 10 minutes of numbers (gw->history: 600 samples of 48 bytes,
 * about 28 KiB) are taken by whichever worker ticks first in each second
 * and sent to each status stream in its first event. Each status stream also listens on a channel of its own, where its first
 * event (with the history) goes: "\001status/<n>". */
static atomic_ulong status_streams_opened;

static double wall_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void send_status(struct front *f, const char *channel, double now, int with_history);

extern const unsigned char tinysse_status_html[];
extern const unsigned long tinysse_status_html_len;

void status_page(struct request *r)
{
  r->ops->add_header(r, "Content-Type", "text/html; charset=utf-8");
  r->ops->add_header(r, "Cache-Control", "no-cache");
  r->ops->add_header(r, "X-Content-Type-Options", "nosniff");
  r->ops->send(r, 200, (const char *)tinysse_status_html, tinysse_status_html_len);
}

/* token = "<expiry>.<hex HMAC-SHA256(secret, "status:<expiry>")>" */
static void sign(struct front *f, long long expiry, char out[96])
{
  unsigned char mac[32];
  unsigned int len = sizeof(mac);
  char msg[48];
  int n = snprintf(msg, sizeof(msg), "status:%lld", expiry);
  HMAC(EVP_sha256(), f->gw->secret, sizeof(f->gw->secret), (const unsigned char *)msg, (size_t)n,
       mac, &len);
  int o = snprintf(out, 96, "%lld.", expiry);
  for (unsigned i = 0; i < len && o + 2 < 96; i++)
    o += snprintf(out + o, 96 - (size_t)o, "%02x", mac[i]);
}

static int token_ok(struct front *f, const char *token)
{
  char *end;
  long long expiry = strtoll(token, &end, 10);
  char want[96];
  if (end == token || *end != '.' || expiry < (long long)time(NULL))
    return 0;
  sign(f, expiry, want);
  return strlen(token) == strlen(want) && CRYPTO_memcmp(token, want, strlen(want)) == 0;
}

void status_token_request(struct request *req)
{
  struct front *f = req->f;
  struct req_view v;
  req_view_init(&v, req, 1);
  v.sr.publisher = request_is_publisher(req);
  if (request_authorize_publisher(req, &v) == 0) {
    char token[96];
    sign(f, (long long)time(NULL) + STATUS_TOKEN_TTL, token);
    struct json_object *o = json_obj();
    json_object_object_add(o, "token", json_str(token));
    json_object_object_add(o, "expires_in", json_i64(STATUS_TOKEN_TTL));
    reply_json(req, 200, o);
  }
  req_view_free(&v);
}

void status_stream_request(struct request *req)
{
  const char *token = request_query(req, "token");
  if (!token || !token_ok(req->f, token)) {
    reply_error(req, 401, "auth", "a status token from POST /status/token is required");
    return;
  }
  char own[40];
  snprintf(own, sizeof(own), "%s/%lu", STATUS_CHANNEL, atomic_fetch_add(&status_streams_opened, 1));
  struct client_params p = {0};
  p.user_id = xstrdup("status");
  p.role = xstrdup("status");
  p.channels = xcalloc(2, sizeof(char *));
  p.channels[0] = xstrdup(STATUS_CHANNEL);
  p.channels[1] = xstrdup(own);
  p.nchannels = 2;
  p.internal = 1;
  p.peer_ip = req->peer;
  int rc = req->ops->open_stream(req, &p);
  if (rc == 0)
    send_status(req->f, own, wall_now(), 1); /* the numbers now, and the history */
  else if (rc == -2)
    stream_shed(req, SHED_MAX_CLIENTS);
  else if (rc == -4)
    stream_shed(req, SHED_MAX_CONNECTIONS);
  else if (rc == -3)
    stream_shed(req, SHED_MAX_CLIENTS_PER_PEER);
  else
    reply_error(req, 500, "internal", "out of memory");
  free(p.user_id);
  free(p.role);
  script_strv_free(p.channels, p.nchannels);
}


#define WS(field) offsetof(struct worker_stats, field)

static unsigned long script_errors(struct gateway *gw)
{
  unsigned long errors = 0;
  for (int i = 0; i < gw->nworkers; i++)
    errors += worker_script_stats(gw->workers[i])->errors;
  return errors;
}

static void fill_sample(void *arg, struct history_sample *s)
{
  struct gateway *gw = arg;
  s->streams = (uint64_t)atomic_load(&gw->nclients);
  s->published = (uint64_t)atomic_load(&gw->published);
  s->deliveries = metrics_sum(gw, WS(deliveries));
  s->slow = metrics_sum(gw, WS(slow));
  s->script_errors = script_errors(gw);
}

/* "history_fields":[...],"history":[[time,streams,...],...]: the samples
 * held, oldest first, as many as fit in half of --max-queue (so that the
 * first event never gets its stream closed as slow). */
static void add_history(struct gateway *gw, struct json_object *o)
{
  size_t cap = (size_t)gw->cfg->max_queue / 2 / 80; /* a row is under 80 bytes */
  if (cap > HISTORY_SLOTS)
    cap = HISTORY_SLOTS;
  struct history_sample *hs = xcalloc(cap ? cap : 1, sizeof(*hs));
  size_t n = history_copy(gw->history, hs, cap);
  static const char *const fields[] = {"time", "connections", "published_total",
                                       "deliveries_total", "slow_total", "script_errors_total"};
  struct json_object *names = json_arr(), *rows = json_arr();
  for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
    json_object_array_add(names, json_str(fields[i]));
  for (size_t i = 0; i < n; i++) {
    struct json_object *row = json_arr();
    json_object_array_add(row, json_dbl((double)(long long)(hs[i].time * 1000) / 1000));
    json_object_array_add(row, json_i64((long long)hs[i].streams));
    json_object_array_add(row, json_i64((long long)hs[i].published));
    json_object_array_add(row, json_i64((long long)hs[i].deliveries));
    json_object_array_add(row, json_i64((long long)hs[i].slow));
    json_object_array_add(row, json_i64((long long)hs[i].script_errors));
    json_object_array_add(rows, row);
  }
  free(hs);
  json_object_object_add(o, "history_interval", json_dbl(HISTORY_INTERVAL));
  json_object_object_add(o, "history_fields", names);
  json_object_object_add(o, "history", rows);
}

static char *status_json(struct gateway *gw, double now, int with_history)
{
  struct json_object *o = json_obj();
  json_object_object_add(o, "time", json_dbl((double)(long long)(now * 1000) / 1000));
  json_object_object_add(o, "connections", json_i64(atomic_load(&gw->nclients)));
  struct json_object *per = json_arr();
  for (int i = 0; i < gw->nworkers; i++)
    json_object_array_add(per, json_i64((int64_t)STAT_GET(worker_counters(gw->workers[i])->connections)));
  json_object_object_add(o, "connections_by_worker", per);
  json_object_object_add(o, "published_total", json_i64((int64_t)atomic_load(&gw->published)));
  json_object_object_add(o, "deliveries_total", json_i64((int64_t)metrics_sum(gw, WS(deliveries))));
  json_object_object_add(o, "replayed_total", json_i64((int64_t)metrics_sum(gw, WS(replayed))));
  json_object_object_add(o, "resets_total", json_i64((int64_t)metrics_sum(gw, WS(resets))));
  json_object_object_add(o, "slow_total", json_i64((int64_t)metrics_sum(gw, WS(slow))));
  json_object_object_add(o, "http_requests_total", json_i64((int64_t)metrics_sum(gw, WS(http_requests))));
  json_object_object_add(o, "bytes_queued", json_i64((int64_t)metrics_sum(gw, WS(bytes_queued))));
  json_object_object_add(o, "script_errors_total", json_i64((int64_t)script_errors(gw)));
  ring_lock(gw->ring);
  size_t held = ring_count(gw->ring);
  ring_unlock(gw->ring);
  json_object_object_add(o, "replay_buffer", json_i64((int64_t)held));
  char recent[LOG_RECENT_MAX][256];
  size_t n = log_recent(recent, LOG_RECENT_MAX);
  struct json_object *errs = json_arr();
  for (size_t i = 0; i < n; i++)
    json_object_array_add(errs, json_str(recent[i]));
  json_object_object_add(o, "recent_errors", errs);
  if (with_history)
    add_history(gw, o);
  char *result = xstrdup(json_text(o));
  json_object_put(o);
  return result;
}

/* Sends a tinysse.status event to this worker's streams of channel: never
 * in the ring (no id, nothing to resume): seq UINT64_MAX passes every
 * client's resume floor. */
static void send_status(struct front *f, const char *channel, double now, int with_history)
{
  char *json = status_json(f->gw, now, with_history);
  struct frame *fr = json ? sse_frame_event(NULL, "tinysse.status", json) : NULL;
  struct message *m = fr ? message_new(UINT64_MAX, &channel, 1, fr) : NULL;
  if (m) {
    clients_send(f->streams, m);
    message_unref(m);
  } else {
    frame_unref(fr);
  }
  free(json);
}

void status_tick(struct front *f, double now)
{
  /* the loop's cached time can be late by what ran before this tick */
  history_record(f->gw->history, wall_now(), fill_sample, f->gw);
  if (now - f->status_sent < 0.9 || hub_subscribers(f->streams->hub, STATUS_CHANNEL) == 0)
    return;
  f->status_sent = now;
  send_status(f, STATUS_CHANNEL, now, 0); /* routed once per tick */
}
