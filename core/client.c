/* Stream clients: opening (limits, channels, the hand-over from the
 * transport), replay on resume, closing and freeing. A client lives on one
 * worker and owns its socket (or its part of a transport: stream_io_ops),
 * an output queue of references to shared frames (outq.c, written by
 * client_write.c) and one event: EOF always, writability only while the
 * kernel is full. An idle stream costs little more than this struct. */
#include "client_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "hub.h"
#include "log.h"
#include "message.h"
#include "outq.h"
#include "uring.h"
#include "ring.h"
#include "sse.h"
#include "alloc.h"
#include "shared.h"
#include "subs.h"
#include "validate.h"

static void clients_reap_later(struct clients *cs, struct client *c);

static double now_cached(struct clients *cs)
{
  struct timeval tv;
  event_base_gettimeofday_cached(cs->base, &tv);
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static void script_view(const struct client *c, struct script_client *v, char id[CLIENT_ID_MAX])
{
  client_id(c, id);
  v->id = id;
  v->user_id = c->user_id;
  v->role = c->role;
  v->channels = (const char *const *)c->channels;
  v->nchannels = c->nchannels;
}


void client_deliver(struct client *c, const struct message *m)
{
  if (c->state != CLIENT_OPEN || msgpos_cmp(m->pos, c->after) <= 0)
    return;
  STAT_ADD(c->cs->stats->deliveries, 1);
  client_enqueue(c, m->frame);
}

static void replay_one(struct message *m, void *arg)
{
  struct client *c = arg;
  if (c->state == CLIENT_OPEN && hub_sub_matches(c->sub, m)) {
    STAT_ADD(c->cs->stats->replayed, 1);
    client_enqueue(c, m->frame);
  }
}

static void send_control(struct client *c, const char *id, const char *event, const char *json)
{
  struct frame *f = sse_frame_event(id, event, json);
  if (!f) {
    client_close(c, "error");
    return;
  }
  client_enqueue(c, f);
  frame_unref(f);
}

void client_reset(struct client *c, const char *reason)
{
  struct clients *cs = c->cs;
  struct gateway *gw = cs->gw;
  char json[256], here[MESSAGE_ID_MAX];
  if (c->state != CLIENT_OPEN)
    return;
  ring_lock(gw->ring);
  struct msgpos oldest, floor = ring_floor(gw->ring);
  int held = ring_oldest_pos(gw->ring, &oldest);
  ring_unlock(gw->ring);
  /* The oldest id a client can resume from without a gap. */
  if (held && msgpos_cmp(oldest, floor) < 0)
    oldest = floor;
  if (held) {
    char id[MESSAGE_ID_MAX];
    message_id_format(id, oldest.ms, oldest.seq);
    snprintf(json, sizeof(json), "{\"type\":\"reset\",\"reason\":\"%s\",\"oldest_id\":\"%s\"}",
             reason, id);
  } else {
    snprintf(json, sizeof(json), "{\"type\":\"reset\",\"reason\":\"%s\",\"oldest_id\":null}",
             reason);
  }
  /* The reset carries the current position as its id, so the browser's
   * next reconnect resumes from here instead of resetting again. */
  message_id_format(here, cs->last_pos.ms, cs->last_pos.seq);
  STAT_ADD(cs->stats->resets, 1);
  STAT_ADD(cs->stats->resets_by[strcmp(reason, "too_old") == 0 ? 0 : strcmp(reason, "gap") == 0 ? 2 : 1], 1);
  send_control(c, here, "tinysse.reset", json);
}

/* How far past what this node has read a cluster resume id may be (it may
 * come from a node a few milliseconds ahead); further is not a real id. */
#define CLUSTER_AHEAD_MS 30000

/* The seam: the worker's inbox was drained just before, so everything up to
 * cs->last_seq has been fanned out here and everything after it will be.
 * Replay what is positioned after the resume id up to last_seq; live
 * delivery then skips anything at or before the resume id. */
static void resume(struct client *c, const char *resume_id)
{
  struct clients *cs = c->cs;
  struct gateway *gw = cs->gw;
  struct msgpos seen;
  const char *reason = NULL;

  ring_lock(gw->ring);
  ring_expire(gw->ring); /* what is past --buffer-age is lost before we look */
  if (message_id_parse(resume_id, &seen.ms, &seen.seq) != 0 ||
      (!gw->cluster && seen.ms != gw->epoch)) {
    reason = "unknown";
  } else {
    switch (ring_check_resume_channels(gw->ring, seen, (const char *const *)c->channels,
                                       c->nchannels)) {
    case RING_RESUME_OK:
      c->after = seen;
      ring_each_for(gw->ring, seen, cs->last_seq, (const char *const *)c->channels, c->nchannels,
                    replay_one, c);
      break;
    case RING_RESUME_TOO_OLD:
      reason = "too_old";
      break;
    case RING_RESUME_UNKNOWN: {
      /* In a cluster, an id this node has not read yet may come from a
       * node slightly ahead: wait for what follows it. */
      uint64_t last_ms = ring_last_pos(gw->ring).ms, now_ms = (uint64_t)(cs->now * 1000);
      uint64_t horizon = (last_ms > now_ms ? last_ms : now_ms) + CLUSTER_AHEAD_MS;
      if (gw->cluster && seen.ms <= horizon)
        c->after = seen;
      else
        reason = "unknown";
      break;
    }
    }
  }
  ring_unlock(gw->ring);
  if (reason)
    client_reset(c, reason);
}

static void on_expiry(evutil_socket_t fd, short what, void *arg)
{
  (void)fd;
  (void)what;
  struct client *c = arg;
  STAT_ADD(c->cs->stats->expired, 1);
  client_close_after(c, "tinysse.auth", "{\"type\":\"auth\",\"reason\":\"token_expired\"}",
                     "expired");
}

static void free_fields(struct client_params *p)
{
  free(p->user_id);
  free(p->role);
  for (size_t i = 0; i < p->nchannels; i++)
    free(p->channels[i]);
  free(p->channels);
}

int client_open(struct clients *cs, struct client_params *p)
{
  struct gateway *gw = cs->gw;
  if (atomic_fetch_add(&gw->nclients, 1) >= gw->cfg->max_clients) {
    atomic_fetch_sub(&gw->nclients, 1);
    return -2;
  }
  int rc = -1;
  struct client *c = calloc(1, sizeof(*c));
  if (!c)
    goto err;
  c->cs = cs;
  c->fd = -1;
  c->ev = event_new(cs->base, -1, 0, client_on_io, c); /* assigned to the socket below */
  if (!c->ev)
    goto err;

  /* Everything published so far is fanned out before this client joins;
   * then the user's server-side subscriptions join its channels (a change
   * recorded after this look is in the inbox, and reaches the client once
   * it is in the directory below). */
  cs->drain(cs->arg);
  if (!p->internal && p->user_id) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    subs_merge(gw->subs, p->user_id, (double)rt.tv_sec + (double)rt.tv_nsec / 1e9, &p->channels,
               &p->nchannels, STREAM_MAX_CHANNELS);
  }
  c->sub = hub_subscribe(cs->hub, c, (const char *const *)p->channels, p->nchannels);
  if (!c->sub)
    goto err;
  pthread_mutex_lock(&gw->presence_lock);
  const char *peer = p->peer_ip ? p->peer_ip : "?";
  if (hub_subscribers(gw->peers, peer) >= (size_t)gw->cfg->max_per_peer) {
    pthread_mutex_unlock(&gw->presence_lock);
    rc = -3;
    goto err;
  }
  c->peer = hub_subscribe(gw->peers, c, &peer, 1);
  c->internal = p->internal;
  c->user_id = p->user_id; /* the directory reads it; p still owns it until below */
  if (!c->internal)
    c->presence = hub_subscribe(gw->presence, c, (const char *const *)p->channels, p->nchannels);
  int listed = !c->internal && client_dir_add(c) == 0;
  pthread_mutex_unlock(&gw->presence_lock);
  if ((!c->presence && !c->internal) || !c->peer || (!listed && !c->internal))
    goto err;
  if (p->expires_at > 0) {
    c->expiry = evtimer_new(cs->base, on_expiry, c);
    if (!c->expiry)
      goto err;
  }

  c->user_id = p->user_id;
  c->role = p->role;
  c->channels = p->channels;
  c->nchannels = p->nchannels;
  p->user_id = p->role = NULL; /* the client owns them now */
  p->channels = NULL;
  p->nchannels = 0;

  /* Take the connection over from the transport (nothing can fail after
   * this). */
  if (p->io) {
    int fd = p->io->open(p->io_arg, c);
    if (fd < 0)
      goto err;
    c->io = p->io;
    c->io_arg = p->io_arg;
    if (c->io->sealed) {
      c->fd = fd;
      event_assign(c->ev, cs->base, c->fd, EV_READ | EV_PERSIST, client_on_io, c);
      event_add(c->ev, NULL);
    }
  } else {
    if ((c->fd = p->take(p->take_arg)) < 0) {
      rc = errno == EMFILE || errno == ENFILE ? -4 : -1;
      goto err;
    }
    event_assign(c->ev, cs->base, c->fd, EV_READ | EV_PERSIST, client_on_io, c);
    event_add(c->ev, NULL);
  }
  /* The transport's head (the HTTP answer's status and headers), then the
   * stream's first field. */
  char retry[48];
  int rl = snprintf(retry, sizeof(retry), "retry: %ld\n\n", gw->cfg->retry_ms);
  char *first = xmalloc(p->head_len + (size_t)rl);
  if (p->head_len) /* none for an HTTP/2 stream: its head is HEADERS */
    memcpy(first, p->head, p->head_len);
  memcpy(first + p->head_len, retry, (size_t)rl);
  struct frame *hf = frame_new(first, p->head_len + (size_t)rl);
  free(first);
  if (hf)
    client_enqueue(c, hf);
  frame_unref(hf);
  c->last_write = cs->now = now_cached(cs);

  c->next = cs->clients;
  if (cs->clients)
    cs->clients->prev = c;
  cs->clients = c;
  STAT_ADD(cs->stats->connections, 1);
  STAT_ADD(cs->stats->connections_total, 1);

  if (p->resume_id)
    resume(c, p->resume_id);
  if (c->expiry) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double left = p->expires_at - ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    struct timeval tv = {(time_t)(left > 0 ? left : 0), 0};
    tv.tv_usec = left > 0 ? (suseconds_t)((left - (double)tv.tv_sec) * 1e6) : 0;
    evtimer_add(c->expiry, &tv);
  }
  if (!c->internal && script_has(cs->script, HOOK_ON_CONNECT)) {
    struct script_client v;
    char id[CLIENT_ID_MAX];
    script_view(c, &v, id);
    script_on_connect(cs->script, &v);
  }
  client_flush_one(c); /* headers and replay go out now */
  return 0;
err:
  if (c) {
    if (c->channels) { /* taken over just before the transport failed */
      p->user_id = c->user_id;
      p->role = c->role;
      p->channels = c->channels;
      p->nchannels = c->nchannels;
    }
    hub_unsubscribe(cs->hub, c->sub);
    pthread_mutex_lock(&gw->presence_lock);
    hub_unsubscribe(gw->presence, c->presence);
    hub_unsubscribe(gw->peers, c->peer);
    client_dir_del(c);
    pthread_mutex_unlock(&gw->presence_lock);
    if (c->expiry)
      event_free(c->expiry);
    if (c->ev)
      event_free(c->ev);
    outq_clear(&c->out);
    free(c);
  }
  atomic_fetch_sub(&gw->nclients, 1);
  if (rc == -1 || rc == -4) {
    free_fields(p);
    memset(p, 0, sizeof(*p));
  }
  return rc;
}

void client_close(struct client *c, const char *reason)
{
  if (c->state == CLIENT_CLOSED)
    return;
  c->state = CLIENT_CLOSED;
  c->reason = reason;
  if (c->expiry)
    evtimer_del(c->expiry);
  event_del(c->ev);
  clients_reap_later(c->cs, c);
}

void client_close_after(struct client *c, const char *event, const char *json,
                        const char *reason)
{
  if (c->state != CLIENT_OPEN)
    return;
  send_control(c, NULL, event, json);
  if (c->state != CLIENT_OPEN)
    return;
  c->state = CLIENT_DRAINING;
  c->reason = reason;
  c->want_write = -1; /* re-arm the event with the drain time limit */
  client_flush_one(c);
}

void client_free(struct client *c)
{
  struct clients *cs = c->cs;
  struct gateway *gw = cs->gw;
  if (c->in_list) { /* a closed client still waiting for its flush turn */
    struct client *prev = NULL;
    for (struct client *x = cs->dirty; x && x != c; x = x->dirty_next)
      prev = x;
    if (prev)
      prev->dirty_next = c->dirty_next;
    else
      cs->dirty = c->dirty_next;
    if (cs->dirty_tail == c)
      cs->dirty_tail = prev;
  }
  if (c->prev)
    c->prev->next = c->next;
  else
    cs->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  hub_unsubscribe(cs->hub, c->sub);
  char id[CLIENT_ID_MAX];
  client_id(c, id);
  pthread_mutex_lock(&gw->presence_lock);
  hub_unsubscribe(gw->presence, c->presence);
  hub_unsubscribe(gw->peers, c->peer);
  client_dir_del(c);
  pthread_mutex_unlock(&gw->presence_lock);
  if (!c->internal && script_has(cs->script, HOOK_ON_DISCONNECT)) {
    struct script_client v = {id, c->user_id, c->role, (const char *const *)c->channels, c->nchannels};
    script_on_disconnect(cs->script, &v, c->reason ? c->reason : "closed");
  }
  log_event(LOG_DEBUG, "stream_closed", "client=%s reason=%s", id, c->reason);
  if (c->expiry)
    event_free(c->expiry);
  event_free(c->ev);
  int drained = c->out.bytes == 0 && c->wire.bytes == 0 && c->drained;
  outq_clear(&c->out);
  outq_clear(&c->wire);
  if (c->io)
    c->io->close(c->io_arg, drained);
  else
    close(c->fd);
  for (size_t i = 0; i < c->nchannels; i++)
    free(c->channels[i]);
  free(c->channels);
  free(c->user_id);
  free(c->role);
  free(c);
  STAT_ADD(cs->stats->connections, (unsigned long)-1);
  atomic_fetch_sub(&gw->nclients, 1);
  atomic_fetch_add_explicit(&gw->churn, 1, memory_order_relaxed);
}

size_t client_tick(struct client *c, double now, double interval)
{
  if (c->state == CLIENT_OPEN && now - c->last_write >= interval) {
    client_enqueue(c, sse_ping_frame());
    c->last_write = now;
  }
  return c->out.bytes;
}

static void clients_reap_later(struct clients *cs, struct client *c)
{
  if (cs->nreap == cs->reap_cap) {
    cs->reap_cap = cs->reap_cap ? cs->reap_cap * 2 : 64;
    cs->reap = xrealloc(cs->reap, cs->reap_cap * sizeof(*cs->reap));
  }
  cs->reap[cs->nreap++] = c;
  cs->schedule_reap(cs->arg);
}

static void deliver_cb(void *owner, const struct message *m, void *arg)
{
  (void)arg;
  client_deliver(owner, m);
}

void clients_send(struct clients *cs, const struct message *m)
{
  hub_route(cs->hub, m, deliver_cb, NULL);
}

struct client *client_next(const struct client *c) { return c->next; }

struct outq *client_queue(struct client *c) { return &c->out; }

void client_io_ready(struct client *c)
{
  if (c->state != CLIENT_CLOSED && c->out.bytes > 0) {
    c->dirty = 1;
    client_flush_one(c);
  }
}
