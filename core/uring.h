/* Batched stream writes: the sends of one flush pass (one per client) go to
 * the kernel through io_uring in a single system call instead of one
 * writev each. A send never waits: the kernel takes what the socket has room
 * for and reports EAGAIN for a full socket, so every result is known when
 * uring_run returns and the caller finishes each client exactly as after a
 * writev. Single-threaded: one per worker, created and used on its thread.
 * Built without liburing, or where the kernel refuses io_uring (old kernel,
 * seccomp), uring_new returns NULL and the caller writes with writev. */
#ifndef TINYSSE_URING_H
#define TINYSSE_URING_H

#include <stddef.h>
#include <sys/types.h>

struct outq;
struct uring;

/* Frames one send takes from a queue; a client with more queued and all of
 * them taken continues with outq_write. */
#define URING_IOV 16

/* A batch of up to max sends. NULL with errno when io_uring is unavailable. */
struct uring *uring_new(unsigned max);
void uring_free(struct uring *u);
/* Room for more sends in the current batch. */
int uring_full(const struct uring *u);
/* Queues a send of the front of q to fd; returns its slot (0, 1, ...). q must
 * stay untouched until uring_run returns. */
int uring_add(struct uring *u, int fd, const struct outq *q);
/* Sends the batch in one system call. Afterwards uring_result(u, slot) is
 * the byte count or -errno for each slot, and uring_offered(u, slot) what
 * that send offered. 0, or -1 (errno) when the batch could not be sent at
 * all: then no slot was sent (results are -EAGAIN, safe to retry). */
int uring_run(struct uring *u);
ssize_t uring_result(const struct uring *u, int slot);
size_t uring_offered(const struct uring *u, int slot);
/* Empties the batch for the next pass. */
void uring_reset(struct uring *u);

#endif
