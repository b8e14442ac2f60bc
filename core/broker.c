/* Publishing: id, frame, ring, inboxes; one lock. */
#include "broker.h"

#include "ring.h"
#include "sse.h"
#include "worker.h"

size_t broker_publish(struct gateway *gw, const struct pub_item *items, size_t n,
                      char (*ids)[MESSAGE_ID_MAX])
{
  size_t done = 0;
  ring_lock(gw->ring);
  for (; done < n; done++) {
    const struct pub_item *it = &items[done];
    uint64_t seq = ring_last_seq(gw->ring) + 1;
    message_id_format(ids[done], gw->epoch, seq);
    struct frame *f = sse_frame_message(ids[done], it->event, it->handler_id, it->json, it->json_len);
    struct message *m = f ? message_new(seq, it->targets, it->ntargets, f) : NULL;
    if (!m) {
      frame_unref(f);
      break;
    }
    ring_push(gw->ring, m);
    for (int i = 0; i < gw->nworkers; i++)
      worker_inbox_push(gw->workers[i], m);
    message_unref(m);
  }
  ring_unlock(gw->ring);
  atomic_fetch_add(&gw->published, done);
  for (int i = 0; i < gw->nworkers; i++)
    worker_wake(gw->workers[i]);
  return done;
}
