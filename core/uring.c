/* Batched stream writes over io_uring; see uring.h. */
#include "uring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "outq.h"

#ifdef TINYSSE_HAVE_URING
#include <liburing.h>

struct uring {
  struct io_uring ring;
  unsigned max, n;
  int ready;             /* the ring exists */
  int dead;              /* a batch went wrong: the ring is not used again */
  struct msghdr *msgs;   /* one per slot (sends of several frames) */
  struct iovec *iov;     /* URING_IOV per slot */
  size_t *offered;
  ssize_t *res;
  unsigned char *done;
};

struct uring *uring_new(unsigned max)
{
  struct uring *u = calloc(1, sizeof(*u));
  if (!u)
    return NULL;
  u->max = max;
  u->msgs = calloc(max, sizeof(*u->msgs));
  u->iov = calloc((size_t)max * URING_IOV, sizeof(*u->iov));
  u->offered = calloc(max, sizeof(*u->offered));
  u->res = calloc(max, sizeof(*u->res));
  u->done = calloc(max, 1);
  if (!u->msgs || !u->iov || !u->offered || !u->res || !u->done) {
    uring_free(u);
    errno = ENOMEM;
    return NULL;
  }
  /* Completions are only ever reaped by this thread right after its own
   * submission: tell the kernel so (6.1+), and fall back to fewer flags on
   * older kernels. */
  static const unsigned flag_sets[] = {
      IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_SUBMIT_ALL, 0};
  int rc = -EINVAL;
  for (size_t i = 0; i < sizeof(flag_sets) / sizeof(flag_sets[0]) && rc == -EINVAL; i++) {
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
    p.cq_entries = max * 2;
    rc = io_uring_queue_init_params(max, &u->ring, &p);
  }
  if (rc < 0) {
    uring_free(u);
    errno = -rc;
    return NULL;
  }
  u->ready = 1;
  io_uring_register_ring_fd(&u->ring); /* saves a lookup per call; optional */
  return u;
}

void uring_free(struct uring *u)
{
  if (!u)
    return;
  if (u->ready)
    io_uring_queue_exit(&u->ring);
  if (u->dead && u->n) {
    /* Sends may still be in the kernel's hands: their iovecs stay. */
    return;
  }
  free(u->msgs);
  free(u->iov);
  free(u->offered);
  free(u->res);
  free(u->done);
  free(u);
}

int uring_full(const struct uring *u) { return u->dead || u->n >= u->max; }

int uring_add(struct uring *u, int fd, const struct outq *q)
{
  unsigned slot = u->n;
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (!sqe || slot >= u->max)
    return -1;
  struct iovec *iov = u->iov + (size_t)slot * URING_IOV;
  int k = outq_iov(q, iov, URING_IOV, &u->offered[slot]);
  const int flags = MSG_DONTWAIT | MSG_NOSIGNAL; /* never parks in the kernel */
  if (k == 1) {
    io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, flags);
  } else {
    struct msghdr *m = &u->msgs[slot];
    memset(m, 0, sizeof(*m));
    m->msg_iov = iov;
    m->msg_iovlen = (size_t)k;
    io_uring_prep_sendmsg(sqe, fd, m, flags);
  }
  io_uring_sqe_set_data64(sqe, slot);
  u->res[slot] = -ECANCELED;
  u->done[slot] = 0;
  u->n++;
  return (int)slot;
}

int uring_run(struct uring *u)
{
  if (u->n == 0)
    return 0;
  /* Every send completes (or fails with EAGAIN) while it is submitted, so
   * the wait returns at once; the time limit only guards a kernel that
   * behaves otherwise. */
  struct __kernel_timespec limit = {.tv_sec = 1, .tv_nsec = 0};
  struct io_uring_cqe *cqe = NULL;
  int rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, u->n, &limit, NULL);
  unsigned head, seen = 0, got = 0;
  io_uring_for_each_cqe(&u->ring, head, cqe)
  {
    seen++;
    unsigned long long slot = io_uring_cqe_get_data64(cqe);
    if (slot < u->n && !u->done[slot]) {
      u->res[slot] = cqe->res;
      u->done[slot] = 1;
      got++;
    }
  }
  io_uring_cq_advance(&u->ring, seen);
  if (got == u->n)
    return 0;
  /* Not all sends came back: whatever was not submitted keeps -ECANCELED,
   * whatever was submitted and is still out gets -ETIME; the ring is not
   * used again. */
  unsigned submitted = u->n - io_uring_sq_ready(&u->ring);
  for (unsigned i = 0; i < u->n; i++)
    if (!u->done[i] && i < submitted)
      u->res[i] = -ETIME;
  u->dead = 1;
  errno = rc < 0 ? -rc : EIO;
  return -1;
}

ssize_t uring_result(const struct uring *u, int slot) { return u->res[slot]; }
size_t uring_offered(const struct uring *u, int slot) { return u->offered[slot]; }

void uring_reset(struct uring *u)
{
  if (!u->dead)
    u->n = 0;
}

#else /* built without liburing */

struct uring *uring_new(unsigned max)
{
  (void)max;
  errno = ENOSYS;
  return NULL;
}
void uring_free(struct uring *u) { (void)u; }
int uring_full(const struct uring *u) { return 1; }
int uring_add(struct uring *u, int fd, const struct outq *q) { return -1; }
int uring_run(struct uring *u) { return -1; }
ssize_t uring_result(const struct uring *u, int slot) { return -ECANCELED; }
size_t uring_offered(const struct uring *u, int slot) { return 0; }
void uring_reset(struct uring *u) { (void)u; }

#endif
