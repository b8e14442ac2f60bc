/* The output path of streams: queuing frames, the worker's FIFO of
 * clients with output, writing it (one writev each, one io_uring call per
 * slice, or through a transport's stream_io_ops), and closing as `slow` a
 * client whose unwritten queue passes --max-queue. */
#include "client_impl.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "log.h"
#include "shared.h"
#include "uring.h"

static void flush(struct client *c);

/* Whether the client writes its socket itself (plain, or sealed). */
static int own_socket(const struct client *c) { return !c->io || c->io->sealed; }

/* What goes on the socket: the frames themselves, or a sealed transport's
 * bytes made from them. Sealing waits while earlier bytes are still
 * unsent, so a stuck stream keeps shared frames, not copies. */
static struct outq *wire_of(struct client *c)
{
  if (!c->io || !c->io->sealed)
    return &c->out;
  if (c->wire.bytes < 65536 && c->out.bytes > 0 && c->io->seal(c->io_arg, &c->out, &c->wire) < 0)
    return NULL;
  return &c->wire;
}

/* One write of what is queued: the socket's writev, or the transport's. */
static long write_out(struct client *c)
{
  if (!own_socket(c))
    return c->io->write(c->io_arg, &c->out);
  struct outq *q = wire_of(c);
  return q ? outq_write(q, c->fd) : -1;
}

/* Watches for writability only while output is left over. */
static void want_write(struct client *c, int on)
{
  /* A transport of its own calls client_io_ready instead. */
  if (c->want_write == on || c->state == CLIENT_CLOSED || !own_socket(c))
    return;
  c->want_write = on;
  event_del(c->ev);
  event_assign(c->ev, c->cs->base, c->fd, EV_READ | EV_PERSIST | (on ? EV_WRITE : 0),
               client_on_io, c);
  struct timeval limit = {5, 0};
  /* A draining client that does not take its last frame is dropped. */
  event_add(c->ev, c->state == CLIENT_DRAINING ? &limit : NULL);
}

void client_on_io(evutil_socket_t fd, short what, void *arg)
{
  struct client *c = arg;
  if (what & EV_READ) {
    /* A stream carries nothing from the client after the request. */
    int closed;
    if (c->io) { /* sealed: the transport reads (and may have to answer) */
      closed = c->io->read(c->io_arg, &c->wire) < 0;
      if (!closed && c->wire.bytes > 0)
        what |= EV_WRITE;
    } else {
      char buf[512];
      ssize_t n = recv(fd, buf, sizeof(buf), 0);
      closed = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    if (closed) {
      client_close(c, c->state == CLIENT_DRAINING ? c->reason : "closed");
      return;
    }
  }
  if (what & EV_TIMEOUT) {
    client_close(c, c->reason ? c->reason : "timeout");
    return;
  }
  if (what & EV_WRITE)
    flush(c);
}

static void mark_dirty(struct client *c)
{
  struct clients *cs = c->cs;
  c->dirty = 1;
  if (c->in_list)
    return;
  c->in_list = 1;
  c->dirty_next = NULL;
  if (cs->dirty_tail)
    cs->dirty_tail->dirty_next = c;
  else
    cs->dirty = c;
  cs->dirty_tail = c;
  cs->schedule_flush(cs->arg);
}

void client_enqueue(struct client *c, struct frame *f)
{
  if (outq_push(&c->out, f) != 0) {
    client_close(c, "error");
    return;
  }
  c->last_write = c->cs->now;
  mark_dirty(c);
}

/* After a pass: write what the pass queued at once (an idle client costs one
 * send per pass, however many frames it got), and only then hold the rest
 * against --max-queue, so a burst a client can take is never mistaken for a
 * client that stopped reading. after_write is the second half: written is
 * what the write returned (-1 for a socket error). */
static void after_write(struct client *c, long written)
{
  if (written < 0) {
    client_close(c, c->state == CLIENT_DRAINING ? c->reason : "closed");
    return;
  }
  size_t left = c->out.bytes + c->wire.bytes;
  if (c->state == CLIENT_OPEN && left > (size_t)c->cs->gw->cfg->max_queue) {
    STAT_ADD(c->cs->stats->slow, 1);
    client_close(c, "slow");
    return;
  }
  if (left == 0 && c->state == CLIENT_DRAINING) {
    c->drained = 1;
    client_close(c, c->reason);
    return;
  }
  want_write(c, left > 0);
}

static void flush(struct client *c)
{
  c->dirty = 0;
  if (c->state == CLIENT_CLOSED)
    return;
  after_write(c, write_out(c));
}

/* Takes the next client off the worker's FIFO. */
static struct client *pop_dirty(struct clients *cs)
{
  struct client *c = cs->dirty;
  cs->dirty = c->dirty_next;
  if (!cs->dirty)
    cs->dirty_tail = NULL;
  c->in_list = 0;
  return c;
}

/* A slice flushed with one io_uring call for all its sends instead of a
 * writev each (see uring.h). Each client then ends as after a writev. */
static int flush_batched(struct clients *cs, int max)
{
  struct uring *u = cs->uring;
  struct client *batch[CLIENTS_FLUSH_SLICE];
  int n = 0;
  if (max > CLIENTS_FLUSH_SLICE)
    max = CLIENTS_FLUSH_SLICE;
  while (cs->dirty && n < max && !uring_full(u)) {
    struct client *c = pop_dirty(cs);
    if (!c->dirty)
      continue;
    c->dirty = 0;
    if (c->state == CLIENT_CLOSED)
      continue;
    struct outq *q = own_socket(c) ? wire_of(c) : NULL;
    if (!q || q->n == 0 || uring_add(u, c->fd, q) < 0) {
      after_write(c, write_out(c));
      continue;
    }
    batch[n++] = c;
  }
  int rc = uring_run(u);
  for (int i = 0; i < n; i++) {
    struct client *c = batch[i];
    ssize_t r = uring_result(u, i);
    if (r == -ETIME) { /* still in the kernel's hands: give the client up */
      outq_abandon(c->io ? &c->wire : &c->out);
      client_close(c, "error");
    } else if (r == -ECANCELED) { /* never sent */
      after_write(c, write_out(c));
    } else if (r < 0 && r != -EAGAIN && r != -EINTR) {
      after_write(c, -1);
    } else if (r > 0) {
      size_t offered = uring_offered(u, i);
      outq_consume(c->io ? &c->wire : &c->out, (size_t)r);
      long more = (size_t)r == offered && (c->out.n > 0 || c->wire.n > 0) ? write_out(c) : 0;
      after_write(c, more < 0 ? -1 : (long)r + more);
    } else {
      after_write(c, 0);
    }
  }
  if (rc < 0) {
    log_event(LOG_WARN, "io_uring_failed", "worker=%d reason=%s (writes one writev per stream from now on)",
              cs->index, strerror(errno));
    uring_free(u);
    cs->uring = NULL;
    atomic_store_explicit(&cs->stats->io_uring, 0, memory_order_relaxed);
  } else {
    uring_reset(u);
  }
  return cs->dirty != NULL;
}

int client_flush_slice(struct clients *cs, int max)
{
  if (cs->uring)
    return flush_batched(cs, max);
  while (cs->dirty && max-- > 0) {
    struct client *c = pop_dirty(cs);
    if (c->dirty)
      flush(c);
  }
  return cs->dirty != NULL;
}

void client_flush_one(struct client *c)
{
  if (c->dirty)
    flush(c);
}
