/* A stream's output queue: references to shared frames, written with
 * writev. Queuing a frame costs one pointer slot, never a copy or an
 * allocation (the slot array grows rarely and is kept small when idle).
 * Single-threaded: owned by one client on one worker. */
#ifndef TINYSSE_OUTQ_H
#define TINYSSE_OUTQ_H

#include <stddef.h>
#include <stdint.h>

struct frame;
struct iovec;
struct evbuffer;

struct outq {
  struct frame **slots; /* circular; cap is a power of two */
  uint32_t head, n, cap;
  uint32_t off;  /* bytes of the head frame already written */
  size_t bytes;  /* bytes not yet written */
};

/* Queues a reference to f. 0, or -1 when memory ran out. */
int outq_push(struct outq *q, struct frame *f);
/* Writes as much as the socket takes. Returns bytes written (>= 0), or -1
 * on a socket error other than EAGAIN (errno set). */
long outq_write(struct outq *q, int fd);
/* Fills up to max iovecs with the queue's front (the unwritten part of the
 * head frame first); returns how many, with their total in *offered. */
int outq_iov(const struct outq *q, struct iovec *iov, int max, size_t *offered);
/* Drops `written` bytes from the front (after a write the caller made). */
void outq_consume(struct outq *q, size_t written);
/* Moves up to len bytes from the front to out: whole frames by reference
 * (no copy) unless copy is set, a part of a frame by copy. Returns the
 * bytes moved (fewer only when memory ran out). */
long outq_move(struct outq *q, size_t len, struct evbuffer *out, int copy);
/* Empties the queue without releasing its frames (they may still be read by
 * a send the kernel has not finished; see uring.c). */
void outq_abandon(struct outq *q);
/* Drops every queued reference and the slot array. */
void outq_clear(struct outq *q);

#endif
