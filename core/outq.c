/* Output queues of frame references. */
#include "outq.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/uio.h>

#include <event2/buffer.h>

#include "sse.h"

#define OUTQ_IOV 64      /* frames per writev */
#define OUTQ_KEEP_CAP 8  /* an emptied queue keeps at most this many slots */

int outq_push(struct outq *q, struct frame *f)
{
  if (q->n == q->cap) {
    uint32_t cap = q->cap ? q->cap * 2 : 4;
    struct frame **s = malloc(cap * sizeof(*s));
    if (!s)
      return -1;
    for (uint32_t i = 0; i < q->n; i++)
      s[i] = q->slots[(q->head + i) & (q->cap - 1)];
    free(q->slots);
    q->slots = s;
    q->cap = cap;
    q->head = 0;
  }
  q->slots[(q->head + q->n) & (q->cap - 1)] = frame_ref(f);
  q->n++;
  q->bytes += f->len;
  return 0;
}

static void shrink_if_empty(struct outq *q)
{
  if (q->n == 0 && q->cap > OUTQ_KEEP_CAP) {
    free(q->slots);
    q->slots = NULL;
    q->cap = q->head = 0;
  }
}

void outq_consume(struct outq *q, size_t written)
{
  q->bytes -= written;
  while (written > 0) {
    struct frame *f = q->slots[q->head];
    size_t left = f->len - q->off;
    if (written < left) {
      q->off += (uint32_t)written;
      return;
    }
    written -= left;
    q->off = 0;
    frame_unref(f);
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
  }
  shrink_if_empty(q);
}

int outq_iov(const struct outq *q, struct iovec *iov, int max, size_t *offered)
{
  size_t sum = 0;
  int k = 0;
  for (uint32_t i = 0; i < q->n && k < max; i++, k++) {
    struct frame *f = q->slots[(q->head + i) & (q->cap - 1)];
    size_t skip = i == 0 ? q->off : 0;
    iov[k].iov_base = f->data + skip;
    iov[k].iov_len = f->len - skip;
    sum += iov[k].iov_len;
  }
  *offered = sum;
  return k;
}

long outq_write(struct outq *q, int fd)
{
  long total = 0;
  while (q->n > 0) {
    struct iovec iov[OUTQ_IOV];
    size_t offered;
    int k = outq_iov(q, iov, OUTQ_IOV, &offered);
    ssize_t w = writev(fd, iov, k);
    if (w < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        break;
      return -1;
    }
    outq_consume(q, (size_t)w);
    total += w;
    if ((size_t)w < offered)
      break; /* the socket took less than offered: it is full */
  }
  shrink_if_empty(q);
  return total;
}

void outq_abandon(struct outq *q)
{
  /* The frames stay referenced for good: the kernel may still read them. */
  free(q->slots);
  q->slots = NULL;
  q->head = q->n = q->cap = q->off = 0;
  q->bytes = 0;
}

void outq_clear(struct outq *q)
{
  for (uint32_t i = 0; i < q->n; i++)
    frame_unref(q->slots[(q->head + i) & (q->cap - 1)]);
  free(q->slots);
  q->slots = NULL;
  q->head = q->n = q->cap = q->off = 0;
  q->bytes = 0;
}

long outq_move(struct outq *q, size_t len, struct evbuffer *out, int copy)
{
  size_t moved = 0;
  while (moved < len && q->n > 0) {
    struct frame *f = q->slots[q->head];
    size_t left = f->len - q->off, n = len - moved < left ? len - moved : left;
    int rc = !copy && q->off == 0 && n == f->len ? frame_add_to(f, out)
                                                 : evbuffer_add(out, f->data + q->off, n);
    if (rc != 0)
      break;
    outq_consume(q, n);
    moved += n;
  }
  return (long)moved;
}
