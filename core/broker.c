/* Publishing: id, frame, ring, inboxes; one lock. */
#include "broker.h"

#include "ring.h"
#include "sse.h"
#include "worker.h"

/* Under the ring lock: frame it, keep it, hand it to every worker. */
static int append(struct gateway *gw, struct msgpos pos, const char *id, const struct pub_item *it,
                  enum message_kind kind)
{
  struct frame *f = sse_frame_message(id, it->event, it->handler_id, it->json, it->json_len);
  struct message *m = f ? message_new(ring_last_seq(gw->ring) + 1, it->targets, it->ntargets, f) : NULL;
  if (!m) {
    frame_unref(f);
    return -1;
  }
  m->pos = pos;
  m->kind = kind;
  ring_push(gw->ring, m);
  for (int i = 0; i < gw->nworkers; i++)
    worker_inbox_push(gw->workers[i], m);
  message_unref(m);
  return 0;
}

static void wake_all(struct gateway *gw)
{
  for (int i = 0; i < gw->nworkers; i++)
    worker_wake(gw->workers[i]);
}

size_t broker_publish(struct gateway *gw, const struct pub_item *items, size_t n,
                      char (*ids)[MESSAGE_ID_MAX])
{
  size_t done = 0;
  ring_lock(gw->ring);
  for (; done < n; done++) {
    struct msgpos pos = {gw->epoch, ring_last_seq(gw->ring) + 1};
    message_id_format(ids[done], pos.ms, pos.seq);
    if (append(gw, pos, ids[done], &items[done], MESSAGE_LIVE) != 0)
      break;
  }
  ring_unlock(gw->ring);
  atomic_fetch_add(&gw->published, done);
  wake_all(gw);
  return done;
}

size_t broker_ingest(struct gateway *gw, const struct msgpos *pos, const struct pub_item *items,
                     size_t n, enum message_kind kind)
{
  size_t done = 0;
  ring_lock(gw->ring);
  for (size_t i = 0; i < n; i++) {
    if (msgpos_cmp(pos[i], ring_last_pos(gw->ring)) <= 0)
      continue; /* already here (a catch-up overlapping what was read) */
    char id[MESSAGE_ID_MAX];
    message_id_format(id, pos[i].ms, pos[i].seq);
    if (append(gw, pos[i], id, &items[i], kind) != 0)
      break;
    done++;
  }
  ring_unlock(gw->ring);
  if (kind == MESSAGE_LIVE)
    atomic_fetch_add(&gw->published, done);
  wake_all(gw);
  return done;
}

int broker_set_floor(struct gateway *gw, struct msgpos floor, int reset_clients)
{
  struct message *m = NULL;
  if (reset_clients) {
    if (!(m = message_new(0, NULL, 0, NULL)))
      return -1;
    m->pos = floor;
    m->kind = MESSAGE_GAP;
  }
  ring_lock(gw->ring);
  ring_raise_floor(gw->ring, floor);
  for (int i = 0; m && i < gw->nworkers; i++)
    worker_inbox_push(gw->workers[i], m);
  ring_unlock(gw->ring);
  message_unref(m);
  wake_all(gw);
  return 0;
}
